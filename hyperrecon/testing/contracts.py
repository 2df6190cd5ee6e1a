"""Contract checks for every kind of plugin: build a registered entry from its ``smoke_params`` and run it.

Shipped with the package (like ``optuna.testing``) so that a plugin module can be checked the way the built-in
entries are, from the user's own test suite::

    import pytest
    from hyperrecon.testing import contracts

    import my_lab.losses  # registers "my-loss"

    def test_my_loss(tmp_path):
        contracts.check("losses", "my-loss", tmp_path)

One function per registry kind (the kinds of ``hrbench list``); each raises :class:`ContractError` (an
``AssertionError``, so pytest shows it as a failed assertion) with a message naming the entry and what it broke.
The checks use tiny inputs (16 x 16 images, a handful of trials) and run in a second or two on a CPU.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..plugins import REGISTRIES, registry


class ContractError(AssertionError):
    """A registered entry does not keep its registry's contract."""


def expect(condition: Any, entry: str, what: str) -> None:
    """Raise :class:`ContractError` ``"<entry>: <what>"`` unless ``condition`` holds (not stripped by ``-O``)."""
    if not condition:
        raise ContractError(f"{entry}: {what}")


def _built(kind: str, name: str) -> tuple[Any, dict[str, Any], str]:
    """(registry, smoke_params checked against the constructor, label for messages) for ``kind``/``name``."""
    reg = registry(kind)
    label = f"{reg.kind} '{name}'"
    expect(reg.describe(name), label, "has no description (register(..., description=...) or a docstring)")
    params = reg.smoke_params(name)
    reg.check_params(name, params, where=label)
    return reg, params, label


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------------
# losses


def check_loss(name: str) -> None:
    """A loss term returns ``(B,)`` finite float32 values >= 0, differentiable; a supervised one refuses no target."""
    import torch

    from ..errors import ConfigError
    from ..losses import LossContext
    from ..models import UNet
    from ..physics import CSMRI

    reg, params, label = _built("losses", name)
    cls = reg.get(name)
    expect(isinstance(getattr(cls, "supervised", None), bool), label, "needs a bool class attribute `supervised`")
    term = reg.build(name, params)
    cs = CSMRI((16, 16), acceleration=4.0)
    x = torch.rand(3, 1, 16, 16, generator=_generator(1))
    x_hat = (x + 0.1 * torch.rand(3, 1, 16, 16, generator=_generator(2))).requires_grad_(True)
    lam = torch.rand(3, 1, generator=_generator(3))
    ctx = LossContext(x_hat=x_hat, target=x, y=cs.measure(x), forward_model=cs, model=UNet(width=4), lam=lam)
    value = term(ctx)
    expect(value.shape == (3,) and value.dtype == torch.float32, label, f"returned {value.shape} {value.dtype}")
    expect(torch.isfinite(value).all() and (value >= 0).all(), label, "values must be finite and >= 0")
    value.sum().backward()
    grads = [ctx.x_hat.grad] + [p.grad for p in ctx.model.parameters()]
    expect(any(g is not None and g.abs().sum() > 0 for g in grads), label, "a loss term must be differentiable")
    if cls.supervised:
        try:
            term(LossContext(x_hat=x_hat.detach(), lam=lam, model=ctx.model, y=ctx.y, forward_model=cs))
        except ConfigError as exc:
            expect("target" in str(exc), label, f"the missing-target error should say 'target', got: {exc}")
        else:
            raise ContractError(f"{label}: is supervised but ran without a target")


# ------------------------------------------------------------------------------------------------------------
# training-time λ samplers


