"""Simulated file content: stand-in images and their variants, or synthetic hashes.

An *item* is one piece of content (a stand-in picture); a *variant* is one copy of it as a
platform saw it. Variant 0 is the original; other variants are transformed the way content
changes as it is shared (re-encoded, resized, cropped, a small overlay), so their exact
hashes differ while their PDQ stays close. Two reports that carry the same (item, variant)
carry byte-identical files.

With ``--files hashes`` no bytes exist: MD5/SHA-1/SHA-256 are derived from (seed, item,
variant), and the PDQ from the item's random base hash with a few bits flipped per variant
(2-15 bits, so any two variants of an item are at most 30 apart, within the usual radius
of 31, while unrelated items are about 128 apart).
"""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter

from tipline.standin import standin_image

PDQ_BITS = 256
MAX_FLIPS = 15


@dataclass(frozen=True)
class Content:
    """The bytes-level facts of one file variant."""

    md5: str
    sha1: str
    sha256: str
    size: int
    media_type: str
    ext: str
    pdq: str | None  # 64 hex, synthetic (hashes mode, images only); None otherwise
    data: bytes | None  # the file bytes (images mode); None in hashes mode


MEDIA = {"photo": ("image/jpeg", "jpg"), "video": ("video/mp4", "mp4"), "other": ("application/octet-stream", "bin")}


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(map(str, parts)).encode()).digest()


def base_pdq(seed: int, item: int) -> bytes:
    """The item's synthetic PDQ: 256 pseudo-random bits fixed by (seed, item)."""
    return _digest("pdq", seed, item)


def variant_flips(seed: int, item: int, variant: int) -> list[int]:
    """Bit positions flipped from the base PDQ for ``variant`` (none for variant 0): 2-15 of them."""
    if variant == 0:
        return []
    d = _digest("flip", seed, item, variant)
    k = 2 + d[0] % (MAX_FLIPS - 1)
    return list(dict.fromkeys(d[1:]))[:k]  # distinct positions in digest order (31 bytes >> 15)


def synthetic_pdq(seed: int, item: int, variant: int) -> str:
    """64-hex PDQ of an item variant (near the item's base hash)."""
    h = bytearray(base_pdq(seed, item))
    for bit in variant_flips(seed, item, variant):
        h[bit // 8] ^= 1 << (7 - bit % 8)
    return h.hex()


@lru_cache(maxsize=65536)
def synthetic_content(seed: int, item: int, variant: int, kind: str) -> Content:
    """Hashes-only content: consistent cryptographic hashes, size, and a PDQ for photos.

    Cached: viral and known items recur across many reports.
    """
    key = f"tipline-sim|{seed}|{item}|{variant}".encode()
    sha256 = hashlib.sha256(key)
    r = int.from_bytes(sha256.digest()[:8], "big")
    size = {"photo": 40_000 + r % 860_000, "video": 500_000 + r % 59_500_000}.get(kind, 1_000 + r % 199_000)
    media_type, ext = MEDIA[kind]
    return Content(
        md5=hashlib.md5(key, usedforsecurity=False).hexdigest(),
        sha1=hashlib.sha1(key, usedforsecurity=False).hexdigest(),
        sha256=sha256.hexdigest(),
        size=size, media_type=media_type, ext=ext,
        pdq=synthetic_pdq(seed, item, variant) if kind == "photo" else None,
        data=None,
    )


def _item_image(seed: int, item: int) -> Image.Image:
    rng = random.Random(_digest("img", seed, item))
    size = rng.choice([(320, 240), (400, 300), (480, 360), (360, 360)])
    png = standin_image(int.from_bytes(_digest("standin", seed, item)[:6], "big"), size,
                        label=f"STAND-IN ITEM {item}")
    img = Image.open(io.BytesIO(png)).convert("RGB")
    # Many more shapes, softened: flat areas make PDQ unstable under small crops.
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(40):
        x0, y0, s = rng.randrange(w), rng.randrange(h), rng.randint(8, w // 4)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x0 + s, y0 + s), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + s, y0 + s // 2), fill=colour)
    return img.filter(ImageFilter.GaussianBlur(2))


def transform(img: Image.Image, seed: int, item: int, variant: int) -> tuple[bytes, str, str]:
    """Encode ``img`` as ``variant`` would look after being shared: (bytes, media type, ext)."""
    out = io.BytesIO()
    if variant == 0:
        img.save(out, format="PNG")
        return out.getvalue(), "image/png", "png"
    rng = random.Random(_digest("variant", seed, item, variant))
    w, h = img.size
    if rng.random() < 0.4:  # crop a sliver off the edges (PDQ is sensitive to crops)
        dx, dy = int(w * rng.uniform(0, 0.01)), int(h * rng.uniform(0, 0.01))
        img = img.crop((dx, dy, w - int(w * rng.uniform(0, 0.01)), h - int(h * rng.uniform(0, 0.01))))
    if rng.random() < 0.6:  # resize
        f = rng.uniform(0.6, 1.0)
        img = img.resize((max(64, int(img.width * f)), max(64, int(img.height * f))), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:  # a small caption or sticker in a corner
        draw = ImageDraw.Draw(img)
        x, y = rng.choice([(4, img.height - 16), (img.width - 60, 4), (4, 4)])
        if rng.random() < 0.5:
            draw.text((x, y), rng.choice(["lol", "share", "#fyp", "wow"]), fill=(255, 255, 0))
        else:
            draw.rectangle((x, y, x + 12, y + 12), fill=tuple(rng.randrange(256) for _ in range(3)))
    img.save(out, format="JPEG", quality=rng.randint(55, 95))
    return out.getvalue(), "image/jpeg", "jpg"


def image_content(seed: int, item: int, variant: int) -> Content:
    """Images-mode content: real stand-in bytes for the variant, hashed (no PDQ: the pipeline computes it)."""
    data, media_type, ext = transform(_item_image(seed, item), seed, item, variant)
    return Content(
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha1=hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data), media_type=media_type, ext=ext, pdq=None, data=data,
    )
