"""Throughput of the identifiers, links, bundles, location, jurisdiction and route stages.

Generates N finished reports on SQLite in a temporary data dir (accounts recurring across
reports, viral content, public IPs of several countries) and times each stage over all of
them, one transaction per report as the runner does.

    .venv/bin/python benchmarks/routing/bench_stages.py --reports 2000
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from datetime import UTC, datetime

from tipline.cli import do_init
from tipline.config import Settings
from tipline.model.report import Report as ReportModel
from tipline.pipeline.core import StageContext, get_stage, run_stage
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Blob, File, Report, Reporter

IPS = ["8.8.8.8", "128.32.0.1", "18.0.0.1", "130.149.7.201", "163.1.0.1", "1.1.1.1", "10.0.0.1", "100.64.2.2"]
NOW = datetime(2024, 3, 5, tzinfo=UTC)


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(tmp)
        do_init(settings)
        rt = Runtime.open(settings)
        ids = generate(rt, args.reports, args.seed)
        ctx = StageContext(rt)
        for name in ["identifiers", "links", "bundles", "location", "jurisdiction", "route"]:
            st = get_stage(name)
            t0 = time.perf_counter()
            for rid in ids:
                run_stage(ctx, st, rid)
            dt = time.perf_counter() - t0
            print(f"{name:<13} {len(ids) / dt:8.0f} reports/s  ({dt:.1f} s for {len(ids)})")
        rt.close()


if __name__ == "__main__":
    main()
