"""Simulated file content: exact copies share hashes, variants stay near in PDQ space."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tipline.sim import content as sc


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_synthetic_hashes_are_consistent_per_variant() -> None:
    a, b = sc.synthetic_content(1, 42, 3, "photo"), sc.synthetic_content(1, 42, 3, "photo")
    assert a == b
    other = sc.synthetic_content(1, 42, 4, "photo")
    assert len({a.md5, other.md5}) == 2 and len({a.sha256, other.sha256}) == 2
    assert len(a.md5) == 32 and len(a.sha1) == 40 and len(a.sha256) == 64
    assert sc.synthetic_content(1, 42, 3, "video").pdq is None  # PDQ is for images


def test_synthetic_pdq_variants_are_near_and_items_far() -> None:
    for item in range(50):
        base = sc.synthetic_pdq(1, item, 0)
        variants = [sc.synthetic_pdq(1, item, v) for v in range(1, 30)]
        assert all(2 <= hamming(base, v) <= sc.MAX_FLIPS for v in variants)
        assert all(hamming(x, y) <= 2 * sc.MAX_FLIPS for x in variants for y in variants)
    far = [hamming(sc.synthetic_pdq(1, i, 0), sc.synthetic_pdq(1, i + 1, 0)) for i in range(200)]
    assert min(far) > 80  # unrelated items: about 128 bits apart


@pytest.fixture(scope="module")
def pdq() -> object:
    from pdqhash import compute

    def h(data: bytes) -> str:
        bits, _quality = compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        return "".join("1" if b else "0" for b in bits)

    return h


def test_image_variants_differ_exactly_but_stay_near_in_pdq(pdq: object) -> None:
    h = pdq  # type: ignore[assignment]
    near, total, bases = 0, 0, []
    for item in range(6):
        base = sc.image_content(3, item, 0)
        assert base.data is not None and base.media_type == "image/png"
        hb = h(base.data)  # type: ignore[operator]
        bases.append(hb)
        shas = {base.sha256}
        for v in range(1, 9):
            var = sc.image_content(3, item, v)
            assert var.data is not None
            shas.add(var.sha256)
            d = sum(x != y for x, y in zip(hb, h(var.data), strict=True))  # type: ignore[operator]
            near += d <= 31
            total += 1
        assert len(shas) >= 7  # variants are different bytes (an untouched re-encode may repeat one)
    assert near / total >= 0.9
    assert min(sum(x != y for x, y in zip(a, b, strict=True)) for i, a in enumerate(bases) for b in bases[:i]) > 64


def test_image_content_is_deterministic() -> None:
    assert sc.image_content(3, 1, 2).sha256 == sc.image_content(3, 1, 2).sha256
