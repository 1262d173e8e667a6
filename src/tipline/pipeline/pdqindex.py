"""Exact PDQ range search (Hamming distance ≤ radius, default 31) over 256-bit hashes.

Three interchangeable searchers, all exact, all checked against :func:`reference_search`
(plain numpy ``bitwise_count`` brute force) in tests/test_pdqindex.py:

* :class:`FlatSearcher` — faiss ``IndexBinaryFlat.range_search``: a linear scan, no build
  cost, 32 bytes per hash, appends in O(1). Fastest while the collection is small.
* :class:`SortedMultiHash` — multi-index hashing (Norouzi et al.; Meta's PDQ README-MIH) over
  sorted arrays: the 256 bits are cut into 16 words of 16 bits; by pigeonhole, two hashes at
  distance ≤ 31 agree to within ``31 // 16 = 1`` bit in at least one word (if every word
  differed in ≥ 2 bits the distance would be ≥ 32). So the candidates of a query are the
  hashes whose word ``c`` equals the query's word ``c`` with at most ``nflip = radius // 16``
  bits flipped, for some ``c``; each candidate is then verified with a full popcount. Per word
  the index is one argsort permutation (uint32) plus a 65,537-entry offset table: 32 + 64 =
  96 bytes per hash, against ~270 for faiss ``IndexBinaryMultiHash`` (hash maps) — and it
  answers faster (see docs/hashing.md for the measured figures).
* :class:`FaissMultiHash` — faiss ``IndexBinaryMultiHash(256, 16, 16)`` with the same
  pigeonhole ``nflip``; this is what python-threatexchange's ``PDQIndex`` wraps. Kept for the
  benchmark and as a cross-check.

:class:`PdqIndex` is what the pipeline uses: a sorted multi-hash "main" segment plus a flat
"tail" that takes new hashes immediately (incremental: no rebuild to make a hash
searchable). When the tail outgrows ``max(compact_min, main / 8)`` it is merged into the main
segment; below ``mih_min`` hashes in total everything stays flat (the crossover, measured).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# Defined beside the other PDQ constants in media (which imports no numpy), re-exported here.
from tipline.pipeline.media import DEFAULT_RADIUS as DEFAULT_RADIUS

PDQ_BYTES = 32
#: Below this many hashes a flat scan beats building a multi-index (measured; docs/hashing.md).
MIH_MIN = 200_000
#: The flat tail is merged into the multi-index once it holds this many hashes (or main/8).
COMPACT_MIN = 50_000
#: Candidates gathered per vectorised batch in SortedMultiHash: keeps the temporaries (~40 bytes
#: per candidate) in cache; measured best between 1M and 10M hashes.
BATCH_CANDIDATES = 262_144


def as_codes(hashes: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """Hashes (32-byte strings or an (n, 32) uint8 array) as a C-contiguous (n, 32) uint8 array."""
    if isinstance(hashes, np.ndarray):
        arr = np.ascontiguousarray(hashes, dtype=np.uint8)
    else:
        arr = np.frombuffer(b"".join(hashes), dtype=np.uint8) if hashes else np.empty(0, np.uint8)
    arr = arr.reshape(-1, PDQ_BYTES)
    return np.ascontiguousarray(arr)


@dataclass
class Hits:
    """Matches of a batch of queries as parallel arrays, sorted by (query, distance, id)."""

    query: np.ndarray  # int64 index into the queries
    ids: np.ndarray  # int64 ids given to ``add``
    distance: np.ndarray  # int32

    def per_query(self, n: int) -> list[list[tuple[int, int]]]:
        out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for q, i, d in zip(self.query.tolist(), self.ids.tolist(), self.distance.tolist(), strict=True):
            out[q].append((i, d))
        return out

    @staticmethod
    def build(query: np.ndarray, ids: np.ndarray, distance: np.ndarray) -> Hits:
        order = np.lexsort((ids, distance, query))
        return Hits(query[order].astype(np.int64), ids[order].astype(np.int64), distance[order].astype(np.int32))

    @staticmethod
    def empty() -> Hits:
        return Hits(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32))

    @staticmethod
    def concat(parts: list[Hits]) -> Hits:
        parts = [p for p in parts if len(p.query)]
        if not parts:
            return Hits.empty()
        return Hits.build(np.concatenate([p.query for p in parts]), np.concatenate([p.ids for p in parts]),
                          np.concatenate([p.distance for p in parts]))


def reference_search(codes: np.ndarray, ids: np.ndarray, queries: np.ndarray,
                     radius: int = DEFAULT_RADIUS) -> Hits:
    """Plain brute force: every query against every stored hash (the oracle for the tests)."""
    codes, queries = as_codes(codes), as_codes(queries)
    qs: list[np.ndarray] = []
    found: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    for qi in range(len(queries)):
        d = np.bitwise_count(codes ^ queries[qi]).sum(axis=1, dtype=np.int32)
        hit = np.flatnonzero(d <= radius)
        qs.append(np.full(len(hit), qi, np.int64))
        found.append(np.asarray(ids)[hit])
        dists.append(d[hit])
    if not qs:
        return Hits.empty()
    return Hits.build(np.concatenate(qs), np.concatenate(found), np.concatenate(dists))


class FlatSearcher:
    """faiss ``IndexBinaryFlat``: exact linear scan; appends are O(1) (amortised)."""

    #: Up to this many queries a search runs on one OpenMP thread: faiss's thread team costs
    #: far more than a short scan (measured 0.39 ms vs 0.04 ms for one query over 20,000 hashes,
    #: 4.5 ms vs 0.2 ms over 200,000, on 2 busy cores), and the pipeline asks one report at a time.
    single_thread_below = 64

    def __init__(self) -> None:
        import faiss

        self._index = faiss.IndexBinaryFlat(256)
        self._ids = np.empty(1024, np.int64)  # grown by doubling: ``add`` must not copy every id

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def ids(self) -> np.ndarray:
        return self._ids[:len(self)]

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        new_ids = np.asarray(ids, np.int64)
        n = len(self)
        if n + len(new_ids) > len(self._ids):
            grown = np.empty(max(2 * len(self._ids), n + len(new_ids)), np.int64)
            grown[:n] = self._ids[:n]
            self._ids = grown
        self._ids[n:n + len(new_ids)] = new_ids
        self._index.add(as_codes(codes))

    def codes(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self._index.xb).reshape(-1, PDQ_BYTES)  # type: ignore[attr-defined]

    def search(self, queries: np.ndarray, radius: int = DEFAULT_RADIUS) -> Hits:
        import faiss

        if len(self) == 0 or len(queries) == 0:
            return Hits.empty()
        codes = as_codes(queries)
        few = len(codes) < self.single_thread_below
        threads = faiss.omp_get_max_threads()
        if few:
            # Process-wide setting: a concurrent large search may run on one thread meanwhile
            # (slower, never wrong).
            faiss.omp_set_num_threads(1)
        try:
            # faiss binary range search keeps distances strictly below its radius.
            lims, dist, labels = self._index.range_search(codes, radius + 1)
        finally:
            if few:
                faiss.omp_set_num_threads(threads)
        q = np.repeat(np.arange(len(queries), dtype=np.int64), np.diff(lims).astype(np.int64))
        return Hits.build(q, self.ids[labels], dist)


def _flip_masks(nflip: int) -> np.ndarray:
    """All 16-bit masks with at most ``nflip`` bits set (the probes per word)."""
    masks = [0]
    for k in range(1, nflip + 1):
        for bits in itertools.combinations(range(16), k):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, np.int64)


class SortedMultiHash:
    """Multi-index hashing over 16 sorted 16-bit words (built once; see module docstring)."""

    #: Threads for batched searches (numpy releases the GIL in the heavy steps).
    threads: int = min(2, os.cpu_count() or 1)

    def __init__(self, ids: np.ndarray, codes: np.ndarray) -> None:
        self.codes = as_codes(codes)
        self._codes64 = self.codes.view(np.uint64)  # (n, 4): popcount on 4 words, not 32 bytes
        self.ids = np.asarray(ids, np.int64)
        n = len(self.codes)
        if n >= 2**32:
            raise ValueError("SortedMultiHash holds at most 2**32 - 1 hashes")
        words = self.codes.view(">u2")  # (n, 16) big-endian 16-bit words
        self.perm = np.empty((16, n), np.uint32)
        self.offsets = np.zeros((16, 65537), np.int64)
        for c in range(16):
            w = np.ascontiguousarray(words[:, c])
            self.perm[c] = np.argsort(w, kind="stable")  # radix sort for uint16
            np.cumsum(np.bincount(w, minlength=65536), out=self.offsets[c, 1:])

    def __len__(self) -> int:
        return len(self.codes)

    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.ids.nbytes + self.perm.nbytes + self.offsets.nbytes)

    def search(self, queries: np.ndarray, radius: int = DEFAULT_RADIUS) -> Hits:
        queries = as_codes(queries)
        if len(self) == 0 or len(queries) == 0:
            return Hits.empty()
        # Pigeonhole: distance <= radius means some word is within radius // 16 bits.
        masks = _flip_masks(radius // 16)
        per_query = 16 * len(masks) * len(self) / 65536  # expected candidates of a random query
        batch = int(max(1, min(256, BATCH_CANDIDATES // max(per_query, 1.0))))
        starts = range(0, len(queries), batch)
        if len(starts) == 1 or self.threads == 1:
            parts = [self._search_batch(queries[s:s + batch], s, radius, masks) for s in starts]
        else:
            # numpy releases the GIL in the gathers and popcounts: batches run in parallel.
            with ThreadPoolExecutor(self.threads) as pool:
                parts = list(pool.map(lambda s: self._search_batch(queries[s:s + batch], s, radius, masks),
                                      starts))
        return Hits.concat(parts)

    def _search_batch(self, qs: np.ndarray, base: int, radius: int, masks: np.ndarray) -> Hits:
        m, nprobe = len(qs), len(masks)
        qwords = qs.view(">u2").astype(np.int64)  # (m, 16)
        cand_q: list[np.ndarray] = []
        cand_pos: list[np.ndarray] = []
        probe_query = np.repeat(np.arange(m, dtype=np.int64), nprobe)
        for c in range(16):
            keys = (qwords[:, c, None] ^ masks[None, :]).ravel()  # (m * nprobe,)
            start = self.offsets[c][keys]
            length = self.offsets[c][keys + 1] - start
            total = int(length.sum())
            if total == 0:
                continue
            # Expand the ragged [start, start + length) ranges into one index array.
            run_start = np.cumsum(length) - length
            idx = np.repeat(start - run_start, length) + np.arange(total, dtype=np.int64)
            cand_pos.append(self.perm[c][idx])
            cand_q.append(np.repeat(probe_query, length))
        if not cand_pos:
            return Hits.empty()
        pos = np.concatenate(cand_pos)
        q = np.concatenate(cand_q)
        qs64 = qs.view(np.uint64)
        dist = np.bitwise_count(self._codes64[pos] ^ qs64[q]).sum(axis=1, dtype=np.int32)
        ok = dist <= radius
        q, pos, dist = q[ok], pos[ok].astype(np.int64), dist[ok]
        # A hash close in several words was found several times: keep one of each pair.
        _, first = np.unique(q * (len(self) + 1) + pos, return_index=True)
        return Hits.build(q[first] + base, self.ids[pos[first]], dist[first])


class FaissMultiHash:
    """faiss ``IndexBinaryMultiHash(256, 16, 16)`` with pigeonhole ``nflip`` (exact)."""

    def __init__(self, ids: np.ndarray, codes: np.ndarray) -> None:
        import faiss

        self._index = faiss.IndexBinaryMultiHash(256, 16, 16)
        self._index.add(as_codes(codes))
        self.ids = np.asarray(ids, np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, radius: int = DEFAULT_RADIUS) -> Hits:
        if len(self) == 0 or len(queries) == 0:
            return Hits.empty()
        self._index.nflip = radius // 16
        lims, dist, labels = self._index.range_search(as_codes(queries), radius + 1)
        q = np.repeat(np.arange(len(queries), dtype=np.int64), np.diff(lims).astype(np.int64))
        return Hits.build(q, self.ids[labels], dist)


class PdqIndex:
    """The pipeline's near-duplicate index: sorted multi-hash main segment + flat tail.

    Thread-safe. ``add`` makes hashes searchable at once (they go to the flat tail); the
    tail is merged into the multi-index when it grows past ``max(compact_min, len(main)//8)``
    and the total is at least ``mih_min`` — below that everything stays in the flat scan.
    """

    def __init__(self, *, mih_min: int = MIH_MIN, compact_min: int = COMPACT_MIN) -> None:
        self.mih_min = mih_min
        self.compact_min = compact_min
        self._main: SortedMultiHash | None = None
        self._tail = FlatSearcher()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:
            return (len(self._main) if self._main is not None else 0) + len(self._tail)

    @property
    def main_size(self) -> int:
        return len(self._main) if self._main is not None else 0

    def add(self, ids: Sequence[int] | np.ndarray, hashes: Sequence[bytes] | np.ndarray) -> None:
        """Make ``hashes`` searchable under ``ids`` (int64) without rebuilding the index."""
        codes = as_codes(hashes)
        ids_arr = np.asarray(ids, np.int64)
        if len(ids_arr) != len(codes):
            raise ValueError("ids and hashes differ in length")
        with self._lock:
            self._tail.add(ids_arr, codes)
            total = len(self)
            if total >= self.mih_min and len(self._tail) >= max(self.compact_min, self.main_size // 8):
                self.compact()

    def compact(self) -> None:
        """Merge the flat tail into the multi-index (O(n) words sorted by radix sort)."""
        with self._lock:
            if len(self._tail) == 0:
                return
            if self._main is None:
                ids, codes = self._tail.ids, self._tail.codes()
            else:
                ids = np.concatenate([self._main.ids, self._tail.ids])
                codes = np.concatenate([self._main.codes, self._tail.codes()])
            self._main = SortedMultiHash(ids, codes)
            self._tail = FlatSearcher()

    def search(self, queries: Sequence[bytes] | np.ndarray, radius: int = DEFAULT_RADIUS) -> Hits:
        """Every stored hash within ``radius`` bits of each query (exact)."""
        qs = as_codes(queries)
        with self._lock:
            parts = [self._tail.search(qs, radius)]
            if self._main is not None:
                parts.append(self._main.search(qs, radius))
        return Hits.concat(parts)
