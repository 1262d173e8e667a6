"""A producer that makes only its own blocks of a year makes exactly those reports of the stream."""

from __future__ import annotations

import bisect

import numpy as np

from tipline.sim import generate as g
from tipline.sim.generate import SimReport, YearGenerator


def _key(r: SimReport) -> object:
    # Everything a report is made of: the model (or form), the files' facts and details, the truth.
    return (r.seq, r.platform, r.public, r.report, r.form,
            [(f.seq, f.item, f.variant, f.kind, f.content, f.file_name, f.details) for f in r.files], r.truth)


def test_owned_blocks_together_are_the_whole_stream(monkeypatch: object) -> None:
    # Small chunks, so the year spans several of them (the draws that carry across chunks: persons).
    monkeypatch.setattr(g, "CHUNK", 600)  # type: ignore[attr-defined]
    whole = [_key(r) for r in YearGenerator(2024, 0.00008, 5, files="hashes")]
    assert len(whole) > 1500
    batch, workers = 100, 3
    parts = [list(YearGenerator(2024, 0.00008, 5, files="hashes").reports(
        owned=lambda seq, k=k: (seq // batch) % workers == k)) for k in range(workers)]
    for k, part in enumerate(parts):
        assert part and all((r.seq // batch) % workers == k for r in part)
    merged = sorted((_key(r) for part in parts for r in part), key=lambda t: t[0])  # type: ignore[index]
    assert merged == whole


def test_classification_lookup_is_numpys() -> None:
    cum = np.cumsum(g.CLASSIFICATION_P)
    for u in [0.0, 0.35, 0.3500000001, 0.6, 0.8, 0.9999, *np.random.default_rng(1).random(2000).tolist()]:
        assert bisect.bisect_left(g._CLASSIFICATION_CUM, u) == int(np.searchsorted(cum, u))
