"""The explorer's state: one run's trained models and test slices, and what the page asks of them.

:func:`open_explorer` reads a run folder once, read-only: the resolved study (``config.json``), the test slices
(rebuilt from the study's data and seed exactly as the run's evaluation built them,
:meth:`hyperrecon.runs.context.RunContext.eval_data`), every trained λ-conditioned model (HyperRecon variants, FiLM) and
baseline U-Net under ``models/`` (:meth:`~hyperrecon.runs.context.RunContext.load_model`: archive checksums verified,
``torch.load(weights_only=True)``) and the per-model evaluation tables under ``eval/`` (for the landscape or curve;
a partly finished run shows what it has). Nothing is ever written to the run folder.

:meth:`Explorer.render` reconstructs one test slice at one λ (:func:`hyperrecon.evaluation.reconstruct`, the run's
precision) and computes PSNR / rPSNR / SSIM / HFEN for it (:func:`hyperrecon.evaluation.batch_metrics`, the run's
SSIM convention), so a λ on the evaluation grid reads the same numbers as ``eval/<model>.csv``.

Request values are checked by the ``parse_*`` methods, which raise :class:`RequestError` (an HTTP status and one
clear message) for λ outside [0, 1], NaN, a wrong number of λ, a slice index out of range or an unknown model.
"""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, RunError
from ..reporting.rundata import finite as _finite
from . import imaging

READOUT_METRICS = ("psnr", "rpsnr", "ssim", "hfen")
LANDSCAPE_METRICS = ("psnr", "rpsnr", "ssim", "hfen", "mae", "dice")
DIVERSE_MAX_POINTS = {1: 51, 2: 11}
"""λ grid points per axis for the on-request diverse pair and range (capped so one request takes seconds)."""


