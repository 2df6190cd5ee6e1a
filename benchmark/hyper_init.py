"""Which HyperUNet initialisation trains better: PyTorch's Linear defaults or He-scaled generated kernels?

A small, fixed toy problem that needs λ: denoise smooth random blob images (32x32, σ = 0.1) under the two-term
loss ``(1 - λ) * MSE(x̂, x) + λ * w_tv * TV(x̂)`` (fidelity against smoothness; ``w_tv`` puts both terms on the same
scale). Each configuration trains with Adam (lr 1e-3, B=16, 4 distinct λ per batch, bf16 autocast) for ``--steps``
steps, then reports the loss averaged over a λ grid on held-out images, per seed. Lower is better.

    python benchmark/hyper_init.py --steps 300 --seeds 0,1 --sizes S,M --threads 2

Writes ``reports/benchmarks/hyper_init.{csv,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import ROOT, lam_batch, parse_list, write_outputs

from hyperrecon.models import HyperUNet
from hyperrecon.models.hyper import LAMBDA_VARIANCE_SHARE

W_TV = 0.05


def blobs(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 1, size, size)`` sums of 6 random Gaussian blobs scaled to [0, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    c = torch.rand(n, 6, 2, generator=gen)
    s = 0.05 + 0.15 * torch.rand(n, 6, generator=gen)
    a = torch.rand(n, 6, generator=gen)
    d2 = (xx - c[..., 0, None, None]) ** 2 + (yy - c[..., 1, None, None]) ** 2
    img = (a[..., None, None] * torch.exp(-d2 / (2 * s[..., None, None] ** 2))).sum(1, keepdim=True)
    return img / img.amax(dim=(2, 3), keepdim=True)


def per_sample_loss(out: torch.Tensor, clean: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    mse = (out - clean).square().mean(dim=(1, 2, 3))
    tv = (out[..., 1:, :] - out[..., :-1, :]).abs().mean(dim=(1, 2, 3)) + (
        out[..., :, 1:] - out[..., :, :-1]
    ).abs().mean(dim=(1, 2, 3))
    return (1 - lam[:, 0]) * mse + lam[:, 0] * W_TV * tv


def make_input(clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=gen)
    return torch.cat([noisy, torch.zeros_like(noisy)], 1)  # (real, imag)


def run(size: str, init: str, seed: int, steps: int, train: torch.Tensor, val: torch.Tensor) -> tuple[float, float]:
    """Train one model; return (held-out loss over the λ grid, mean training loss over the last 20% of steps)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = HyperUNet(1, size=size, init=init).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tail: list[float] = []
    for step in range(steps):
        idx = torch.randint(0, train.shape[0], (16,), generator=gen)
        clean = train[idx]
        lam = lam_batch(16, 4, gen, torch.device("cpu"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(make_input(clean, gen).contiguous(memory_format=torch.channels_last), lam)
        loss = per_sample_loss(out.float(), clean, lam).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= 0.8 * steps:
            tail.append(loss.item())
    model.eval()
    vgen = torch.Generator().manual_seed(999)
    x = make_input(val, vgen)
    losses = []
    with torch.no_grad():
        for lv in torch.linspace(0, 1, 5):
            lam = torch.full((val.shape[0], 1), float(lv))
            losses.append(per_sample_loss(model(x, lam), val, lam).mean().item())
    return statistics.mean(losses), statistics.mean(tail)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per configuration")
    p.add_argument("--seeds", default="0,1", help="seeds, comma separated (one training each)")
    p.add_argument("--sizes", default="S,M", help="HyperUNet sizes from S, M, L")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--out", default=str(ROOT / "reports/benchmarks/hyper_init"), help="output stem (.csv, .md)")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    data_gen = torch.Generator().manual_seed(0)
    train, val = blobs(256, 32, data_gen), blobs(32, 32, data_gen)
    rows = []
    for size in parse_list(args.sizes):
        for init in ("default", "kaiming"):
            vals, tails = [], []
            for seed in parse_list(args.seeds, int):
                t0 = time.perf_counter()
                v, t = run(size, init, seed, args.steps, train, val)
                vals.append(v)
                tails.append(t)
                print(f"{size} {init} seed {seed}: val {v:.5f} train-tail {t:.5f} ({time.perf_counter() - t0:.0f}s)")
            rows.append(
                {
                    "size": size,
                    "init": init,
                    "steps": args.steps,
                    "val_loss_mean": f"{statistics.mean(vals):.5f}",
                    "val_loss_per_seed": " ".join(f"{v:.5f}" for v in vals),
                    "train_tail_mean": f"{statistics.mean(tails):.5f}",
                    "train_tail_per_seed": " ".join(f"{v:.5f}" for v in tails),
                }
            )
    meta = {
        "task": f"blob denoising 32x32, loss (1-λ) MSE + λ·{W_TV}·TV, B=16, 4 λ/batch, Adam 1e-3, bf16",
        "metric": "held-out loss averaged over λ ∈ {0, .25, .5, .75, 1} (eval-mode BN; lower is better); "
        "train_tail: mean training loss over the last 20% of steps",
        "inits": f"default = PyTorch Linear defaults; kaiming = He variance, share {LAMBDA_VARIANCE_SHARE} via λ",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(
        write_outputs(
            rows,
            Path(args.out),
            "HyperUNet initialisation: PyTorch default vs He-scaled kernels",
            meta,
            list(rows[0].keys()),
        )
    )


if __name__ == "__main__":
    main()
