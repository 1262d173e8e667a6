"""A plain numpy PDQ, written from Meta's published description (ThreatExchange ``pdq/``:
hashing.pdf and the reference Python ``pdqhashing``), used as a test oracle for pdqhash.

Steps, for an RGB image at its full resolution (like the C++ hasher pdqhash wraps; Meta's
pure-Python tool first shrinks to 512 px, which is the one step left out here):

1. luminance Y = 0.299 R + 0.587 G + 0.114 B;
2. a tent blur: two passes of (box filter along rows, box filter along columns), window
   ``ceil(dimension / 128)`` (Jarosz, "Fast image convolutions"), the box being the mean of
   the clamped window ``[i - (w - h), i + h - 1]`` with ``h = (w + 2) // 2``;
3. decimate to 64 x 64 by sampling pixel ``floor((k + 0.5) * dimension / 64)``;
4. quality: the sum over neighbouring 64 x 64 samples of ``|trunc((u - v) * 100 / 255)|``,
   divided by 90 and capped at 100;
5. the 16 x 16 lowest non-constant DCT-II coefficients ``B = D A Dᵀ`` with
   ``D[i][j] = sqrt(2/64) cos(π/128 · (i + 1)(2j + 1))``;
6. bit ``16 i + j`` is set when ``B[i][j]`` exceeds the median of the 256 coefficients;
   bit k is bit k of a 256-bit integer printed as 64 hex digits, most significant first.
"""

from __future__ import annotations

import math

import numpy as np


def _box(a: np.ndarray, window: int, axis: int) -> np.ndarray:
    """Mean over the clamped window [i - (window - half), i + half - 1] along ``axis``."""
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    half = (window + 2) // 2
    i = np.arange(n)
    lo = np.clip(i - (window - half), 0, n)
    hi = np.clip(i + half, 0, n)
    cs = np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(a, axis=-1)], axis=-1)
    out = (cs[..., hi] - cs[..., lo]) / (hi - lo)
    return np.moveaxis(out, -1, axis)


def _dct_matrix() -> np.ndarray:
    i = np.arange(1, 17)[:, None]
    j = np.arange(64)[None, :]
    return math.sqrt(2.0 / 64.0) * np.cos(math.pi / 2.0 / 64.0 * i * (2 * j + 1))


def reference_pdq(rgb: np.ndarray) -> tuple[bytes, int]:
    """PDQ hash (32 bytes, Meta's hex byte order) and quality of an HxWx3 uint8 image."""
    rgb = np.asarray(rgb, dtype=np.float64)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    rows, cols = luma.shape
    win_rows = (cols + 127) // 128  # window along a row spans columns
    win_cols = (rows + 127) // 128
    buf = luma
    for _ in range(2):
        buf = _box(buf, win_rows, axis=1)
        buf = _box(buf, win_cols, axis=0)
    ri = ((np.arange(64) + 0.5) * rows / 64).astype(int)
    ci = ((np.arange(64) + 0.5) * cols / 64).astype(int)
    a = buf[np.ix_(ri, ci)]
    dv = np.trunc((a[:-1, :] - a[1:, :]) * 100 / 255)
    dh = np.trunc((a[:, :-1] - a[:, 1:]) * 100 / 255)
    quality = min(100, int((np.abs(dv).sum() + np.abs(dh).sum()) / 90))
    d = _dct_matrix()
    b = d @ a @ d.T
    median = np.sort(b.ravel())[127]  # Torben's median of 256 values: the 128th smallest
    value = 0
    for k, bit in enumerate((b.ravel() > median).tolist()):
        if bit:
            value |= 1 << k
    return value.to_bytes(32, "big"), quality
