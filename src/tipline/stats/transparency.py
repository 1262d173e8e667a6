"""A year's transparency report from the records: NCMEC-style tables and the outcome tables.

Tables: reports (total, by platform, country, US state, incident type), referrals by
recipient kind and by escalation, and outcome statistics (by priority, by month, by recipient
kind) with coverage, bounds and the estimate, and the times to feedback and to arrest. Every
table names its data snapshot (a content hash of the rows it read), the query it ran, the
outcome code list version and the software version. Written as JSON, as RFC 4180 UTF-8 CSV
files with a Frictionless ``datapackage.json`` (declaring the empty string as the missing
value, with a SHA-256 per file), or as an HTML page with Altair charts rendered by vl-convert
(SVG inline, PNG beside it). An unknown is an empty cell or null — never 0.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tipline.stats.outcomes import Scope, outcome_stats

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


@dataclass(slots=True)
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    snapshot: str
    query: str
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "columns": self.columns,
                "rows": [dict(zip(self.columns, r, strict=True)) for r in self.rows],
                "snapshot": self.snapshot, "query": self.query, "queryHash": _hash(self.query)[:16],
                "note": self.note}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _count_table(name: str, title: str, label: str, values: list[tuple[int, str | None]], query: str) -> Table:
    counts = Counter(v for _, v in values)
    rows = [[k if k is not None else "unknown", n] for k, n in sorted(
        counts.items(), key=lambda kv: (kv[0] is None, -kv[1], kv[0] or ""))]
    snap = "s" + _hash("\n".join(f"{i}\t{v}" for i, v in sorted(values, key=lambda x: x[0])))[:32]
    return Table(name, title, [label, "reports"], rows, snap, query)


def _report_tables(sessions: sessionmaker[Session], year: int) -> list[Table]:
    from sqlalchemy import select

    from tipline.store.tables import Jurisdiction, Report, Reporter

    lo = datetime.combine(date(year, 1, 1), time(), UTC)
    hi = datetime.combine(date(year, 12, 31), time.max, UTC)
    stmt = (select(Report.id, Reporter.name, Report.incident_type, Jurisdiction.country, Jurisdiction.us_state)
            .join(Reporter, Reporter.id == Report.reporter_id)
            .outerjoin(Jurisdiction, Jurisdiction.report_id == Report.id)
            .where(Report.state == "finished", Report.opened_at >= lo, Report.opened_at <= hi))
    query = f"finished reports opened in {year} (UTC)"
    with sessions() as s:
        rows = list(s.execute(stmt))
    total = _count_table("reports", f"Reports received in {year}", "year", [(r[0], str(year)) for r in rows], query)
    return [
        total,
        _count_table("reports_by_platform", "Reports by platform", "platform", [(r[0], r[1]) for r in rows], query),
        _count_table("reports_by_country", "Reports by country (resolved jurisdiction)", "country",
                     [(r[0], r[3]) for r in rows], query),
        _count_table("reports_by_state", "Reports by US state (resolved jurisdiction)", "state",
                     [(r[0], r[4]) for r in rows if r[3] == "US"], query),
        _count_table("reports_by_incident_type", "Reports by incident type", "incident type",
                     [(r[0], r[2]) for r in rows], query),
    ]


_OUTCOME_COLUMNS = ["group", "referrals", "with feedback", "coverage", "coverage low", "coverage high",
                    "no feedback", "with arrest (confirmed)", "persons arrested", "bounds low", "bounds high",
                    "estimate", "estimate low", "estimate high", "median days to feedback", "median days to arrest",
                    "flag"]


def _outcome_table(sessions: sessionmaker[Session], year: int, by: str | None, escalated: bool,
                   threshold: float | None) -> tuple[Table, dict[str, Any]]:
    scope = Scope(date(year, 1, 1), date(year, 12, 31), escalated_only=escalated, by=by, unit="report")
    data = outcome_stats(sessions, scope, coverage_threshold=threshold)
    rows = []
    for key, r in [("total", data["total"])] + [(x["key"] if x["key"] is not None else "unknown", x)
                                                for x in (data["rows"] or [])]:
        est = r["estimate"]
        # Eurostat-style flags in their own column: u = low reliability (estimate withheld).
        flag = "u" if est["withheld"] else ("e" if est["value"] is not None else "")
        rows.append([key, r["referrals"], r["withFeedback"], r["coverage"]["value"], r["coverage"]["low"],
                     r["coverage"]["high"], r["referrals"] - r["withFeedback"], r["withArrest"], r["personsArrested"],
                     r["bounds"]["low"], r["bounds"]["high"], est["value"], est["low"], est["high"],
                     r["delay"]["toFirstFeedback"]["median"], r["delay"]["toArrest"]["median"], flag])
    what = "escalated reports" if escalated else "referred reports"
    title = f"Outcomes of {what}" + (f" by {by}" if by else "")
    name = "outcomes" + ("_escalated" if escalated else "") + (f"_by_{by.replace('-', '_')}" if by else "")
    return Table(name, title, _OUTCOME_COLUMNS, rows, data["snapshot"], data["citation"],
                 "flag: e = estimated under missing at random within strata; u = estimate withheld (low coverage "
                 "or fewer than 30 with feedback): the bounds are the answer. Empty = unknown, never 0."), data


def build(sessions: sessionmaker[Session], year: int, *, coverage_threshold: float | None = None) -> dict[str, Any]:
    """The report as data: its tables and the versions they were computed with."""
    import tipline
    from tipline.kinds.outcomes import registry

    tables = _report_tables(sessions, year)
    outcome_data: dict[str, Any] = {}
    for by, escalated in ((None, False), (None, True), ("priority", False), ("month", False), ("agency", False)):
        t, data = _outcome_table(sessions, year, by, escalated, coverage_threshold)
        tables.append(t)
        outcome_data[t.name] = data
    return {"year": year, "codeListVersion": registry().version, "softwareVersion": tipline.__version__,
            "released": date.today().isoformat(), "tables": tables, "outcomes": outcome_data}


# --- writing ----------------------------------------------------------------------------------

def _cell(v: Any) -> str:
    if v is None:
        return ""  # missing: declared in datapackage.json, never written as 0
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def table_csv(t: Table) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180
    w.writerow(t.columns)
    for r in t.rows:
        w.writerow([_cell(v) for v in r])
    return buf.getvalue().encode("utf-8")


def write_csv(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    resources, written = [], []
    for t in report["tables"]:
        data = table_csv(t)
        path = out / f"{t.name}.csv"
        path.write_bytes(data)
        written.append(path)
        fields = [{"name": c, "type": "string" if i == 0 or c == "flag" else
                   ("integer" if c in ("referrals", "with feedback", "no feedback", "with arrest (confirmed)",
                                       "persons arrested", "bounds low", "bounds high", "reports") else "number")}
                  for i, c in enumerate(t.columns)]
        resources.append({
            "name": t.name, "path": path.name, "title": t.title, "format": "csv", "mediatype": "text/csv",
            "encoding": "utf-8", "hash": "sha256:" + hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "schema": {"fields": fields, "missingValues": [""]},
            "tipline": {"snapshot": t.snapshot, "query": t.query, "queryHash": _hash(t.query)[:16], "note": t.note},
        })
    package = {
        "name": f"tipline-transparency-{report['year']}", "title": f"tipline transparency report {report['year']}",
        "version": report["softwareVersion"], "created": report["released"],
        "tipline": {"codeListVersion": report["codeListVersion"], "softwareVersion": report["softwareVersion"]},
        "resources": resources,
    }
    dp = out / "datapackage.json"
    dp.write_text(json.dumps(package, indent=2, ensure_ascii=False), encoding="utf-8")
    return [*written, dp]


def to_json(report: dict[str, Any]) -> str:
    body = {k: v for k, v in report.items() if k not in ("tables", "outcomes")}
    body["tables"] = [t.as_json() for t in report["tables"]]
    return json.dumps(body, indent=2, ensure_ascii=False)


def charts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Vega-Lite specifications (Altair) of the outcome charts."""
    import altair as alt

    specs: dict[str, dict[str, Any]] = {}
    by_month = next(t for t in report["tables"] if t.name == "outcomes_by_month")
    months = [dict(zip(by_month.columns, r, strict=True)) for r in by_month.rows[1:]]
    if months:
        rows = []
        for m in months:
            rows.append({"month": m["group"], "kind": "arrest (confirmed)", "reports": m["with arrest (confirmed)"]})
            rows.append({"month": m["group"], "kind": "feedback, no arrest",
                         "reports": m["with feedback"] - m["with arrest (confirmed)"]})
            rows.append({"month": m["group"], "kind": "no feedback (unknown)", "reports": m["no feedback"]})
        chart = alt.Chart(alt.Data(values=rows)).mark_bar().encode(
            x=alt.X("month:O", title="month made available"), y=alt.Y("reports:Q", title="referred reports"),
            color=alt.Color("kind:N", title=None, sort=["arrest (confirmed)", "feedback, no arrest",
                                                       "no feedback (unknown)"]),
        ).properties(title="Referred reports by month and what is known of them", width=480, height=240)
        specs["referrals_by_month"] = chart.to_dict()
    by_priority = next(t for t in report["tables"] if t.name == "outcomes_by_priority")
    prio = [dict(zip(by_priority.columns, r, strict=True)) for r in by_priority.rows[1:]]
    if prio:
        rows = [{"priority": p["group"], "low": p["bounds low"] / p["referrals"],
                 "high": p["bounds high"] / p["referrals"]} for p in prio if p["referrals"]]
        base = alt.Chart(alt.Data(values=rows))
        chart = (base.mark_rule(strokeWidth=8, opacity=0.5).encode(
            y=alt.Y("priority:N"), x=alt.X("low:Q", title="share of reports with an arrest: bounds",
                                           scale=alt.Scale(domain=[0, 1])), x2="high:Q")
                 ).properties(title="Arrest rate bounds by priority (width = share without feedback)",
                              width=480, height=120)
        specs["arrest_bounds_by_priority"] = chart.to_dict()
    return specs


