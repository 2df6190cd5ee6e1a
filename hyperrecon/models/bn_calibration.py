"""BatchNorm statistics re-estimated for each λ at evaluation (issue 15, item 2).

A λ-conditioned model with BatchNorm (HyperRecon's ``norm="batch"``, the paper's, and FiLM) trains on mini-batches
that mix λ, so its *running* statistics are an average over every λ, while the convolution weights (HyperRecon)
or the modulation (FiLM) before each BatchNorm change with λ. At one λ the activations then need not have the
mean and variance the running statistics claim, and at the ends of [0,1] they can be far off: at the ``standard``
scale HyperRecon-S collapsed to 14-17 dB at one end of λ in 2 of 3 sl-brain-cs replicates and recovered to
22-29 dB with the statistics of the batch itself (``benchmark/bn_stats.py``, ``reports/standard/README.md``).

:class:`PerLamBatchNorm` wraps a trained model for evaluation and, for every distinct λ it is asked about, first
re-estimates every BatchNorm's statistics on a fixed set of *training* inputs at that λ (the model in train mode,
no gradient, a cumulative average: ``momentum=None``), then evaluates in eval mode with them. This is the "BN
calibration" of weight-sharing networks that evaluate many sub-networks with one set of parameters (Yu et al.,
Slimmable networks, ICLR 2019; Cai et al., Once-for-All, ICLR 2020). No test slice is used, and the learnt
parameters are untouched; only the four statistics buffers of each BatchNorm differ per λ. The trained running
statistics are restored by :meth:`PerLamBatchNorm.restore`.

Cost: ``ceil(n / 64)`` forward passes per distinct λ (cached: a λ seen before costs nothing).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

_BN = nn.modules.batchnorm._BatchNorm


def batch_norms(model: nn.Module) -> list[_BN]:
    """The BatchNorm layers of ``model`` that keep running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]


