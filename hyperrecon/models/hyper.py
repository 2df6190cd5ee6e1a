"""HyperRecon hypernetwork H(λ): emits the conv weights of the main U-Net for every λ (reference-notes "Hypernetwork").

Maths. With coefficients ``c = coefficients(λ)`` (``(B, k+1)``, Eq. 9/10) the embedding is

    e = LeakyReLU(L4(LeakyReLU(L3(LeakyReLU(L2(LeakyReLU(L1(c))))))))        e ∈ R^d

and every conv ``l`` of the main network has two linear heads, ``W_l(e) = A_l e + a_l`` (reshaped to
``(out, in, k, k)``) and ``b_l(e) = B_l e + β_l``. BatchNorms are ordinary shared parameters (statistics over the
whole batch) with ``norm="batch"`` (the paper's, default). ``norm="instance"``: per-sample statistics with the same
shared affine parameters (λ never normalised together; no running statistics, train = eval); ``norm="lam-affine"``:
BatchNorm then ``(1 + γ_j(e)) h + β_j(e)`` per channel from one more head ``d -> 2 * 14 * width``, zero at
initialisation (so it starts as "batch"). Measured in reports/benchmarks/lam_response.md: at 300 steps "instance"
did not make HyperRecon-M follow the baselines (see there); "lam-affine" is unmeasured.
Parameter count (``norm="batch"``): ``(d+1) * 148,513`` (heads) ``+ 896`` (BN) ``+`` the MLP; with ``n_lams=1``
that is 743,533 / 4,905,089 / 19,208,993 for S/M/L (d = 4 / 32 / 128).

Execution paths (``path=``; all compute the same function, tests compare each with ``"reference"``):

- ``"reference"``: a loop over samples, ``F.conv2d`` with that sample's own generated weights. Obviously right,
  slow.
- ``"grouped"``: the batch is sorted by distinct λ (``torch.unique``), weights are generated once per distinct λ
  and each group runs one dense ``F.conv2d`` (bf16 and channels_last friendly); outputs are concatenated so
  BatchNorm sees the whole batch. Cost ≈ a plain U-Net when the batch holds few distinct λ (a training sampler
  drawing G λ per mini-batch; evaluation sweeps with one λ per batch). A gradient with respect to ``lam`` itself
  reaches the first sample of each group (the group's total); use "reference" for per-sample ∂/∂λ.
- ``"factorised"``: ``conv(x, a + Σ_j e_j A_j) = conv(x, a) + Σ_j e_j conv(x, A_j)``: one dense conv with
  ``(d+1) * out`` channels, mixed per sample. Handles fully per-sample λ at ``(d+1)x`` the conv cost.
- ``"per-sample-grouped-conv"``: the authors' way, one grouped conv with ``groups=B`` over per-sample weights.

``"auto"`` picks by the number G of distinct λ in a batch of size B: ``grouped`` when
``G <= max(8, B // 2)``, else ``per-sample-grouped-conv``. Measured with ``benchmark/train_step.py`` (bf16 +
channels_last, B=32, 64x64, CPU time, 1 thread): relative to a plain U-Net step, grouped costs 1.01x / 1.13x /
1.21x / 1.33x at G = 1 / 4 / 8 / 16 and ~1.66x at G = 32, where the grouped conv also costs ~1.65x;
factorised costs ~5x for S (d+1 = 5 times the conv work) and ~45x for M, so ``auto`` never picks it.

Under bf16 autocast the weight-generating heads are bf16 matmuls like any ``nn.Linear`` under mixed precision
(float32 parameters, gradients accumulated in float32): for L on this CPU, forward + backward of the heads cost
~15 ms in bf16 against ~23 ms in float32 (1 thread, G = 4) and generating one λ for evaluation ~1.5 ms against
~8 ms, because MKL's float32 kernels are slow for these skinny shapes (float32 uses :class:`_TallLinear`, which
picks the fast orientations). The MLP on the coefficients always runs in float32.

Training step against a plain U-Net (both bf16 + channels_last, B=32, 4 distinct λ per batch, fused Adam, 2
threads; reports/benchmarks/train_step*.md): S/M/L 1.23x/1.28x/1.43x at 64x64, 1.03x/1.01x/1.00x at 128x128,
1.10x/1.06x/1.09x at 256x256. What is left is ~3-5% per extra group (smaller convs; split and concatenation for
BatchNorm, ~10 ms a step at
64x64) plus, for L, streaming the 19M head parameters through the head matmuls and Adam (memory-bound, so the
ratio shrinks as images grow). ``torch.compile`` (inductor, CPU) made both the U-Net and the
grouped HyperUNet step 1.36-1.44x slower (2 threads, reports/benchmarks/train_step_compile.md) after 30-70 s of
compilation; not used.

Initialisation (``init=``): ``"kaiming"`` draws the heads so that generated kernels have He variance
``2 / fan_in`` for every λ, 80% of it from the λ-independent head bias ``a_l`` and 20% from ``A_l e``
(``LAMBDA_VARIANCE_SHARE``; the embedding's mean square E|e|² over λ is measured at construction).
``"default"`` keeps PyTorch's Linear initialisation (the MELBA code): ``Var(W) = (1 + E|e|²) / (3d)``, i.e.
~13x / 1.7x / 0.5x He scale for S / M / L at width 32. Measured in ``benchmark/hyper_init.py``
(reports/benchmarks/hyper_init.md, 3 seeds): "kaiming" trains clearly better for S (held-out loss -27%), the two
tie for M and "default" is better for L (-21%) (those figures predate the He embedding below). ``"auto"`` (the
default): "kaiming" when PyTorch's defaults would give the 3x3 kernels more than twice the He variance, else
"default"; with the He embedding (E|e|² = 1) that is "kaiming" for S and M, "default" for L.

Embedding (``embed_init=``): ``"he"`` (default) draws the 4 embedding layers He-normal (LeakyReLU gain) with zero
biases, the last layer rescaled so that E|e|² = 1 over the λ grid; ``"default"`` keeps PyTorch's Linear
defaults (the MELBA code). With the defaults the MLP's biases swamp
the coefficients: e(0)·e(1) has cosine 0.97-0.99999 for S/M, the weights generated for λ = 0 and 1 differ by
0.1-0.7 % (squared norm), and the trained SL models barely responded to λ (issue 15: SSIM flat over λ where the
baselines rise 0.59 -> 0.66). Measured on sl-knee-cs quick data in ``benchmark/lam_response.py``
(reports/benchmarks/lam_response.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accel import host_copy, stage
from ..coefficients import coefficients, n_terms
from ..config import HYPER_SIZES
from .registry import MODELS
from .unet import N_NORMS, UNet, UNetSkeleton, check_image, check_lam, conv_l1

SIZES = HYPER_SIZES  # S, M, L -> d
PATHS = ("auto", "grouped", "factorised", "per-sample-grouped-conv", "reference")
INITS = ("auto", "kaiming", "default")
EMBED_INITS = ("he", "default")
NORMS = ("batch", "instance", "lam-affine")
EMBED_UNIT_SCALE = True  # "he" embedding: rescale to E|e|² = 1 over λ (switch kept for benchmark/lam_response.py)
LAMBDA_VARIANCE_SHARE = 0.2  # "kaiming" init: share of the He variance that depends on λ (via A_l e)
GROUPED_MIN_G = 8  # auto: dense convs per distinct λ while G <= max(GROUPED_MIN_G, B // 2)

Weights = list[tuple[Tensor, Tensor]]  # per conv: kernel (G, out, in, k, k), bias (G, out)


class _TallLinear(torch.autograd.Function):
    """``F.linear(e, A, a)`` for few rows ``e`` (G, d) and a tall ``A`` (n, d): the same maths and gradients.

    MKL's float32 kernels are slow for ``e @ A.T`` with G = 4 on this project's AMD CPU (7.7 ms for the 19M
    parameters of L, 2 threads) but fast as ``A @ e.T`` (~2 ms); the backward keeps the two fast forms ``g @ A``
    and ``g.T @ e`` (autograd of ``A @ e.T`` would run ``A.T @ g.T``: ~50 ms).
    """

    @staticmethod
    def forward(ctx, e: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(e, weight)
        return torch.addmm(bias[:, None], weight, e.t()).t().contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        e, weight = ctx.saved_tensors
        grad = grad.contiguous()
        ge = grad @ weight if ctx.needs_input_grad[0] else None
        gw = grad.t() @ e if ctx.needs_input_grad[1] else None
        gb = grad.sum(0) if ctx.needs_input_grad[2] else None
        return ge, gw, gb


def head(lin: nn.Linear, emb: Tensor) -> Tensor:
    """``lin(emb)`` for a weight-generating head. Under autocast: an ordinary (bf16) Linear; in float32 on the
    CPU with 2..8 rows: :class:`_TallLinear`; otherwise ``lin(emb)``."""
    if torch.is_autocast_enabled(emb.device.type):
        return lin(emb)
    if emb.device.type == "cpu" and emb.dtype == torch.float32 and 2 <= emb.shape[0] <= 8:
        return _TallLinear.apply(emb, lin.weight, lin.bias)
    return lin(emb)


@MODELS.register(
    "hyperunet",
    description="HyperRecon: hypernetwork H(λ) emitting the U-Net's conv weights (S/M/L)",
    smoke_params={"n_lams": 1, "hnet_width": 2, "width": 4},
)
class HyperUNet(nn.Module):
    """HyperRecon: a hypernetwork emitting the 15 conv layers of the paper's U-Net from λ.

    ``forward(x (B, in, H, W), lam (B, n_lams) in [0,1]) -> (B, out, H, W)``; every sample may carry its own λ.
    Give ``size`` ("S", "M", "L" -> d = 4, 32, 128) or ``hnet_width=d`` (which wins).
    """

    conditional = True
    # weight_l1 right after a grouped forward on the same λ tensor reuses that forward's generated weights
    # (off: generate them again; kept as a switch for benchmark/train_loop.py's before/after figure)
    reuse_weights_for_l1 = True

    def __init__(
        self,
        n_lams: int = 1,
        size: str = "S",
        hnet_width: int | None = None,
        width: int = 32,
        in_channels: int = 2,
        out_channels: int = 1,
        residual: bool = False,
        path: str = "auto",
        init: str = "auto",
        embed_init: str = "he",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        n_in = n_terms(n_lams)
        if hnet_width is None:
            if size not in SIZES:
                raise ValueError(f"size must be one of {', '.join(SIZES)} (or give hnet_width), got {size!r}")
            hnet_width = SIZES[size]
        if not isinstance(hnet_width, int) or isinstance(hnet_width, bool) or hnet_width < 1:
            raise ValueError(f"`hnet_width >= 1` (an integer) must hold, but got hnet_width={hnet_width!r}")
        self._check_path(path)
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        if embed_init not in EMBED_INITS:
            raise ValueError(f"embed_init must be one of {', '.join(EMBED_INITS)}, got {embed_init!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm
        self.n_lams, self.d, self.path, self.init = n_lams, hnet_width, path, init
        self.skeleton = UNetSkeleton(in_channels, out_channels, width, residual)
        d = hnet_width
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Linear(n_in if i == 0 else d, d), nn.LeakyReLU()]
        self.embed = nn.Sequential(*layers)
        self.embed_init = embed_init
        if embed_init == "he":
            self._init_embedding()
        specs = self.skeleton.specs
        self.kernel_heads = nn.ModuleList(nn.Linear(d, cout * cin * k * k) for cin, cout, k in specs)
        self.bias_heads = nn.ModuleList(nn.Linear(d, cout) for _, cout, _ in specs)
        self.init_used = self._choose_init() if init == "auto" else init
        if self.init_used == "kaiming":
            self._init_kaiming()
        if norm == "lam-affine":  # per BatchNorm: (γ, β) offsets from the embedding; zero, so it starts as "batch"
            self.norm_heads = nn.Linear(d, 2 * N_NORMS * width)
            nn.init.zeros_(self.norm_heads.weight)
            nn.init.zeros_(self.norm_heads.bias)

    # ---------------------------------------------------------------- set-up
    @staticmethod
    def _check_path(path: str) -> None:
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")

    @torch.no_grad()
    def _embedding_mean_square(self) -> float:
        """E|e|² over a grid of λ (11 points per axis) for the current MLP."""
        grid = torch.linspace(0, 1, 11)
        lam = torch.cartesian_prod(*[grid] * self.n_lams).reshape(-1, self.n_lams)
        return float(self.embed(coefficients(lam)).pow(2).sum(1).mean().clamp_min(1e-6))

    def _choose_init(self) -> str:
        """ "kaiming" if PyTorch's default heads give 3x3 kernels > 2x the He variance, else "default"."""
        default_var = (1 + self._embedding_mean_square()) / (3 * self.d)
        return "kaiming" if default_var > 2 * 2.0 / (9 * self.skeleton.width) else "default"

    @torch.no_grad()
    def _init_embedding(self) -> None:
        """He-normal weights (LeakyReLU gain) and zero biases for the embedding MLP.

        With PyTorch's defaults each layer shrinks the input's signal (gain ~0.4) while its bias adds a constant, so
        after 4 layers e(λ) is nearly the same vector for every λ (cosine e(0)·e(1) 0.97-0.99999 for S/M, weights
        generated for λ = 0 and 1 differing by ~0.1-0.7 % in squared norm): the hypernetwork starts λ-blind and
        the gradient that would make it λ-dependent is proportional to that small difference. He weights keep the
        coefficients' variance through the layers and zero biases add no common part (issue 15, item 2)."""
        for layer in self.embed:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, a=0.01, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        if EMBED_UNIT_SCALE:
            # Zero biases and LeakyReLU make e linear in the last layer's scale: set E|e|² = 1 over the λ grid.
            # With d = 4 a He draw can give |e| ~ 0.02 for some λ; the heads, scaled by 1/E|e|², then amplify
            # every Adam step on the embedding (HyperRecon-S trained to 13 dB PSNR at λ = 0 without this).
            last = [m for m in self.embed if isinstance(m, nn.Linear)][-1]
            last.weight.div_(math.sqrt(self._embedding_mean_square()))

    @torch.no_grad()
    def _init_kaiming(self) -> None:
        """Heads such that Var(W_l(e)) ≈ 2 / fan_in: a share ρ from ``A_l e``, 1 - ρ from ``a_l``."""
        ms = self._embedding_mean_square()
        rho = LAMBDA_VARIANCE_SHARE
        for (cin, _, k), kh, bh in zip(self.skeleton.specs, self.kernel_heads, self.bias_heads, strict=True):
            he = 2.0 / (cin * k * k)
            nn.init.normal_(kh.weight, 0.0, math.sqrt(rho * he / ms))
            nn.init.normal_(kh.bias, 0.0, math.sqrt((1 - rho) * he))
            nn.init.normal_(bh.weight, 0.0, math.sqrt(rho * he / (2 * ms)))  # biases: half the kernel variance
            nn.init.normal_(bh.bias, 0.0, math.sqrt((1 - rho) * he / 2))

    # ---------------------------------------------------------------- hypernetwork
    def embedding(self, lam: Tensor) -> Tensor:
        """``(G, n_lams) -> (G, d)``: the MLP on the loss coefficients (computed in float32 under autocast)."""
        with torch.autocast(lam.device.type, enabled=False):
            dtype = self.kernel_heads[0].weight.dtype
            return self.embed(coefficients(lam.to(dtype)))

    def generate(self, emb: Tensor) -> Weights:
        """Main-network conv weights for ``G`` embeddings: per conv ``(G, out, in, k, k)`` and ``(G, out)``.

        Under autocast the heads run like any ``nn.Linear`` (bf16 matmuls; float32 parameters and gradients);
        with gradients off too, on a cached cast copy of the head weights (:meth:`_cast_heads`).
        """
        out: Weights = []
        device = emb.device.type
        if torch.is_autocast_enabled(device) and not torch.is_grad_enabled():
            e = emb.to(torch.get_autocast_dtype(device))
            for (cin, cout, k), (kw, kb, bw, bb) in zip(self.skeleton.specs, self._cast_heads(e.dtype), strict=True):
                out.append((F.linear(e, kw, kb).view(-1, cout, cin, k, k), F.linear(e, bw, bb)))
            return out
        self.__dict__.pop("_cast_heads_cache", None)  # training: free the inference copy
        for (cin, cout, k), kh, bh in zip(self.skeleton.specs, self.kernel_heads, self.bias_heads, strict=True):
            out.append((head(kh, emb).view(-1, cout, cin, k, k), head(bh, emb)))
        return out

    def _cast_heads(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Head weights cast to the autocast dtype for inference, kept until a parameter changes.

        Autocast would cast the 19M head parameters of L for every λ (~2 ms of ~4 ms per generation here); a λ
        sweep reuses the cast copy. The key is each parameter's storage address and in-place version counter
        (an optimiser step, ``load_state_dict`` or a move changes it). Not a buffer: not saved.
        """
        params = [
            p for pair in zip(self.kernel_heads, self.bias_heads, strict=True) for m in pair for p in (m.weight, m.bias)
        ]
        key = (dtype, tuple((p.data_ptr(), p._version) for p in params))
        cached = self.__dict__.get("_cast_heads_cache")
        if cached is None or cached[0] != key:
            cast = [p.detach().to(dtype) for p in params]
            cached = (key, [tuple(cast[i : i + 4]) for i in range(0, len(cast), 4)])
            self.__dict__["_cast_heads_cache"] = cached
        return cached[1]

    def weights_for(self, lam: Tensor) -> Weights:
        """Generated weights for each row of ``lam`` ``(G, n_lams)`` (no uniqueness handling)."""
        return self.generate(self.embedding(lam))

    @staticmethod
    def group(lam: Tensor) -> tuple[Tensor, Tensor, list[int], Tensor]:
        """Group a batch by distinct λ row: ``perm`` (B,), ``first`` (G,), group sizes and ``inverse`` (B,).

        ``lam[perm]`` lists the groups one after another; ``lam[first]`` holds one row per group (a
        differentiable gather); sample ``s`` belongs to group ``inverse[s]``.
        """
        n = lam.shape[0]
        host = host_copy(lam).detach()  # grouped on the CPU copy where there is one: no device sync
        if bool((host == host[:1]).all()):  # one λ (evaluation sweeps): skip the sort
            perm = torch.arange(n, device=lam.device)
            return perm, perm[:1], [n], torch.zeros_like(perm)
        _, inverse, counts = torch.unique(host, dim=0, return_inverse=True, return_counts=True)
        perm = torch.argsort(inverse, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        first = perm[starts]
        if host is not lam:
            perm, first, inverse = (stage(t, None, lam.device) for t in (perm, first, inverse))
        return perm, first, counts.tolist(), inverse

    def select_path(self, lam: Tensor, n_groups: int | None = None) -> str:
        """The path ``forward`` takes for this λ batch (``self.path`` unless "auto"; rule in the module doc)."""
        if self.path != "auto":
            return self.path
        g = n_groups if n_groups is not None else int(torch.unique(host_copy(lam).detach(), dim=0).shape[0])
        return "grouped" if g <= max(GROUPED_MIN_G, lam.shape[0] // 2) else "per-sample-grouped-conv"

    # ---------------------------------------------------------------- forward paths
    def forward(self, x: Tensor, lam: Tensor | None = None, path: str | None = None) -> Tensor:
        """``(B, in, H, W), (B, n_lams) -> (B, out, H, W)``; ``path`` overrides the constructor's choice."""
        check_image(x, self.skeleton.in_channels)
        lam = check_lam(lam, self.n_lams, x.shape[0])
        if path is not None:
            self._check_path(path)
        chosen = path if path not in (None, "auto") else self.path
        grouping = None
        if chosen == "auto":
            grouping = self.group(lam)
            chosen = self.select_path(lam, n_groups=len(grouping[2]))
        if chosen == "grouped":
            return self._forward_grouped(x, lam, grouping or self.group(lam))
        if chosen == "factorised":
            return self._forward_factorised(x, lam)
        if chosen == "per-sample-grouped-conv":
            return self._forward_grouped_conv(x, lam)
        return self._forward_reference(x, lam)

    def _forward_reference(self, x: Tensor, lam: Tensor) -> Tensor:
        weights = self.weights_for(lam)  # one set per sample

        def conv(i: int, h: Tensor) -> Tensor:
            w, b = weights[i]
            pad = w.shape[-1] // 2
            return torch.cat([F.conv2d(h[s : s + 1], w[s], b[s], padding=pad) for s in range(h.shape[0])])

        return self._run(x, lam, conv)

    def _forward_grouped(self, x: Tensor, lam: Tensor, grouping: tuple[Tensor, Tensor, list[int], Tensor]) -> Tensor:
        perm, first, sizes, inverse = grouping
        weights = self.weights_for(lam[first])
        if torch.is_grad_enabled() and self.reuse_weights_for_l1:
            # The AO loss asks for weight_l1 at the same λ right after this forward: hand it these weights
            # instead of running the heads (and their backward) a second time. Keyed on the caller's λ tensor.
            self.__dict__["_last_weights"] = (lam, lam._version, inverse, weights)
        if len(sizes) == 1:  # one λ (evaluation sweeps): plain dense convs, no reordering

            def conv1(i: int, h: Tensor) -> Tensor:
                w, b = weights[i]
                return F.conv2d(h, w[0], b[0], padding=w.shape[-1] // 2)

            return self._run(x, lam, conv1)

        # unbind/split: one backward node each (a single stack/cat) instead of G zero-filled index grads
        per_group = [(w.unbind(0), b.unbind(0)) for w, b in weights]

        def conv(i: int, h: Tensor) -> Tensor:
            ws, bs = per_group[i]
            pad = ws[0].shape[-1] // 2
            parts = h.split(sizes)
            return torch.cat([F.conv2d(p, ws[g], bs[g], padding=pad) for g, p in enumerate(parts)])

        out = self._run(x[perm], lam[perm], conv)
        return out[torch.argsort(perm)]

    def _forward_factorised(self, x: Tensor, lam: Tensor) -> Tensor:
        emb = self.embedding(lam)  # (B, d)
        ones = torch.ones_like(emb[:, :1])
        mix = torch.cat([ones, emb], 1)  # (B, d+1): coefficient of a_l, then of each column of A_l
        bias = [bh(emb) for bh in self.bias_heads]
        d1 = self.d + 1

        def conv(i: int, h: Tensor) -> Tensor:
            cin, cout, k = self.skeleton.specs[i]
            kh = self.kernel_heads[i]
            basis = torch.cat([kh.bias[None], kh.weight.t()], 0).reshape(d1 * cout, cin, k, k)
            y = F.conv2d(h, basis, padding=k // 2)  # (B, (d+1) out, H, W)
            y = y.unflatten(1, (d1, cout))
            out = torch.einsum("bj,bjohw->bohw", mix.to(y.dtype), y)
            return out + bias[i].to(out.dtype)[:, :, None, None]

        return self._run(x, lam, conv)

    def _forward_grouped_conv(self, x: Tensor, lam: Tensor) -> Tensor:
        weights = self.weights_for(lam)
        n = x.shape[0]

        def conv(i: int, h: Tensor) -> Tensor:
            w, b = weights[i]
            _, cout, cin, k, _ = w.shape
            y = F.conv2d(
                h.reshape(1, n * cin, *h.shape[-2:]),
                w.reshape(n * cout, cin, k, k),
                b.reshape(-1),
                padding=k // 2,
                groups=n,
            )
            return y.view(n, cout, *y.shape[-2:])

        return self._run(x, lam, conv)

    def _run(self, x: Tensor, lam: Tensor, conv) -> Tensor:
        """The skeleton with this model's normalisation; ``lam`` (B, n_lams) is the λ of each row of ``x``."""
        if self.norm == "batch":
            return self.skeleton.run(x, conv)
        norms = self.skeleton.norms
        if self.norm == "instance":

            def inorm(j: int, h: Tensor) -> Tensor:
                return F.instance_norm(h, weight=norms[j].weight, bias=norms[j].bias, eps=norms[j].eps)

            return self.skeleton.run(x, conv, norm=inorm)
        gb = self.norm_heads(self.embedding(lam)).view(x.shape[0], N_NORMS, 2, self.skeleton.width)

        def modulate(j: int, h: Tensor) -> Tensor:
            scale, shift = 1 + gb[:, j, 0, :, None, None], gb[:, j, 1, :, None, None]
            return torch.addcmul(shift.to(h.dtype), h, scale.to(h.dtype))

        return self.skeleton.run(x, conv, modulate)

    # ---------------------------------------------------------------- extras
    def weight_l1(self, lam: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        """Per-sample layer-wise L1 of the generated conv weights, ``sum_l ||W_l||_1 + ||b_l||_1``: ``(B,)``.

        Differentiable (the AO loss term R1); generated once per distinct λ.
        """
        last = self.__dict__.pop("_last_weights", None)
        if last is not None and last[0] is lam and last[1] == lam._version and torch.is_grad_enabled():
            _, _, inverse, weights = last  # generated by the forward pass on this very λ batch
            return conv_l1(weights)[inverse]
        b = batch_size if batch_size is not None else (lam.shape[0] if lam is not None else 0)
        lam = check_lam(lam, self.n_lams, b)
        _, first, _, inverse = self.group(lam)
        return conv_l1(self.weights_for(lam[first]))[inverse]  # (G,) -> (B,)

    @torch.no_grad()
    def to_unet(self, lam: Tensor) -> UNet:
        """A plain :class:`UNet` with the weights generated for one λ (``(n_lams,)`` or ``(1, n_lams)``).

        BatchNorm parameters and running statistics are copied, so in eval mode ``to_unet(l)(x)`` equals
        ``self(x, l.expand(B, -1))``. Handy for λ sweeps and export.
        """
        if self.norm != "batch":
            raise ValueError(f"to_unet: a plain U-Net has BatchNorm only; this model uses norm={self.norm!r}")
        lam = check_lam(lam.reshape(1, -1), self.n_lams, 1)
        sk = self.skeleton
        ref = self.kernel_heads[0].weight
        net = UNet(sk.in_channels, sk.out_channels, sk.width, sk.residual).to(device=ref.device, dtype=ref.dtype)
        for conv, (w, b) in zip(net.convs, self.weights_for(lam), strict=True):
            conv.weight.copy_(w[0])
            conv.bias.copy_(b[0])
        net.skeleton.norms.load_state_dict(sk.norms.state_dict())
        return net.train(self.training)