class RequestError(Exception):
    """A bad request value: ``status`` (4xx) and a message naming the parameter, the value and what is expected."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Explorer:
    """A run opened for exploring (see the module docstring). Build it with :func:`open_explorer`."""

    run_dir: Path
    study: Any  # hyperrecon.config.Study
    data: Any  # hyperrecon.evaluation.EvalData, the test slices
    models: dict[str, Any]  # conditional models by name, in the study's order
    baselines: dict[str, tuple[float, ...]]  # trained baselines: name -> λ
    baseline_nets: dict[str, Any]  # trained baselines: name -> model
    tables: dict[str, Any]  # model name -> its eval table (pandas), when evaluated
    device: str = "cpu"
    precision: str = "fp32"
    _baseline_cache: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict, repr=False)
    _diverse_cache: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict, repr=False)
    _slice_cache: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    # -- facts --------------------------------------------------------------------------------------------------

    @property
    def n_lams(self) -> int:
        return int(self.study.n_lams)

    @property
    def n_slices(self) -> int:
        return len(self.data)

    @property
    def image_shape(self) -> tuple[int, int]:
        h, w = self.data.targets.shape[-2:]
        return int(h), int(w)

    def lam_labels(self) -> list[str]:
        """Axis names, as in the report: SL ``λ (loss = (1−λ)·a + λ·b)``, AO ``λ1 (weight of a)``, ``λ2 ...``."""
        terms = list(self.study.loss.terms)
        if self.n_lams == 1:
            return [f"λ  (loss = (1−λ)·{terms[0]} + λ·{terms[1]})" if len(terms) == 2 else "λ"]
        if len(terms) == 3:
            return [f"λ1 (weight of {terms[0]})", f"λ2 ({terms[1]} share of the rest)"]
        return ["λ1", "λ2"]

    def command(self, model: str, lam: list[float]) -> str:
        """The shell command that writes this model's reconstructions of every test slice at ``lam``."""
        text = ",".join(f"{v:.4g}" for v in lam)
        return (
            f"hrbench explore {shlex.quote(str(self.run_dir))} --model {shlex.quote(model)} "
            f"--lam {text} --save recon-{model}.npz"
        )

    # -- request checks ---------------------------------------------------------------------------------------

    def parse_model(self, value: str | None) -> str:
        if value is None or value == "":
            raise RequestError(f"missing parameter 'model'; expected one of: {', '.join(self.models)}")
        if value not in self.models:
            raise RequestError(f"unknown model '{value}'; expected one of: {', '.join(self.models)}", 404)
        return value

    def parse_slice(self, value: str | None) -> int:
        if value is None or value == "":
            raise RequestError(f"missing parameter 'slice'; expected an integer in [0, {self.n_slices - 1}]")
        try:
            index = int(value)
        except ValueError:
            raise RequestError(f"slice '{value}' is not an integer; expected one in [0, {self.n_slices - 1}]") from None
        if not 0 <= index < self.n_slices:
            raise RequestError(
                f"slice {index} is out of range; this run has {self.n_slices} test slices (0 to {self.n_slices - 1})",
                404,
            )
        return index

    def parse_lam(self, value: str | None) -> list[float]:
        k = self.n_lams
        want = "one number" if k == 1 else f"{k} comma-separated numbers"
        if value is None or value == "":
            raise RequestError(f"missing parameter 'lam'; expected {want} in [0, 1]")
        parts = value.split(",")
        if len(parts) != k:
            raise RequestError(f"lam '{value}' has {len(parts)} value(s); this run's models take {want} in [0, 1]")
        lam = []
        for part in parts:
            try:
                v = float(part)
            except ValueError:
                raise RequestError(f"lam '{value}': '{part}' is not a number; expected {want} in [0, 1]") from None
            if not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise RequestError(f"lam '{value}': {part} is outside [0, 1]; expected {want} in [0, 1]")
            lam.append(v)
        return lam

    # -- rendering --------------------------------------------------------------------------------------------

    def _metrics(self, x_hat, index: int) -> dict[str, float]:
        from ..evaluation import batch_metrics
        from ..resolve import build_study_metrics

        d = self.data
        metrics = build_study_metrics(self.study, READOUT_METRICS)
        vals = batch_metrics(metrics, x_hat, d.targets[index : index + 1], d.degraded[index : index + 1])
        return {k: _finite(v[0]) for k, v in vals.items()}  # JSON has no NaN: a diverged model reads null

    def reconstruct(self, model: str, index: int, lam: list[float] | None):
        """The reconstruction ``(1, 1, H, W)`` float32 of test slice ``index`` by ``model`` at ``lam``."""
        from ..evaluation import reconstruct

        net = self.models[model] if model in self.models else self.baseline_nets[model]
        return reconstruct(
            net,
            self.data.inputs[index : index + 1],
            None if lam is None else np.asarray(lam),
            device=self.device,
            precision=self.precision,
        )

    def render(self, model: str, index: int, lam: list[float]) -> dict[str, Any]:
        """Reconstruct slice ``index`` with ``model`` at ``lam``: the image (PNG ``data:`` URL), its metrics, the
        nearest trained baseline (image, λ, metrics) and the server time in ms. Arguments already checked."""
        t0 = time.perf_counter()
        x_hat = self.reconstruct(model, index, lam)
        out: dict[str, Any] = {
            "model": model,
            "slice": index,
            "lam": lam,
            "image": imaging.data_url(x_hat[0, 0].numpy()),
            "metrics": self._metrics(x_hat, index),
        }
        out["baseline"] = self.nearest_baseline(index, lam)
        out["server_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
        return out

    def nearest_baseline(self, index: int, lam: list[float]) -> dict[str, Any] | None:
        """The trained baseline whose λ is nearest (Euclidean) to ``lam``, its reconstruction of the slice and
        metrics (cached per baseline and slice); None when no baseline has been trained."""
        if not self.baselines:
            return None
        names = list(self.baselines)
        dist = [float(np.hypot.reduce(np.subtract(self.baselines[n], lam))) for n in names]
        name = names[int(np.argmin(dist))]
        key = (name, index)
        if key not in self._baseline_cache:
            x_hat = self.reconstruct(name, index, None)
            self._baseline_cache[key] = {
                "model": name,
                "lam": list(self.baselines[name]),
                "image": imaging.data_url(x_hat[0, 0].numpy()),
                "metrics": self._metrics(x_hat, index),
            }
        return self._baseline_cache[key]

    def slice_images(self, index: int) -> dict[str, Any]:
        """Ground truth and network input (its magnitude, as rPSNR sees it) of slice ``index`` as ``data:`` URLs,
        and the difference-map scale ``max |input - target|`` (so the map's colours mean the same at every λ)."""
        if index not in self._slice_cache:
            d = self.data
            target = d.targets[index, 0].numpy()
            degraded = d.degraded[index, 0].numpy()
            self._slice_cache[index] = {
                "slice": index,
                "id": d.ids[index],
                "target": imaging.data_url(target),
                "input": imaging.data_url(degraded),
                "diff_scale": float(max(np.max(np.abs(degraded - target)), 1e-6)),
            }
        return self._slice_cache[index]

    def diverse(self, model: str, index: int) -> dict[str, Any]:
        """The most diverse good pair and the range of reconstructions of slice ``index`` over a λ grid
        (:func:`hyperrecon.evaluation.evaluate_model` on that one slice; the study's rPSNR threshold and diverse
        quantile; grid of ``min(grid_points, DIVERSE_MAX_POINTS[k])`` points per axis). Cached."""
        key = (model, index)
        if key in self._diverse_cache:
            return self._diverse_cache[key]
        from ..evaluation import evaluate_model, lam_grid

        ev = self.study.evaluation
        points = min(int(ev.grid_points), DIVERSE_MAX_POINTS[self.n_lams])
        t0 = time.perf_counter()
        res = evaluate_model(
            self.models[model],
            model,
            self.data.subset([index]),
            lam_grid(self.n_lams, points),
            ["psnr", "rpsnr"],
            device=self.device,
            precision=self.precision,
            range_slices=1,
            rpsnr_threshold=ev.rpsnr_threshold,
            diverse_quantile=ev.diverse_quantile,
        )
        row = res.ranges.iloc[0]
        out: dict[str, Any] = {
            "model": model,
            "slice": index,
            "grid_points": points,
            "n_lams_evaluated": int(row["n_lams"]),
            "range": {
                "n_above": int(row["n_above"]),
                "rpsnr_threshold": float(row["rpsnr_threshold"]),
                "range_mean_per_pixel": _finite(row["range_mean_per_pixel"]),
            },
        }
        dv = res.diverse
        if dv:
            out["pair"] = {
                "lam_a": dv["lam_a"],
                "lam_b": dv["lam_b"],
                "psnr_a": _finite(dv["psnr_a"]),
                "psnr_b": _finite(dv["psnr_b"]),
                "distance": _finite(dv["distance"]),
                "n_kept": int(dv["n_kept"]),
                "quantile": float(dv["quantile"]),
                "image_a": imaging.data_url(dv["image_a"]),
                "image_b": imaging.data_url(dv["image_b"]),
            }
        out["server_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        self._diverse_cache[key] = out
        return out

    def save(self, model: str, lam: list[float], out: str | Path) -> Path:
        """Write ``model``'s reconstructions of every test slice at ``lam`` to ``out`` (``.npz``, atomic):
        ``recon`` (N, H, W) float32, ``ids`` (N,), ``lam`` (k,), ``model``. What "copy λ" gives the command for."""
        from ..evaluation import reconstruct
        from ..io import write_npz

        out = check_save_path(out)
        x_hat = reconstruct(
            self.models[model], self.data.inputs, np.asarray(lam), device=self.device, precision=self.precision
        )
        return write_npz(
            out,
            recon=x_hat[:, 0].numpy().astype(np.float32),
            ids=np.asarray(self.data.ids),
            lam=np.asarray(lam, dtype=np.float64),
            model=np.asarray(model),
        )

    # -- the page's static facts ------------------------------------------------------------------------------

    def landscapes(self) -> dict[str, dict[str, Any]]:
        """Per conditional model and metric, the run's mean-over-slices results: k=1 ``{"lams", "mean"}``,
        k=2 ``{"axis", "grid"}`` (``grid[i][j]`` at λ1 = axis[i], λ2 = axis[j]; null where missing); and the
        baselines' means as ``{"baselines": {metric: [{"model", "lam", "mean"}]}}``."""
        from ..landscapes import curve, landscape

        out: dict[str, dict[str, Any]] = {}
        for name in self.models:
            table = self.tables.get(name)
            if table is None:
                continue
            per: dict[str, Any] = {}
            for metric in LANDSCAPE_METRICS:
                if not (table["metric"] == metric).any():
                    continue
                if self.n_lams == 1:
                    lams, mean, _ = curve(table, name, metric)
                    per[metric] = {"lams": lams.tolist(), "mean": [_finite(v) for v in mean]}
                else:
                    axis, grid = landscape(table, name, metric)
                    per[metric] = {"axis": axis.tolist(), "grid": [[_finite(v) for v in r] for r in grid]}
            out[name] = per
        base: dict[str, list[dict[str, Any]]] = {}
        for name, lam in self.baselines.items():
            table = self.tables.get(name)
            if table is None:
                continue
            for metric, value in table.groupby("metric")["value"].mean().items():
                base.setdefault(str(metric), []).append({"model": name, "lam": list(lam), "mean": _finite(value)})
        return {"models": out, "baselines": base}

    def info(self) -> dict[str, Any]:
        """Everything the page needs at start: models, slices (ids and thumbnails), λ axes, landscapes."""
        from ..reporting.style import model_label

        d = self.data
        h, w = self.image_shape
        return {
            "run": str(self.run_dir),
            "study": self.study.name,
            "profile": self.study.profile,
            "kind": self.study.kind,
            "n_lams": self.n_lams,
            "lam_labels": self.lam_labels(),
            "image_shape": [h, w],
            "device": self.device,
            "precision": self.precision,
            "models": [{"name": n, "label": model_label(n)} for n in self.models],
            "baselines": [{"name": n, "lam": list(lam)} for n, lam in self.baselines.items()],
            "slices": [
                {"index": i, "id": d.ids[i], "thumb": imaging.thumbnail(d.targets[i, 0].numpy())} for i in range(len(d))
            ],
            "readout": list(READOUT_METRICS),
            "landscapes": self.landscapes(),
            "command": f"hrbench explore {shlex.quote(str(self.run_dir))}",
        }


def check_save_path(out: str | Path) -> Path:
    """A ``--save`` target: a file name ending in ``.npz`` (checked before any work)."""
    out = Path(out)
    if out.suffix != ".npz" or out.is_dir():
        raise ConfigError(f"--save {out}: expected a file name ending in .npz")
    return out


def open_explorer(run_dir: str | Path, *, device: str = "cpu", precision: str | None = None) -> Explorer:
    """Open a run folder for exploring (module docstring). ``precision`` None: the run's own (``auto`` resolved
    on this machine as the run resolved it). Errors, each one line naming the file: not a run folder
    (``RunError``), no trained conditional model yet (``RunError``), a corrupt or truncated weight file
    (``CheckpointError``), unreadable data (``DataError``)."""
    import pandas as pd

    from ..plugins import load_plugins
    from ..reporting.rundata import RESULT_COLUMNS, read_table
    from ..resolve import resolve_device, resolve_precision
    from ..runs.context import RunContext
    from ..runs.folder import RunFolder
    from ..runs.orchestrate import study_from_dict_resolved

    info = RunFolder(run_dir).read_info()  # RunError naming the file: not a run folder, other format ...
    run_dir = info.folder.root
    study = study_from_dict_resolved(info.study)
    load_plugins(
        study.plugins,
        source=study.source_file,
        search_path=str(Path(study.source_file).parent) if study.source_file else None,
    )
    dev = resolve_device(device)
    prec = resolve_precision(precision or study.train.precision, dev)
    ctx = RunContext(run_dir, study, dev, prec)
    trained = [m for m in ctx.models if ctx.model_path(m.name).exists()]
    conditional = [m.name for m in trained if m.conditional]
    if not conditional:
        expected = ", ".join(m.name for m in ctx.models if m.conditional)
        raise RunError(
            f"{ctx.folder.models}: no trained λ-conditioned model yet (expected one of {expected}); "
            "let `hrbench run` train one first"
        )
    models = {n: ctx.load_model(n) for n in conditional}  # fails here, before serving, on a corrupt file
    baselines = {m.name: tuple(m.lam or ()) for m in trained if m.kind == "baseline"}
    explorer = Explorer(
        run_dir=run_dir,
        study=study,
        data=ctx.eval_data("test", study.evaluation.n_test),
        models=models,
        baselines=baselines,
        baseline_nets={n: ctx.load_model(n) for n in baselines},
        tables={},
        device=dev,
        precision=prec,
    )
    for m in trained:
        n = m.name
        table = read_table(ctx.folder.eval_file(n), RESULT_COLUMNS, "the model's evaluation table", required=False)
        if table is not None:
            table["value"] = pd.to_numeric(table["value"], errors="coerce")
            explorer.tables[n] = table
    return explorer
