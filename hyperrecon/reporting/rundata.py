"""Read a finished run folder (:class:`hyperrecon.runs.folder.RunFolder`) into one validated object.

Required: ``run.json`` (of this version's run folder format, checked by
:meth:`hyperrecon.runs.folder.RunFolder.read_info`),
``config.json``, ``results.csv`` and ``costs.csv``. A missing, empty or unreadable one, or a results table whose
values are all NaN (as a whole or for one model and metric), is a ``RunError`` naming the file and what was
expected. The other files (search tables, per-model eval outputs, job records) are optional: the report leaves out
the sections that need them; but one that is there and truncated or corrupt is a ``RunError`` too (an ``.npz`` is
read in full, so the CRC-32 of every member is checked).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RunError
from ..runs.folder import RunFolder, read_json_object
from ..runs.models import ModelSpec, model_specs_from_config

RESULT_COLUMNS = ["model", "lam1", "slice", "metric", "value"]  # lam2 only in AO runs (docs/run-folder.md)
COST_COLUMNS = ["model", "kind", "n_params", "device_seconds", "wall_seconds"]
SEARCH_COLUMNS = ["target", "strategy", "seed", "trial", "cum_cost_seconds", "best_so_far"]


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read in full (so that each member's CRC-32 is checked); ``RunError``
    naming the file when it is truncated or corrupt (not a zip, bad checksum, broken deflate stream, pickles)."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy under an .npz name
            raise ValueError("a single array, not an npz archive")
        with archive as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RunError(f"{path}: corrupt or truncated npz ({type(exc).__name__}: {detail}); expected {what}") from exc


def read_table(path: Path, columns: list[str], what: str, *, required: bool = True) -> pd.DataFrame | None:
    """A CSV with at least ``columns`` and one row, else ``RunError`` (None when optional and absent)."""
    if not path.exists():
        if required:
            raise RunError(
                f"{path}: missing; expected {what} (did the run finish? `hrbench run --resume` completes it)"
            )
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise RunError(f"{path}: empty file; expected {what} with columns {','.join(columns)}") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable CSV ({exc}); expected {what}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RunError(f"{path}: missing columns {','.join(missing)}; expected {what} with columns {','.join(columns)}")
    if frame.empty:
        raise RunError(f"{path}: no rows; expected {what}")
    return frame


def require_table(path: Path, columns: list[str], what: str) -> pd.DataFrame:
    frame = read_table(path, columns, what, required=True)
    if frame is None:  # unreachable: required=True raises instead
        raise RunError(f"{path}: missing; expected {what}")
    return frame


def _read_json(path: Path, what: str) -> dict[str, Any]:
    return read_json_object(path, what)


@dataclass
class RunData:
    """Everything the report reads from one run folder."""

    run_dir: Path
    run: dict[str, Any]
    config: dict[str, Any]  # the resolved study (config.json "study")
    config_hash: str
    results: pd.DataFrame
    costs: pd.DataFrame
    scales: dict[str, Any] | None = None
    search: pd.DataFrame | None = None
    search_summary: pd.DataFrame | None = None
    summary: dict[str, Any] | None = None
    costs_by_replicate: pd.DataFrame | None = None
    """costs.csv as written: one row per replicate and model (``costs`` is its mean over replicates)."""
    long_reference: dict[str, Any] | None = None
    """``reference/long-baseline.json`` when the long-run reference was made (:mod:`hyperrecon.long_reference`)."""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- study facts -------------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``ao`` or ``sl``."""
        return str(self.config.get("kind", "ao" if self.n_lams == 2 else "sl"))

    @property
    def n_lams(self) -> int:
        return 1 if self.results["lam2"].isna().all() else 2

    @property
    def models(self) -> list[str]:
        """Reconstruction models in results order (baselines first as the run lists them)."""
        return list(dict.fromkeys(self.results["model"]))

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def specs(self) -> dict[str, ModelSpec]:
        """The spec of each model in the results: from the study in ``config.json`` (:mod:`hyperrecon.runs.models`),
        read from the name only for a model the config does not list (a hand-made table)."""
        if "specs" not in self._cache:
            known = {m.name: m for m in model_specs_from_config(self.config) or []}
            self._cache["specs"] = {
                m: known.get(m) or ModelSpec.from_name(m) or ModelSpec(m, "other") for m in self.models
            }
        return self._cache["specs"]

    def kind_of(self, model: str) -> str:
        """``baseline`` | ``hyper`` | ``film`` (``other`` for a name no spec makes)."""
        spec = self.specs.get(model) or ModelSpec.from_name(model)
        return spec.kind if spec is not None else "other"

    @property
    def baselines(self) -> list[str]:
        return [m for m, s in self.specs.items() if s.kind == "baseline"]

    @property
    def conditional(self) -> list[str]:
        """λ-conditioned models: HyperRecon variants, then FiLM."""
        specs = self.specs
        return [m for m, s in specs.items() if s.kind == "hyper"] + [m for m, s in specs.items() if s.kind == "film"]

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(self.results["metric"]))

    @property
    def replicates(self) -> list[int]:
        """The replicate numbers in the results (``[0]`` for a run of one replicate or an older run)."""
        return sorted(int(r) for r in self.results["replicate"].unique())

    def replicate_dir(self, replicate: int) -> Path:
        return self.folder.replicate(replicate).root

    @property
    def objective(self) -> str:
        return str(self.config.get("search", {}).get("objective", "psnr"))

    def baseline_lam(self, model: str) -> tuple[float, ...]:
        row = self.results[self.results.model == model].iloc[0]
        return (float(row.lam1),) if self.n_lams == 1 else (float(row.lam1), float(row.lam2))

    # -- optional per-model files ------------------------------------------------------------------------------

    def eval_meta(self, model: str) -> dict[str, Any] | None:
        path = self.folder.eval_file(model, "-meta.json")
        return _read_json(path, "evaluation metadata") if path.exists() else None

    def eval_images(self, model: str) -> dict[str, np.ndarray] | None:
        path = self.folder.eval_file(model, "-images.npz")
        if not path.exists():
            return None
        return read_npz(path, "example and diverse-pair images")

    def ranges(self, model: str, replicate: int = 0) -> pd.DataFrame | None:
        return read_table(
            self.folder.replicate(replicate).eval_file(model, "-ranges.csv"),
            ["slice", "n_above", "n_lams"],
            "per-slice reconstruction ranges",
            required=False,
        )

    def dhs_kept(self, model: str) -> np.ndarray | None:
        path = self.folder.eval_file(model, "-dhs-kept.npz")
        if not path.exists():
            return None
        arrays = read_npz(path, "an array 'lams' of shape (n, k)")
        if "lams" not in arrays:
            raise RunError(f"{path}: no array 'lams'; expected an array 'lams' of shape (n, k)")
        try:
            lams = np.asarray(arrays["lams"], dtype=float)
        except (TypeError, ValueError) as exc:
            raise RunError(f"{path}: 'lams' is not numeric ({exc}); expected an array of shape (n, k)") from exc
        return lams.reshape(len(lams), -1) if lams.size else None

    def dhs_kept_steps(self, model: str) -> tuple[np.ndarray | None, int]:
        """The training step of each kept λ row and the UHS warm-up steps (None, 0 for files without them)."""
        path = self.folder.eval_file(model, "-dhs-kept.npz")
        arrays = read_npz(path, "arrays 'lams', 'steps' and 'warmup_steps'") if path.exists() else {}
        steps = np.asarray(arrays["steps"]) if "steps" in arrays else None
        return steps, int(arrays["warmup_steps"]) if "warmup_steps" in arrays else 0

    def job(self, name: str) -> dict[str, Any] | None:
        path = self.folder.job_record(name)
        return _read_json(path, "a job record") if path.exists() else None

    def search_test(self, target: str) -> pd.DataFrame | None:
        key = f"search-test:{target}"
        if key not in self._cache:  # read once: write_report checks it before drawing, the section reuses it
            self._cache[key] = read_table(
                self.folder.search / f"{target}-test.csv",
                ["strategy", "seed", "test_objective"],
                "test objective at each search's chosen λ",
                required=False,
            )
        return self._cache[key]


