"""hrbench (package ``hyperrecon``): HyperRecon hypernetworks against per-λ U-Nets and classic λ search.

``__version__`` is the installed package's version (its metadata), the one ``hrbench --version`` prints.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hyperrecon")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
