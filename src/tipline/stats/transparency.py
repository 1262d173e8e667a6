"""The transparency report of a year: the tables NCMEC publishes, computed from tipline's
records, each beside the published figure where one exists.

Every table names the query it ran, and the whole report names its data snapshot — a
SHA-256 over the records it read (each report of the year with its last change, each
assessment, jurisdiction, referral and incident membership with the time it was written) —
with the software version and the outcome-code list version. A report is kept under its
snapshot id in the data directory, so a link with ``snapshot=…`` shows the same figures
later, whatever has changed since.

Unknowns stay unknown: a country nobody could resolve is the row "unknown", a table with no
published counterpart has ``published: null``, and a ratio to a missing figure is ``null``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tipline import __version__
from tipline.kinds.outcomes import registry

if TYPE_CHECKING:
    from sqlalchemy import and_, case, distinct, func, select
    from sqlalchemy.orm import Session, sessionmaker

    from tipline.store.tables import (
        Agency,
        Assessment,
        File,
        FileMatch,
        IncidentReport,
        Jurisdiction,
        Referral,
        Report,
        Reporter,
    )

# SQLAlchemy and the store's tables are imported where the store is read (the store path), not
# here: the columnar path and the published page use this module without them (~1 s of imports
# on a loaded machine).

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"
#: The published recipients table names agency kinds thus (ocse-report-recipients.csv).
RECIPIENT_LABELS = {
    "icac": "internet crimes against children units",
    "local": "local law enforcement",
    "federal": "federal law enforcement",
    "international": "international law enforcement",
}
SCHEMA = "tipline.transparency/1"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    title: str
    #: Frictionless field type: string | integer | number
    type: str
    description: str = ""


@dataclass(slots=True)
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[Any]]
    #: What was counted, in words and as the SQL that ran (for a reader to reproduce).
    query: str
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "query": self.query, "notes": self.notes,
                "columns": [asdict(c) for c in self.columns],
                "rows": [dict(zip([c.name for c in self.columns], r, strict=True)) for r in self.rows]}


@dataclass(slots=True)
class Transparency:
    year: int
    snapshot: str
    software_version: str
    codes_version: str
    generated_at: str
    records: dict[str, int]
    tables: list[Table]
    #: The snapshots the combined id is made of: {"records": ..., "outcomes": {"all": ..., "escalated": ...}},
    #: which tell a revision's reason (feedback moved, or the year's records did).
    sources: dict[str, Any] | None = None
    #: The year's revision log up to this snapshot (tipline.stats.revisions); not part of the
    #: kept snapshot file, which never changes.
    revisions: list[dict[str, Any]] = field(default_factory=list)

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)

    def as_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "year": self.year, "snapshot": self.snapshot,
                "softwareVersion": self.software_version, "codesVersion": self.codes_version,
                "generatedAt": self.generated_at, "records": self.records, "sources": self.sources,
                "tables": [t.as_json() for t in self.tables], "revisions": self.revisions}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Transparency:
        tables = []
        for t in doc["tables"]:
            cols = [Column(**c) for c in t["columns"]]
            tables.append(Table(t["key"], t["title"], cols, [[r[c.name] for c in cols] for r in t["rows"]],
                                t["query"], list(t["notes"])))
        return cls(doc["year"], doc["snapshot"], doc["softwareVersion"], doc["codesVersion"],
                   doc["generatedAt"], dict(doc["records"]), tables, doc.get("sources"),
                   list(doc.get("revisions") or []))


# --- published figures ------------------------------------------------------------------------


def _num(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    return int(raw.replace(",", "").strip())


def _csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _published_contents(year: int) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in _csv("ocse-report-contents.csv"):
        q = _num(r["quantity"])
        if int(r["year"]) == year and q is not None:
            out[(r["category"], r["label"])] = q
    return out


def _published_countries(year: int) -> dict[str, int]:
    to2 = {r["iso3"]: r["iso2"] for r in _csv("iso3-to-iso2.csv")}
    out: dict[str, int] = {}
    for r in _csv("ocse-reports-per-country.csv"):
        q = _num(r.get(str(year)))
        cc = to2.get(r["iso3"])
        if q is not None and cc:
            out[cc] = out.get(cc, 0) + q
    return out


def _published_states(year: int) -> dict[str, int]:
    return {r["state"]: q for r in _csv("ocse-reports-by-state.csv")
            if int(r["year"]) == year and len(r["state"]) == 2 and (q := _num(r["reports"])) is not None}


def _published_recipients(year: int) -> dict[tuple[str, str], int]:
    return {(r["recipients"], r["level_of_detail"]): q for r in _csv("ocse-report-recipients.csv")
            if int(r["year"]) == year and (q := _num(r["reports"])) is not None}


def _published_escalations(year: int) -> int | None:
    from tipline.stats.published import load

    fig = load().find("count", "escalations", year)
    # An approximate figure ("about 49,000") is not a count to divide by.
    if fig is None or fig.value is None or getattr(fig, "approximate", False):
        return None
    return int(fig.value)


def _ratio(ours: int | None, published: int | None) -> float | None:
    if ours is None or not published:
        return None
    return float(f"{ours / published:.6g}")  # six significant figures: a 1e-5 scale year keeps them


def _share(n: int | None, total: int | None) -> float | None:
    if n is None or not total:
        return None
    return float(f"{n / total:.6g}")


# --- the year's records -----------------------------------------------------------------------



_STORE_NAMES = ("Agency", "Assessment", "File", "FileMatch", "IncidentReport", "Jurisdiction", "Referral",
                "Report", "Reporter")


def _store_sql() -> None:
    """Bind the store path's SQL names (SQLAlchemy's and the tables) in this module, once.

    Imported on first use, not at module level: the columnar path and the CLI's read commands
    never pay for the ORM tables. The names are declared under TYPE_CHECKING above."""
    if "Report" in globals():
        return
    import sqlalchemy as sa

    from tipline.store import tables

    globals().update(and_=sa.and_, case=sa.case, distinct=sa.distinct, func=sa.func, select=sa.select,
                     **{name: getattr(tables, name) for name in _STORE_NAMES})


def _year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def _in_year(year: int) -> Any:
    _store_sql()

    lo, hi = _year_bounds(year)
    # Received time: a report belongs to the year it was opened (simulated reports carry their
    # simulated time there), as NCMEC counts reports received in a calendar year.
    return and_(Report.state == "finished", Report.opened_at >= lo, Report.opened_at < hi)


def _stream(session: Session, stmt: Any) -> Iterator[Sequence[Any]]:
    yield from session.execute(stmt.execution_options(yield_per=5000))


def snapshot_of(session: Session, year: int) -> tuple[str, dict[str, int]]:
    """A SHA-256 over every record the report reads, in a fixed order, and their counts."""
    _store_sql()

    h = hashlib.sha256(f"{SCHEMA}|{year}|{registry().version}".encode())
    counts: dict[str, int] = {}
    year_ids = select(Report.id).where(_in_year(year))
    streams: list[tuple[str, Any]] = [
        ("reports", select(Report.id, Report.last_change_at, Report.reporter_id, Report.incident_type)
         .where(_in_year(year)).order_by(Report.id)),
        ("assessments", select(Assessment.report_id, Assessment.assessed_at, Assessment.disposition,
                               Assessment.priority).where(Assessment.report_id.in_(year_ids))
         .order_by(Assessment.report_id)),
        ("jurisdictions", select(Jurisdiction.report_id, Jurisdiction.resolved_at, Jurisdiction.country,
                                 Jurisdiction.us_state).where(Jurisdiction.report_id.in_(year_ids))
         .order_by(Jurisdiction.report_id)),
        ("referrals", select(Referral.id, Referral.report_id, Referral.agency_id, Referral.escalated,
                             Referral.made_available_at).where(Referral.report_id.in_(year_ids))
         .order_by(Referral.id)),
        ("incidentMembers", select(IncidentReport.report_id, IncidentReport.incident_id)
         .where(IncidentReport.report_id.in_(year_ids)).order_by(IncidentReport.report_id,
                                                                 IncidentReport.incident_id)),
        ("files", select(File.id, File.report_id, File.sha256, File.media_type)
         .where(File.report_id.in_(year_ids)).order_by(File.id)),
    ]
    for name, stmt in streams:
        n = 0
        h.update(f"\n#{name}".encode())
        for row in _stream(session, stmt):
            n += 1
            h.update(("|".join("" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
                               for v in row) + "\n").encode())
        counts[name] = n
    return h.hexdigest()[:16], counts


def _count(session: Session, stmt: Any) -> int:
    _store_sql()

    return int(session.scalar(stmt) or 0)


#: The outcome tables: (breakdown, escalated only).
OUTCOME_TABLES: tuple[tuple[str | None, bool], ...] = (
    (None, False), (None, True), ("priority", False), ("month", False), ("agency", False))


def build(sessions: sessionmaker[Session], year: int, *, now: datetime | None = None,
          coverage_threshold: float | None = None) -> Transparency:
    """Compute the transparency report of ``year`` from the store: NCMEC's tables, then the
    outcome tables of tipline.stats.outcomes (all referred reports, escalated ones, by
    priority, month and agency). This is the reference; tipline.stats.columnar computes the
    same report from a Parquet export with DuckDB."""
    from tipline.stats.outcomes import outcome_stats

    with sessions() as session:
        snap, counts = snapshot_of(session, year)
        facts = record_facts(session, year)
    return assemble(year, snap, counts, facts,
                    lambda scope: outcome_stats(sessions, scope, coverage_threshold=coverage_threshold), now=now)


def assemble(year: int, snap: str, counts: dict[str, int], facts: RecordFacts,
             outcome_stats: Callable[[Any], dict[str, Any]], *, now: datetime | None = None) -> Transparency:
    """The report from the year's record facts and an outcome-statistics reader (the store's or
    the columnar export's): both paths share every line from here on."""
    from datetime import date

    from tipline.stats.outcomes import Scope

    tables = record_tables(year, facts)
    outcome_snaps: list[str] = []
    by_scope: dict[str, str] = {}
    for by, escalated in OUTCOME_TABLES:
        scope = Scope(date(year, 1, 1), date(year, 12, 31), escalated_only=escalated, by=by, unit="report")
        table, osnap = _outcome_table(outcome_stats(scope), by, escalated)
        tables.append(table)
        outcome_snaps.append(osnap)
        by_scope["escalated" if escalated else "all"] = osnap
    # The outcome tables read referrals and outcome events through their own snapshot: the
    # report's id covers both, so a new outcome event gives the report a new id.
    combined = hashlib.sha256("|".join([snap, *outcome_snaps]).encode()).hexdigest()[:16]
    return Transparency(year=year, snapshot=combined, software_version=__version__,
                        codes_version=registry().version,
                        generated_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        records=counts, tables=tables, sources={"records": snap, "outcomes": by_scope})


