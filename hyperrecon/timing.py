"""Cost accounting: device time, wall time and peak memory of a piece of work (training, search, inference).

- **Device time**: on a CUDA device the GPU time between two CUDA events (includes idle gaps between kernels
  inside the timed span, excludes nothing the GPU did in it). On the CPU it is ``time.process_time``: the CPU time
  of the *whole process summed over all its threads*, so with 2 intra-op threads busy it grows about twice as fast
  as the wall clock, and it also counts work of other threads in the process (e.g. a data loader).
- **Wall time**: ``time.perf_counter``.
- **Peak memory**: on CUDA ``torch.cuda.max_memory_allocated`` since the last reset (tensors only, not the caching
  allocator's reserve). On the CPU ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the peak resident set size of the
  process since it started; it cannot be reset, so it is an upper bound for the timed span.

``CostRecord`` is the serialisable summary the study runner writes next to every trained model.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


class DeviceTimer:
    """Accumulating timer for device and wall seconds; use as a context manager or with ``start``/``stop``.

    >>> timer = DeviceTimer("cpu")
    >>> with timer:
    ...     pass
    >>> timer.device_seconds >= 0.0
    True

    Several ``start``/``stop`` spans add up. On CUDA, reading ``device_seconds`` synchronises on the recorded events
    (not on every kernel), so timing costs nothing inside the timed loop.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = _as_device(device)
        self.cuda = self.device.type == "cuda"
        self._spans: list[tuple[Any, Any]] = []  # finished CUDA event pairs, resolved lazily
        self._device_done = 0.0  # finished CPU process seconds or resolved CUDA seconds
        self._wall_done = 0.0
        self._running: tuple[Any, float] | None = None

    @property
    def running(self) -> bool:
        return self._running is not None

    def start(self) -> DeviceTimer:
        if self._running is not None:
            raise RuntimeError("DeviceTimer.start() called twice without stop()")
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            begin: Any = event
        else:
            begin = time.process_time()
        self._running = (begin, time.perf_counter())
        return self

    def stop(self) -> None:
        if self._running is None:
            raise RuntimeError("DeviceTimer.stop() called without start()")
        begin, wall_begin = self._running
        self._running = None
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record(torch.cuda.current_stream(self.device))
            self._spans.append((begin, end))
        else:
            self._device_done += time.process_time() - begin
        self._wall_done += time.perf_counter() - wall_begin

    def __enter__(self) -> DeviceTimer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def device_seconds(self) -> float:
        """Device seconds of the finished spans (plus the running one, measured up to now on the CPU)."""
        if self._spans:
            self._spans[-1][1].synchronize()
            self._device_done += sum(b.elapsed_time(e) for b, e in self._spans) / 1000.0
            self._spans.clear()
        extra = 0.0
        if self._running is not None and not self.cuda:
            extra = time.process_time() - self._running[0]
        return self._device_done + extra

    @property
    def wall_seconds(self) -> float:
        extra = time.perf_counter() - self._running[1] if self._running is not None else 0.0
        return self._wall_done + extra


def reset_peak_memory(device: str | torch.device = "cpu") -> None:
    """Reset the CUDA peak-memory counter (no-op on the CPU, where the peak RSS cannot be reset)."""
    device = _as_device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: str | torch.device = "cpu") -> float:
    """Peak memory in MiB: CUDA tensors since the last reset, or the process's peak RSS on the CPU."""
    device = _as_device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


@dataclass
class CostRecord:
    """What one piece of work cost. ``kind`` names the model kind (e.g. ``unet``, ``hyper``, ``film``)."""

    model_name: str
    kind: str
    n_params: int
    steps: int
    device_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    device: str
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def plus(self, steps: int, device_seconds: float, wall_seconds: float, peak_memory_mb: float) -> CostRecord:
        """A copy with more work added (used when training resumes): times add, the peak is the maximum."""
        return dataclasses.replace(
            self,
            steps=self.steps + steps,
            device_seconds=self.device_seconds + device_seconds,
            wall_seconds=self.wall_seconds + wall_seconds,
            peak_memory_mb=max(self.peak_memory_mb, peak_memory_mb),
        )


def add_job_peaks(cost_rows: list[dict[str, Any]], jobs_dir: str | Path) -> None:
    """Add each model's evaluation and search job peaks (MiB) to its ``costs.csv`` row, in place.

    Reads ``peak_memory_mib`` from ``jobs/eval-<model>.json`` and ``jobs/search-<model>.json`` (every job writes it;
    runs made before it have none: then the column is left out, or empty for that row).
    """
    from .io import read_json

    for prefix, column in (("eval", "eval_peak_memory_mib"), ("search", "search_peak_memory_mib")):
        for row in cost_rows:
            path = Path(jobs_dir) / f"{prefix}-{row['model']}.json"
            peak = read_json(path).get("peak_memory_mib") if path.exists() else None
            if peak is not None:
                row[column] = float(peak)
