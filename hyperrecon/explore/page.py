"""The explorer's single page: ``static/page.html`` with its CSS, JavaScript and (for an export) data inlined.

Nothing on the page comes from the network: no CDN, no external script, style sheet or font (system fonts only);
images are ``data:`` URLs. The live page reads ``/api/...`` of the server that sent it; an exported page carries
its data as JSON in ``<script type="application/json" id="export-data">``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _fill(data_json: str) -> str:
    html = _static("page.html")
    for marker, text in (("/*CSS*/", _static("page.css")), ("/*JS*/", _static("page.js")), ("/*DATA*/", data_json)):
        if html.count(marker) != 1:  # a broken template must not ship a page without its script
            raise RuntimeError(f"explore page template: expected one {marker} marker")
        html = html.replace(marker, text)
    return html


def embed_json(obj: Any) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` escaped, so no ``</script>`` can end the block."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def live_page() -> str:
    """The page the server sends (its data come from ``/api/...``)."""
    return _fill("null")


def export_html(data: dict[str, Any]) -> str:
    """A self-contained page over pre-rendered ``data`` (see :func:`hyperrecon.explore.export.export_data`)."""
    return _fill(embed_json(data))
