"""``hrbench explore``: a local web page over a trained run that regenerates reconstructions as λ moves.

Modules, one job each:

- :mod:`.session` — :class:`~.session.Explorer`: the run's conditional models, baselines and test slices, read
  once (weights with ``weights_only=True``); reconstructs one slice at one λ with its metrics; request checks;
- :mod:`.coalesce` — latest-λ-wins coalescing of render requests with a bounded wait list;
- :mod:`.imaging` — PNG encoding of images in [0, 1] (Pillow) as ``data:`` URLs;
- :mod:`.page` — the single page (inline HTML, CSS and JavaScript from ``static/``; nothing from the network);
- :mod:`.server` — the HTTP API over the standard library's ``ThreadingHTTPServer``;
- :mod:`.export` — one self-contained HTML file with reconstructions pre-rendered on a λ grid.
"""

from __future__ import annotations

__all__ = ["Explorer", "RequestError", "export_page", "open_explorer", "serve"]


def __getattr__(name: str):  # lazy: importing the package must not import torch
    if name in ("Explorer", "RequestError", "open_explorer"):
        from . import session

        return getattr(session, name)
    if name == "serve":
        from .server import serve

        return serve
    if name == "export_page":
        from .export import export_page

        return export_page
    raise AttributeError(name)