def needs_calibration(model: nn.Module) -> bool:
    """True for a λ-conditioned model that normalises with BatchNorm running statistics (HyperRecon ``norm="batch"``
    or ``"lam-affine"``, FiLM); HyperRecon ``norm="instance"`` keeps BatchNorm modules for their affine parameters
    only."""
    if getattr(model, "norm", "batch") == "instance":
        return False
    return bool(getattr(model, "conditional", False)) and bool(batch_norms(model))


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` normalises every BatchNorm with the statistics of the batch it is given (train
    mode, momentum 0: the running statistics are left as they are). A diagnosis, not an evaluation: each output
    then depends on the other images of its batch. The training flags and momenta are restored on exit.

    The whole model is put in train mode, not only its BatchNorms: FiLM folds BatchNorm into its modulation with the
    running statistics whenever the model itself is in eval mode."""
    flags = [m.training for m in model.modules()]
    norms = batch_norms(model)
    momenta = [bn.momentum for bn in norms]
    counts = [None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone() for bn in norms]
    try:
        model.train()
        for bn in norms:
            bn.momentum = 0.0
        yield model
    finally:
        for bn, momentum, count in zip(norms, momenta, counts, strict=True):
            bn.momentum = momentum
            if count is not None and bn.num_batches_tracked is not None:
                bn.num_batches_tracked.copy_(count)
        for m, flag in zip(model.modules(), flags, strict=True):
            m.training = flag


def _buffers(bn: _BN) -> tuple[Tensor, Tensor, Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
    return bn.running_mean, bn.running_var, bn.num_batches_tracked


def _copy(bn: _BN) -> tuple[Tensor, Tensor, Tensor]:
    mean, var, count = _buffers(bn)
    return mean.detach().clone(), var.detach().clone(), count.detach().clone()


class PerLamBatchNorm(nn.Module):
    """Evaluate ``model(x, lam)`` with BatchNorm statistics re-estimated at each λ (module docstring).

    ``model``: a λ-conditioned model (``conditional = True``, ``n_lams``) with BatchNorm running statistics.
    ``inputs``: ``(n, C, H, W)`` float32 network inputs of *training* slices in random order, the calibration set.
    ``batch_size``: slices per calibration forward pass (default 64, a memory bound). Each pass normalises with
    its own statistics, as training did, and the recorded statistics are the average over passes; passes of
    neighbouring slices would miss the variance between them, so ``inputs`` must not be ordered by anatomy
    (measured: 7 dB lower PSNR for HyperRecon-S in sl-brain-cs with ordered batches of 16). ``cache``: at most
    this many λ keep their statistics (least recently used dropped first).

    In train mode the wrapper is transparent (``model(x, lam)``). In eval mode every distinct row of ``lam``
    ``(B, k)`` is evaluated with its own statistics. Raises ``ValueError`` for a model that needs no calibration,
    an empty calibration set or a non-positive batch size.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, batch_size: int = 64, cache: int = 20_000) -> None:
        super().__init__()
        if not needs_calibration(model):
            raise ValueError(f"PerLamBatchNorm: {type(model).__name__} is not λ-conditioned with BatchNorm")
        if inputs.ndim != 4 or inputs.shape[0] < 1:
            raise ValueError(f"PerLamBatchNorm: inputs must be (n >= 1, C, H, W), got {tuple(inputs.shape)}")
        if batch_size < 1:
            raise ValueError(f"PerLamBatchNorm: batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.conditional = True
        self.n_lams = int(getattr(model, "n_lams", 1))
        self.batch_size = int(batch_size)
        self.cache_size = int(cache)
        self.calibration_inputs: Tensor
        self.register_buffer("calibration_inputs", inputs.detach().clone(), persistent=False)
        self._norms = batch_norms(model)
        self._trained = [_copy(bn) for bn in self._norms]
        self._stats: OrderedDict[tuple[float, ...], list[tuple[Tensor, Tensor, Tensor]]] = OrderedDict()

    def restore(self) -> None:
        """Put the trained running statistics back into the wrapped model."""
        self._load(self._trained)

    def _load(self, stats: Sequence[tuple[Tensor, ...]]) -> None:
        for bn, saved in zip(self._norms, stats, strict=True):
            for buf, value in zip(_buffers(bn), saved, strict=True):
                buf.copy_(value)

    def _calibrate(self, lam: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Statistics of every BatchNorm over the calibration inputs at ``lam`` ``(k,)``."""
        momenta = [bn.momentum for bn in self._norms]
        flags = [m.training for m in self.model.modules()]
        try:
            for bn in self._norms:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average over the calibration batches, not an exponential one
            self.model.train()
            x_all = self.calibration_inputs
            param = next(self.model.parameters())
            with torch.no_grad():
                for start in range(0, x_all.shape[0], self.batch_size):
                    x = x_all[start : start + self.batch_size].to(param.device, param.dtype)
                    x = x.contiguous(memory_format=torch.channels_last)
                    self.model(x, lam.to(param.device, param.dtype).view(1, -1).expand(x.shape[0], -1))
            return [_copy(bn) for bn in self._norms]
        finally:
            for bn, momentum in zip(self._norms, momenta, strict=True):
                bn.momentum = momentum
            for m, flag in zip(self.model.modules(), flags, strict=True):
                m.training = flag

    def stats_for(self, lam: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """The (cached) BatchNorm statistics at one λ ``(k,)``: per layer (mean, var, batches counted)."""
        key = tuple(round(float(v), 9) for v in lam.reshape(-1).tolist())
        if key in self._stats:
            self._stats.move_to_end(key)
            return self._stats[key]
        stats = self._calibrate(lam.reshape(-1))
        self._stats[key] = stats
        while len(self._stats) > self.cache_size:
            self._stats.popitem(last=False)
        return stats

    def forward(self, x: Tensor, lam: Tensor | None = None) -> Tensor:
        if self.training or lam is None:
            return self.model(x, lam)
        lam = lam.reshape(x.shape[0], -1) if lam.ndim != 2 else lam
        rows, inverse = torch.unique(lam.detach(), dim=0, return_inverse=True)
        if rows.shape[0] == 1:
            self._load(self.stats_for(rows[0]))
            return self.model(x, lam)
        out: Tensor | None = None
        for r in range(rows.shape[0]):
            idx = (inverse == r).nonzero().flatten()
            self._load(self.stats_for(rows[r]))
            part = self.model(x[idx], lam[idx])
            if out is None:
                out = part.new_empty((x.shape[0], *part.shape[1:]))
            out[idx] = part
        assert out is not None
        return out
