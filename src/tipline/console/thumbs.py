"""Pictures of files for the console, made on the server: a blurred greyscale thumbnail by
default, and a size-limited rendering once an analyst unblurs one file.

Neither is ever the original bytes: both are re-encoded JPEGs, so full-resolution content
(and whatever metadata it carries) never reaches the page. Decoding is bounded: Pillow's
decompression-bomb limit applies, and input larger than :data:`MAX_INPUT_BYTES` is not read.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from PIL import Image, ImageFilter, ImageOps

#: Longest side of the blurred thumbnail, in pixels.
THUMB_SIDE = 240
#: Longest side of the unblurred rendering: enough to judge, never the original resolution.
CLEAR_SIDE = 800
#: Files larger than this are not decoded for a picture (the page says so).
MAX_INPUT_BYTES = 64 * 1024 * 1024


class NoPicture(Exception):
    """The bytes are no decodable image (or too large to decode here)."""


def _read(chunks: Iterable[bytes]) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > MAX_INPUT_BYTES:
            raise NoPicture(f"larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB: not decoded for a picture")
    return bytes(out)


def _open(data: bytes, side: int) -> Image.Image:
    try:
        raw = Image.open(io.BytesIO(data))
        raw.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a reduced scale, cheaply
        img = ImageOps.exif_transpose(raw)
        img.thumbnail((side, side))
        return img
    except Exception as exc:  # truncated, unsupported, decompression bomb
        raise NoPicture(f"not a decodable image ({type(exc).__name__})") from exc


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def blurred_thumbnail(chunks: Iterable[bytes], side: int = THUMB_SIDE) -> bytes:
    """Greyscale, strongly blurred, small: shows that there is a picture and its layout only."""
    img = _open(_read(chunks), side).convert("L")
    radius = max(6.0, max(img.size) / 14)
    return _jpeg(img.filter(ImageFilter.GaussianBlur(radius)), 70)


def clear_rendering(chunks: Iterable[bytes], side: int = CLEAR_SIDE) -> bytes:
    """The picture itself, downscaled to at most ``side`` pixels and re-encoded."""
    return _jpeg(_open(_read(chunks), side).convert("RGB"), 85)
