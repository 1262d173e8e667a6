"""A small enriched store for the console tests, and the reference the queue is checked against.

Reports are stored as intake stores them (encrypted stand-in images in the blob store, the
platform's file details) and then run through every pipeline stage, so the console reads
what the pipeline really writes: assessments with reasons, incidents, matches, referrals.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from test_identifiers import person, report_doc
from tipline.console.service import QueueFilter
from tipline.model.report import Report as ReportModel
from tipline.pipeline.banks import import_bank
from tipline.pipeline.core import StageContext, run_report
from tipline.pipeline.stages.route import ensure_directory
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.db import transaction
from tipline.store.tables import (
    Assessment,
    Blob,
    File,
    FileMatch,
    IncidentReport,
    Jurisdiction,
    Report,
    Reporter,
)
from tipline.store.tables_people import AssessmentOverride, Claim

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def store_report(rt: Runtime, doc: dict[str, Any], files: list[tuple[bytes, bool | None]], *,
                 reporter: str = "Acme Social", at: datetime = NOW) -> int:
    """A finished report with real (encrypted) files: ``(bytes, viewed_by_esp)`` each."""
    model = ReportModel.model_validate(doc)
    with transaction(rt.sessions) as s:
        rep = s.execute(select(Reporter).where(Reporter.name == reporter)).scalar_one_or_none()
        if rep is None:
            rep = Reporter(name=reporter, kind="esp", enabled=True, created_at=at)
            s.add(rep)
            s.flush()
        row = Report(reporter_id=rep.id, source="api", state="finished", opened_at=at, last_change_at=at,
                     finished_at=at, incident_type=model.incident_type, escalation=model.escalation,
                     incident_at=model.incident_datetime,
                     batched=False, document=model.model_dump(mode="json", exclude_defaults=True),
                     normalisations=[], file_count=len(files))
        s.add(row)
        s.flush()
        for seq, (data, viewed) in enumerate(files, start=1):
            sha = hashlib.sha256(data).hexdigest()
            if s.get(Blob, sha) is None:
                held = rt.blobs.put(data)
                s.add(Blob(sha256=sha, size=len(data), stored_name=held.stored_name, data=held.inline,
                           md5=hashlib.md5(data).hexdigest(), sha1=hashlib.sha1(data).hexdigest(), created_at=at))
                s.flush()
            details: dict[str, Any] = {"reportId": row.id, "fileId": "x", "fileName": f"f{seq}.png"}
            if viewed is not None:
                details["fileViewedByEsp"] = viewed
            s.add(File(id=f"c{next(_ids):031x}", report_id=row.id, seq=seq, file_name=f"f{seq}.png",
                       media_type="image/png", size=len(data), md5=hashlib.md5(data).hexdigest(),
                       sha1=hashlib.sha1(data).hexdigest(), sha256=sha, uploaded_at=at, details=details,
                       viewed_by_esp=viewed))
        return int(row.id)


@dataclass
class Store:
    """What the tests need to know about the store they were given."""

    shared: int  # the report whose first file has exact copies in two more reports
    copies: list[int]  # those two reports (same account: one incident with ``shared``)
    gated: int  # a report with one viewed, one unviewed (false) and one unviewed (not given) file
    banked: int  # a report whose file is in a hash bank
    foreign: int  # another platform, outside the US
    all: list[int]


IMG = {n: standin_image(n, (160, 120)) for n in range(1, 9)}


def build(rt: Runtime) -> Store:
    with transaction(rt.sessions) as s:
        ensure_directory(s)
        import_bank(s, "test-bank", "hash_type,value,label\nsha256," + hashlib.sha256(IMG[5]).hexdigest()
                    + ",series S-1\n")
    tx = {"countryCode": "US", "region": "TX", "verified": True}
    shared = store_report(rt, report_doc([person("acct-shared", estimate=tx)]), [(IMG[1], True), (IMG[2], True)],
                          at=NOW - timedelta(hours=5))
    copies = [store_report(rt, report_doc([person("acct-shared", estimate=tx)]), [(IMG[1], True)],
                           at=NOW - timedelta(hours=4 - i)) for i in range(2)]
    gated = store_report(rt, report_doc([person("acct-gated", estimate={"countryCode": "US", "region": "OH",
                                                                        "verified": True})]),
                         [(IMG[3], True), (IMG[4], False), (IMG[6], None)], at=NOW - timedelta(hours=2))
    banked = store_report(rt, report_doc([person("acct-bank", estimate=tx)]), [(IMG[5], True)],
                          at=NOW - timedelta(hours=1))
    doc = report_doc([person("acct-de", ip="130.149.7.201")])
    doc["incidentSummary"]["escalateToHighPriority"] = "child in danger (synthetic)"
    foreign = store_report(rt, doc, [(IMG[7], True)], reporter="Globex Chat", at=NOW)
    ids = [shared, *copies, gated, banked, foreign]
    ctx = StageContext(rt)
    for rid in ids:
        run_report(ctx, rid)
    return Store(shared, copies, gated, banked, foreign, ids)


# --- the plain reference for the queue --------------------------------------------------


def reference_rows(rt: Runtime, user_id: int, now: datetime) -> list[dict[str, Any]]:
    """Every queue row computed the plain way: read every table, decide in Python."""
    with rt.sessions() as s:
        reports = {r.id: r for r in s.scalars(select(Report).where(Report.state == "finished"))}
        overrides = sorted(s.scalars(select(AssessmentOverride)), key=lambda o: o.id)
        juris = {j.report_id: j for j in s.scalars(select(Jurisdiction))}
        claims = {c.report_id: c for c in s.scalars(select(Claim)) if c.expires_at > now}
        bank_files = {m.file_id for m in s.scalars(select(FileMatch).where(FileMatch.kind == "bank"))}
        banked = {f.report_id for f in s.scalars(select(File)) if f.id in bank_files}
        rows = []
        for a in s.scalars(select(Assessment)):
            if a.report_id not in reports:
                continue
            mine = [o for o in overrides if o.report_id == a.report_id]

            def last(attr: str, default: Any, mine: list[AssessmentOverride] = mine) -> Any:
                vals = [getattr(o, attr) for o in mine if getattr(o, attr) is not None]
                return vals[-1] if vals else default

            r = reports[a.report_id]
            j = juris.get(a.report_id)
            c = claims.get(a.report_id)
            rows.append({"report_id": r.id, "priority": last("priority", a.priority),
                         "disposition": last("disposition", a.disposition),
                         "escalated": bool(last("escalate", a.escalate)), "closed": bool(last("closed", False)),
                         "incident_type": r.incident_type, "platform": r.reporter_id,
                         "country": j.country if j and j.country else "", "state": j.us_state if j else None,
                         "bank_match": r.id in banked,
                         "claim": None if c is None else "mine" if c.user_id == user_id else "other"})
        return rows


def reference_filter(rows: list[dict[str, Any]], f: QueueFilter) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if f.status == "open" and r["closed"] or f.status == "closed" and not r["closed"]:
            continue
        if f.claim == "unclaimed" and r["claim"] is not None or f.claim == "mine" and r["claim"] != "mine":
            continue
        if any(getattr(f, k) is not None and r[k] != getattr(f, k) for k in
               ("priority", "disposition", "incident_type", "platform", "country", "state", "escalated",
                "bank_match")):
            continue
        out.append(r)
    return sorted(out, key=lambda r: (r["priority"], r["report_id"]))


def test_the_store_has_what_the_console_tests_read(runtime: Runtime) -> None:
    st = build(runtime)
    with runtime.sessions() as s:
        assert len(list(s.scalars(select(Assessment)))) == len(st.all)
        members = {m.report_id for m in s.scalars(select(IncidentReport))}
        assert {st.shared, *st.copies} <= members
        assert s.scalars(select(FileMatch).where(FileMatch.kind == "bank")).first() is not None
        j = s.get(Jurisdiction, st.foreign)
        assert j is not None and j.country == "DE"
