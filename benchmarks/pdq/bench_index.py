"""PDQ range search at radius 31: tipline's PdqIndex vs python-threatexchange's PDQIndex.

Same generated data for both: N uniformly random 256-bit hashes; 1,000 queries of which 500
are planted near duplicates of stored hashes (0..31 bits flipped) and 500 are random. Each
method runs in its own subprocess so that its memory (added RSS) is measured alone.

    .venv/bin/python benchmarks/pdq/bench_index.py --sizes 1000000 10000000

Recall = planted pairs found / planted pairs (the 500 random queries are expected to find
nothing at radius 31: two random hashes are ~128 bits apart).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_data(n: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    queries = rng.integers(0, 256, (nq, 32), dtype=np.uint8)
    planted_to = np.full(nq, -1, np.int64)
    for i in range(0, nq, 2):
        j = int(rng.integers(n))
        q = codes[j].copy()
        for b in rng.choice(256, int(rng.integers(0, 32)), replace=False):
            q[b // 8] ^= np.uint8(1 << (b % 8))
        queries[i], planted_to[i] = q, j
    return codes, queries, planted_to


def run_one(method: str, n: int, nq: int, seed: int) -> dict[str, object]:
    codes, queries, planted_to = make_data(n, nq, seed)
    ids = np.arange(n, dtype=np.int64)
    found: list[set[int]] = [set() for _ in range(nq)]
    before = rss_mb()
    t0 = time.perf_counter()
    if method in ("tipline", "tipline-single"):
        from tipline.pipeline.pdqindex import PdqIndex

        index = PdqIndex()
        index.add(ids, codes)  # a bulk load lands in the sorted multi-index at once (n >= MIH_MIN)
        index.compact()
        build = time.perf_counter() - t0
        t1 = time.perf_counter()
        if method == "tipline":
            hits = index.search(queries, 31)
            for q, i in zip(hits.query.tolist(), hits.ids.tolist(), strict=True):
                found[q].add(i)
        else:
            for qi in range(nq):
                found[qi].update(index.search(queries[qi:qi + 1], 31).ids.tolist())
        elapsed = time.perf_counter() - t1
    elif method == "threatexchange":
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        hexes = [bytes(c).hex() for c in codes]
        del codes
        index_te = PDQIndex(zip(hexes, range(n), strict=True))
        del hexes
        build = time.perf_counter() - t0
        qhex = [bytes(q).hex() for q in queries]
        t1 = time.perf_counter()
        for qi, h in enumerate(qhex):
            found[qi].update(int(m.metadata) for m in index_te.query(h))
        elapsed = time.perf_counter() - t1
    else:
        raise SystemExit(f"unknown method {method}")
    after = rss_mb()
    planted = [i for i in range(nq) if planted_to[i] >= 0]
    recall = sum(int(planted_to[i]) in found[i] for i in planted) / len(planted)
    return {"method": method, "n": n, "queries": nq, "qps": nq / elapsed, "build_s": build,
            "added_rss_mb": after - before, "recall": recall,
            "random_query_hits": sum(len(found[i]) for i in range(nq) if planted_to[i] < 0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=["tipline", "tipline-single", "threatexchange"])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.sizes[0], args.queries, args.seed)))
        return
    rows = []
    for n in args.sizes:
        for m in args.methods:
            out = subprocess.run([sys.executable, __file__, "--one", m, "--sizes", str(n), "--queries",
                                  str(args.queries), "--seed", str(args.seed)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{m} at {n}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print("| hashes | method | lookups/s | recall | added RSS (MB) | build (s) | hits on random queries |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['method']} | {r['qps']:,.0f} | {r['recall']:.3f} | {r['added_rss_mb']:,.0f} "
              f"| {r['build_s']:.1f} | {r['random_query_hits']} |")


if __name__ == "__main__":
    main()