_OUTCOME_COLUMNS = [
    Column("group", "group", "string"), Column("referrals", "referred reports (E)", "integer"),
    Column("withFeedback", "with feedback (F)", "integer"), Column("coverage", "coverage F/E", "number"),
    Column("coverageLow", "coverage, 95 % low", "number"), Column("coverageHigh", "coverage, 95 % high", "number"),
    Column("noFeedback", "no feedback (E − F)", "integer",
           "referred reports no agency has reported on: unknown, not 'no arrest'"),
    Column("withArrest", "with a confirmed arrest (A)", "integer"),
    Column("personsArrested", "persons arrested", "integer"),
    Column("boundsLow", "bounds: low (A)", "integer"), Column("boundsHigh", "bounds: high (A + E − F)", "integer"),
    Column("estimate", "estimate (missing at random within strata)", "number"),
    Column("estimateLow", "estimate, 95 % low", "number"), Column("estimateHigh", "estimate, 95 % high", "number"),
    Column("estimateWeighted", "estimate (weighted by a logistic model of who reports back)", "number",
           "missing at random given priority, agency kind, incident type and whether a location is known"),
    Column("estimateWeightedLow", "weighted estimate, 95 % low", "number"),
    Column("estimateWeightedHigh", "weighted estimate, 95 % high", "number"),
    Column("medianDaysToFeedback", "median days to first feedback", "number"),
    Column("medianDaysToArrest", "median days to arrest", "number"),
    Column("flag", "flag", "string", "e = estimated; u = estimate withheld (low coverage or fewer than 30 "
                                     "with feedback): the bounds are the answer"),
]


