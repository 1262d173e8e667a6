"""Bundles in bulk against the per-report bundles stage, over the same links, side by side.

For each backend (SQLite in a temp dir; PostgreSQL in a throwaway cluster, as ``run.py`` makes
it) a store of ``--reports`` generated reports, none with real content, and a link graph with
the shapes a year has: a few viral items seen in hundreds to thousands of reports (every copy
linked to the item's 10 lowest-numbered reports, the links stage's anchors), many small viral
items and offenders (2-6 reports by account, e-mail or device), offenders who also shared a
viral item (so a report moves from a viral incident to an offender's), and stray IP links no
rule uses. Reports arrive in id order, in groups of ``--group``; each brings its links to
reports that arrived before it. Both ways start from no incidents:

* **per report**: in one transaction per group, each report's links are written and recorded
  (as the links stage does) and the bundles stage runs for it (incremental path, or the full
  re-plan where it must);
* **bulk**: in one transaction per group, the group's links are written, then
  ``bundles_group`` runs once.

Timed: each transaction (begin, bundling, commit) without the writing of links, which is the
links stage's work and the same in both. Reported: reports/s and the ratio bulk/per-report,
SQL statements per group, and that both ended with the same rows, equal to the reference plan
(``plan_all``). Then the whole-store rebuild (``rerun --stage bundles --all``) from no
incidents, and over the already-bundled store (nothing to write).

    .venv/bin/python benchmarks/pipeline/bench_bundles.py [--reports 2000] [--group 200]
        [--seed 1] [--backends sqlite,postgresql]

Prints a table and writes benchmarks/results/bundles-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

from run import pg_cluster  # noqa: E402
from sqlalchemy import delete, event, insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from tipline.config import Settings  # noqa: E402
from tipline.pipeline.bundling.reference import current_assignments, plan_all  # noqa: E402
from tipline.pipeline.bundling.rules import load_bundling  # noqa: E402
from tipline.pipeline.core import Outcome, StageContext, get_stage  # noqa: E402
from tipline.pipeline.linkchanges import LinkChange, record_link_change  # noqa: E402
from tipline.pipeline.stages.bundles import bundles_group, rebuild_bundles  # noqa: E402
from tipline.runtime import Runtime  # noqa: E402
from tipline.store.db import transaction  # noqa: E402
from tipline.store.setup import do_init  # noqa: E402
from tipline.store.tables import (  # noqa: E402
    Incident,
    IncidentReport,
    Report,
    Reporter,
    ReportIncidentCount,  # noqa: E402
    ReportLink,
)

RESULTS = REPO / "benchmarks" / "results"
NOW = datetime(2023, 6, 1, tzinfo=UTC)
ANCHORS = 10  # the links stage's max_links_per_key

#: (report_a, report_b, reason, weight, detail)
Link = tuple[int, int, str, float, str]


def make_links(rnd: random.Random, n: int) -> list[Link]:
    """Links among reports 1..n with a year's shapes (see the module docstring)."""
    out: dict[tuple[int, int, str], Link] = {}
    ids = list(range(1, n + 1))

    def key_group(members: list[int], reason: str, weight: float, detail: str) -> None:
        members = sorted(set(members))
        for r in members:
            for a in members[:ANCHORS]:
                if a != r:
                    lo, hi = min(a, r), max(a, r)
                    out.setdefault((lo, hi, reason), (lo, hi, reason, weight, detail))

    for v in range(3):  # large viral items: 2-8 % of all reports each
        key_group(rnd.sample(ids, max(3, int(n * rnd.uniform(0.02, 0.08)))), "content", 0.8, f"sha256:big{v}")
    for v in range(n // 40):  # small viral items
        key_group(rnd.sample(ids, rnd.randint(3, 20)), "content", rnd.choice([0.8, 0.6]), f"sha256:v{v}")
    for o in range(n // 15):  # offenders
        reason = rnd.choice(["account", "email", "device"])
        key_group(rnd.sample(ids, rnd.randint(2, 6)), reason, {"account": 1.0, "email": 0.95, "device": 0.9}[reason],
                  f"{reason}:o{o}")
    for i in range(n // 10):  # IP links: never read by bundling
        a, b = rnd.sample(ids, 2)
        out.setdefault((min(a, b), max(a, b), "ip"), (min(a, b), max(a, b), "ip", 0.3, f"ip:{i}"))
    return sorted(out.values())


def fill(rt: Runtime, n: int) -> list[int]:
    """n finished reports (no files, one reported user each; every 25th batched)."""
    with transaction(rt.sessions) as s:
        s.add(Reporter(name="Bench Social", kind="esp", enabled=True, created_at=NOW))
        s.flush()
        rep = s.execute(select(Reporter.id)).scalar_one()
        rows = [{"reporter_id": rep, "source": "api", "state": "finished", "opened_at": NOW, "last_change_at": NOW,
                 "finished_at": NOW, "incident_type": "Child Pornography (possession, manufacture, and distribution)",
                 "batched": i % 25 == 0, "normalisations": [],
                 "document": {"personOrUserReported": [{"espIdentifier": f"u{i}"}, {"espIdentifier": f"w{i}"}]}}
                for i in range(n)]
        for i in range(0, n, 5000):
            s.execute(insert(Report), rows[i:i + 5000])
    with rt.sessions() as s:
        return sorted(int(r) for r in s.execute(select(Report.id)).scalars())


def wipe(rt: Runtime) -> None:
    with transaction(rt.sessions) as s:
        for t in (ReportLink, IncidentReport, Incident, ReportIncidentCount):
            s.execute(delete(t))


def snapshot(s: Session) -> list[tuple[Any, ...]]:
    key = dict(s.execute(select(Incident.id, Incident.key)).all())
    return sorted((key[m.incident_id], m.report_id, m.rule, m.via_report_id, m.link_detail)
                  for m in s.execute(select(IncidentReport)).scalars())


@contextmanager
def counting(rt: Runtime) -> Iterator[list[int]]:
    seen = [0]

    def before(*_: Any) -> None:
        seen[0] += 1

    event.listen(rt.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(rt.engine, "before_cursor_execute", before)


def arrivals(ids: list[int], links: list[Link], group: int) -> list[list[tuple[int, list[Link]]]]:
    """Groups of reports in id order, each with its links to reports before it."""
    by_report: dict[int, list[Link]] = {}
    for lk in links:
        by_report.setdefault(lk[1], []).append(lk)  # written when the higher id arrives
    return [[(rid, by_report.get(rid, [])) for rid in ids[i:i + group]] for i in range(0, len(ids), group)]


def _write(s: Session, links: list[Link]) -> None:
    if links:
        s.execute(insert(ReportLink), [{"report_a": a, "report_b": b, "reason": r, "weight": w, "detail": d}
                                       for a, b, r, w, d in links])


def per_report(rt: Runtime, groups: list[list[tuple[int, list[Link]]]]) -> dict[str, Any]:
    ctx = StageContext(rt)
    stage = get_stage("bundles")
    spent = 0.0
    statements = 0
    how: Counter[str] = Counter()  # the stage's outcome: incremental, or the full re-plan
    for group in groups:
        with counting(rt) as seen:
            began = time.perf_counter()
            links_time = 0.0
            with transaction(rt.sessions, background=True) as s:
                for rid, links in group:
                    t = time.perf_counter()
                    _write(s, links)
                    s.flush()
                    record_link_change(s, rid, LinkChange(removed=False, added=frozenset(
                        (b if a == rid else a, r, w, d) for a, b, r, w, d in links)))
                    links_time += time.perf_counter() - t
                    how[str(stage.func(ctx, s, rid) or Outcome.DONE)] += 1
            spent += time.perf_counter() - began - links_time
        statements += seen[0]
    return {"seconds": spent, "statements_per_group": statements / len(groups),
            "incremental": how[str(Outcome.UPDATED)], "replanned": how[str(Outcome.RECOMPUTED)]}


def bulk(rt: Runtime, groups: list[list[tuple[int, list[Link]]]]) -> dict[str, Any]:
    ctx = StageContext(rt)
    spent = 0.0
    statements = 0
    worst = 0
    for group in groups:
        began = time.perf_counter()
        with transaction(rt.sessions, background=True) as s:
            t = time.perf_counter()
            _write(s, [lk for _, links in group for lk in links])
            s.flush()
            links_time = time.perf_counter() - t
            with counting(rt) as seen:
                bundles_group(ctx, s, [rid for rid, _ in group])
        spent += time.perf_counter() - began - links_time
        statements += seen[0]
        worst = max(worst, seen[0])
    return {"seconds": spent, "statements_per_group": statements / len(groups), "statements_max": worst}


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    cluster = pg_cluster() if backend == "postgresql" else nullcontext("")
    with cluster as url, tempfile.TemporaryDirectory(prefix="tipline-bench-bundles-") as d:
        settings = Settings.from_env(Path(d) / "data", database_url=url)
        do_init(settings)
        rt = Runtime.open(settings)
        try:
            rules = load_bundling()
            ids = fill(rt, args.reports)
            links = make_links(random.Random(args.seed), len(ids))
            links = [(ids[a - 1], ids[b - 1], r, w, det) for a, b, r, w, det in links]
            groups = arrivals(ids, links, args.group)
            out: dict[str, Any] = {"backend": backend, "reports": len(ids), "links": len(links),
                                   "group": args.group}
            print(f"[{backend}] {len(ids)} reports, {len(links)} links, groups of {args.group}", flush=True)
            one = per_report(rt, groups)
            with rt.sessions() as s:
                first = snapshot(s)
                off_one = sum(1 for r, v in current_assignments(s).items() if plan_all(s, rules).get(r) != v)
            print(f"[{backend}] per report: {one['seconds']:.1f} s", flush=True)
            wipe(rt)
            many = bulk(rt, groups)
            with rt.sessions() as s:
                second = snapshot(s)
                reference = plan_all(s, rules)
                off_bulk = sum(1 for r, v in current_assignments(s).items() if reference.get(r) != v)
                incidents = len({k for _, k in reference.values()})
            print(f"[{backend}] bulk: {many['seconds']:.1f} s", flush=True)
            with transaction(rt.sessions) as s:
                s.execute(delete(IncidentReport))
                s.execute(delete(Incident))
            t = time.perf_counter()
            with transaction(rt.sessions, background=True) as s:
                rebuild_bundles(s)
            rebuild = time.perf_counter() - t
            with rt.sessions() as s:
                rebuilt_same = snapshot(s) == second
            t = time.perf_counter()
            with transaction(rt.sessions, background=True) as s:
                unchanged = not rebuild_bundles(s).changed
            again = time.perf_counter() - t
            out |= {
                "per_report": one | {"reports_per_s": len(ids) / one["seconds"]},
                "bulk": many | {"reports_per_s": len(ids) / many["seconds"]},
                "ratio_bulk_over_per_report": one["seconds"] / many["seconds"],
                "same_rows": first == second, "off_reference_per_report": off_one, "off_reference_bulk": off_bulk,
                "incidents": incidents, "rebuild_seconds": rebuild, "rebuild_same_rows": rebuilt_same,
                "rebuild_again_seconds": again, "rebuild_again_wrote_nothing": unchanged,
            }
            return out
        finally:
            rt.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--group", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args()
    rows = [bench_backend(b, args) for b in args.backends.split(",")]
    print()
    print(f"{'backend':<11} {'per report/s':>12} {'bulk/s':>9} {'ratio':>6} {'stmts/group':>16} "
          f"{'same':>5} {'off ref':>8} {'rebuild s':>9} {'again s':>8} {'full re-plans':>14}")
    for r in rows:
        print(f"{r['backend']:<11} {r['per_report']['reports_per_s']:>12.0f} {r['bulk']['reports_per_s']:>9.0f} "
              f"{r['ratio_bulk_over_per_report']:>6.1f} "
              f"{r['per_report']['statements_per_group']:>8.0f}/{r['bulk']['statements_per_group']:<7.1f} "
              f"{str(r['same_rows'] and r['rebuild_same_rows']):>5} "
              f"{r['off_reference_per_report']}/{r['off_reference_bulk']:<6} {r['rebuild_seconds']:>9.2f} "
              f"{r['rebuild_again_seconds']:>8.2f} {r['per_report']['replanned']:>6}/{r['reports']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bundles-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                            "platform": platform.platform()},
                                "args": vars(args), "results": rows}, indent=2))
    print(f"\nwritten: {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
