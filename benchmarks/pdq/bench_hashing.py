"""Hashing throughput: the ``hashes`` stage vs raw pdqhash on the same images.

Generated stand-in images (PNG and JPEG, default 1024x768) are stored in a throwaway
instance (encrypted blob store, SQLite; small ones inline in the row, as intake stores
them). Three paths hash the same images, interleaved group by group and round by round so
that load from other processes on a shared machine hits all of them alike:

- **raw**: decode the bytes from memory with Pillow and call ``pdqhash.compute`` — the least
  any PDQ hashing can do;
- **report**: the per-report stage as the worker runs it today, ``--group`` reports per
  transaction (``tipline.pipeline.core.run_reports``: savepoint + ledger row per report);
- **group**: the set-based form ``hashes_group`` over the same reports, plus the same ledger
  rows, one transaction per group.

For each round and path it records wall time and this process's CPU time (on a shared
2-core machine CPU time is the steadier figure), and minor page faults per image; the ratio
of each round is path / raw, and the table gives the median over ``--rounds``.
``--phases`` also times the stage's steps one by one (decrypt, decode, pdqhash, rows).
Target: stage / raw >= 0.85.

    .venv/bin/python benchmarks/pdq/bench_hashing.py --images 200 [--group 8] [--rounds 5] [--phases]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image
from sqlalchemy import func, select

from tipline.config import Settings
from tipline.pipeline import media
from tipline.pipeline.core import StageContext, get_stage, record_run, run_reports
from tipline.pipeline.stages.hashes import hashes_group
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.db import transaction
from tipline.store.setup import do_init
from tipline.store.tables import Blob, File, FileSignal, Report, Reporter


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def raw_hash(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as img:
        pdqhash.compute(np.ascontiguousarray(np.asarray(img.convert("RGB"))))


def store(rt: Runtime, images: list[bytes], per_report: int) -> list[int]:
    now = datetime.now(UTC)
    report_ids: list[int] = []
    with transaction(rt.sessions) as s:
        rep = Reporter(name="bench", kind="esp", enabled=True, created_at=now)
        s.add(rep)
        s.flush()
        for start in range(0, len(images), per_report):
            r = Report(reporter_id=rep.id, source="api", state="finished", opened_at=now, last_change_at=now,
                       finished_at=now, document={})
            s.add(r)
            s.flush()
            report_ids.append(r.id)
            for seq, data in enumerate(images[start:start + per_report], 1):
                b = rt.blobs.put(data)
                if s.get(Blob, b.sha256) is None:
                    # Small images keep their ciphertext in the row (``inline``), as intake stores them.
                    s.add(Blob(sha256=b.sha256, size=b.size, stored_name=b.stored_name, data=b.inline,
                               md5=b.md5, sha1=b.sha1, created_at=now))
                    s.flush()
                s.add(File(id=secrets.token_hex(16), report_id=r.id, seq=seq, size=b.size, md5=b.md5,
                           sha1=b.sha1, sha256=b.sha256, uploaded_at=now))
    return report_ids


def phases(rt: Runtime, images: list[bytes]) -> dict[str, float]:
    """CPU ms per image of each step of the stage's image path, timed one by one."""
    held = [rt.blobs.put(d) for d in images]
    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[int], object]) -> None:
        t = time.process_time()
        for i in range(len(images)):
            fn(i)
        out[name] = (time.process_time() - t) / len(images) * 1000

    plain = [b"".join(rt.blobs.open_held(b.stored_name, b.inline)) for b in held]
    timed("decrypt", lambda i: b"".join(rt.blobs.open_held(held[i].stored_name, held[i].inline)))
    arrays: list[np.ndarray] = []

    def decode(i: int) -> None:
        with Image.open(io.BytesIO(plain[i])) as img:
            arrays.append(media.image_to_rgb_array(img))

    timed("decode (Pillow -> RGB array)", decode)
    timed("pdqhash.compute", lambda i: pdqhash.compute(arrays[i]))
    timed("whole image path (media.pdq_from_image_bytes)", lambda i: media.pdq_from_image_bytes(plain[i]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, nargs=2, default=[1024, 768])
    ap.add_argument("--per-report", type=int, default=5)
    ap.add_argument("--group", type=int, default=8, help="reports per transaction, as the worker groups them")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--phases", action="store_true", help="also time decrypt, decode, pdqhash one by one")
    ap.add_argument("--json", type=Path, help="write every round's figures here")
    args = ap.parse_args()
    images = [standin_image(i, tuple(args.size), fmt="JPEG" if i % 2 else "PNG") for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(Path(tmp) / "data", database_url="")
        do_init(settings)
        rt = Runtime.open(settings)
        report_ids = store(rt, images, args.per_report)
        ctx = StageContext(rt)
        st = get_stage("hashes")
        per = args.per_report

        def run_report_form(group: list[int]) -> None:
            run_reports(ctx, {rid: ["hashes"] for rid in group})

        def run_group_form(group: list[int]) -> None:
            with transaction(rt.sessions, background=True) as s:
                hashes_group(ctx, s, group)
                for rid in group:
                    record_run(s, rid, st, None)

        def run_raw(group_index: int, n_reports: int) -> None:
            for data in images[group_index * per:(group_index + n_reports) * per]:
                raw_hash(data)

        # Warm up every path (imports, first-call costs) and check that the stage hashed.
        raw_hash(images[0])
        run_group_form(report_ids[:1])
        run_report_form(report_ids[:1])
        with rt.sessions() as s:
            hashed = s.execute(select(func.count()).select_from(FileSignal).where(FileSignal.pdq.is_not(None))).scalar()
        want = min(per, len(images))
        assert hashed == want, f"the stage hashed {hashed} of {want} images: bytes not found?"

        paths = ("raw", "report", "group")
        rounds: list[dict[str, dict[str, float]]] = []
        for r in range(args.rounds):
            acc = {p: {"wall": 0.0, "cpu": 0.0, "faults": 0.0} for p in paths}
            # Rotate which path goes first in each group, so none always runs on a cold cache.
            order = paths[r % 3:] + paths[:r % 3]
            for g in range(0, len(report_ids), args.group):
                group = report_ids[g:g + args.group]
                for p in order:
                    t, c, f = time.perf_counter(), time.process_time(), faults()
                    if p == "raw":
                        run_raw(g, len(group))
                    elif p == "report":
                        run_report_form(group)
                    else:
                        run_group_form(group)
                    acc[p]["wall"] += time.perf_counter() - t
                    acc[p]["cpu"] += time.process_time() - c
                    acc[p]["faults"] += faults() - f
            rounds.append(acc)
        phase_ms = phases(rt, images[:min(40, len(images))]) if args.phases else {}
        rt.close()
    n = len(images)

    def med(path: str, key: str) -> float:
        return statistics.median(n / rd[path][key] for rd in rounds)

    def med_ratio(path: str, key: str) -> float:
        return statistics.median(rd["raw"][key] / rd[path][key] for rd in rounds)

    print(f"{n} images {args.size[0]}x{args.size[1]} PNG+JPEG, {per} per report, {args.group} reports per "
          f"transaction, median of {args.rounds} interleaved rounds")
    print("| path | img/s (wall) | img/s (CPU) | ratio to raw (wall) | ratio to raw (CPU) | page faults/img |")
    print("|---|---:|---:|---:|---:|---:|")
    for p in paths:
        fl = statistics.median(rd[p]["faults"] / n for rd in rounds)
        print(f"| {p} | {med(p, 'wall'):.1f} | {med(p, 'cpu'):.1f} | {med_ratio(p, 'wall'):.2f} "
              f"| {med_ratio(p, 'cpu'):.2f} | {fl:.0f} |")
    for name, ms in phase_ms.items():
        print(f"  {name}: {ms:.2f} ms CPU/img")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rounds": rounds,
                                         "phases_ms": phase_ms}, indent=1))


if __name__ == "__main__":
    main()