def _outcome_table(data: dict[str, Any], by: str | None, escalated: bool) -> tuple[Table, str]:
    rows: list[list[Any]] = []
    groups = [("total", data["total"])] + [(x["key"] if x["key"] is not None else "unknown", x)
                                            for x in (data["rows"] or [])]
    for key, r in groups:
        est, ew = r["estimate"], r["estimateWeighted"]
        # Eurostat-style flags in their own column: u = low reliability (estimate withheld).
        flag = "u" if est["withheld"] else ("e" if est["value"] is not None else "")
        rows.append([str(key), r["referrals"], r["withFeedback"], r["coverage"]["value"], r["coverage"]["low"],
                     r["coverage"]["high"], r["referrals"] - r["withFeedback"], r["withArrest"],
                     r["personsArrested"], r["bounds"]["low"], r["bounds"]["high"], est["value"], est["low"],
                     est["high"], ew["value"], ew["low"], ew["high"], r["delay"]["toFirstFeedback"]["median"],
                     r["delay"]["toArrest"]["median"], flag])
    what = "escalated reports" if escalated else "referred reports"
    key = "outcomes" + ("Escalated" if escalated else "") + (
        "By" + "".join(w.capitalize() for w in by.split("-")) if by else "")
    return Table(key, f"Outcomes of {what}" + (f" by {by}" if by else ""), list(_OUTCOME_COLUMNS), rows,
                 data["citation"],
                 ["A referred report with no feedback is unknown, never 'no arrest'; an empty cell is unknown, "
                  "never 0. The same figures, with intervals and sensitivity: the query link."]), data["snapshot"]


@dataclass(slots=True)
class RecordFacts:
    """The counts NCMEC's tables are made of, for one year: what the store's SQL
    (:func:`record_facts`) and the columnar export's DuckDB queries (tipline.stats.columnar)
    each compute, so that one assembler (:func:`record_tables`) turns either into the tables."""

    total: int
    with_files: int
    unique: int  # reports holding a file that duplicates nothing earlier
    similar: int  # reports holding a file that duplicates or nearly duplicates an earlier one
    bundled: int  # reports in an incident
    incidents: int
    files: list[tuple[str, int, int, int, int]]  # kind, files, distinct sha256, near, exact
    where: dict[str, int]  # U.S. | international | unknown
    countries: dict[str, int]  # ISO code, or "unknown"
    states: dict[str, int]  # of US reports: state, or "unknown"
    platforms: dict[str, int]
    types: dict[str, int]  # incident type, or "not stated"
    recipients: dict[tuple[str, str], int]  # (agency kind, actionable | informational | not assessed)
    escalated: int
    months: list[int]  # reports received per month
    escalated_months: list[int]


