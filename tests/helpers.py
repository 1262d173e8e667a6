"""What tests share: sample documents, the two ways of making a report, fuzz strategies, a clock.

Tests import from here (and from ``browsers`` for the headless browser), never from one
another, so a test module can be moved, renamed or deleted on its own.

- ``store_report`` writes a report's rows directly, as intake would leave them (pipeline
  tests: many reports, exact times, no XML).
- ``submit_report`` opens, fills and finishes one through the intake service (the ISPWS path
  without HTTP), so it has passed the format reader.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import func, select

from tipline.cybertip.xml import parse_file_details, parse_report
from tipline.model.report import Report as ReportModel
from tipline.pipeline.core import StageContext, get_stage, run_stage
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.db import transaction
from tipline.store.tables import (
    Agency,
    Assessment,
    Blob,
    Document,
    File,
    Incident,
    IncidentReport,
    Jurisdiction,
    Location,
    Referral,
    Report,
    Reporter,
    ReportLink,
)
from tipline.store.tables import Report as ReportRow

INCIDENT = "Child Pornography (possession, manufacture, and distribution)"


def report_xml(
    incident_type: str = INCIDENT,
    when: str = "2026-10-01T12:00:00Z",
    extra_summary: str = "",
    decl: str = '<?xml version="1.0" encoding="UTF-8"?>',
    body: str = "",
) -> bytes:
    return f"""{decl}
<report xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xsi:noNamespaceSchemaLocation="https://report.cybertip.org/ispws/xsd">
  <incidentSummary>
    <incidentType>{incident_type}</incidentType>
    {extra_summary}
    <incidentDateTime>{when}</incidentDateTime>
  </incidentSummary>
  <internetDetails><webPageIncident><url>https://example.com/p/1</url></webPageIncident></internetDetails>
  <reporter>
    <reportingPerson><firstName>Rita</firstName><lastName>Reporter</lastName>
      <email>safety@example.com</email></reportingPerson>
  </reporter>
  {body}
