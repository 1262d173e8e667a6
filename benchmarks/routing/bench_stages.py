"""Throughput of the identifiers, links, bundles, location, jurisdiction and route stages.

Generates N finished reports on SQLite in a temporary data dir (accounts recurring across
reports, viral content, public IPs of several countries) and times each stage over all of
them, one transaction per report as the runner does. Then, for ``links`` and ``route``, it
times the fast path against the plain reference on the same reports (read-only, one
session) and checks that both give the same result.

Every report logs in from one of 8 addresses at the same hour, so each public IP is shared
by about N/8 reports, all within the 24 h window: the worst case for IP links, and it grows
with N. ``--extra-indexes`` first creates the two composite indexes proposed for
tables.py (report_identifiers (identifier_id, report_id, role), files (sha256, report_id)).

    .venv/bin/python benchmarks/routing/bench_stages.py --reports 2000 [--extra-indexes] [--sample 1000]
        [--stages identifiers,links,location,jurisdiction,route]
    .venv/bin/python benchmarks/routing/bench_stages.py --store DATA_DIR --sample 300
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from datetime import UTC, datetime

from sqlalchemy import select, text

from tipline.config import Settings
from tipline.model.report import Report as ReportModel
from tipline.pipeline.core import StageContext, get_stage, run_stage
from tipline.pipeline.directory import DirectoryCache, load_routing, route
from tipline.pipeline.stages.links import IpTimesCache, compute_links, compute_links_reference
from tipline.pipeline.stages.route import city_for, reference_directory
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.setup import do_init
from tipline.store.tables import Blob, File, Jurisdiction, Report, Reporter

IPS = ["8.8.8.8", "128.32.0.1", "18.0.0.1", "130.149.7.201", "163.1.0.1", "1.1.1.1", "10.0.0.1", "100.64.2.2"]
NOW = datetime(2024, 3, 5, tzinfo=UTC)
ALL_STAGES = "identifiers,links,bundles,location,jurisdiction,route"
PROPOSED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_report_identifiers_identifier_report"
    " ON report_identifiers (identifier_id, report_id, role)",
    "CREATE INDEX IF NOT EXISTS ix_files_sha256_report ON files (sha256, report_id)",
)


def generate(rt: Runtime, n: int, seed: int) -> list[int]:
    rnd = random.Random(seed)
    ids: list[int] = []
    with transaction(rt.sessions) as s:
        rep = Reporter(name="Bench Social", kind="esp", enabled=True, created_at=NOW)
        s.add(rep)
        s.flush()
        for i in range(n):
            user = f"u{rnd.randrange(n // 3)}"  # accounts recur: ~3 reports per user
            p = {"espIdentifier": user, "espService": "Instagram",
                 "ipCaptureEvent": [{"ipAddress": rnd.choice(IPS), "eventName": "Login",
                                     "dateTime": "2024-03-05T09:00:00Z"}]}
            doc = ReportModel.model_validate({
                "incidentSummary": {"incidentType": "Child Pornography (possession, manufacture, and distribution)",
                                    "incidentDateTime": "2024-03-05T10:00:00Z"},
                "reporter": {"reportingPerson": {"firstName": "T"}}, "personOrUserReported": [p]})
            r = Report(reporter_id=rep.id, source="api", state="finished", opened_at=NOW, last_change_at=NOW,
                       finished_at=NOW, incident_type=doc.incident_type, incident_at=NOW, batched=False,
                       document=doc.model_dump(mode="json", exclude_defaults=True), normalisations=[])
            s.add(r)
            s.flush()
            key = f"viral{rnd.randrange(20)}" if rnd.random() < 0.5 else f"own{i}"  # half viral (20 items)
            sha = hashlib.sha256(key.encode()).hexdigest()
            if s.get(Blob, sha) is None:
                s.add(Blob(sha256=sha, size=1, stored_name=None, created_at=NOW))
                s.flush()
            s.add(File(id=f"b{i:031x}", report_id=r.id, seq=1, size=1, md5="0" * 32, sha1="0" * 40, sha256=sha,
                       uploaded_at=NOW))
            ids.append(int(r.id))
    return ids


def compare_links(rt: Runtime, ids: list[int]) -> None:
    """ms per report of the reference and the fast links computation, and that they agree."""
    cache = IpTimesCache()
    with rt.sessions() as s:
        t0 = time.perf_counter()
        fast = {rid: compute_links(s, rid, cache=cache) for rid in ids}
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = {rid: compute_links_reference(s, rid) for rid in ids}
        t_ref = time.perf_counter() - t0
    bad = sum(1 for rid in ids if fast[rid] != ref[rid])
    print(f"links  reference {t_ref / len(ids) * 1000:7.2f} ms/report   fast {t_fast / len(ids) * 1000:6.2f} ms/report"
          f"   ({sum(map(len, ref.values()))} links, {bad} reports differ, ip cache {cache.hits} hits"
          f" {cache.misses} misses)")


def compare_route(rt: Runtime, ids: list[int]) -> None:
    """ms per report of routing with the directory loaded per report (reference) and cached."""
    rules = load_routing()
    cache = DirectoryCache()
    with rt.sessions() as s:
        jur = {j.report_id: j for j in s.execute(select(Jurisdiction).where(Jurisdiction.report_id.in_(ids))).scalars()}
        todo = [rid for rid in ids if rid in jur]
        out: dict[str, dict[int, list[tuple[str, str, str]]]] = {}
        times: dict[str, float] = {}
        for name in ("reference", "cached"):
            t0 = time.perf_counter()
            got: dict[int, list[tuple[str, str, str]]] = {}
            for rid in todo:
                d = reference_directory(s) if name == "reference" else cache.current(s)
                assert d is not None
                j = jur[rid]
                city = city_for(s, rid, j.us_state, rules.precedence)
                got[rid] = [(x.agency_code, x.rule, x.reason) for x in route(d, rules, j.country, j.us_state, city)]
            times[name] = time.perf_counter() - t0
            out[name] = got
    bad = sum(1 for rid in todo if out["reference"][rid] != out["cached"][rid])
    n = max(len(todo), 1)
    print(f"route  reference {times['reference'] / n * 1000:7.2f} ms/report   cached {times['cached'] / n * 1000:6.2f}"
          f" ms/report   (directory + routing decision only; {bad} reports differ, {cache.builds} build(s))")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stages", default=ALL_STAGES, help=f"comma-separated, in order (default {ALL_STAGES})")
    ap.add_argument("--sample", type=int, default=1000,
                    help="reports (evenly spread) for the reference-vs-fast comparison (default 1000)")
    ap.add_argument("--store", help="an existing data dir (e.g. after `tipline simulate` and the identifiers and "
                    "matches stages): only compare links reference vs fast on --sample of its finished reports")
    ap.add_argument("--extra-indexes", action="store_true", help="create the composite indexes proposed for tables.py")
    args = ap.parse_args()
    if args.store:
        rt = Runtime.open(Settings.from_env(args.store))
        with rt.sessions() as s:
            finished = list(s.execute(
                select(Report.id).where(Report.state == "finished").order_by(Report.id)).scalars())
        random.Random(args.seed).shuffle(finished)
        compare_links(rt, finished[:args.sample])
        rt.close()
        return
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(tmp)
        do_init(settings)
        rt = Runtime.open(settings)
        if args.extra_indexes:
            with transaction(rt.sessions) as s:
                for ddl in PROPOSED_INDEXES:
                    s.execute(text(ddl))
        ids = generate(rt, args.reports, args.seed)
        ctx = StageContext(rt)
        names = [n.strip() for n in args.stages.split(",") if n.strip()]
        for name in names:
            st = get_stage(name)
            t0 = time.perf_counter()
            for rid in ids:
                run_stage(ctx, st, rid)
            dt = time.perf_counter() - t0
            print(f"{name:<13} {len(ids) / dt:8.0f} reports/s  {dt / len(ids) * 1000:7.2f} ms/report"
                  f"  ({dt:.1f} s for {len(ids)})")
        sample = ids[::max(1, len(ids) // args.sample)][:args.sample]
        if "links" in names:
            compare_links(rt, sample)
        if "route" in names:
            compare_route(rt, sample)
        rt.close()


if __name__ == "__main__":
    main()
