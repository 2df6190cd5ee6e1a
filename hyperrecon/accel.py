"""The GPU path: fastest precision per device, pinned-memory staging, host-side λ copies, one-time CUDA set-up.

- :func:`fast_bf16` says whether bf16 autocast is the fastest precision on a CUDA device: compute capability 8.0 or
  newer (Ampere, Ada, Hopper, Blackwell), where the tensor cores run bf16 natively. ``torch.cuda.is_bf16_supported``
  alone is not enough: by default it also answers True on older GPUs that only *emulate* bf16 (slower than fp32).
- :func:`stage` gathers rows of a CPU tensor into page-locked (pinned) memory and copies them to the GPU with
  ``non_blocking=True``: the host does not wait for the copy, and PyTorch's caching host allocator does not hand
  the pinned block out again before the copy that reads it has finished. On the CPU it is a plain index.
- :func:`with_host_copy` / :func:`host_copy`: a device tensor can carry the CPU tensor it was copied from, so that
  checks and data-dependent shapes (λ in [0, 1], the distinct λ of a batch) are computed on the host without a
  device-to-host read (each such read would stall the host until the GPU has caught up).
- :func:`configure` sets cuDNN's autotuner on for CUDA runs (fixed image sizes: the best convolution algorithm is
  picked once per shape).
"""

from __future__ import annotations

import torch
from torch import Tensor

_HOST_ATTR = "_hrbench_host"


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def cuda_capability(device: str | torch.device = "cuda") -> tuple[int, int] | None:
    """(major, minor) compute capability of a CUDA device, None on the CPU or without CUDA."""
    device = _as_device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def fast_bf16(device: str | torch.device = "cuda") -> bool:
    """True on CUDA devices with native bf16 tensor cores (compute capability >= 8.0)."""
    cap = cuda_capability(device)
    return cap is not None and cap >= (8, 0)


def configure(device: str | torch.device) -> None:
    """One-time settings for a CUDA run: cuDNN autotuning (no-op on the CPU)."""
    if _as_device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def stage(source: Tensor, idx: Tensor | None, device: str | torch.device) -> Tensor:
    """``source[idx]`` (or all of ``source``) on ``device``; CPU -> CUDA through pinned memory, non-blocking.

    source: a CPU tensor (N, ...); idx: int64 indices (B,) on the CPU, or None for the whole tensor.
    Returns (B, ...) on ``device``. A source already on ``device`` is indexed there.
    """
    device = _as_device(device)
    if source.device == device or (device.type == source.device.type == "cpu"):
        return source if idx is None else source[idx.to(source.device)]
    if device.type != "cuda" or source.device.type != "cpu" or not torch.cuda.is_available():
        return (source if idx is None else source[idx.cpu()]).to(device)
    if idx is None:
        if source.is_pinned():
            return source.to(device, non_blocking=True)
        buf = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
        buf.copy_(source)
    else:
        idx = idx.cpu()
        buf = torch.empty((idx.numel(), *source.shape[1:]), dtype=source.dtype, pin_memory=True)
        torch.index_select(source, 0, idx, out=buf)
    return buf.to(device, non_blocking=True)


def with_host_copy(host: Tensor, device: str | torch.device) -> Tensor:
    """``host`` (a CPU tensor) staged on ``device``, remembering ``host`` for :func:`host_copy`."""
    out = stage(host, None, device)
    if out is not host:
        setattr(out, _HOST_ATTR, host)
    return out


def host_copy(t: Tensor) -> Tensor:
    """The CPU tensor ``t`` was staged from (:func:`with_host_copy`), or ``t`` itself.

    Only valid while ``t`` is unchanged since staging: an in-place change of ``t`` (version counter) drops it.
    """
    host = getattr(t, _HOST_ATTR, None)
    if host is None or t._version != 0 or host.shape != t.shape:
        return t
    return host


def to_device_like(t: Tensor, device: torch.device) -> Tensor:
    """A small CPU tensor (indices, sizes) on ``device`` without a host wait (pinned, non-blocking)."""
    return stage(t, None, device) if t.device != device else t
