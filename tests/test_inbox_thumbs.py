"""Blurred greyscale thumbnails (tipline.web.thumbs): small, grey, unrecognisable; junk gives none."""

from __future__ import annotations

import io

from PIL import Image, ImageStat

from tipline.standin import standin_image
from tipline.web.thumbs import THUMB_SIDE, thumbnail


def test_blurred_thumbnail_is_small_grey_jpeg_and_loses_detail() -> None:
    original = standin_image(7, size=(640, 480))
    blurred = thumbnail(original)
    assert blurred is not None and blurred[:2] == b"\xff\xd8"
    img = Image.open(io.BytesIO(blurred))
    assert img.mode == "L" and max(img.size) <= THUMB_SIDE
    sharp = thumbnail(original, blurred=False)
    assert sharp is not None
    sharp_img = Image.open(io.BytesIO(sharp)).convert("L")
    # Blurring removes edges: the spread of the edge image drops sharply.
    from PIL import ImageFilter

    def edges(i: Image.Image) -> float:
        # The border of the frame is an edge of its own: look inside it.
        inner = i.filter(ImageFilter.FIND_EDGES).crop((2, 2, i.width - 2, i.height - 2))
        return float(ImageStat.Stat(inner).stddev[0])

    assert edges(img) < edges(sharp_img) / 3
    assert Image.open(io.BytesIO(sharp)).mode == "RGB"


def test_not_an_image_has_no_thumbnail() -> None:
    assert thumbnail(b"not an image at all") is None
    assert thumbnail(b"") is None
    assert thumbnail(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40) is None
