"""Images for the page: float images in [0, 1] as 8-bit grayscale PNG ``data:`` URLs (Pillow).

Values outside [0, 1] are clipped (the network output is not bounded); 8 bits are what a screen shows. PNG at
compression level 1: for a 64x64 to 256x256 slice encoding takes well under a millisecond to a few ms.
"""

from __future__ import annotations

import base64
import io

import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float -> ``(H, W)`` uint8: ``round(clip(x, 0, 1) * 255)``; NaN becomes 0."""
    arr = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """``(H, W)`` float image in [0, 1] -> PNG file bytes (mode ``L``)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"png_bytes: expected an image of shape (H, W), got {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(to_uint8(arr), mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def data_url(image: np.ndarray) -> str:
    """``(H, W)`` float image in [0, 1] -> ``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def thumbnail(image: np.ndarray, size: int = 48) -> str:
    """A ``data:`` URL of the image shrunk (area average) so that its longer side is at most ``size`` pixels."""
    from PIL import Image

    arr = to_uint8(image)
    img = Image.fromarray(arr, mode="L")
    scale = size / max(arr.shape)
    if scale < 1:
        img = img.resize((max(1, round(arr.shape[1] * scale)), max(1, round(arr.shape[0] * scale))), Image.BOX)  # type: ignore[attr-defined]  # exists at runtime; Resampling.BOX needs pillow>=9.1
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