def _check_results(results: pd.DataFrame, path: Path) -> pd.DataFrame:
    results = results.copy()
    if "lam2" not in results.columns:  # a one-hyperparameter study: the column does not apply
        results.insert(list(results.columns).index("lam1") + 1, "lam2", np.nan)
    results["value"] = pd.to_numeric(results["value"], errors="coerce")
    if "replicate" not in results.columns:  # a run of one replicate made before replicates existed
        results["replicate"] = 0
    rep = pd.to_numeric(results["replicate"], errors="coerce")
    if rep.isna().any() or (rep < 0).any() or (rep != rep.round()).any():
        raise RunError(f"{path}: column 'replicate' must hold whole numbers >= 0")
    results["replicate"] = rep.astype(int)
    if results["value"].isna().all():
        raise RunError(f"{path}: every value is NaN; expected finite metric values")
    groups = results.groupby(["model", "metric"], sort=False)["value"]
    dead = [f"{m}/{k}" for (m, k), v in groups if v.isna().all()]
    if dead:
        raise RunError(
            f"{path}: all values NaN for {', '.join(dead[:4])}{' ...' if len(dead) > 4 else ''}; "
            "expected finite metric values for every model and metric"
        )
    return results


def load_run(run_dir: Path) -> RunData:
    """Read and validate a run folder; ``RunError`` (one line, naming the file) on anything missing or empty."""
    info = RunFolder(run_dir).read_info()
    folder = info.folder
    run_dir = folder.root
    results_csv = folder.table("results.csv")
    results = _check_results(require_table(results_csv, RESULT_COLUMNS, "the test-set results"), results_csv)
    costs = require_table(folder.table("costs.csv"), COST_COLUMNS, "one cost row per trained model")
    for col in ("n_params", "device_seconds", "wall_seconds"):
        costs[col] = pd.to_numeric(costs[col], errors="coerce")
    if not np.isfinite(costs["device_seconds"].to_numpy(dtype=float)).any():
        raise RunError(f"{folder.table('costs.csv')}: every device_seconds is NaN; expected measured training costs")
    by_replicate = costs.copy()
    if "replicate" in costs.columns and costs["replicate"].nunique() > 1:
        # one row per model: numbers averaged over replicates, the rest from replicate 0
        numeric = [
            c for c in costs.columns if c not in ("model", "replicate") and pd.api.types.is_numeric_dtype(costs[c])
        ]
        first = costs.groupby("model", sort=False).first().drop(columns=numeric)
        costs = first.join(costs.groupby("model", sort=False)[numeric].mean()).reset_index()
    scales = _read_json(folder.scales_json, "loss scales") if folder.scales_json.exists() else None
    search = read_table(folder.table("search.csv"), SEARCH_COLUMNS, "every search trial", required=False)
    summary_cols = ["target", "strategy", "best_mean", "regret_mean", "search_cost_mean", "total_cost_mean"]
    search_summary = read_table(
        folder.table("search_summary.csv"), summary_cols, "one row per target and strategy", required=False
    )
    summary_json = folder.table("summary.json")
    summary = _read_json(summary_json, "headline numbers") if summary_json.exists() else None
    long_json = folder.long_reference_file("long-baseline.json")
    long_reference = _read_json(long_json, "the long-run reference") if long_json.exists() else None
    return RunData(
        run_dir=run_dir,
        run=info.run,
        config=info.study,
        config_hash=info.config_hash,
        results=results,
        costs=costs,
        scales=scales,
        search=search,
        search_summary=search_summary,
        summary=summary,
        costs_by_replicate=by_replicate,
        long_reference=long_reference,
    )


def finite(x: Any) -> float | None:
    """A JSON-safe float: None for NaN/inf/None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
