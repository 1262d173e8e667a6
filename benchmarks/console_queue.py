"""How fast is the analyst console's queue on a large store?

Loads a simulated 2023 year (``tipline simulate --year 2023 --scale S --via direct --files
hashes``, the same records intake writes) into a fresh data dir, gives every report the rows
the queue reads from enrichment — an assessment (priority, disposition, escalation), a
jurisdiction, hash-bank matches for some files — plus analysts' claims and overrides, then
times:

- **query**: ``tipline.console.service.queue`` (the page's rows and every filter's counts) in
  one session, for several filters;
- **page**: ``GET /console?…`` through the whole app (session cookie resolved by the sign-in
  middleware, the template rendered), signed in as an analyst with a real TOTP code.

Enrichment rows are written in bulk here rather than by the pipeline (enriching 362k reports
takes hours on this machine; ``benchmarks/pipeline`` measures that): priorities drawn in the
proportions the assess rules give the simulated year (about 2 % priority 1, 25 % priority 2),
countries and US states from the simulated IP/location mix. The queue's SQL does not depend on
how the rows were made.

    .venv/bin/python benchmarks/console_queue.py --scale 0.001 [--runs 40] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

STATES = ["TX", "CA", "FL", "NY", "OH", "PA", "IL", "GA", "NC", "MI", "WA", "AZ"]
COUNTRIES = ["US"] * 12 + ["IN", "PH", "BD", "PK", "ID", "MX", "BR", "DE", "GB", None, None]


def enrich_synthetically(rt: Any, seed: int = 1) -> int:
    from sqlalchemy import insert, select

    from tipline.store.db import transaction
    from tipline.store.tables import Assessment, BankEntry, File, FileMatch, HashBank, Jurisdiction, Report

    rng = random.Random(seed)
    now = datetime.now(UTC)
    with rt.sessions() as s:
        ids = list(s.scalars(select(Report.id).where(Report.state == "finished").order_by(Report.id)))
        files = list(s.execute(select(File.id, File.report_id)))
    batch = 5000
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        assessments, juris = [], []
        for rid in chunk:
            x = rng.random()
            p = 1 if x < 0.02 else 2 if x < 0.27 else 3
            assessments.append({
                "report_id": rid, "quality": round(rng.random(), 2), "missing": [],
                "disposition": "informational" if rng.random() < 0.12 else "referral",
                "disposition_reasons": [{"text": "synthetic"}], "priority": p,
                "priority_reasons": [{"text": "synthetic"}], "escalate": p == 1, "rules_version": "bench",
                "assessed_at": now})
            c = rng.choice(COUNTRIES)
            juris.append({"report_id": rid, "country": c, "us_state": rng.choice(STATES) if c == "US" else None,
                          "source": "ip", "confidence": 0.8, "reason": "synthetic", "resolved_at": now})
        with transaction(rt.sessions) as s:
            s.execute(insert(Assessment), assessments)
            s.execute(insert(Jurisdiction), juris)
    with transaction(rt.sessions) as s:
        bank = HashBank(name="bench", description=None, enabled=True, pdq_threshold=31, created_at=now)
        s.add(bank)
        s.flush()
        entry = BankEntry(bank_id=bank.id, hash_type="md5", value="0" * 32, label="bench", added_at=now)
        s.add(entry)
        s.flush()
        matched = [f for f in files if rng.random() < 0.05]
        for start in range(0, len(matched), batch):
            s.execute(insert(FileMatch), [{"file_id": fid, "kind": "bank", "hash_type": "md5", "distance": 0,
                                           "bank_entry_id": entry.id, "other_file_id": None, "created_at": now}
                                          for fid, _ in matched[start:start + batch]])
    return len(ids)


def people_work(rt: Any, ids: list[int], seed: int = 2) -> Any:
    """20 analysts holding 5 reports each, and 1 % of reports overridden."""
    from people_helpers import make_user
    from tipline.console import service as svc
    from tipline.people.principal import Principal
    from tipline.store.db import transaction

    rng = random.Random(seed)
    users = [make_user(rt, f"bench-{i}", "analyst") for i in range(20)]
    # A supervisor may override a report someone else holds.
    sup = make_user(rt, "bench-supervisor", "supervisor")
    with transaction(rt.sessions) as s:
        for u in users:
            p = Principal(u.user_id, u.username, "analyst")
            for rid in rng.sample(ids, 5):
                with contextlib.suppress(svc.Refused):  # two analysts drew the same report
                    svc.claim(s, p, rid, minutes=600)
        p0 = Principal(sup.user_id, sup.username, "supervisor")
        for rid in rng.sample(ids, max(1, len(ids) // 100)):
            svc.set_priority(s, p0, rid, rng.choice((1, 2, 3)), "bench override", now=datetime.now(UTC)
                             - timedelta(seconds=1))
    return users[0]


FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("all open", {}),
    ("priority 1", {"priority": 1}),
    ("US, TX, unclaimed", {"country": "US", "state": "TX", "claim": "unclaimed"}),
    ("bank match, referral", {"bank_match": True, "disposition": "referral"}),
    ("mine", {"claim": "mine"}),
]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.001)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--pg-url", default="", help="an empty PostgreSQL database (default: SQLite)")
    ap.add_argument("--data-dir", default="")
    args = ap.parse_args()

    import click
    from fastapi.testclient import TestClient

    from people_helpers import sign_in
    from tipline.commands.simulate import simulate_year
    from tipline.config import Settings
    from tipline.console import service as svc
    from tipline.people.principal import Principal
    from tipline.runtime import Runtime
    from tipline.store.setup import do_init
    from tipline.web.app import create_app

    data = Path(args.data_dir or tempfile.mkdtemp(prefix="console-bench-")) / "data"
    settings = Settings.from_env(data, database_url=args.pg_url)
    do_init(settings)
    t0 = time.monotonic()
    click.echo = lambda *a, **k: None  # type: ignore[assignment]  # the simulator's progress lines
    simulate_year(settings, 2023, args.scale, via="direct", files_mode="hashes")
    load_s = time.monotonic() - t0
    rt = Runtime.open(settings)
    n = enrich_synthetically(rt)
    from sqlalchemy import select

    from tipline.store.tables import Report

    with rt.sessions() as s:
        ids = list(s.scalars(select(Report.id).where(Report.state == "finished")))
    user = people_work(rt, ids)
    me = Principal(user.user_id, user.username, "analyst")
    backend = rt.engine.dialect.name
    if backend == "postgresql":
        with rt.engine.connect() as c:
            from sqlalchemy import text

            c.execute(text("ANALYZE"))
            c.commit()
    results: dict[str, Any] = {"backend": backend, "scale": args.scale, "reports": n,
                               "load_seconds": round(load_s, 1), "runs": args.runs, "query": {}, "page": {}}
    from urllib.parse import urlencode

    with TestClient(create_app(runtime=rt)) as client:
        sign_in(client, user)
        for name, kw in FILTERS:
            f = svc.QueueFilter(**kw)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                with rt.sessions() as s:
                    page = svc.queue(s, me, f)
                times.append((time.perf_counter() - start) * 1000)
            results["query"][name] = {"p50_ms": round(statistics.median(times), 1),
                                      "p95_ms": round(pct(times, 0.95), 1), "total": page.total}
            q = {k: ("yes" if v is True else "no" if v is False else v) for k, v in kw.items()}
            path = "/console" + ("?" + urlencode(q) if q else "")
            ptimes = []
            for _ in range(args.runs):
                start = time.perf_counter()
                resp = client.get(path)
                ptimes.append((time.perf_counter() - start) * 1000)
                assert resp.status_code == 200, resp.text[:300]
            results["page"][name] = {"p50_ms": round(statistics.median(ptimes), 1),
                                     "p95_ms": round(pct(ptimes, 0.95), 1)}
            print(f"{backend} {n:,} reports  {name:24s} query p50 {results['query'][name]['p50_ms']:7.1f} ms "
                  f"p95 {results['query'][name]['p95_ms']:7.1f} ms | page p50 {results['page'][name]['p50_ms']:7.1f}"
                  f" ms p95 {results['page'][name]['p95_ms']:7.1f} ms  ({page.total:,} match)", flush=True)
    rt.close()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"console-queue-{backend}-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
