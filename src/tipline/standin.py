"""Generated stand-in images for demos, tests and benchmarks.

Abstract shapes, gradients and text only — never anything resembling a person. The same
seed always gives the same pixels, so tests and benchmarks are repeatable.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw


def standin_image(seed: int, size: tuple[int, int] = (320, 240), fmt: str = "PNG",
                  label: str | None = None) -> bytes:
    """An abstract picture (gradient, shapes, a label) encoded as ``fmt``."""
    rng = random.Random(seed)
    w, h = size
    c1 = tuple(rng.randrange(256) for _ in range(3))
    c2 = tuple(rng.randrange(256) for _ in range(3))
    img = Image.linear_gradient("L").resize((w, h)).convert("L")
    base = Image.composite(Image.new("RGB", (w, h), c1), Image.new("RGB", (w, h), c2), img)
    draw = ImageDraw.Draw(base)
    for _ in range(rng.randint(3, 8)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(10, w // 2), y0 + rng.randint(10, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    draw.text((8, 8), label or f"STAND-IN #{seed}", fill=(255, 255, 255))
    out = io.BytesIO()
    base.save(out, format=fmt)
    return out.getvalue()


def standin_of_size(seed: int, nbytes: int) -> bytes:
    """A PNG of roughly ``nbytes`` (noise keeps it from compressing); for benchmarks."""
    rng = random.Random(seed)
    side = max(16, int((nbytes / 3) ** 0.5))
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    draw = ImageDraw.Draw(img)
    draw.text((4, 4), f"STAND-IN #{seed}", fill=(255, 255, 255))
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return out.getvalue()