</report>""".encode()


def file_details_xml(report_id: int, file_id: str, extra: str = "") -> bytes:
    return (
        f"<fileDetails><reportId>{report_id}</reportId><fileId>{file_id}</fileId>"
        f"<fileName>a.png</fileName>{extra}</fileDetails>"
    ).encode()


# --- reports stored directly (the pipeline tests) ------------------------------------------------

NOW = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


def report_doc(persons: list[dict[str, Any]] | None = None, *, batched: bool = False,
               when: str = "2024-03-05T10:00:00Z", **extra: Any) -> dict[str, Any]:
    """A minimal valid report tree with the given reported persons."""
    doc: dict[str, Any] = {
        "incidentSummary": {"incidentType": "Child Pornography (possession, manufacture, and distribution)",
                            "incidentDateTime": when},
        "reporter": {"reportingPerson": {"firstName": "Trust", "lastName": "Safety",
                                         "email": [{"value": "ts@platform.example"}]}},
        "personOrUserReported": persons or [],
        **extra,
    }
    if batched:
        doc["batchedReport"] = {"reason": "VIRAL_POTENTIAL_MEME"}
    return doc


def store_report(rt: Runtime, doc: dict[str, Any], *, reporter: str = "Acme Social",
                files: list[str] | None = None, file_details: list[dict[str, Any] | None] | None = None,
                state: str = "finished") -> int:
    """Store a report (and files with the given content keys) as rows, as intake would leave them.

    No intake, no XML: for the pipeline tests, which need many reports fast and exact times.
    """
    model = ReportModel.model_validate(doc)
    with transaction(rt.sessions) as s:
        rep = s.execute(select(Reporter).where(Reporter.name == reporter)).scalar_one_or_none()
        if rep is None:
            rep = Reporter(name=reporter, kind="esp", enabled=True, created_at=NOW)
            s.add(rep)
            s.flush()
        row = ReportRow(reporter_id=rep.id, source="api", state=state, opened_at=NOW, last_change_at=NOW,
                        finished_at=NOW if state == "finished" else None, incident_type=model.incident_type,
                        incident_at=model.incident_datetime, batched=model.batchedReport is not None,
                        document=model.model_dump(mode="json", exclude_defaults=True), normalisations=[])
        s.add(row)
        s.flush()
        for i, key in enumerate(files or [], start=1):
            sha = hashlib.sha256(key.encode()).hexdigest()
            if s.get(Blob, sha) is None:
                s.add(Blob(sha256=sha, size=1, stored_name=None, created_at=NOW))
                s.flush()
            det = (file_details or [None] * len(files or []))[i - 1]
            s.add(File(id=f"a{next(_seq):031x}", report_id=row.id, seq=i, size=1,
                       md5=hashlib.md5(key.encode()).hexdigest(), sha1=hashlib.sha1(key.encode()).hexdigest(),
                       sha256=sha, uploaded_at=NOW, details=det))
        return int(row.id)


def run(rt: Runtime, names: list[str], report_ids: list[int], ctx: StageContext | None = None) -> StageContext:
    """Run the named stages, in the order given, for each report."""
    ctx = ctx or StageContext(rt)
    for name in names:
        for rid in report_ids:
            run_stage(ctx, get_stage(name), rid)
    return ctx


def person(account: str | None = None, *, service: str | None = None, screen: str | None = None,
           email: str | None = None, ip: str | None = None, ip_at: str = "2024-03-05T09:00:00Z",
           proxy: bool | None = None, device: tuple[str, str] | None = None,
           estimate: dict[str, Any] | None = None, address: dict[str, Any] | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if account:
        p["espIdentifier"] = account
    if service:
        p["espService"] = service
    if screen:
        p["screenName"] = screen
    pp: dict[str, Any] = {}
    if email:
        pp["email"] = [{"value": email}]
    if address:
        pp["address"] = [address]
    if pp:
        p["personOrUserReportedPerson"] = pp
    if ip:
        ev: dict[str, Any] = {"ipAddress": ip, "eventName": "Login", "dateTime": ip_at}
        if proxy is not None:
            ev["possibleProxy"] = proxy
        p["ipCaptureEvent"] = [ev]
    if device:
        p["deviceId"] = [{"idType": device[0], "idValue": device[1]}]
    if estimate:
        p["estimatedLocation"] = estimate
    return p


# --- reports through the intake service --------------------------------------------------------

USER = """<personOrUserReported>
    <espIdentifier>u-{n}</espIdentifier><screenName>someone_{n}</screenName>
    <ipCaptureEvent><ipAddress>198.51.100.{n}</ipAddress><eventName>Login</eventName>
      <dateTime>2026-09-30T10:00:00Z</dateTime></ipCaptureEvent>
    {extra}
  </personOrUserReported>"""
VIEWED = "<fileViewedByEsp>true</fileViewedByEsp>"


def user(n: int = 7, extra: str = "") -> str:
    return USER.format(n=n, extra=extra)


def submit_report(rt: Runtime, *, incident_type: str = INCIDENT, summary: str = "", body: str = "",
                files: Sequence[str] = (), reporter: str = "Acme Social", seed: int = 0) -> int:
    """Open, fill and finish a report through the intake service; ``files`` are fileDetails extras.

    The ISPWS path without HTTP: the stored report has passed the format reader.
    """
    with rt.sessions() as s:
        rep_id = s.execute(select(Reporter.id).where(Reporter.name == reporter)).scalar_one()
    xml = report_xml(incident_type, extra_summary=summary, body=body)
    rid, _ = rt.intake.open_report(rep_id, parse_report(xml), source="ispws", body=xml, content_type="text/xml")
    for i, extra in enumerate(files):
        blob = rt.blobs.put(standin_image(1000 * seed + i + rid * 17))
        fid = rt.intake.attach_file(rep_id, rid, blob, file_name=f"f{i}.png", media_type="image/png")
        details = file_details_xml(rid, fid, extra)
        rt.intake.file_info(rep_id, parse_file_details(details), body=details, content_type="text/xml")
    rt.intake.finish(rep_id, rid)
    return rid


# --- fuzzing ------------------------------------------------------------------------------------

# Text as platforms send it: any script, plus the characters XML and headers choke on.
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
NASTY = st.sampled_from(["", "\x00", "\x07", "\ufffe", "]]>", "<", "&", "&amp;", "&#0;", "&#x1F;",
                         '"', "'", "\r\n", "写真", "صورة", "\u202e", "%E5%86%99", "\\", "../", ";", "*="])
FIELD = st.one_of(TEXT, NASTY, st.lists(NASTY, max_size=4).map("".join))


def counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.sessions() as s:
        return tuple(int(s.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[return-value]
                     for t in (Report, File, Document))


# --- time ---------------------------------------------------------------------------------------


class ManualClock:
    """A monotonic clock that moves only when told: inject it where code reads the time,
    instead of sleeping until real time has passed."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def enrichment_results(rt: Runtime) -> dict[str, Any]:
    """Every stored result of enrichment, without timestamps or surrogate ids."""
    with rt.sessions() as s:
        agency = dict(s.execute(select(Agency.id, Agency.code)).all())
        incident_key = dict(s.execute(select(Incident.id, Incident.key)).all())
        return {
            "assessment": {a.report_id: (a.quality, a.missing, a.disposition, a.disposition_reasons, a.priority,
                                         a.priority_reasons, a.escalate, a.rules_version)
                           for a in s.execute(select(Assessment)).scalars()},
            "jurisdiction": {j.report_id: (j.country, j.us_state, j.source, j.confidence, j.reason)
                             for j in s.execute(select(Jurisdiction)).scalars()},
            "referrals": sorted((r.report_id, agency[r.agency_id], r.rule, r.reason, r.escalated)
                                for r in s.execute(select(Referral)).scalars()),
            "links": sorted((lk.report_a, lk.report_b, lk.reason, lk.detail, lk.weight)
                            for lk in s.execute(select(ReportLink)).scalars()),
            "incidents": sorted((incident_key[m.incident_id], m.report_id, m.reason, m.rule, m.via_report_id,
                                 m.link_detail) for m in s.execute(select(IncidentReport)).scalars()),
            "incident_lowest": sorted(s.execute(select(Incident.key, Incident.lowest_report_id)).all()),
            "locations": sorted(((loc.report_id, loc.source, loc.detail, loc.country, loc.region, loc.city,
                                 loc.confidence, loc.location_class, loc.ip, loc.event, loc.event_at, loc.proxy,
                                 loc.verified) for loc in s.execute(select(Location)).scalars()), key=repr),
        }


def result_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed, readably (the first few differences of each kind)."""
    out: list[str] = []
    for kind in before:
        b, a = before[kind], after[kind]
        if b == a:
            continue
        if isinstance(b, dict):
            keys = sorted(set(b) | set(a))
            changed = [k for k in keys if b.get(k) != a.get(k)]
            out += [f"{kind} of report {k}: {b.get(k)!r} -> {a.get(k)!r}" for k in changed[:5]]
        else:
            out += [f"{kind} lost: {x!r}" for x in sorted(set(b) - set(a))[:5]]
            out += [f"{kind} gained: {x!r}" for x in sorted(set(a) - set(b))[:5]]
    return out