def check_sampler(name: str, n_lams_options: tuple[int, ...] = (1, 2)) -> None:
    """A sampler draws ``(8, k)`` float32 λ in [0, 1], reproducibly from its generator, leaves the global RNG
    alone, reduces per-sample losses to a finite scalar and saves/restores its state with ``weights_only``."""
    import torch

    reg, params, label = _built("samplers", name)
    for n_lams in n_lams_options:
        sampler = reg.build(name, params)
        sampler.validate(8)
        before = torch.get_rng_state()
        lam = sampler.sample(8, n_lams, _generator(1), 0)
        expect(torch.equal(torch.get_rng_state(), before), label, "the global RNG must stay untouched")
        expect(lam.shape == (8, n_lams) and lam.dtype == torch.float32, label, f"drew {lam.shape} {lam.dtype}")
        expect(float(lam.min()) >= 0.0 and float(lam.max()) <= 1.0, label, "λ must lie in [0, 1]")
        again = reg.build(name, params).sample(8, n_lams, _generator(1), 0)
        expect(torch.equal(lam, again), label, "same generator seed -> same λ")

        total = torch.rand(8, requires_grad=True)
        dc = torch.rand(8)
        for step in range(3):
            loss = sampler.reduce(total, dc, step)
            expect(loss.ndim == 0 and torch.isfinite(loss), label, "reduce must give a finite scalar")
        loss.backward()
        expect(total.grad is not None, label, "reduce must keep the graph to the per-sample losses")

        buf = io.BytesIO()
        torch.save(sampler.state_dict(), buf)
        buf.seek(0)
        reg.build(name, params).load_state_dict(torch.load(buf, weights_only=True))


# ------------------------------------------------------------------------------------------------------------
# search strategies and pruners


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _bowl(n_lams: int) -> Callable[[Any], float]:
    """A smooth objective with its optimum at λ = 0.3 on each axis."""
    return lambda t: -sum((t.suggest_float(f"lam{i}", 0.0, 1.0) - 0.3) ** 2 for i in range(n_lams))


def check_strategy(name: str, n_lams_options: tuple[int, ...] = (1, 2)) -> None:
    """A strategy factory ``(n_lams, budget, seed, **params)`` gives an Optuna sampler that proposes λ in [0,1]^k."""
    optuna = _quiet_optuna()
    reg, params, label = _built("strategies", name)
    for n_lams in n_lams_options:
        sampler = reg.build(name, params, n_lams=n_lams, budget=6, seed=0)
        expect(isinstance(sampler, optuna.samplers.BaseSampler), label, f"built {type(sampler).__name__}")
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(_bowl(n_lams), n_trials=6)
        values = [t.params[f"lam{i}"] for t in study.trials for i in range(n_lams)]
        expect(study.trials, label, "proposed no trial")  # a grid may run out before the budget
        expect(all(0.0 <= v <= 1.0 for v in values), label, "proposed λ outside [0, 1]")


def check_pruner(name: str) -> None:
    """A pruner factory ``(steps, reduction_factor, budget, seed, **params)`` gives an Optuna pruner under which
    a study with intermediate values at the fidelity steps runs to the end (each trial complete or pruned)."""
    optuna = _quiet_optuna()
    reg, params, label = _built("pruners", name)
    steps = [1, 3, 9]
    pruner = reg.build(name, params, steps=steps, reduction_factor=3, budget=8, seed=0)
    expect(isinstance(pruner, optuna.pruners.BasePruner), label, f"built {type(pruner).__name__}")

    def objective(trial: Any) -> float:
        lam = trial.suggest_float("lam0", 0.0, 1.0)
        for step in steps:
            value = -((lam - 0.3) ** 2) * (1 + 1 / step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner, direction="maximize")
    study.optimize(objective, n_trials=8)
    states = {t.state for t in study.trials}
    done = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    expect(len(study.trials) == 8 and states <= done, label, f"trial states {states}")
    expect(optuna.trial.TrialState.COMPLETE in states, label, "pruned every trial")


# ------------------------------------------------------------------------------------------------------------
# networks


