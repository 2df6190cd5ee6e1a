"""Shared fixtures: a seeded numpy generator, an odd non-square image, a private cache, one thread."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep mask and data caches of the test run out of the user's ~/.cache."""
    os.environ.setdefault("HRBENCH_CACHE", str(tmp_path_factory.mktemp("hrbench-cache")))


# One thread per process: the suite starts worker subprocesses, and OpenMP threads that outnumber the cores
# spin-wait each other (measured: a 32x32 U-Net forward 6 ms with 1 thread, 60-170 ms with 2 on a busy 2-core box).
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def odd_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth-plus-edges 37x31 test image in [0, 1]."""
    yy, xx = np.mgrid[0:37, 0:31]
    img = 0.5 + 0.3 * np.sin(xx / 4.0) * np.cos(yy / 5.0)
    img[10:25, 8:20] += 0.2
    return np.clip(img + 0.01 * rng.standard_normal(img.shape), 0, 1)