def write_html(report: dict[str, Any], out: Path) -> list[Path]:
    import vl_convert as vlc

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures = []
    for name, spec in charts(report).items():
        svg = vlc.vegalite_to_svg(spec)
        png = vlc.vegalite_to_png(spec, scale=2)
        (out / f"{name}.svg").write_text(svg, encoding="utf-8")
        (out / f"{name}.png").write_bytes(png)
        written += [out / f"{name}.svg", out / f"{name}.png"]
        figures.append(f"<figure>{svg}</figure>")
    e = html.escape
    parts = [f"<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>tipline transparency report "
             f"{report['year']}</title><h1>Transparency report {report['year']}</h1>",
             f"<p>Outcome codes {e(report['codeListVersion'])} · tipline {e(report['softwareVersion'])} · released "
             f"{e(report['released'])}. An empty cell is unknown, never zero; see docs/statistics.md.</p>",
             *figures]
    for t in report["tables"]:
        head = "".join(f"<th>{e(c)}</th>" for c in t.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(_cell(v)) or '—'}</td>" for v in r) + "</tr>" for r in t.rows)
        parts.append(f"<section id=\"{e(t.name)}\"><h2>{e(t.title)}</h2><table><thead><tr>{head}</tr></thead>"
                     f"<tbody>{body}</tbody></table><p class=\"meta\">snapshot {e(t.snapshot)} · query "
                     f"<code>{e(t.query)}</code>{(' · ' + e(t.note)) if t.note else ''}</p></section>")
    page = out / "index.html"
    page.write_text("".join(parts) + "</html>\n", encoding="utf-8")
    return [*written, page]
