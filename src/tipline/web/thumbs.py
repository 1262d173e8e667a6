"""Server-side thumbnails of report files: blurred and greyscale by default.

The analyst console and the law-enforcement inbox show files this way, so that the
full-resolution bytes never reach a page until a person unblurs one file on purpose (an
audited action). The thumbnail is made here, from the decrypted bytes, and only the small
blurred JPEG leaves the server.

A file Pillow cannot read (a video, a document, a damaged image) has no thumbnail:
:func:`thumbnail` returns ``None`` and the page says so instead of showing a picture.
"""

from __future__ import annotations

import io
import warnings

#: The longest side of a thumbnail, in pixels.
THUMB_SIDE = 160
#: Gaussian blur radius for the default (blurred) thumbnail, relative to THUMB_SIDE: strong
#: enough that the content cannot be made out, so a glance at the page reveals nothing.
BLUR_RADIUS = 8
#: Refuse to decode images larger than this many pixels (a decompression bomb answers
#: "no thumbnail" rather than exhausting memory).
MAX_PIXELS = 64_000_000
MEDIA_TYPE = "image/jpeg"


def thumbnail(data: bytes, *, blurred: bool = True, side: int = THUMB_SIDE) -> bytes | None:
    """A JPEG thumbnail of ``data`` (greyscale and blurred unless ``blurred`` is False), or
    ``None`` when ``data`` is not an image Pillow can read."""
    from PIL import Image, ImageFilter, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    return None
                img.draft("RGB", (side, side))  # JPEG: decode at reduced size, cheaply
                frame = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError, SyntaxError):
        return None
    frame.thumbnail((side, side))
    if blurred:
        frame = frame.convert("L").filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    out = io.BytesIO()
    frame.save(out, format="JPEG", quality=70)
    return out.getvalue()