def check_model(name: str) -> None:
    """A model maps ``(3, 2, 8, 16)`` (and λ ``(3, n_lams)`` when ``conditional``) to ``(3, 1, 8, 16)`` finite
    values, has ``weight_l1 -> (3,)``, back-propagates, and ignores λ when it is not conditional."""
    import torch

    reg, params, label = _built("models", name)
    cls = reg.get(name)
    conditional = getattr(cls, "conditional", None)
    expect(isinstance(conditional, bool), label, "needs a bool class attribute `conditional`")
    model = reg.build(name, params)
    gen = _generator(0)
    x = torch.randn(3, 2, 8, 16, generator=gen)
    lam = torch.rand(3, getattr(model, "n_lams", 1), generator=gen)
    out = model(x, lam if conditional else None)
    expect(out.shape == (3, 1, 8, 16) and torch.isfinite(out).all(), label, f"output {tuple(out.shape)}")
    l1 = model.weight_l1(lam if conditional else None, 3)
    expect(l1.shape == (3,), label, f"weight_l1 gave {tuple(l1.shape)}, expected (3,)")
    (out.square().mean() + 1e-3 * l1.mean()).backward()
    expect(any(p.grad is not None for p in model.parameters()), label, "no parameter received a gradient")
    if not conditional:
        torch.testing.assert_close(model(x, lam), out, msg=lambda m: f"{label}: λ must be ignored ({m})")


# ------------------------------------------------------------------------------------------------------------
# forward models


def check_forward_model(name: str) -> None:
    """A forward model measures ``(2, 1, H, W)`` images; network input ``(2, 2, H, W)`` float32, degraded image
    ``(2, 1, H, W)`` >= 0, adjoint, per-sample data consistency >= 0, a JSON ``describe()`` and a mask image."""
    import torch

    reg, params, label = _built("forward-models", name)
    model = reg.build(name, params)
    h, w = model.image_shape
    x = torch.rand((2, 1, h, w), generator=_generator(0))
    y = model.measure(x, _generator(1))
    expect(y.shape[0] == 2, label, f"measurements {tuple(y.shape)} lost the batch axis")
    net = model.network_input(y)
    expect(net.shape == (2, 2, h, w) and net.dtype == torch.float32, label, f"network input {tuple(net.shape)}")
    expect(torch.isfinite(net).all(), label, "network input must be finite")
    deg = model.degraded(y)
    expect(deg.shape == (2, 1, h, w) and deg.dtype == torch.float32, label, f"degraded {tuple(deg.shape)}")
    expect(torch.all(deg >= 0), label, "the degraded image is a magnitude (>= 0)")
    expect(model.A_adjoint(y).shape == (2, 1, h, w), label, "A_adjoint must give image-shaped output")
    dc = model.data_consistency(x, y)
    expect(dc.shape == (2,) and torch.isfinite(dc).all() and torch.all(dc >= 0), label, "data consistency (B,) >= 0")
    info = model.describe()
    expect(info["name"] == name and list(info["image_shape"]) == [h, w], label, f"describe() gave {info}")
    json.dumps(info)
    expect(model.mask_image().shape == (h, w), label, "mask_image must be (H, W)")
    expect(model.to("cpu") is model, label, "to(device) must return the model itself")


# ------------------------------------------------------------------------------------------------------------
# metrics


