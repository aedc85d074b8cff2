"""Serving registered models over HTTP on Ray Serve.

Pure parts (no Ray): :mod:`.protocol` (request bodies, limits, 4xx errors),
:mod:`.predictor` (records -> probabilities for one version), :mod:`.drift`
(PSI/KS against the training reference), :mod:`.rollout` (canary/shadow
routing and rollback), :mod:`.feedback` (accuracy, ECE and group gaps from
labels). The Ray Serve adapter is :mod:`.app` (``build_app`` for
``serve run`` / ``serve deploy`` and ``regtune serve``).
"""