def record_facts(s: Session, year: int) -> RecordFacts:
    """The year's record facts from the store (the reference the columnar path must match)."""
    _store_sql()

    year_ids = select(Report.id).where(_in_year(year))
    total = _count(s, select(func.count()).select_from(Report).where(_in_year(year)))
    with_files = _count(s, select(func.count(distinct(File.report_id))).where(File.report_id.in_(year_ids)))
    dup_files = select(FileMatch.file_id).where(FileMatch.kind == "duplicate")
    similar = _count(s, select(func.count(distinct(File.report_id))).where(
        File.report_id.in_(year_ids), File.id.in_(dup_files)))
    unique = _count(s, select(func.count(distinct(File.report_id))).where(
        File.report_id.in_(year_ids), File.id.not_in(dup_files)))
    bundled = _count(s, select(func.count(distinct(IncidentReport.report_id)))
                     .where(IncidentReport.report_id.in_(year_ids)))
    incidents = _count(s, select(func.count(distinct(IncidentReport.incident_id)))
                       .where(IncidentReport.report_id.in_(year_ids)))
    kind = _media_kind().label("kind")
    near = select(FileMatch.file_id).where(FileMatch.kind == "duplicate", FileMatch.distance > 0)
    exact = select(FileMatch.file_id).where(FileMatch.kind == "duplicate", FileMatch.distance == 0)
    fq = (select(kind, func.count(), func.count(distinct(File.sha256)),
                 func.sum(case((File.id.in_(near), 1), else_=0)),
                 func.sum(case((File.id.in_(exact), 1), else_=0)))
          .where(File.report_id.in_(year_ids)).group_by(kind))
    files = [(str(k), int(n), int(u), int(nd or 0), int(ed or 0)) for k, n, u, nd, ed in s.execute(fq)]
    wq = (select(case((Jurisdiction.country.is_(None), "unknown"), (Jurisdiction.country == "US", "U.S."),
                      else_="international").label("where"), func.count())
          .select_from(Report).outerjoin(Jurisdiction, Jurisdiction.report_id == Report.id)
          .where(_in_year(year)).group_by("where"))
    cq = (select(Jurisdiction.country, func.count()).select_from(Report)
          .outerjoin(Jurisdiction, Jurisdiction.report_id == Report.id)
          .where(_in_year(year)).group_by(Jurisdiction.country))
    sq = (select(Jurisdiction.us_state, func.count()).select_from(Report)
          .join(Jurisdiction, Jurisdiction.report_id == Report.id)
          .where(_in_year(year), Jurisdiction.country == "US").group_by(Jurisdiction.us_state))
    pq = (select(Reporter.name, func.count()).select_from(Report).join(Reporter, Reporter.id == Report.reporter_id)
          .where(_in_year(year)).group_by(Reporter.name))
    tq = select(Report.incident_type, func.count()).where(_in_year(year)).group_by(Report.incident_type)
    disp = case((Assessment.disposition == "referral", "actionable"), (Assessment.disposition.is_(None),
                                                                       "not assessed"),
                else_="informational").label("detail")
    rq = (select(Agency.kind, disp, func.count(distinct(Referral.report_id))).select_from(Referral)
          .join(Agency, Agency.id == Referral.agency_id)
          .outerjoin(Assessment, Assessment.report_id == Referral.report_id)
          .where(Referral.report_id.in_(year_ids)).group_by(Agency.kind, disp))
    escalated = _count(s, select(func.count(distinct(Referral.report_id)))
                       .where(Referral.report_id.in_(year_ids), Referral.escalated.is_(True)))
    # Month from the received time, computed in Python: portable across both backends.
    months, esc_months = [0] * 12, [0] * 12
    esc_ids = {rid for (rid,) in s.execute(select(Referral.report_id).distinct().where(
        Referral.escalated.is_(True), Referral.report_id.in_(year_ids)))}
    for rid, opened in _stream(s, select(Report.id, Report.opened_at).where(_in_year(year))):
        m = opened.astimezone(UTC).month - 1
        months[m] += 1
        if rid in esc_ids:
            esc_months[m] += 1
    return RecordFacts(
        total=total, with_files=with_files, unique=unique, similar=similar, bundled=bundled, incidents=incidents,
        files=files, where=_summed((str(w), int(n)) for w, n in s.execute(wq)),
        countries=_summed((c or "unknown", int(n)) for c, n in s.execute(cq)),
        states=_summed((st or "unknown", int(n)) for st, n in s.execute(sq)),
        platforms=_summed((str(name), int(n)) for name, n in s.execute(pq)),
        types=_summed((t or "not stated", int(n)) for t, n in s.execute(tq)),
        recipients={(str(k), str(d)): int(n) for k, d, n in s.execute(rq)},
        escalated=escalated, months=months, escalated_months=esc_months)


