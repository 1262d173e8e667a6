"""A referral as a document an officer files: JSON (versioned schema ``tipline.referral/1``),
CSV and a printable PDF, and the inbox as a CSV table.

All three carry the same content: the referral and its deadline, every field of the report
as the platform sent it, identifiers, locations, jurisdiction, the assessment, each file's
hashes and matches (never the file's bytes), the incident's other reports made available
to the same agency, legal process, and the chain of events. The JSON schema is described in
docs/law-enforcement.md; a change that removes or renames a key is a new version.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from tipline import __version__
from tipline.referrals.service import Inbox, ReferralDetail, iso

SCHEMA = "tipline.referral/1"
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


def as_json(d: ReferralDetail, now: datetime, outcomes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    s = d.summary
    return {
        "schema": SCHEMA,
        "exportedAt": iso(now),
        "software": f"tipline {__version__}",
        "referral": {**s.as_json(now), "agencyName": d.agency_name},
        "report": {
            "reportId": s.report_id, "state": d.report_state, "receivedAt": iso(d.received_at),
            "incidentAt": iso(d.incident_at), "incidentType": s.incident_type, "platform": s.platform,
            "fields": [{"path": p, "value": v} for p, v in d.fields],
        },
        "identifiers": d.identifiers,
        "locations": d.locations,
        "jurisdiction": d.jurisdiction,
        "assessment": d.assessment,
        "files": [f.as_json() for f in d.files],
        "relatedReports": [r.as_json() for r in d.related],
        "legalProcess": [p.as_json() for p in d.legal_process],
        "events": [e.as_json() for e in d.events],
        "outcomes": outcomes or [],
    }


def _rows(d: ReferralDetail, now: datetime) -> list[tuple[str, str, str]]:
    """(section, field, value) rows: the CSV form and the PDF's tables."""
    out: list[tuple[str, str, str]] = []
    for k, v in {**d.summary.as_json(now), "agencyName": d.agency_name}.items():
        out.append(("referral", k, "" if v is None else str(v)))
    out += [("report", "state", d.report_state), ("report", "receivedAt", iso(d.received_at) or ""),
            ("report", "incidentAt", iso(d.incident_at) or "")]
    out += [("report field", p, v) for p, v in d.fields]
    for i in d.identifiers:
        out.append(("identifier", f"{i['role']} {i['kind']}" + (f" ({i['scope']})" if i["scope"] else ""),
                    str(i["value"]) + (" [shared]" if i["shared"] else "")))
    for loc in d.locations:
        place = ", ".join(str(x) for x in (loc["city"], loc["region"], loc["country"]) if x)
        out.append(("location", loc["source"], f"{place or 'unknown'}; {loc['detail'] or ''}; "
                                               f"confidence {loc['confidence']:.2f}"))
    if d.jurisdiction:
        j = d.jurisdiction
        out.append(("jurisdiction", "place", " ".join(x for x in (j["country"], j["usState"]) if x) or "unknown"))
        out.append(("jurisdiction", "reason", j["reason"] or ""))
    if d.assessment:
        a = d.assessment
        out.append(("assessment", "priority", str(a["priority"])))
        out.append(("assessment", "priorityReasons", "; ".join(map(str, a["priorityReasons"] or []))))
        out.append(("assessment", "disposition", str(a["disposition"])))
        out.append(("assessment", "quality", f"{a['quality']:.2f}"))
        out.append(("assessment", "missing", "; ".join(map(str, a["missing"] or []))))
    for f in d.files:
        key = f"file {f.seq} ({f.id})"
        out += [(key, "fileName", f.file_name or ""), (key, "mediaType", f.media_type or ""),
                (key, "size", str(f.size)), (key, "md5", f.md5), (key, "sha1", f.sha1), (key, "sha256", f.sha256),
                (key, "viewedByEsp", {True: "yes", False: "no", None: "not stated"}[f.viewed_by_esp]),
                (key, "gated", "yes" if f.gated else "no")]
        for m in f.matches:
            what = f"bank {m.bank}" + (f" ({m.label})" if m.label else "") if m.kind == "bank" \
                else f"duplicate of file {m.other_file_id}"
            out.append((key, f"match {m.hash_type}", f"{what}, distance {m.distance}"))
    for r in d.related:
        out.append(("related report", str(r.report_id), f"referral {r.referral_id}, incident {r.incident_id}, "
                                                         f"made available {iso(r.made_available_at)}"
                                                         + (", escalated" if r.escalated else "")))
    for p in d.legal_process:
        out.append(("legal process", p.label, f"{p.reference}, issued {p.issued_on.isoformat()}, "
                                              f"recorded {iso(p.recorded_at)} by {p.by or '?'}"))
    for e in d.events:
        out.append(("event", iso(e.at) or "", e.what + (f" by {e.who}" if e.who else "")
                    + (f": {e.detail}" if e.detail else "")))
    return out


