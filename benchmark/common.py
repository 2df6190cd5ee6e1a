"""Shared helpers of the model benchmarks: device naming, model factory, precision contexts, stats, CSV/MD output."""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmark/x.py` from a source checkout
    sys.path.insert(0, str(ROOT))

from hyperrecon.accel import with_host_copy  # noqa: E402
from hyperrecon.models import FiLMUNet, HyperUNet, UNet, keep_freed_memory  # noqa: E402
from hyperrecon.runs import context  # noqa: E402

__all__ = ["keep_freed_memory"]  # re-exported for the scripts

# CPU kinds of the CPU benchmarks: torch reads these at start-up, so each kind runs in its own process. "avx2" makes
# a CPU with AVX512-BF16/AMX behave like an AVX2-only one (no AVX-512, no bf16 dot products; "auto" picks fp32).
ISA_ENV = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
MODEL_NAMES = ("unet", "hyper-S", "hyper-M", "hyper-L", "film")
PRECISIONS = ("fp32", "bf16")  # the default comparison: float32 NCHW against autocast bf16 + channels_last
# Every precision x memory-format variant, for the before/after figure of each of the two changes alone.
PRECISION_VARIANTS = {
    "fp32": (False, False),
    "fp32-cl": (False, True),
    "bf16-nchw": (True, False),
    "bf16": (True, True),
}  # name -> (bf16 autocast, channels_last)
PRECISION_HELP = (
    "fp32 (float32 NCHW), fp32-cl (float32 channels_last), bf16-nchw (autocast bf16, NCHW), "
    "bf16 (autocast bf16 + channels_last)"
)


def device_name(device: torch.device) -> str:
    """CPU model (from /proc/cpuinfo where there is one) or the CUDA device name, as run reports name it."""
    return context.device_name(str(device))


def build_model(name: str, path: str) -> torch.nn.Module:
    if name == "unet":
        return UNet()
    if name == "film":
        return FiLMUNet(1)
    if name.startswith("hyper-"):
        return HyperUNet(1, size=name.split("-", 1)[1], path=path)
    raise SystemExit(f"error: unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")


def check_precisions(names: list[str]) -> list[str]:
    bad = [n for n in names if n not in PRECISION_VARIANTS]
    if bad:
        raise SystemExit(
            f"error: --precisions: unknown {', '.join(map(repr, bad))}; valid: {', '.join(PRECISION_VARIANTS)}"
        )
    return names


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if PRECISION_VARIANTS[precision][0]:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(precision: str) -> torch.memory_format:
    return torch.channels_last if PRECISION_VARIANTS[precision][1] else torch.contiguous_format


def add_machine_args(p: argparse.ArgumentParser, unit: str) -> None:
    """Options every timing script shares: threads, device, allocator, and the quiet-machine rule per ``unit``."""
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--malloc",
        choices=("keep", "default"),
        default="keep",
        help="keep: glibc keeps freed memory (hyperrecon.models.keep_freed_memory), no page faults per step",
    )
    p.add_argument(
        "--quiet",
        type=float,
        default=0.1,
        help=f"a {unit} is clean if other processes used less than "
        f"this fraction of the CPUs meanwhile (shared machines); unclean {unit}s are retried",
    )
    p.add_argument("--retries", type=int, default=1, help=f"retries of an unclean {unit} (0: keep every {unit})")
    p.add_argument("--wait-quiet", type=float, default=5.0, help="seconds to wait for a quiet machine per round")


class Clock:
    """Times one span: CUDA events on a GPU (device time between two points of the stream, read after the end
    event completes), ``time.perf_counter`` on the CPU. ``start()`` then ``stop() -> seconds``."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._t0: float | torch.cuda.Event = 0.0

    def start(self) -> None:
        if self.cuda:
            self._t0 = torch.cuda.Event(enable_timing=True)
            self._t0.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if not self.cuda:
            return time.perf_counter() - self._t0
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self._t0.elapsed_time(end) / 1000.0


def setup_device(device: torch.device) -> None:
    """Per-run settings of the GPU path (cuDNN autotuning on CUDA), as ``hrbench run`` uses them."""
    from hyperrecon.accel import configure

    configure(device)


def lam_batch(batch: int, groups: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, 1) λ with ``groups`` distinct values, each shared by B/groups samples (groups <= 0 or >= B: all distinct)."""
    g = batch if groups <= 0 or groups >= batch else groups
    vals = torch.rand(g, 1, generator=gen)
    # staged like the training loop stages λ: pinned, non-blocking, with the host copy the model groups on
    return with_host_copy(vals.repeat_interleave(-(-batch // g), 0)[:batch].contiguous(), device)


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def parse_list(text: str, cast: Callable = str) -> list:
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


def rotated(items: list, k: int) -> Iterator:
    """Round-robin order shifted by ``k`` so no configuration always runs first after a pause."""
    n = len(items)
    for i in range(n):
        yield items[(i + k) % n]


def _jiffies() -> tuple[int, int]:
    """(busy jiffies of all CPUs incl. steal, jiffies of this process) from /proc; (0, 0) elsewhere."""
    try:
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return user + nice + system + irq + softirq + steal, int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


class LoadProbe:
    """Fraction of the machine's CPU capacity used by *other* processes (and the hypervisor) during a block.

    The cores here are shared with other people's jobs; a timed step during which others were busy is retried.
    Resolution is one jiffy (10 ms), fine for steps of 100 ms and more.
    """

    def __init__(self) -> None:
        self.others = 0.0

    def __enter__(self) -> LoadProbe:
        self._t0, (self._busy0, self._self0) = time.perf_counter(), _jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own = _jiffies()
        capacity = (time.perf_counter() - self._t0) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
        self.others = max(0.0, (busy - self._busy0) - (own - self._self0)) / max(capacity, 1e-9)


def wait_for_quiet(max_wait: float, threshold: float, window: float = 0.5) -> float:
    """Sleep in ``window`` slices until others use less than ``threshold`` of the CPUs (or ``max_wait`` passes)."""
    t_end = time.perf_counter() + max_wait
    while True:
        with LoadProbe() as probe:
            time.sleep(window)
        if probe.others < threshold or time.perf_counter() >= t_end:
            return probe.others


def timed_quiet(fn: Callable[[], float], retries: int, threshold: float) -> tuple[float, float]:
    """Run ``fn`` (returns seconds) until no other process was busy during it, at most ``retries`` + 1 times.

    Returns the last time and the CPU fraction other processes used meanwhile (clean if below ``threshold``).
    """
    for attempt in range(retries + 1):
        with LoadProbe() as probe:
            dt = fn()
        if probe.others < threshold:
            break
        if attempt < retries:
            wait_for_quiet(2.0, threshold)
    return dt, probe.others


def write_outputs(rows: list[dict], out: Path, title: str, meta: dict, columns: list[str]) -> str:
    """Write ``out.csv`` and ``out.md``; return the markdown table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in columns) + " |")
    table = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(table)
    return table
