"""What a run and each of its jobs ran with: provenance (``run.json``) and ``ran_with`` (``jobs/<name>.json``).

Results of CPU kernels depend on the thread count and the CPU kind, so each job records its setting and the report
says when a run mixed several (:func:`ran_with_summary`).
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path
from typing import Any

from .folder import RunFolder


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def provenance(device: str, precision: str) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    versions: dict[str, str | None] = {}
    for pkg in ("hyperrecon", "torch", "numpy", "optuna", "scikit-image", "scipy", "nilearn"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "device": device,
        "device_name": device_name(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
    }


def ran_with(device: str, precision: str) -> dict[str, Any]:
    """What a job ran with that can change its numbers: threads, device, CPU/GPU kind, precision, torch version.
    Stored per job (``jobs/<name>.json`` ``ran_with``) so that a run finished elsewhere says what it mixed."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "device": device,
        "device_name": device_name(device),
        "precision": precision,
        "torch": torch.__version__,
    }


def ran_with_summary(run_dir: Path) -> str | None:
    """One line on what the jobs of a run ran with (``jobs/*.json`` ``ran_with``), saying when they differ (a run
    resumed on another machine or CPU kind, whose numbers may then differ from a run on one setting). None when no
    job recorded it (runs made before it was recorded)."""
    import json
    from collections import Counter

    seen: Counter[str] = Counter()
    for path in sorted(RunFolder(run_dir).jobs.glob("*.json")):
        try:
            rw = json.loads(path.read_text(encoding="utf-8")).get("ran_with")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(rw, dict):
            seen[
                f"{rw.get('threads')} threads, {rw.get('device_name')} ({rw.get('device')}), {rw.get('precision')}, "
                f"torch {rw.get('torch')}"
            ] += 1
    if not seen:
        return None
    if len(seen) == 1:
        return f"all {sum(seen.values())} jobs: {next(iter(seen))}"
    parts = "; ".join(f"{n} jobs: {setting}" for setting, n in seen.most_common())
    return f"MIXED settings ({parts}): numbers may differ from a run on one setting"
