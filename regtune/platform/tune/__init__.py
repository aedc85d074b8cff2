"""The Ray Tune adapter: trainable, search space, schedulers, the sweep runner, progress.

The only room of :mod:`regtune.platform` that imports Ray Tune."""
