"""regtune's AdamW/SGD: torch's, bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from regtune.trainables import optim


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))


def _make(kind: str, family: str, params: Any) -> torch.optim.Optimizer:
    adamw = optim.AdamW if family == "regtune" else torch.optim.AdamW
    sgd = optim.SGD if family == "regtune" else torch.optim.SGD
    if kind == "adamw":
        return adamw(params, lr=1e-2, weight_decay=0.1)
    return sgd(params, lr=5e-2, momentum=0.9, weight_decay=1e-3)


def _schedule(opt: torch.optim.Optimizer, name: str) -> torch.optim.lr_scheduler.LRScheduler:
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-2, total_steps=40, max_momentum=0.9, base_momentum=0.8
    )


def _steps(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(16, 10, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_same_bits_and_state_as_torch_across_a_restore(kind: str, schedule: str) -> None:
    """Training, saving and loading (each way round) match torch's classes exactly."""
    runs: dict[str, tuple[list[torch.Tensor], dict[str, Any]]] = {}
    for family, restored_into in (("torch", "regtune"), ("regtune", "torch")):
        model = _model()
        opt = _make(kind, family, model.parameters())
        sched = _schedule(opt, schedule)
        _steps(model, opt, sched, 15, seed=1)
        saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
        # A checkpoint written by one family continues in the other.
        opt = _make(kind, restored_into, model.parameters())
        sched = _schedule(opt, schedule)
        opt.load_state_dict(saved_opt)
        sched.load_state_dict(saved_sched)
        _steps(model, opt, sched, 15, seed=2)
        runs[family] = ([p.detach().clone() for p in model.parameters()], opt.state_dict())
    (torch_params, torch_state), (ours_params, ours_state) = runs["torch"], runs["regtune"]
    assert all(torch.equal(a, b) for a, b in zip(torch_params, ours_params, strict=True))
    assert ours_state["param_groups"] == torch_state["param_groups"]
    for index, entry in torch_state["state"].items():
        assert entry.keys() == ours_state["state"][index].keys()
        for key, value in entry.items():
            assert torch.equal(value, ours_state["state"][index][key]), (index, key)


def test_closure_and_grad_mode_as_torch() -> None:
    """step(closure) returns the closure's loss and leaves grad mode as it found it."""
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = model(torch.ones(2, 10)).sum()
        loss.backward()
        return float(loss.detach())

    model.eval()  # no dropout: the loss before the step is known
    with torch.no_grad():
        before = float(model(torch.ones(2, 10)).sum())
    assert opt.step(closure) == before
    assert torch.is_grad_enabled()
    with torch.no_grad():
        assert float(model(torch.ones(2, 10)).sum()) < before  # it did step


def test_a_training_process_never_imports_dynamo(data_cache: Path, tmp_path: Path) -> None:
    """A whole run (both optimizers, a schedule, a checkpoint and its restore)."""
    code = f"""
import sys
from pathlib import Path
from regtune.trainables.data import load_dataset
from regtune.trainables.loop import Trainer
data = load_dataset("digits", cache_dir=Path({str(data_cache)!r}))
for opt in ("adam", "sgd"):
    cfg = {{"dataset": "digits", "model": {{"arch": "mlp", "width": 16, "depth": 1}},
           "training": {{"epochs": 2, "batch_size": 256, "optimizer": opt,
                        "lr_schedule": "cosine", "robust_every": 0}}}}
    trainer = Trainer(cfg, dataset=data)
    trainer.run_epoch()
    trainer.save({str(tmp_path)!r} + "/" + opt)
    again = Trainer(cfg, dataset=data)
    again.restore({str(tmp_path)!r} + "/" + opt)
    again.run_epoch()
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_steps_are_torchs_own_even_after_torch_hooked_them() -> None:
    """Building a torch optimizer wraps its class's step once more (profiling):
    the step regtune calls is still the bare one, under torch's one wrapper."""
    torch.optim.AdamW(_model().parameters())  # hooks AdamW.step
    torch.optim.SGD(_model().parameters(), lr=0.1)
    for hooked, ours in ((torch.optim.AdamW.step, optim.AdamW), (torch.optim.SGD.step, optim.SGD)):
        assert getattr(hooked, "hooked", False)
        assert optim._unhooked(hooked) is ours._torch_step
        assert ours._torch_step.__code__.co_name == "_use_grad"
        bare = ours._bare_step
        assert bare is not None and bare is ours._torch_step.__wrapped__
        assert not hasattr(bare, "__wrapped__") and bare.__qualname__.endswith(".step")


def test_an_unknown_wrapper_is_not_skipped() -> None:
    """Only the wrappers known to be safe to skip are: anything else keeps torch's path."""

    def other(fn: Any) -> Any:
        @functools.wraps(fn)
        def guard(*args: Any) -> Any:
            return fn(*args)

        return guard

    def body(self: Any) -> None:
        return None

    assert optim._bare(other(body), "_use_grad") is None
    assert optim._bare(body, "_use_grad") is None  # nothing to skip
    assert optim._bare(torch.optim.Optimizer.zero_grad, "inner") is not None


def _five_steps(opt: torch.optim.Optimizer, model: nn.Module) -> int:
    """Five steps and a state round trip; how many times a step hook fired."""
    fired: list[int] = []
    opt.register_step_post_hook(lambda *_: fired.append(1))
    _steps(model, opt, _schedule(opt, "cosine"), 5, seed=4)
    opt.load_state_dict(opt.state_dict())
    return len(fired)


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_while_compiling_every_method_is_torchs_own(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torch.compile the wrappers (graph breaks, dynamo disabled) run:
    same bits as torch, and a step hook still fires once a step."""
    theirs = _model()
    assert _five_steps(_make(kind, "torch", theirs.parameters()), theirs) == 5
    calls: list[str] = []
    real = torch.optim.Optimizer.zero_grad

    def zero(self: Any, set_to_none: bool = True) -> None:
        calls.append("zero_grad")
        real(self, set_to_none)

    cls = optim.AdamW if kind == "adamw" else optim.SGD
    torch_step = cls._torch_step

    def step(self: Any, closure: Any = None) -> Any:
        calls.append("step")
        return torch_step(self, closure)

    monkeypatch.setattr(optim, "_torch_path", lambda: True)
    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", zero)
    monkeypatch.setattr(cls, "_torch_step", step)
    ours = _model()
    assert _five_steps(_make(kind, "regtune", ours.parameters()), ours) == 5
    assert calls == ["zero_grad", "step"] * 5  # torch's own (wrapped) methods ran
    pairs = zip(theirs.parameters(), ours.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
