"""Data pipeline throughput per source: slices per second, first (uncached) load vs cached load.

The real-data readers are measured on files this script writes in their real schemas (fastMRI-style .h5 with an
ISMRMRD header, FreeSurfer-style .mgz volumes, plain .npy). Writes reports/benchmarks/data_throughput.{csv,md}.

    python benchmark/data_throughput.py --size 256
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>640</x><y>{w}</y><z>1</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>320</x><y>320</y><z>1</z></matrixSize></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{maxk}</maximum><center>{c}</center>
</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"""


def write_fastmri(folder: Path, n_files: int, n_slices: int, rng: np.random.Generator) -> None:
    import h5py

    yy, xx = np.mgrid[-1:1:320j, -1:1:320j]
    for i in range(n_files):
        vol = np.stack(
            [np.exp(-(xx**2 + yy**2) * (2 + s / 10)) + 0.05 * rng.random((320, 320)) for s in range(n_slices)]
        ).astype(np.float32)
        with h5py.File(folder / f"file{i:03d}.h5", "w") as f:
            f.create_dataset("reconstruction_esc", data=vol)
            f.create_dataset("kspace", data=np.zeros((n_slices, 4, 4), np.complex64))
            f.create_dataset("ismrmrd_header", data=HEADER.format(w=368, maxk=367, c=184).encode())
            f.attrs["acquisition"] = "CORPD_FBK" if i % 2 == 0 else "CORPDFS_FBK"
            f.attrs["patient_id"] = f"p{i}"
            f.attrs["max"] = float(vol.max())


def write_freesurfer(folder: Path, n_subjects: int, rng: np.random.Generator) -> None:
    import nibabel as nib

    zz, yy, xx = np.mgrid[-1:1:128j, -1:1:128j, -1:1:128j]
    r = np.sqrt(xx**2 + yy**2 + zz**2)
    for i in range(n_subjects):
        sub = folder / f"sub{i:02d}"
        sub.mkdir()
        img = np.clip(1 - r, 0, None) * 200 + rng.random(r.shape) * 5
        aseg = np.where(r < 0.3, 4, np.where(r < 0.6, 2, np.where(r < 0.8, 3, 0))).astype(np.int32)
        nib.save(nib.MGHImage(img.astype(np.float32), np.eye(4)), sub / "norm.mgz")
        nib.save(nib.MGHImage(aseg, np.eye(4)), sub / "aseg.mgz")


def measure(source: str, size: int, path: str | None, params: dict, cache: Path) -> tuple[int, float, float]:
    from hyperrecon.data import load_data

    t0 = time.perf_counter()
    b = load_data(source, image_size=size, seed=0, path=path, params=params, cache_dir=cache)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_data(source, image_size=size, seed=0, path=path, params=params, cache_dir=cache)
    cached = time.perf_counter() - t0
    n = sum(b.counts().values())
    return n, first, cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="image size H=W the slices are prepared at")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "reports" / "benchmarks" / "data_throughput", help="output stem (.csv, .md)"
    )
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "fastmri").mkdir()
        write_fastmri(tmp / "fastmri", 8, 20, rng)
        (tmp / "fs").mkdir()
        write_freesurfer(tmp / "fs", 4, rng)
        np.save(tmp / "arr.npy", rng.random((400, args.size, args.size), dtype=np.float32))
        cases = [
            ("mni-brain", None, {}),
            ("knee-phantom", None, {"n_train": 4, "n_val": 1, "n_test": 1, "slices_per_subject": 8}),
            ("fastmri-knee", str(tmp / "fastmri"), {}),
            ("freesurfer-brain", str(tmp / "fs"), {}),
            ("arrays", str(tmp / "arr.npy"), {}),
        ]
        for source, path, params in cases:
            n, first, cached = measure(source, args.size, path, params, tmp / f"cache-{source}")
            rows.append(
                {
                    "source": source,
                    "slices": n,
                    "first_s": round(first, 2),
                    "cached_s": round(cached, 3),
                    "first_slices_per_s": round(n / first, 1),
                    "cached_slices_per_s": round(n / cached, 1),
                }
            )
            print(rows[-1], flush=True)
    import platform

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Data pipeline throughput",
        "",
        f"device: {cpu} (CPU), {os.cpu_count()} cores, image size {args.size}, date {time.strftime('%Y-%m-%d')}; "
        "first = prepare from source files (render/read, resize, normalise, augment) and write the cache; "
        "cached = read the prepared .npz",
        "",
        "| source | slices | first load (s) | slices/s | cached load (s) | slices/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['source']} | {r['slices']} | {r['first_s']} | {r['first_slices_per_s']} | {r['cached_s']} | "
        f"{r['cached_slices_per_s']} |"
        for r in rows
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
