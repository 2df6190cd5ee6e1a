"""`hrbench explore`: slider-move-to-image latency over HTTP, median and p95, per precision.

Starts the explorer's real server on loopback (port 0) over a run folder and acts as the page does: one keep-alive
connection, one ``/api/render`` request per slider position along a seeded random walk over [0, 1]^k, the PNG
decoded (Pillow) before the clock stops. The latency is request sent -> image decoded; the browser's paint adds a
frame (~16 ms at 60 Hz), not counted. A second phase sends bursts from several threads with one client id and
rising sequence numbers and counts how many requests the server coalesced (answered "superseded" unrendered).

    python benchmark/explore_latency.py runs/ao-knee/<time>-quick --threads 2 --requests 300
    python benchmark/explore_latency.py RUN --precisions fp32,bf16 --out reports/benchmarks/explore_latency

bf16 runs only on CPUs with AMX / AVX512-BF16 (where the run itself would pick it) unless ``--force-bf16``.
Each request records the CPU share other processes used meanwhile (``LoadProbe``); the summary gives figures
over all requests and over the clean ones. Prints the table; writes ``<out>.csv`` / ``<out>.md`` only with ``--out``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch
from common import LoadProbe, device_name, parse_list, write_outputs

from hyperrecon.explore.server import make_server
from hyperrecon.explore.session import open_explorer
from hyperrecon.resolve import cpu_has_fast_bf16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--model", default=None, help="conditional model (default: the first of the run)")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--force-bf16", action="store_true", help="time bf16 also on CPUs without fast bf16")
    p.add_argument("--requests", type=int, default=300, help="slider positions timed per precision")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--step", type=float, default=0.02, help="largest λ change per slider move")
    p.add_argument("--bursts", type=int, default=10, help="bursts of the coalescing phase")
    p.add_argument("--burst-size", type=int, default=8, help="requests per burst (from 4 threads)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument(
        "--quiet",
        type=float,
        default=0.1,
        help="a request is clean if other processes used less than this fraction of the CPUs meanwhile",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write <out>.csv and <out>.md")
    return p.parse_args(argv)


def _get(conn: http.client.HTTPConnection, url: str) -> dict:
    conn.request("GET", url)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"error: {url}: HTTP {resp.status} {body[:200]!r}")
    return json.loads(body)


def _decode(data_url: str) -> None:
    import base64

    from PIL import Image

    Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).load()


def _walk(rng: np.random.Generator, n: int, k: int, step: float) -> np.ndarray:
    lam = np.full(k, 0.5)
    out = []
    for _ in range(n):
        lam = np.clip(lam + rng.uniform(-step, step, size=k), 0.0, 1.0)
        out.append(lam.copy())
    return np.array(out)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def time_precision(args: argparse.Namespace, precision: str) -> dict:
    ex = open_explorer(args.run_dir, precision=precision)
    model = args.model or next(iter(ex.models))
    server = make_server(ex, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        rng = np.random.default_rng(args.seed)
        lams = _walk(rng, args.warmup + args.requests, ex.n_lams, args.step)
        slices = rng.integers(0, ex.n_slices, size=len(lams))
        lat, server_ms, clean = [], [], []
        for i, (lam, s) in enumerate(zip(lams, slices, strict=True)):
            url = f"/api/render?model={model}&slice={s}&lam={','.join(f'{v:.4f}' for v in lam)}"
            with LoadProbe() as probe:
                t0 = time.perf_counter()
                r = _get(conn, url)
                _decode(r["image"])
                dt = (time.perf_counter() - t0) * 1e3
            if i >= args.warmup:
                lat.append(dt)
                server_ms.append(float(r["server_ms"]))
                clean.append(probe.others < args.quiet)
        conn.close()
        burst = burst_phase(host, port, model, ex.n_lams, args)
    finally:
        server.shutdown()
        server.server_close()
    kept = [x for x, c in zip(lat, clean, strict=True) if c]
    h, w = ex.image_shape
    return {
        "precision": precision,
        "model": model,
        "image": f"{h}x{w}",
        "requests": len(lat),
        "median_ms": round(statistics.median(lat), 1),
        "p95_ms": round(_pct(lat, 95), 1),
        "max_ms": round(max(lat), 1),
        "server_median_ms": round(statistics.median(server_ms), 1),
        "clean_requests": len(kept),
        "clean_median_ms": round(statistics.median(kept), 1) if kept else float("nan"),
        "clean_p95_ms": round(_pct(kept, 95), 1),
        **burst,
    }


def burst_phase(host: str, port: int, model: str, k: int, args: argparse.Namespace) -> dict:
    """Bursts of rising-seq requests of one client from 4 threads; how many were coalesced, the longest wait."""
    superseded = rendered = refused = 0
    lock = threading.Lock()
    seq = 0
    worst = 0.0

    def one(s: int, lam: float) -> None:
        nonlocal superseded, rendered, refused, worst
        conn = http.client.HTTPConnection(host, port, timeout=60)
        t0 = time.perf_counter()
        conn.request(
            "GET", f"/api/render?model={model}&slice=0&lam={','.join([f'{lam:.3f}'] * k)}&client=bench&seq={s}"
        )
        resp = conn.getresponse()
        body = json.loads(resp.read())
        dt = (time.perf_counter() - t0) * 1e3
        conn.close()
        with lock:
            worst = max(worst, dt)
            if resp.status == 429:
                refused += 1
            elif body.get("superseded"):
                superseded += 1
            else:
                rendered += 1

    for b in range(args.bursts):
        threads = []
        for j in range(args.burst_size):
            seq += 1
            t = threading.Thread(target=one, args=(seq, (b * args.burst_size + j) % 100 / 100))
            threads.append(t)
            t.start()
            if len(threads) % 4 == 0:
                time.sleep(0.001)
        for t in threads:
            t.join()
    return {
        "burst_requests": superseded + rendered + refused,
        "burst_rendered": rendered,
        "burst_superseded": superseded,
        "burst_refused": refused,
        "burst_worst_ms": round(worst, 1),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = parse_list(args.precisions)
    bad = [p for p in precisions if p not in ("fp32", "bf16")]
    if bad:
        raise SystemExit(f"error: --precisions: unknown {', '.join(bad)}; valid: fp32, bf16")
    rows = []
    for precision in precisions:
        if precision == "bf16" and not (cpu_has_fast_bf16() or args.force_bf16):
            print("bf16: skipped (this CPU has no AMX / AVX512-BF16; --force-bf16 times it anyway)")
            continue
        rows.append(time_precision(args, precision))
    columns = [
        "precision",
        "model",
        "image",
        "requests",
        "median_ms",
        "p95_ms",
        "max_ms",
        "server_median_ms",
        "clean_requests",
        "clean_median_ms",
        "clean_p95_ms",
        "burst_requests",
        "burst_rendered",
        "burst_superseded",
        "burst_refused",
        "burst_worst_ms",
    ]
    meta = {
        "run": str(args.run_dir),
        "device": device_name(torch.device("cpu")),
        "torch threads": torch.get_num_threads(),
        "fast bf16 CPU": cpu_has_fast_bf16(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.out is not None:
        print(write_outputs(rows, args.out, "hrbench explore: slider-to-image latency over HTTP", meta, columns))
    else:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
