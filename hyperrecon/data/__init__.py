"""Datasets: embedded defaults (``mni-brain``, ``knee-phantom``) and real-data readers (``fastmri-knee``,
``freesurfer-brain``, ``arrays``), all returning a validated :class:`DataBundle` through :func:`load_data`.

numpy/scipy/scikit-image/nibabel/h5py/nilearn only: no torch here (``preview.py`` imports torch lazily).
"""

from . import arrays, fastmri, freesurfer, knee, mni  # noqa: F401  (register the built-in sources)
from .base import DataBundle, Split
from .registry import DATASETS, detect_source, load_data

__all__ = ["DATASETS", "DataBundle", "Split", "detect_source", "load_data"]
