"""Read models of the enrichment: one report's view for operators, and pipeline statistics.

Shapes are stable JSON (camelCase keys, like the intake's ``ReportView.as_json``). Whatever
an upstream stage has not produced yet is shown as such — ``null`` / "not yet assessed" /
"unknown" — never as a zero or a default country.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select

from tipline.pipeline.core import stages
from tipline.runtime import Runtime
from tipline.store.tables import (
    Agency,
    Assessment,
    BankEntry,
    File,
    FileMatch,
    HashBank,
    Incident,
    IncidentReport,
    Jurisdiction,
    Location,
    PipelineRun,
    Referral,
    Report,
    Reporter,
    ReportLink,
)

DBIP_CREDIT = "IP geolocation: DB-IP City Lite (https://db-ip.com), CC BY 4.0"


def _ts(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def enrichment_view(rt: Runtime, report_id: int) -> dict[str, Any]:
    """Everything the pipeline knows about one report, as a JSON-ready dict.

    Keys: reportId, stages, matches, links, incidents, locations, jurisdiction, agencies,
    assessed, quality, missing, disposition, dispositionReasons, priority, priorityReasons,
    escalate, rulesVersion, assessedAt, attribution.
    """
    with rt.sessions() as s:
        ledger = {r.stage: r for r in s.execute(select(PipelineRun).where(PipelineRun.report_id == report_id))
                  .scalars()}
        stage_rows = []
        for st in stages():
            r = ledger.get(st.name)
            status = ("pending" if r is None else "failed" if r.error else
                      "stale" if r.version != st.version else "done")
            stage_rows.append({"name": st.name, "status": status, "version": r.version if r else None,
                               "currentVersion": st.version, "doneAt": _ts(r.done_at) if r else None,
                               "error": r.error if r else None})

        file_ids = list(s.execute(select(File.id).where(File.report_id == report_id).order_by(File.seq)).scalars())
        matches: list[dict[str, Any]] = []
        if file_ids:
            # A duplicate pair is stored once, under either file: read both directions.
            q = (select(FileMatch, BankEntry.label, HashBank.name)
                 .outerjoin(BankEntry, BankEntry.id == FileMatch.bank_entry_id)
                 .outerjoin(HashBank, HashBank.id == BankEntry.bank_id)
                 .where(or_(FileMatch.file_id.in_(file_ids), FileMatch.other_file_id.in_(file_ids)))
                 .order_by(FileMatch.id))
            rows = s.execute(q).all()
            other_ids = {m.other_file_id if m.file_id in file_ids else m.file_id for m, _, _ in rows}
            other_report = dict(s.execute(select(File.id, File.report_id).where(File.id.in_(other_ids))).all()
                                ) if other_ids else {}
            for m, label, bank in rows:
                mine, other = (m.file_id, m.other_file_id) if m.file_id in file_ids else (m.other_file_id, m.file_id)
                matches.append({
                    "fileId": mine, "kind": m.kind, "hashType": m.hash_type, "distance": m.distance,
                    "bank": bank, "label": label, "otherFileId": other if m.kind != "bank" else None,
                    "otherReportId": other_report.get(other) if (other and m.kind != "bank") else None,
                })

        links: list[dict[str, Any]] = []
        for ln in s.execute(select(ReportLink).where(
                or_(ReportLink.report_a == report_id, ReportLink.report_b == report_id))
                .order_by(ReportLink.report_a, ReportLink.report_b, ReportLink.reason)).scalars():
            other_report_id = ln.report_b if ln.report_a == report_id else ln.report_a
            links.append({"reportId": other_report_id, "reason": ln.reason, "detail": ln.detail, "weight": ln.weight})

        incidents = []
        for inc, reason in s.execute(select(Incident, IncidentReport.reason).join(IncidentReport)
                                     .where(IncidentReport.report_id == report_id).order_by(Incident.id)).all():
            n = s.execute(select(func.count()).where(IncidentReport.incident_id == inc.id)).scalar_one()
            incidents.append({"incidentId": inc.id, "rule": inc.rule, "key": inc.key, "reason": reason,
                              "reports": int(n)})

        locations = [
            {"source": loc.source, "detail": loc.detail, "country": loc.country, "region": loc.region,
             "city": loc.city, "latitude": loc.latitude, "longitude": loc.longitude, "confidence": loc.confidence}
            for loc in s.execute(select(Location).where(Location.report_id == report_id)
                                 .order_by(Location.confidence.desc(), Location.id)).scalars()
        ]
        j = s.get(Jurisdiction, report_id)
        jurisdiction = None if j is None else {
            "country": j.country, "usState": j.us_state, "source": j.source, "confidence": j.confidence,
            "reason": j.reason, "resolvedAt": _ts(j.resolved_at)}

        agencies = [
            {"code": ag.code, "name": ag.name, "kind": ag.kind, "rule": ref.rule, "reason": ref.reason,
             "madeAvailableAt": _ts(ref.made_available_at), "escalated": ref.escalated,
             "escalatedAt": _ts(ref.escalated_at), "acknowledgedAt": _ts(ref.acknowledged_at)}
            for ref, ag in s.execute(select(Referral, Agency).join(Agency).where(Referral.report_id == report_id)
                                     .order_by(Referral.id)).all()
        ]
        a = s.get(Assessment, report_id)

    view: dict[str, Any] = {
        "reportId": report_id, "stages": stage_rows, "matches": matches, "links": links, "incidents": incidents,
        "locations": locations, "jurisdiction": jurisdiction, "agencies": agencies, "assessed": a is not None,
        "quality": a.quality if a else None, "missing": list(a.missing) if a else None,
        "disposition": a.disposition if a else None,
        "dispositionReasons": list(a.disposition_reasons) if a else None,
        "priority": a.priority if a else None, "priorityReasons": list(a.priority_reasons) if a else None,
        "escalate": a.escalate if a else None, "rulesVersion": a.rules_version if a else None,
        "assessedAt": _ts(a.assessed_at) if a else None,
        "attribution": None,
    }
    if any(loc["source"] == "ip" for loc in locations) and not rt.settings.geoip_db:
        view["attribution"] = DBIP_CREDIT
    return view


def _reason_text(r: Any) -> str:
    return str(r.get("text", r)) if isinstance(r, dict) else str(r)


def render_enrichment(view: dict[str, Any]) -> list[str]:
    """Text lines for ``tipline report show`` (the JSON view rendered for a terminal)."""
    out: list[str] = ["", "Enrichment:"]
    st = view["stages"]
    if st:
        out.append("  stages     " + ", ".join(f"{x['name']} {x['status']}" for x in st))
        for x in st:
            if x["error"]:
                out.append(f"    {x['name']} failed: {x['error']}")
    if view["assessed"]:
        out.append(f"  priority   {view['priority']}" + ("  ESCALATE" if view["escalate"] else ""))
        for r in view["priorityReasons"] or []:
            out.append(f"             - {_reason_text(r)}")
        out.append(f"  disposition {view['disposition']}")
        for r in view["dispositionReasons"] or []:
            out.append(f"             - {_reason_text(r)}")
        out.append(f"  quality    {view['quality']:.2f}")
        for m in view["missing"] or []:
            out.append(f"             missing: {_reason_text(m)}")
        out.append(f"  rules      {view['rulesVersion']} (assessed {view['assessedAt']})")
    else:
        out.append("  assessment not yet assessed")
    j = view["jurisdiction"]
    if j is None:
        out.append("  jurisdiction not yet resolved")
    else:
        place = j["country"] or "unknown"
        if j["usState"]:
            place += f"-{j['usState']}"
        out.append(f"  jurisdiction {place} (source {j['source'] or '-'}, confidence {j['confidence']:.2f})"
                   + (f": {j['reason']}" if j["reason"] else ""))
    for loc in view["locations"]:
        where = ", ".join(x for x in (loc["city"], loc["region"], loc["country"]) if x) or "unknown"
        out.append(f"  location   {loc['source']}: {where} (confidence {loc['confidence']:.2f})"
                   + (f" [{loc['detail']}]" if loc["detail"] else ""))
    for ag in view["agencies"]:
        out.append(f"  agency     {ag['name']} ({ag['kind']})" + ("  ESCALATED" if ag["escalated"] else "")
                   + f": {ag['reason']}")
    for inc in view["incidents"]:
        out.append(f"  incident   #{inc['incidentId']} {inc['rule']} ({inc['reports']} reports)"
                   + (f": {inc['reason']}" if inc["reason"] else ""))
    for m in view["matches"]:
        if m["kind"] == "bank":
            out.append(f"  match      file {m['fileId']} in bank {m['bank']} ({m['hashType']}, distance "
                       f"{m['distance']})" + (f" label {m['label']}" if m["label"] else ""))
        else:
            out.append(f"  match      file {m['fileId']} ~ file {m['otherFileId']} of report {m['otherReportId']} "
                       f"({m['hashType']}, distance {m['distance']})")
    for ln in view["links"]:
        out.append(f"  link       report {ln['reportId']} by {ln['reason']}" + (f" ({ln['detail']})" if ln["detail"]
                                                                                 else ""))
    if view["attribution"]:
        out.append(f"  ({view['attribution']})")
    return out


def render_addenda(addenda: list[dict[str, Any]]) -> list[str]:
    """Text lines for ``tipline report show``: what the public added with a receipt code."""
    if not addenda:
        return []
    out = ["", f"Added by the reporter ({len(addenda)}):"]
    for a in addenda:
        out.append(f"  {a['receivedAt']}")
        for line in (a.get("information") or "").splitlines():
            out.append(f"      {line}")
        for name, value in sorted((a.get("added") or {}).items()):
            shown = " | ".join(v.strip() for v in str(value).splitlines() if v.strip())
            out.append(f"      {name}: {shown}")
    return out


# --- statistics -------------------------------------------------------------------------------


def pipeline_stats(rt: Runtime) -> dict[str, Any]:
    """Counts per stage (done / failed / pending), per disposition and priority, escalations.

    Only finished reports count. "Not yet assessed" is a category of its own, never folded
    into a disposition or a priority.
    """
    with rt.sessions() as s:
        finished = int(s.execute(select(func.count()).where(Report.state == "finished")).scalar_one())
        per_stage: list[dict[str, Any]] = []
        for st in stages():
            ok_current = (PipelineRun.error.is_(None)) & (PipelineRun.version == st.version)
            row = s.execute(
                select(func.sum(case((ok_current, 1), else_=0)),
                       func.sum(case((PipelineRun.error.is_not(None), 1), else_=0)))
                .join(Report, Report.id == PipelineRun.report_id)
                .where(PipelineRun.stage == st.name, Report.state == "finished")
            ).one()
            done, failed = int(row[0] or 0), int(row[1] or 0)
            per_stage.append({"stage": st.name, "version": st.version, "done": done, "failed": failed,
                              "pending": finished - done - failed})
        disp = dict(s.execute(
            select(Assessment.disposition, func.count()).join(Report, Report.id == Assessment.report_id)
            .where(Report.state == "finished").group_by(Assessment.disposition)).all())
        prio = dict(s.execute(
            select(Assessment.priority, func.count()).join(Report, Report.id == Assessment.report_id)
            .where(Report.state == "finished").group_by(Assessment.priority)).all())
        escalated = int(s.execute(
            select(func.count()).select_from(Assessment).join(Report, Report.id == Assessment.report_id)
            .where(Report.state == "finished", Assessment.escalate.is_(True))).scalar_one())
    assessed = sum(int(v) for v in disp.values())
    return {
        "finishedReports": finished,
        "stages": per_stage,
        "assessed": assessed,
        "notYetAssessed": finished - assessed,
        "disposition": {"referral": int(disp.get("referral", 0)), "informational": int(disp.get("informational", 0)),
                        **{str(k): int(v) for k, v in disp.items() if k not in ("referral", "informational")}},
        "priority": {str(p): int(prio.get(p, 0)) for p in (1, 2, 3)},
        "escalated": escalated,
    }


def _period(dt: datetime, by: str) -> str:
    if by == "year":
        return f"{dt.year:04d}"
    if by == "quarter":
        return f"{dt.year:04d}-Q{(dt.month - 1) // 3 + 1}"
    if by == "month":
        return f"{dt.year:04d}-{dt.month:02d}"
    if by == "day":
        return dt.date().isoformat()
    raise ValueError(f"by must be day, month, quarter or year, not {by!r}")


def platform_quality(rt: Runtime, by: str = "month") -> list[dict[str, Any]]:
    """Report quality per platform and period (by the report's finish time).

    One row per (platform, period): reports, assessed, notYetAssessed, meanQuality (None when
    nothing is assessed yet — never 0), referral share among the assessed, and how often each
    item was missing. Ordered by platform, then period.
    """
    _period(datetime(2000, 1, 1), by)  # validate early
    acc: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"reports": 0, "assessed": 0, "qsum": 0.0, "referral": 0, "missing": defaultdict(int)})
    q = (select(Reporter.name, Report.finished_at, Assessment.quality, Assessment.disposition, Assessment.missing)
         .join(Reporter, Reporter.id == Report.reporter_id)
         .outerjoin(Assessment, Assessment.report_id == Report.id)
         .where(Report.state == "finished", Report.finished_at.is_not(None)))
    with rt.sessions() as s:
        for name, fin, quality, disposition, missing in s.execute(q.execution_options(yield_per=5000)):
            a = acc[(name, _period(fin, by))]
            a["reports"] += 1
            if quality is not None:
                a["assessed"] += 1
                a["qsum"] += quality
                a["referral"] += disposition == "referral"
                for m in missing or []:
                    a["missing"][m.get("item", str(m)) if isinstance(m, dict) else str(m)] += 1
    out = []
    for (name, period), a in sorted(acc.items()):
        n = a["assessed"]
        out.append({
            "platform": name, "period": period, "reports": a["reports"], "assessed": n,
            "notYetAssessed": a["reports"] - n,
            "meanQuality": round(a["qsum"] / n, 4) if n else None,
            "referralShare": round(a["referral"] / n, 4) if n else None,
            "missing": dict(sorted(a["missing"].items())),
        })
    return out