def as_csv(d: ReferralDetail, now: datetime) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["section", "field", "value"])
    w.writerow(["export", "schema", SCHEMA])
    w.writerow(["export", "exportedAt", iso(now)])
    w.writerows(_rows(d, now))
    return buf.getvalue()


INBOX_COLUMNS = ["referralId", "reportId", "agency", "escalated", "priority", "madeAvailableAt", "deadline",
                 "overdue", "acknowledgedAt", "assignedTo", "transferredTo", "transferredFrom", "incidentType",
                 "platform", "rule", "reason"]


def inbox_csv(inbox: Inbox, now: datetime) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INBOX_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for r in inbox.referrals:
        row = r.as_json(now)
        w.writerow({k: ("" if row[k] is None else row[k]) for k in INBOX_COLUMNS})
    return buf.getvalue()


def _latin(text: str) -> str:
    # The PDF's core fonts cover Latin-1 only; anything else is shown as "?" rather than
    # failing the export (the JSON and CSV forms carry the exact text).
    return text.encode("latin-1", "replace").decode("latin-1")


def as_pdf(d: ReferralDetail, now: datetime) -> bytes:
    """A printable A4 document with every row of the CSV form, grouped by section."""
    from fpdf import FPDF
    from fpdf.enums import WrapMode, XPos, YPos

    s = d.summary
    pdf = FPDF(format="A4")
    pdf.set_title(f"Referral {s.id}")
    pdf.set_creator(f"tipline {__version__}")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 9, _latin(f"Referral {s.id} - report {s.report_id} - {s.agency_code}"),
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(0, 5, _latin(f"{d.agency_name}. Exported {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
                                f"by tipline {__version__} (schema {SCHEMA}). Law-enforcement sensitive."),
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    # One table per section: fpdf2's tables wrap long values and break across pages.
    sections: dict[str, list[tuple[str, str]]] = {}
    for sec, key, value in _rows(d, now):
        sections.setdefault(sec, []).append((key, value))
    for sec, rows in sections.items():
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 7, _latin(sec.capitalize()), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Helvetica", "", 8)
        with pdf.table(col_widths=(35, 65), first_row_as_headings=False, line_height=4.5,
                       wrapmode=WrapMode.CHAR) as table:
            for key, value in rows:
                row = table.row()
                row.cell(_latin(key) or "-")
                row.cell(_latin(value) or "-")
    return bytes(pdf.output())


def export_referral(session: Any, settings: Any, principal: Any, referral_id: int, fmt: str, *,
                    where: Any = None, action: str | None = None) -> bytes:
    """One referral exported as ``fmt`` (json | csv | pdf), read and audited as ``action``
    (default ``referral.export_<fmt>``) in ``session``'s transaction: an export that fails
    leaves no audit row behind."""
    import json

    from tipline.referrals import service as svc

    now = datetime.now(UTC)
    d = svc.get_referral(session, settings, principal, referral_id, where=where,
                         audit_action=action or f"referral.export_{fmt}")
    outcomes = svc.outcomes_service()
    timeline = [o.as_json() for o in outcomes.list_outcomes(session, principal, referral_id)] if outcomes else []
    if fmt == "json":
        return json.dumps(as_json(d, now, timeline), indent=2, ensure_ascii=False).encode()
    if fmt == "csv":
        return as_csv(d, now).encode("utf-8")
    if fmt == "pdf":
        return as_pdf(d, now)
    raise ValueError(f"unknown export format {fmt!r}")