def _summed(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    # Two stored values can map to one label (no type and an empty type are both "not stated").
    out: dict[str, int] = {}
    for k, n in pairs:
        out[k] = out.get(k, 0) + n
    return out


def record_tables(year: int, f: RecordFacts) -> list[Table]:
    """NCMEC's tables from the year's record facts, each beside the published figure."""
    return [_reports_table(year, f), _incidents_table(f), _files_table(f), _location_table(year, f),
            _countries_table(year, f), _states_table(year, f), _platforms_table(f), _incident_types_table(year, f),
            _recipients_table(year, f), _escalations_table(year, f), _months_table(year, f)]


_VS = [Column("tipline", "tipline", "integer", "counted from the records"),
       Column("published", "NCMEC published", "integer", "null: not published for this year"),
       Column("ratio", "ratio", "number", "tipline ÷ published; null when either is missing")]


def _reports_table(year: int, f: RecordFacts) -> Table:
    pub = _published_contents(year)
    rows = [
        ["total", f.total, pub.get(("reports", "total")), _ratio(f.total, pub.get(("reports", "total")))],
        ["with photos/videos", f.with_files, None, None],
        ["with unique photos/videos", f.unique, pub.get(("reports", "with unique photos/videos")),
         _ratio(f.unique, pub.get(("reports", "with unique photos/videos")))],
        ["with similar photos/videos", f.similar, pub.get(("reports", "with similar photos/videos")),
         _ratio(f.similar, pub.get(("reports", "with similar photos/videos")))],
    ]
    return Table("reports", "Reports received", [Column("measure", "measure", "string"), *_VS], rows,
                 "finished reports opened in the year; unique = holding a file with no earlier copy, "
                 "similar = holding a file that duplicates or nearly duplicates an earlier one "
                 "(file_matches kind 'duplicate')",
                 ["A report can hold both unique and similar files, so the two rows overlap (as NCMEC's do)."])


def _incidents_table(f: RecordFacts) -> Table:
    alone = f.total - f.bundled
    rows = [["reports", f.total], ["reports in an incident of several", f.bundled],
            ["incidents those reports form", f.incidents], ["reports standing alone", alone],
            ["incidents after bundling (incidents + reports alone)", f.incidents + alone]]
    return Table("incidents", "Incidents after bundling", [Column("measure", "measure", "string"),
                                                             Column("count", "count", "integer")], rows,
                 "incident_reports of the year's reports; a report in no incident counts as one of its own",
                 ["NCMEC publishes no count of incidents after bundling for 2023."])


def _media_kind() -> Any:
    _store_sql()

    return case((File.media_type.like("image/%"), "photo"), (File.media_type.like("video/%"), "video"),
                else_="other")


def _files_table(f: RecordFacts) -> Table:
    rows = [list(r) for r in sorted(f.files)]
    cols = [Column("kind", "kind", "string"), Column("files", "files", "integer"),
            Column("unique", "distinct SHA-256", "integer"),
            Column("nearDuplicates", "near-duplicates of an earlier file", "integer"),
            Column("exactDuplicates", "exact copies of an earlier file", "integer")]
    return Table("files", "Files by type", cols, rows,
                 "files of the year's reports by media type; duplicates from file_matches")


def _location_table(year: int, f: RecordFacts) -> Table:
    pub = _published_contents(year)
    rows = [[label, f.where.get(label, 0), pub.get(("user location", label)),
             _ratio(f.where.get(label, 0), pub.get(("user location", label)))]
            for label in ("U.S.", "international", "unknown")]
    return Table("userLocation", "Reports by where the user was", [Column("where", "where", "string"), *_VS],
                 rows, "the resolved jurisdiction of each report (none resolved: unknown, never guessed)")


def _countries_table(year: int, f: RecordFacts, top: int = 25) -> Table:
    pub = _published_countries(year)
    got = f.countries
    ours_total = sum(got.values())
    pub_total = sum(pub.values()) or None
    order = sorted(got, key=lambda c: (-got[c], c))[:top]
    rows = [[c, got[c], _share(got[c], ours_total), pub.get(c) if c != "unknown" else None,
             _share(pub.get(c), pub_total) if c != "unknown" else None] for c in order]
    cols = [Column("country", "country (ISO 3166)", "string"), Column("tipline", "tipline", "integer"),
            Column("share", "share", "number"), Column("published", "NCMEC published", "integer"),
            Column("publishedShare", "published share", "number")]
    return Table("countries", f"Reports by country (top {top})", cols, rows,
                 "the resolved jurisdiction's country of each report",
                 ["Shares compare across scales: a simulated year is a sample of the published one."])


def _states_table(year: int, f: RecordFacts) -> Table:
    pub = _published_states(year) or _published_states(2023)
    got = f.states
    ours_total = sum(v for k, v in got.items() if k != "unknown")
    pub_total = sum(pub.values()) or None
    states = sorted(set(got) | set(pub), key=lambda k: (k == "unknown", k))
    rows = [[st, got.get(st, 0), _share(got.get(st, 0), ours_total) if st != "unknown" else None,
             pub.get(st), _share(pub.get(st), pub_total)] for st in states]
    cols = [Column("state", "US state", "string"), Column("tipline", "tipline", "integer"),
            Column("share", "share of located US reports", "number"),
            Column("published", "NCMEC published (2023 table)", "integer"),
            Column("publishedShare", "published share", "number")]
    return Table("states", "US reports by state", cols, rows,
                 "reports whose jurisdiction is the US, by state ('unknown': US, state not resolved)")


def _platforms_table(f: RecordFacts, top: int = 25) -> Table:
    # Ties broken by name in Python: the same order whatever the database's collation.
    order = sorted(f.platforms.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    rows = [[name, n, _share(n, f.total)] for name, n in order]
    return Table("platforms", f"Reports by platform (top {top})",
                 [Column("platform", "platform", "string"), Column("reports", "reports", "integer"),
                  Column("share", "share", "number")], rows, "reports by reporter (platform or the public form)")


def _incident_types_table(year: int, f: RecordFacts) -> Table:
    from tipline.model.report import INCIDENT_TYPE_TABLE_LABELS as _CSV_TYPE_NAMES

    pub_raw = _published_contents(year)
    pub = {_CSV_TYPE_NAMES[label]: q for (cat, label), q in pub_raw.items()
           if cat == "kind of exploitation" and label in _CSV_TYPE_NAMES}
    got = f.types
    names = sorted(set(got) | set(pub), key=lambda t: (-got.get(t, 0), t))
    rows = [[t, got.get(t, 0), pub.get(t), _ratio(got.get(t, 0), pub.get(t))] for t in names]
    return Table("incidentTypes", "Reports by incident type", [Column("incidentType", "incident type", "string"),
                                                                *_VS],
                 rows, "reports by the incident type the reporter gave")


def _recipients_table(year: int, f: RecordFacts) -> Table:
    pub = _published_recipients(year)
    got = f.recipients
    rows = []
    for kind, label in RECIPIENT_LABELS.items():
        for detail in ("actionable", "informational"):
            ours = got.get((kind, detail), 0)
            p = pub.get((label, detail))
            rows.append([label, detail, ours, p, _ratio(ours, p)])
        if got.get((kind, "not assessed")):
            rows.append([label, "not assessed", got[(kind, "not assessed")], None, None])
    cols = [Column("recipient", "recipient", "string"), Column("detail", "referral or informational", "string"),
            *_VS]
    return Table("recipients", "Reports made available, by recipient", cols, rows,
                 "distinct reports per agency kind with a referral, by the report's disposition "
                 "(referral = actionable)")


def _escalations_table(year: int, f: RecordFacts) -> Table:
    pub = _published_escalations(year)
    rows = [["reports escalated to law enforcement", f.escalated, pub, _ratio(f.escalated, pub)]]
    return Table("escalations", "Escalations", [Column("measure", "measure", "string"), *_VS], rows,
                 "distinct reports with an escalated referral",
                 [] if pub is not None else [f"NCMEC has not published an escalation count for {year}."])


def _months_table(year: int, f: RecordFacts) -> Table:
    rows = [[f"{year}-{i + 1:02d}", f.months[i], f.escalated_months[i]] for i in range(12)]
    return Table("months", "Reports and escalations by month", [Column("month", "month", "string"),
                                                                 Column("reports", "reports", "integer"),
                                                                 Column("escalated", "escalated", "integer")],
                 rows, "reports by the month they were received (UTC)")


# --- keeping and writing ----------------------------------------------------------------------


def snapshot_dir(data_dir: Path) -> Path:
    return data_dir / "snapshots"


def keep(report: Transparency, data_dir: Path) -> Path:
    """Store the report under its snapshot id (idempotent: the same records, the same file),
    enter it in the year's revision log, and attach the log to the report."""
    from tipline.stats import revisions

    d = snapshot_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"transparency-{report.year}-{report.snapshot}.json"
    if not path.exists():
        doc = report.as_json()
        doc["revisions"] = []  # the log grows; the kept snapshot never changes
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
    report.revisions = revisions.record(report, d, lambda snap: _load(data_dir, report.year, snap))
    return path


def _load(data_dir: Path, year: int, snapshot: str) -> Transparency | None:
    if not snapshot.isalnum() or len(snapshot) > 64:
        return None
    path = snapshot_dir(data_dir) / f"transparency-{year}-{snapshot}.json"
    if not path.exists():
        return None
    return Transparency.from_json(json.loads(path.read_text(encoding="utf-8")))


def recall(data_dir: Path, year: int, snapshot: str) -> Transparency | None:
    """A kept report, with the revision log as it stood when it was kept."""
    from tipline.stats import revisions

    report = _load(data_dir, year, snapshot)
    if report is not None:
        report.revisions = revisions.history(snapshot_dir(data_dir), year, snapshot)
    return report


#: The revision log as a table of the CSV data package.
REVISION_COLUMNS = [
    Column("snapshot", "snapshot", "string", "the revising report"),
    Column("previous", "revises", "string", "the snapshot it revises"),
    Column("date", "date", "string", "when the revising report was generated (UTC)"),
    Column("table", "table", "string"), Column("row", "row", "string"), Column("column", "figure", "string"),
    Column("old", "old value", "string", "empty: not in the earlier version"),
    Column("new", "new value", "string", "empty: not in this version"),
    Column("why", "why", "string"),
]


def revision_table(report: Transparency) -> Table:
    """The revision log, one line per changed figure (and one per revision without changes)."""
    rows: list[list[Any]] = []
    for e in report.revisions:
        if not e["changes"]:
            rows.append([e["snapshot"], e["previous"], e["date"], None, None, None, None, None,
                         "; ".join(e["reasons"])])
        for c in e["changes"]:
            rows.append([e["snapshot"], e["previous"], e["date"], c["table"], c["row"], c["column"],
                         None if c["old"] is None else str(c["old"]), None if c["new"] is None else str(c["new"]),
                         c["why"]])
    return Table("revisions", "Revisions", list(REVISION_COLUMNS), rows,
                 "each kept snapshot of the year's report against the one before it",
                 ["Published figures change when late outcome feedback or late reports arrive; every change "
                  "is listed with its old and new value and why."])


def table_csv(t: Table) -> str:
    """RFC 4180: CRLF line ends, quotes where needed, UTF-8; a missing value is an empty field
    (declared as missing in datapackage.json), never 0."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([c.name for c in t.columns])
    for r in t.rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def datapackage(report: Transparency) -> dict[str, Any]:
    """A Frictionless Data Package describing the CSV files (missing values declared)."""
    return {
        "profile": "tabular-data-package",
        "name": f"tipline-transparency-{report.year}",
        "title": f"tipline transparency report {report.year}",
        "version": report.software_version,
        "created": report.generated_at,
        "snapshot": report.snapshot,
        "codesVersion": report.codes_version,
        "licenses": [{"name": "CC-BY-4.0", "path": "https://creativecommons.org/licenses/by/4.0/"}],
        "resources": [{
            "name": t.key.lower(), "path": f"{t.key}.csv", "profile": "tabular-data-resource",
            "title": t.title, "description": t.query, "format": "csv", "mediatype": "text/csv",
            "encoding": "utf-8", "dialect": {"delimiter": ",", "lineTerminator": "\r\n", "header": True},
            "schema": {"fields": [{"name": c.name, "title": c.title, "type": c.type,
                                   **({"description": c.description} if c.description else {})}
                                  for c in t.columns], "missingValues": [""]},
        } for t in [*report.tables, revision_table(report)]],
    }


def chart_names(report: Transparency) -> list[str]:
    """The charts a report has: by month always; by country when any report has one."""
    return ["months"] + (["countries"] if report.table("countries").rows else [])


def charts(report: Transparency, only: str | None = None) -> dict[str, tuple[bytes, str]]:
    """Charts as SVG and PNG (``only``: just that file), made with Altair and rendered by
    vl-convert (no browser)."""
    import altair as alt
    import vl_convert as vlc

    out: dict[str, tuple[bytes, str]] = {}
    months = report.table("months")
    data = [{"month": r[0], "series": series, "reports": r[i]} for r in months.rows
            for i, series in ((1, "received"), (2, "escalated"))]
    chart = (alt.Chart(alt.Data(values=data)).mark_bar()
             .encode(x=alt.X("month:O", title="month"), y=alt.Y("reports:Q", title="reports"),
                     color=alt.Color("series:N", title=None, scale=alt.Scale(range=["#1f4e5f", "#a4262c"])),
                     xOffset="series:N")
             .properties(width=560, height=220, title=f"Reports received and escalated, {report.year}"))
    def render(name: str, spec: str) -> None:
        if only in (None, f"{name}.svg"):
            out[f"{name}.svg"] = (vlc.vegalite_to_svg(spec).encode(), "image/svg+xml")
        if only in (None, f"{name}.png"):
            out[f"{name}.png"] = (vlc.vegalite_to_png(spec, scale=2), "image/png")

    render("months", chart.to_json())
    countries = report.table("countries")
    if "countries" not in chart_names(report):
        return out
    cdata = [{"country": r[0], "share": r[2] or 0.0, "source": "tipline"} for r in countries.rows]
    cdata += [{"country": r[0], "share": r[4], "source": "NCMEC published"} for r in countries.rows
              if r[4] is not None]
    c2 = (alt.Chart(alt.Data(values=cdata)).mark_bar()
          .encode(y=alt.Y("country:N", sort="-x", title=None), x=alt.X("share:Q", axis=alt.Axis(format="%")),
                  color=alt.Color("source:N", title=None, scale=alt.Scale(range=["#1f4e5f", "#b8860b"])),
                  yOffset="source:N")
          .properties(width=480, height=max(120, 22 * len(countries.rows)),
                      title="Share of reports by country, beside the published share"))
    render("countries", c2.to_json())
    return out


def write(report: Transparency, out: Path, fmt: str, *,
          html: Callable[[Transparency], str] | None = None) -> list[Path]:
    """Write the report in ``fmt`` (html | csv | json | pdf) under ``out``; returns the files.
    ``html`` renders the page (the web layer owns the templates; statistics import no web)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, data: bytes | str) -> None:
        p = out / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        written.append(p)

    if fmt == "json":
        put(f"transparency-{report.year}.json", json.dumps(report.as_json(), indent=1, ensure_ascii=False))
    elif fmt == "csv":
        for t in [*report.tables, revision_table(report)]:
            put(f"{t.key}.csv", table_csv(t))
        put("datapackage.json", json.dumps(datapackage(report), indent=1, ensure_ascii=False))
    elif fmt == "html":
        if html is None:
            raise ValueError("html needs a renderer (tipline.web.transparency.standalone_html)")
        for name, (data, _) in charts(report).items():
            put(name, data)
        put(f"transparency-{report.year}.html", html(report))
    elif fmt == "pdf":
        put(f"transparency-{report.year}.pdf", pdf(report))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return written


def fmt_cell(value: Any, col: Column) -> str:
    """A cell for people: thousands separated, shares as percentages, missing as an em dash."""
    if value is None:
        return "—"
    if col.type == "integer":
        return f"{int(value):,}"
    if col.type == "number":
        if col.name == "ratio":
            return f"{float(value):.4g}"
        if col.name.startswith(COUNT_NUMBERS):
            # Estimated totals and days are amounts, not shares.
            return f"{float(value):,.1f}"
        return f"{100 * float(value):.2f} %"
    return str(value)


#: Number columns that hold amounts (estimated totals, days), not shares.
COUNT_NUMBERS = ("estimate", "median")


def fmt_revision(value: Any) -> str:
    """An old or new value in the revision log: missing as an em dash ("not in that version"),
    integers with separators, other numbers to six significant figures written out in full
    (a reader of the page should not have to decode "1.65698e-06")."""
    from decimal import Decimal

    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return format(Decimal(f"{value:.6g}"), "f")


#: Changed figures listed per revision in the PDF (and on the page); revisions.csv has them all.
SHOWN_CHANGES = 40


def pdf(report: Transparency, shown_changes: int = SHOWN_CHANGES) -> bytes:
    """The report as a printable PDF: every table, then the revision log (as on the page)."""
    from fpdf import FPDF

    doc = FPDF(orientation="landscape", format="A4")
    doc.set_auto_page_break(True, margin=15)
    font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    family = "Helvetica"
    if Path(font).exists():
        doc.add_font("DejaVu", "", font)
        doc.add_font("DejaVu", "B", font.replace("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"))
        family = "DejaVu"

    def t(text: str) -> str:
        # The built-in Helvetica holds Latin-1 only (no DejaVu font on this machine): an em
        # dash becomes a hyphen rather than an error.
        return text if family == "DejaVu" else text.replace("—", "-").encode("latin-1", "replace").decode("latin-1")

    doc.add_page()
    doc.set_font(family, "B", 16)
    doc.cell(0, 10, t(f"tipline transparency report {report.year}"), new_x="LMARGIN", new_y="NEXT")
    doc.set_font(family, "", 9)
    doc.multi_cell(0, 5, new_x="LMARGIN", new_y="NEXT",
                   text=t(f"Snapshot {report.snapshot} · software {report.software_version} · outcome codes "
                          f"{report.codes_version} · generated {report.generated_at}"))
    for table in report.tables:
        doc.ln(3)
        doc.set_font(family, "B", 11)
        doc.multi_cell(0, 6, t(table.title), new_x="LMARGIN", new_y="NEXT")
        doc.set_font(family, "", 8)
        doc.multi_cell(0, 4, t(table.query), new_x="LMARGIN", new_y="NEXT")
        doc.set_font(family, "", 7)
        # The first column holds names (countries, platforms, incident types): give it room.
        n = len(table.columns)
        widths = (3, *([2] * (n - 1))) if n > 1 else (1,)
        with doc.table(text_align="LEFT", first_row_as_headings=True, col_widths=widths,
                       padding=1) as tab:
            tab.row([t(c.title) for c in table.columns])
            for r in table.rows:
                tab.row([t(fmt_cell(v, c)) for v, c in zip(r, table.columns, strict=True)])
        for note in table.notes:
            doc.multi_cell(0, 4, t(note), new_x="LMARGIN", new_y="NEXT")
    _pdf_revisions(doc, report, family, t, shown_changes)
    return bytes(doc.output())


def _pdf_revisions(doc: Any, report: Transparency, family: str, t: Callable[[str], str], shown: int) -> None:
    """The Revisions section, as the page has it: each kept snapshot against the one before it,
    newest first, its reasons and up to ``shown`` changed figures (the rest: revisions.csv)."""
    doc.ln(3)
    doc.set_font(family, "B", 11)
    doc.multi_cell(0, 6, t(f"{len(report.tables) + 1}. Revisions"), new_x="LMARGIN", new_y="NEXT")
    doc.set_font(family, "", 8)
    doc.multi_cell(0, 4, new_x="LMARGIN", new_y="NEXT", text=t(
        "Published figures change when late outcome feedback or late reports arrive. Each kept snapshot of this "
        "report is compared with the one before it, figure by figure; an old value shown as — means the row was "
        "not in the earlier version, never a zero. Every change: revisions.csv of the data package."))
    if not report.revisions:
        doc.multi_cell(0, 4, t("No revision on record: this report has not been kept yet."),
                       new_x="LMARGIN", new_y="NEXT")
        return
    titles = {tb.key: tb.title for tb in report.tables}
    for e in reversed(report.revisions):
        doc.ln(2)
        doc.set_font(family, "B", 9)
        head = f"{e['date']} · {e['snapshot']}" + (f" revises {e['previous']}" if e["previous"] else "")
        doc.multi_cell(0, 5, t(head), new_x="LMARGIN", new_y="NEXT")
        doc.set_font(family, "", 8)
        changes = e["changes"]
        line = "; ".join(e["reasons"]) + "."
        if e["previous"]:
            line += f" {len(changes):,} figure{'' if len(changes) == 1 else 's'} changed."
        doc.multi_cell(0, 4, t(line), new_x="LMARGIN", new_y="NEXT")
        if not changes:
            continue
        doc.set_font(family, "", 7)
        with doc.table(text_align="LEFT", first_row_as_headings=True, col_widths=(3, 2, 2, 2, 2, 4),
                       padding=1) as tab:
            tab.row([t(h) for h in ("table", "row", "figure", "old", "new", "why")])
            for c in changes[:shown]:
                tab.row([t(titles.get(c["table"], c["table"])), t(str(c["row"])), t(str(c["column"])),
                         t(fmt_revision(c["old"])), t(fmt_revision(c["new"])), t(str(c["why"]))])
        if len(changes) > shown:
            doc.multi_cell(0, 4, t(f"{len(changes) - shown:,} more in revisions.csv."),
                           new_x="LMARGIN", new_y="NEXT")


def available_years(session: Session) -> list[int]:
    _store_sql()

    rows: Iterable[Any] = session.execute(select(Report.opened_at).where(Report.state == "finished")
                                          .order_by(Report.opened_at).limit(1))
    first = next(iter(rows), None)
    rows = session.execute(select(Report.opened_at).where(Report.state == "finished")
                           .order_by(Report.opened_at.desc()).limit(1))
    last = next(iter(rows), None)
    if first is None or last is None:
        return []
    return list(range(first[0].year, last[0].year + 1))
