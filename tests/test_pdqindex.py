"""The near-duplicate index returns exactly what brute force returns (random and planted data)."""

from __future__ import annotations

import numpy as np
import pytest

from tipline.pipeline.pdqindex import (
    FaissMultiHash,
    FlatSearcher,
    Hits,
    PdqIndex,
    SortedMultiHash,
    reference_search,
)


def flip(code: np.ndarray, nbits: int, rng: np.random.Generator) -> np.ndarray:
    out = code.copy()
    for b in rng.choice(256, nbits, replace=False):
        out[b // 8] ^= np.uint8(1 << (b % 8))
    return out


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random stored hashes; queries with neighbours at 0..31 bits and decoys at 32..40 bits."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    queries = rng.integers(0, 256, (40, 32), dtype=np.uint8)  # unrelated
    extra = []
    for d in range(0, 41):  # for each distance a stored hash at exactly d bits from a query
        q = rng.integers(0, 256, 32, dtype=np.uint8)
        extra.append(flip(q, d, rng))
        queries = np.vstack([queries, q])
    # A second neighbour of one query, to check several hits per query.
    extra.append(flip(queries[-10], 7, rng))
    codes = np.vstack([codes, np.array(extra)])
    ids = rng.permutation(len(codes)).astype(np.int64) + 1000
    return codes, ids, queries


def same(a: Hits, b: Hits) -> None:
    assert a.query.tolist() == b.query.tolist()
    assert a.ids.tolist() == b.ids.tolist()
    assert a.distance.tolist() == b.distance.tolist()


@pytest.mark.parametrize("radius", [31, 10, 47])
def test_every_searcher_matches_brute_force(radius: int) -> None:
    codes, ids, queries = planted(20_000, seed=radius)
    ref = reference_search(codes, ids, queries, radius)
    # The planted neighbours 0..radius bits are found, the decoys beyond it are not.
    assert len(ref.query) >= min(radius, 40) + 1
    assert ref.distance.max() <= radius
    flat = FlatSearcher()
    flat.add(ids, codes)
    same(flat.search(queries, radius), ref)
    same(SortedMultiHash(ids, codes).search(queries, radius), ref)
    same(FaissMultiHash(ids, codes).search(queries, radius), ref)


def test_planted_neighbours_and_decoys() -> None:
    codes, ids, queries = planted(5_000, seed=7)
    hits = SortedMultiHash(ids, codes).search(queries).per_query(len(queries))
    for d in range(0, 41):
        q = 40 + d
        dists = sorted(x[1] for x in hits[q])
        if d <= 31:
            assert d in dists
        else:
            assert d not in dists  # decoy at 32..40 bits is not a match at radius 31


def test_incremental_add_and_compaction_agree_with_brute_force() -> None:
    codes, ids, queries = planted(30_000, seed=3)
    idx = PdqIndex(mih_min=5_000, compact_min=2_000)
    step = 7_001
    for s in range(0, len(codes), step):
        idx.add(ids[s:s + step], codes[s:s + step])
        # Searchable at once, whether in the flat tail or already merged.
        upto = min(s + step, len(codes))
        same(idx.search(queries), reference_search(codes[:upto], ids[:upto], queries))
    assert idx.main_size > 0  # the multi-index segment was built
    one = np.random.default_rng(9).integers(0, 256, (1, 32), dtype=np.uint8)
    idx.add([42], one)
    hits = idx.search(flip(one[0], 12, np.random.default_rng(1)).reshape(1, 32))
    assert 42 in hits.ids.tolist()


def test_random_queries_on_random_data() -> None:
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, (10_000, 32), dtype=np.uint8)
    ids = np.arange(len(codes), dtype=np.int64)
    queries = np.vstack([rng.integers(0, 256, (50, 32), dtype=np.uint8), codes[:20]])
    ref = reference_search(codes, ids, queries)
    same(SortedMultiHash(ids, codes).search(queries), ref)
    idx = PdqIndex(mih_min=1, compact_min=1)
    idx.add(ids, codes)
    same(idx.search(queries), ref)


def test_empty_index() -> None:
    idx = PdqIndex()
    assert len(idx.search([bytes(32)]).ids) == 0