def _threshold_seg():
    """A segmentation net with known output: class 1 where the image exceeds 0.5 (logits ``0.5 - x, x - 0.5``)."""
    import torch

    class ThresholdSeg(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([0.5 - x[:, :1], x[:, :1] - 0.5], dim=1)

    return ThresholdSeg()


def check_metric(name: str) -> None:
    """A metric scores ``(3, 1, 16, 13)`` images ``(3,)`` finite, and a better reconstruction scores better in its
    own direction (``higher_is_better``). A metric that ``needs`` labels and a segmentation net gets 2-class
    labels ``x > 0.5`` and a net that thresholds at 0.5."""
    import torch

    reg, params, label = _built("metrics", name)
    obj = reg.get(name)
    metric = reg.build(name, params) if isinstance(obj, type) else obj
    expect(callable(metric), label, "a built metric must be callable")
    expect(isinstance(getattr(metric, "higher_is_better", None), bool), label, "needs a bool `higher_is_better`")
    gen = _generator(0)
    x = torch.rand(3, 1, 16, 13, generator=gen)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    degraded = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    inputs: dict[str, Any] = {"degraded": degraded, "data_range": 1.0}
    if set(getattr(metric, "needs", ())) & {"labels", "seg_model"}:
        inputs.update(labels=(x[:, 0] > 0.5).long(), seg_model=_threshold_seg(), n_classes=2)
    out = metric(x_hat, x, **inputs)
    expect(out.shape == (3,) and torch.isfinite(out).all(), label, f"gave {tuple(out.shape)}, expected (3,) finite")
    worse = metric(degraded, x, **inputs)
    better = (out > worse) if metric.higher_is_better else (out < worse)
    expect(better.all(), label, "a closer reconstruction must score better in the metric's own direction")


# ------------------------------------------------------------------------------------------------------------
# datasets


def check_dataset(name: str, folder: Path, *, image_size: int = 16) -> None:
    """A dataset loads into three non-empty, disjoint splits of ``image_size`` float32 slices in [0, 1] (validated
    by ``load_data``); a reader first writes tiny files of its real format into ``folder`` (``write_sample``).
    Loading again gives the same arrays, and so does loading through a cache in ``folder``."""
    import numpy as np

    from ..data import load_data

    reg, params, label = _built("datasets", name)
    cls = reg.get(name)
    folder = Path(folder)
    path = None
    if getattr(cls, "needs_path", False):
        sample = folder / "sample"
        sample.mkdir(parents=True, exist_ok=True)
        path = cls.write_sample(sample)
        expect(Path(path).exists(), label, f"write_sample returned {path}, which does not exist")
    loads = [
        load_data(name, image_size=image_size, seed=0, path=path, params=params, cache_dir=cache)
        for cache in (False, folder / "cache", folder / "cache")
    ]
    first = loads[0]
    expect(set(first.splits) == {"train", "val", "test"}, label, f"splits {sorted(first.splits)}")
    expect(first.image_size == image_size and first.source == name, label, "bundle names another size or source")
    ids = [set(s.ids) for s in first.splits.values()]
    expect(sum(map(len, ids)) == len(set().union(*ids)), label, "a slice id occurs in two splits")
    for other in loads[1:]:
        for split, s in first.splits.items():
            o = other.splits[split]
            same = list(o.ids) == list(s.ids) and np.array_equal(o.images, s.images)
            if s.labels is not None or o.labels is not None:
                same = same and o.labels is not None and s.labels is not None and np.array_equal(o.labels, s.labels)
            expect(same, label, f"the {split} split differs between loads (fresh vs cached)")


# ------------------------------------------------------------------------------------------------------------

#: registry kind (as in ``hrbench list``) -> its check; every kind of :data:`hyperrecon.plugins.REGISTRIES`
CHECKS: dict[str, Callable[..., None]] = {
    "losses": check_loss,
    "samplers": check_sampler,
    "strategies": check_strategy,
    "pruners": check_pruner,
    "models": check_model,
    "datasets": check_dataset,
    "metrics": check_metric,
    "forward-models": check_forward_model,
}


def check(kind: str, name: str, folder: Path | None = None) -> None:
    """Run the contract check of registry ``kind`` on entry ``name``; datasets need a scratch ``folder``."""
    if kind == "datasets":
        if folder is None:
            raise ValueError("check('datasets', ...) needs a folder to write sample files and a cache into")
        check_dataset(name, folder)
    else:
        CHECKS[kind](name)


def entries() -> list[tuple[str, str]]:
    """Every registered ``(kind, name)``, for ``pytest.mark.parametrize`` (imports each registry's module)."""
    return [(kind, name) for kind in REGISTRIES for name in registry(kind).names()]
