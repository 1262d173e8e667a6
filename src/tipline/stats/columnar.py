"""A columnar export of a year's facts (Parquet) and the transparency report computed from it
with DuckDB.

The store (SQLite or PostgreSQL) is built for writing one report at a time; a year at NCMEC's
scale (36.2 M reports) is too big to aggregate there in seconds (STACK.md section 7: native
SQLite 11-27 s per GROUP BY, native DuckDB 0.07-0.36 s). ``tipline stats export --year YEAR``
therefore writes the facts the transparency tables and the outcome statistics read to Parquet
files, one directory per year:

=====================  ==================================================================
``reports.parquet``    each finished report received in the year: received time (UTC),
                       platform, incident type, country, US state, disposition, priority
``files.parquet``      each file of those reports: media kind, SHA-256, duplicate flags
``incidents.parquet``  their incident memberships
``referrals.parquet``  every referral of those reports, and every referral made available
                       (or escalated) in the year, with what statistics group and stratify by
``outcomes.parquet``   every outcome event on those referrals, as recorded
``manifest.json``      the year, the export time, the record counts and the snapshot ids of
                       the records exported (computed from the store by the same functions
                       as the store path), and a SHA-256 per file
=====================  ==================================================================

:func:`build` computes the whole transparency report from such a directory: NCMEC's tables as
DuckDB GROUP BYs, and the outcome statistics by deriving each unit's status (events that
stand, the latest event, closings, transfers) in SQL, summing the units into the facts of
each row (tipline.stats.outcomes.RowFacts) and handing them to the same code that computes
every figure on the store path. The store path stays the reference: tests/test_stats_columnar.py
checks both give identical tables on both backends.

An export is a copy as of its time: a figure computed from it names the snapshot of the
records exported, and :func:`is_current` tells whether the store has moved on since.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    from sqlalchemy.orm import Session, sessionmaker

    from tipline.stats.outcomes import RowFacts, Scope
    from tipline.stats.transparency import RecordFacts, Transparency  # noqa: F401 - build()'s type

SCHEMA = "tipline.columnar/1"
MANIFEST = "manifest.json"

#: Each file's columns and DuckDB types: the Parquet schema, whatever Python handed over.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "reports": [("report_id", "BIGINT"), ("opened_at", "TIMESTAMP"), ("platform", "VARCHAR"),
                ("incident_type", "VARCHAR"), ("country", "VARCHAR"), ("us_state", "VARCHAR"),
                ("disposition", "VARCHAR"), ("priority", "INTEGER")],
    "files": [("report_id", "BIGINT"), ("kind", "VARCHAR"), ("sha256", "VARCHAR"), ("duplicate", "BOOLEAN"),
              ("near", "BOOLEAN"), ("exact", "BOOLEAN")],
    "incidents": [("report_id", "BIGINT"), ("incident_id", "BIGINT")],
    "referrals": [("referral_id", "BIGINT"), ("report_id", "BIGINT"), ("agency", "VARCHAR"),
                  ("agency_kind", "VARCHAR"), ("made_available_at", "TIMESTAMP"), ("escalated", "BOOLEAN"),
                  ("escalated_at", "TIMESTAMP"), ("platform", "VARCHAR"), ("incident_type", "VARCHAR"),
                  ("priority", "INTEGER"), ("state", "VARCHAR"), ("country", "VARCHAR"),
                  ("disposition", "VARCHAR"), ("report_in_year", "BOOLEAN")],
    "outcomes": [("id", "BIGINT"), ("referral_id", "BIGINT"), ("code", "VARCHAR"), ("kind", "VARCHAR"),
                 ("supersedes_id", "BIGINT"), ("occurred_on", "DATE"), ("persons", "INTEGER"),
                 ("result", "VARCHAR"), ("children", "INTEGER"), ("arrest_type", "VARCHAR"),
                 ("nibrs_code", "VARCHAR"), ("reason", "VARCHAR"), ("recorded_at", "TIMESTAMP")],
}
_CHUNK = 100_000


def default_dir(data_dir: Path, year: int) -> Path:
    return data_dir / "columnar" / str(year)


# --- writing ----------------------------------------------------------------------------------


def _utc_naive(v: datetime | None) -> datetime | None:
    """Parquet holds naive UTC timestamps: DuckDB's month() and date casts then need no time
    zone (a stored value without a zone is UTC: SQLite keeps no offset)."""
    if v is None:
        return None
    return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v


def _write(con: duckdb.DuckDBPyConnection, name: str, rows: Iterable[Sequence[Any]], out: Path) -> int:
    """Write ``rows`` to ``out/name.parquet`` with the declared column types (in chunks, so a
    big year never sits in memory twice)."""
    import pandas as pd

    cols = COLUMNS[name]
    con.execute(f"CREATE OR REPLACE TEMP TABLE t_{name} ({', '.join(f'{c} {t}' for c, t in cols)})")
    casts = ", ".join(f"CAST({c} AS {t})" for c, t in cols)
    n = 0
    chunk: list[Sequence[Any]] = []

    def flush() -> None:
        frame = pd.DataFrame(chunk, columns=[c for c, _ in cols], dtype=object)  # noqa: F841 - DuckDB reads it
        con.execute(f"INSERT INTO t_{name} SELECT {casts} FROM frame")
        chunk.clear()

    for row in rows:
        chunk.append(row)
        n += 1
        if len(chunk) >= _CHUNK:
            flush()
    if chunk:
        flush()
    tmp = out / f".{name}.parquet.tmp"
    con.execute(f"COPY (SELECT * FROM t_{name} ORDER BY ALL) TO '{_sql_path(tmp)}' (FORMAT parquet)")
    tmp.replace(out / f"{name}.parquet")
    con.execute(f"DROP TABLE t_{name}")
    return n


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


def _stream(session: Session, stmt: Any) -> Iterator[Sequence[Any]]:
    yield from session.execute(stmt.execution_options(yield_per=5000))


def export(sessions: sessionmaker[Session], year: int, out: Path, *, now: datetime | None = None) -> dict[str, Any]:
    """Write the year's facts to ``out`` (made if missing) and return the manifest."""
    import duckdb
    from sqlalchemy import case, func, or_, select

    from tipline.stats import outcomes as oc
    from tipline.stats import transparency as tr
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
    from tipline.store.tables_people import Outcome

    out.mkdir(parents=True, exist_ok=True)
    lo = datetime.combine(date(year, 1, 1), time(), UTC)
    hi = datetime.combine(date(year, 12, 31), time.max, UTC)
    year_ids = select(Report.id).where(tr._in_year(year))
    # Snapshots from the store, by the very functions of the store path: a figure from the
    # export names the records it came from, and equals the store's while they are unchanged.
    with sessions() as s:
        snap, counts = tr.snapshot_of(s, year)
    outcome_snaps: dict[str, str] = {}
    for name, escalated in (("all", False), ("escalated", True)):
        refs, events, _ = oc.load(sessions, oc.Scope(date(year, 1, 1), date(year, 12, 31), escalated_only=escalated))
        outcome_snaps[name] = oc.snapshot_id(refs, events)
    con = duckdb.connect()
    written: dict[str, int] = {}
    in_year = case((tr._in_year(year), True), else_=False)
    dup = select(FileMatch.file_id).where(FileMatch.kind == "duplicate")
    near = select(FileMatch.file_id).where(FileMatch.kind == "duplicate", FileMatch.distance > 0)
    exact = select(FileMatch.file_id).where(FileMatch.kind == "duplicate", FileMatch.distance == 0)
    with sessions() as s:
        reports = (select(Report.id, Report.opened_at, Reporter.name, Report.incident_type, Jurisdiction.country,
                          Jurisdiction.us_state, Assessment.disposition, Assessment.priority)
                   .join(Reporter, Reporter.id == Report.reporter_id)
                   .outerjoin(Jurisdiction, Jurisdiction.report_id == Report.id)
                   .outerjoin(Assessment, Assessment.report_id == Report.id).where(tr._in_year(year)))
        written["reports"] = _write(con, "reports", ((r[0], _utc_naive(r[1]), *r[2:]) for r in _stream(s, reports)),
                                    out)
        files = select(File.report_id, tr._media_kind(), File.sha256, case((File.id.in_(dup), True), else_=False),
                       case((File.id.in_(near), True), else_=False), case((File.id.in_(exact), True), else_=False)
                       ).where(File.report_id.in_(year_ids))
        written["files"] = _write(con, "files", _stream(s, files), out)
        members = select(IncidentReport.report_id, IncidentReport.incident_id).where(
            IncidentReport.report_id.in_(year_ids))
        written["incidents"] = _write(con, "incidents", _stream(s, members), out)
        when_escalated = func.coalesce(Referral.escalated_at, Referral.made_available_at)
        picked = or_(Referral.report_id.in_(year_ids), Referral.made_available_at.between(lo, hi),
                     (Referral.escalated.is_(True)) & when_escalated.between(lo, hi))
        referrals = (select(Referral.id, Referral.report_id, Agency.code, Agency.kind, Referral.made_available_at,
                            Referral.escalated, Referral.escalated_at, Reporter.name, Report.incident_type,
                            Assessment.priority, Jurisdiction.us_state, Jurisdiction.country, Assessment.disposition,
                            in_year)
                     .join(Agency, Agency.id == Referral.agency_id).join(Report, Report.id == Referral.report_id)
                     .join(Reporter, Reporter.id == Report.reporter_id)
                     .outerjoin(Assessment, Assessment.report_id == Referral.report_id)
                     .outerjoin(Jurisdiction, Jurisdiction.report_id == Referral.report_id).where(picked))
        written["referrals"] = _write(con, "referrals", (
            (*r[:4], _utc_naive(r[4]), bool(r[5]), _utc_naive(r[6]), *r[7:13], bool(r[13]))
            for r in _stream(s, referrals)), out)
        outcome_rows = (select(Outcome.id, Outcome.referral_id, Outcome.code, Outcome.kind, Outcome.supersedes_id,
                         Outcome.occurred_on, Outcome.persons, Outcome.result, Outcome.children, Outcome.arrest_type,
                         Outcome.nibrs_code, Outcome.reason, Outcome.recorded_at)
                  .join(Referral, Referral.id == Outcome.referral_id).where(picked))
        written["outcomes"] = _write(con, "outcomes",
                                     ((*r[:12], _utc_naive(r[12])) for r in _stream(s, outcome_rows)), out)
    con.close()
    manifest: dict[str, Any] = {
        "schema": SCHEMA, "year": year,
        "exportedAt": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "snapshot": snap, "records": counts, "outcomeSnapshots": outcome_snaps, "rows": written,
        "sha256": {f"{n}.parquet": _sha256(out / f"{n}.parquet") for n in COLUMNS},
    }
    manifest["derived"] = derive(out, year)
    manifest["sha256"].update({f"{n}.parquet": _sha256(out / f"{n}.parquet") for n in DERIVED})
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


# --- derived row-level facts ------------------------------------------------------------------

#: Row-level facts derived from the five files once, when the export is written, so that the
#: report only aggregates: a year's report at full scale reads 36 M units and 90 M files, and
#: deriving each unit's status (a join of referrals and events, then a GROUP BY per report) or
#: the first copy of each file hash (a DISTINCT over 90 M SHA-256s) took most of its time.
#: Each is one row per report, unit or file — data, not aggregates: every figure is still
#: summed from them when the report is built. :func:`build` derives them on the fly from the
#: five files when they are missing (an export of an earlier version), with the same SQL.
ROW_FACTS = ("report_facts", "file_facts", "recipient_facts", "units_all", "units_escalated")
#: Aggregates written beside them: the results of the build's own GROUP BYs over the row-level
#: facts (:data:`_RECORD_AGG` and the outcome cubes of :func:`_cube_sql`), a few thousand rows
#: each, so that a build reads those instead of scanning 36 M units and 90 M files. Every
#: figure is still computed from them at build time (Wilson, Kaplan-Meier, the estimates and
#: their bootstraps); a build over an export without them runs the very same SQL over the
#: row-level facts (the reference the tests compare with).
AGGREGATES = ("agg_reports", "agg_files", "agg_recipients", "agg_incidents",
              *(f"{u}_{c}" for u in ("units_all", "units_escalated")
                for c in ("cube", "cube_feedback", "cube_arrest", "cube_feedback_lists", "cube_arrest_lists")))
DERIVED = (*ROW_FACTS, *AGGREGATES)


def _year_scope(year: int, escalated: bool) -> Scope:
    from tipline.stats.outcomes import Scope

    return Scope(date(year, 1, 1), date(year, 12, 31), escalated_only=escalated, unit="report")


def _derived_sql(name: str) -> str:
    """The SELECT of a derived file over the export's views (units: see :func:`_units`)."""
    if name == "report_facts":
        # Per report of the year: the month it was received, whether it was escalated, whether it
        # holds files, one that duplicates nothing earlier, one that duplicates (or nearly) one.
        return ("SELECT r.report_id, r.country, r.us_state, r.platform, r.incident_type, "
                "CAST(month(r.opened_at) AS TINYINT) AS month, e.report_id IS NOT NULL AS escalated, "
                "f.report_id IS NOT NULL AS has_files, coalesce(f.has_unique, false) AS has_unique, "
                "coalesce(f.has_similar, false) AS has_similar FROM reports r "
                "LEFT JOIN (SELECT DISTINCT report_id FROM referrals WHERE report_in_year AND escalated) e "
                "ON e.report_id = r.report_id "
                "LEFT JOIN (SELECT report_id, bool_or(NOT duplicate) AS has_unique, bool_or(duplicate) AS has_similar "
                "FROM files GROUP BY report_id) f ON f.report_id = r.report_id")
    if name == "recipient_facts":
        # Each (report, agency kind) with a referral, once, with the report's disposition.
        return ("SELECT DISTINCT report_id, agency_kind, CASE WHEN disposition = 'referral' THEN 'actionable' "
                "WHEN disposition IS NULL THEN 'not assessed' ELSE 'informational' END AS detail FROM referrals "
                "WHERE report_in_year")
    if name == "file_facts":
        # Per file: whether it is the first of its kind with its SHA-256 (so count(DISTINCT sha256)
        # per kind is a count of firsts).
        return ("SELECT kind, near, exact, row_number() OVER (PARTITION BY kind, sha256) = 1 AS first_of_hash "
                "FROM files")
    raise ValueError(name)


def derive(directory: Path, year: int, *, memory_limit: str = "2GB", threads: int | None = None) -> dict[str, Any]:
    """Write the derived files of the export in ``directory`` (see :data:`DERIVED`) and return
    what the manifest records of them (each units file's censoring date, and the censoring date
    and breakdowns its cubes were summed for).

    DuckDB gets a memory limit and a spill directory inside the export: its default limit is
    80 % of the machine's memory, and at full scale (90 M files, 38 M referrals) the joins,
    window and GROUP BYs grew to ~10 GB; with a limit they spill to disk instead."""
    import shutil

    con = connect(directory, derived=False)
    spill = directory / ".derive.tmp"
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
    con.execute(f"SET temp_directory = {_sql_str(str(spill))}")
    con.execute(f"SET threads = {int(threads or min(os.cpu_count() or 1, 4))}")
    info: dict[str, Any] = {}
    try:
        for name in ("report_facts", "file_facts", "recipient_facts"):
            _copy(con, _derived_sql(name), directory / f"{name}.parquet")
        for name in ("report_facts", "file_facts", "recipient_facts"):
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet("
                        f"{_sql_str(str(directory / f'{name}.parquet'))})")
        for name, sql in _RECORD_AGG.items():
            _copy(con, sql, directory / f"{name}.parquet")
        named = _cube_breakdowns()
        for name, escalated in (("units_all", False), ("units_escalated", True)):
            _units(con, _year_scope(year, escalated), "t_units")
            meta = con.execute("SELECT as_of FROM t_units_meta").fetchone()
            as_of = meta[0] if meta else None
            _copy(con, "SELECT * FROM t_units", directory / f"{name}.parquet")
            censor = _censor(_year_scope(year, escalated), as_of)
            for cube, sql in _cube_sql("t_units", named, censor).items():
                _copy(con, sql, directory / f"{name}_{cube}.parquet")
            for cube in ("cube_feedback", "cube_arrest"):
                source = f"read_parquet({_sql_str(str(directory / f'{name}_{cube}.parquet'))})"
                _copy(con, _delay_lists_sql(source, {b: f"g{i}" for i, b in enumerate(named)}, [None, *named]),
                      directory / f"{name}_{cube}_lists.parquet")
            info[name] = {"asOf": as_of.isoformat() if as_of else None,
                          "cubes": {"censor": censor.isoformat(), "by": named}}
            con.execute("DROP TABLE t_units")
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return info


def _copy(con: duckdb.DuckDBPyConnection, select: str, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    con.execute(f"COPY ({select}) TO '{_sql_path(tmp)}' (FORMAT parquet)")
    tmp.replace(target)


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    """The export's manifest; ValueError when the directory holds no export of this schema."""
    path = directory / MANIFEST
    if not path.exists():
        raise ValueError(f"{directory} holds no columnar export (no {MANIFEST}; run `tipline stats export`)")
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    return doc


def is_current(sessions: sessionmaker[Session], directory: Path) -> bool:
    """Whether the store still holds exactly the records the export was made from (recomputes
    the snapshots from the store: as slow as the store path's hashing, so for checks, not pages)."""
    from tipline.stats import outcomes as oc
    from tipline.stats import transparency as tr

    m = read_manifest(directory)
    year = int(m["year"])
    with sessions() as s:
        if tr.snapshot_of(s, year)[0] != m["snapshot"]:
            return False
    for name, escalated in (("all", False), ("escalated", True)):
        refs, events, _ = oc.load(sessions, oc.Scope(date(year, 1, 1), date(year, 12, 31), escalated_only=escalated))
        if oc.snapshot_id(refs, events) != m["outcomeSnapshots"][name]:
            return False
    return True


# --- reading ----------------------------------------------------------------------------------


def connect(directory: Path, *, derived: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per Parquet file of the export (and per derived file
    present, unless ``derived`` is false)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for name in (*COLUMNS, *(DERIVED if derived else ())):
        path = directory / f"{name}.parquet"
        if name in COLUMNS or path.exists():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{_sql_path(path)}')")
    return con


def _has(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal",
                        [name]).fetchone()
    found_t = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()
    return bool(found and found[0]) or bool(found_t and found_t[0])


#: The build's record-fact queries over the row-level facts; each result is small (one row per
#: country, state, platform, type, month; per media kind; per recipient kind x detail) and is
#: written at export time as the aggregate of the same name.
_RECORD_AGG = {
    # GROUPING(country, us_state, platform, incident_type, month): bit 4 is country's.
    "agg_reports": (
        "SELECT GROUPING(country, us_state, platform, incident_type, month) AS gid, country, us_state, platform, "
        "incident_type, month, count(*) AS n, count(*) FILTER (WHERE escalated) AS escalated, "
        "count(*) FILTER (WHERE has_files) AS with_files, count(*) FILTER (WHERE has_unique) AS has_unique, "
        "count(*) FILTER (WHERE has_similar) AS has_similar FROM report_facts "
        "GROUP BY GROUPING SETS ((country), (country, us_state), (platform), (incident_type), (month), ())"),
    "agg_files": ("SELECT kind, count(*) AS n, count(*) FILTER (WHERE first_of_hash) AS first_of_hash, "
                  "count(*) FILTER (WHERE near) AS near, count(*) FILTER (WHERE exact) AS exact "
                  "FROM file_facts GROUP BY kind"),
    "agg_recipients": "SELECT agency_kind, detail, count(*) AS n FROM recipient_facts GROUP BY ALL",
    "agg_incidents": "SELECT count(DISTINCT report_id) AS bundled, count(DISTINCT incident_id) AS incidents "
                     "FROM incidents",
}
#: The row-level facts each record aggregate is summed from.
_RECORD_AGG_FROM = {"agg_reports": "report_facts", "agg_files": "file_facts", "agg_recipients": "recipient_facts",
                    "agg_incidents": "incidents"}


def _record_agg(con: duckdb.DuckDBPyConnection, name: str, *, aggregates: bool = True) -> list[tuple[Any, ...]]:
    """The rows of a record aggregate: read from the export when it holds it (and
    ``aggregates``), else summed by its query over the row-level facts (derived on the fly
    from the five files when those are missing too)."""
    if aggregates and _has(con, name):
        cols = con.execute(f"SELECT * FROM {name} LIMIT 0").description
        return con.execute(f"SELECT {', '.join(c[0] for c in cols)} FROM {name}").fetchall()
    source = _RECORD_AGG_FROM[name]
    if not _has(con, source):  # an export without its derived files: derive them here
        con.execute(f"CREATE TEMP TABLE {source} AS {_derived_sql(source)}")
    return con.execute(_RECORD_AGG[name]).fetchall()


def record_facts(con: duckdb.DuckDBPyConnection, year: int, *, aggregates: bool = True) -> RecordFacts:
    """The year's record facts (tipline.stats.transparency.RecordFacts) from the export: the
    export's record aggregates (:data:`_RECORD_AGG`: one GROUPING SETS scan of the year's
    reports with their derived flags for every count by country, state, platform, incident
    type and month; one of the files' derived flags; one of the derived recipients), or, with
    ``aggregates`` false or an export without them, the same queries run here."""
    from tipline.stats.transparency import RecordFacts

    total = with_files = unique = similar = escalated = 0
    months, esc_months = [0] * 12, [0] * 12
    countries: dict[str, int] = {}
    states: dict[str, int] = {}
    platforms: dict[str, int] = {}
    types: dict[str, int] = {}
    where: dict[str, int] = {}

    def add(d: dict[str, int], k: str, n: int) -> None:
        # Two stored values can map to one label (no type and an empty type: "not stated").
        d[k] = d.get(k, 0) + n

    for gid, country, state, platform, itype, month, n, esc, wf, un, si in _record_agg(
            con, "agg_reports", aggregates=aggregates):
        n = int(n)
        if gid == 0b11111:
            total, escalated, with_files, unique, similar = n, int(esc), int(wf), int(un), int(si)
        elif gid == 0b01111:
            add(countries, country or "unknown", n)
            add(where, "unknown" if country is None else ("U.S." if country == "US" else "international"), n)
        elif gid == 0b00111:
            if country == "US":
                add(states, state or "unknown", n)
        elif gid == 0b11011:
            add(platforms, str(platform), n)
        elif gid == 0b11101:
            add(types, itype or "not stated", n)
        elif gid == 0b11110:
            months[int(month) - 1], esc_months[int(month) - 1] = n, int(esc)
    # Sorted: a GROUP BY's order is DuckDB's, the store path lists kinds and recipients sorted
    # (and a list read back from Parquet must not depend on the order it was written in).
    files = sorted((str(k), int(n), int(u), int(nd), int(ed))
                   for k, n, u, nd, ed in _record_agg(con, "agg_files", aggregates=aggregates))
    recipients = {(str(k), str(d)): int(n)
                  for k, d, n in sorted(_record_agg(con, "agg_recipients", aggregates=aggregates))}
    counts = _record_agg(con, "agg_incidents", aggregates=aggregates)
    bundled, incidents = (int(counts[0][0] or 0), int(counts[0][1] or 0)) if counts else (0, 0)
    return RecordFacts(
        total=total, with_files=with_files, unique=unique, similar=similar, bundled=bundled, incidents=incidents,
        files=files, where=where, countries=countries, states=states, platforms=platforms, types=types,
        recipients=recipients, escalated=escalated, months=months, escalated_months=esc_months)


# --- outcome statistics in DuckDB -------------------------------------------------------------

_YES = {
    "arrests": "e.code = 'ARREST'",
    "charges": "e.code = 'CHARGED'",
    "convictions": "e.code = 'DISPOSITION' AND e.result = 'convicted'",
    "children_identified": "e.code = 'CHILD_IDENTIFIED'",
}
#: The group each breakdown puts a unit in, as SQL over the unit table (the same strings as
#: tipline.stats.outcomes._group_values).
_GROUP = {
    "agency": "agency", "platform": "platform", "incident-type": "incident_type",
    "priority": "CAST(priority AS VARCHAR)", "state": "state", "country": "country",
    "month": "strftime(start, '%Y-%m')", "year": "CAST(year(start) AS VARCHAR)",
}


#: Where a group's string is costly per unit, the cube groups by a raw value instead and
#: writes the string once per cube row (the same strings as :data:`_GROUP`).
_GROUP_RAW = {"month": "date_trunc('month', start)", "priority": "priority", "year": "year(start)"}
_GROUP_FMT = {"month": "strftime(r{i}, '%Y-%m')", "priority": "CAST(r{i} AS VARCHAR)",
              "year": "CAST(r{i} AS VARCHAR)"}


def _sql_str(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _units(con: duckdb.DuckDBPyConnection, scope: Scope, table: str) -> None:
    """Materialise the units of ``scope`` as ``table``: one row per report (or referral) with
    whether its feedback settles the question, the outcome, persons, first event and arrest —
    the rules of tipline.stats.outcomes.make_units, in SQL."""
    from tipline.stats.outcomes import _terminal_codes

    lo = f"TIMESTAMP '{scope.start.isoformat()} 00:00:00'"
    hi = f"TIMESTAMP '{scope.end.isoformat()} 23:59:59.999999'"
    when = "coalesce(escalated_at, made_available_at)" if scope.escalated_only else "made_available_at"
    where = [f"{when} >= {lo}", f"{when} <= {hi}"]
    if scope.escalated_only:
        where.append("escalated")
    for column, value in (("agency_kind", scope.agency_kind), ("agency", scope.agency), ("platform", scope.platform),
                          ("state", scope.state), ("country", scope.country), ("incident_type", scope.incident_type)):
        if value is not None:
            where.append(f"{column} = {_sql_str(value)}")
    if scope.priority is not None:
        where.append(f"priority = {int(scope.priority)}")
    terminal = ", ".join(_sql_str(c) for c in sorted(_terminal_codes())) or "NULL"
    # A view: the scope is read by column (Parquet) where it is used, never copied whole.
    con.execute(f"CREATE OR REPLACE TEMP VIEW scope_refs AS SELECT * FROM referrals WHERE {' AND '.join(where)}")
    # Events that stand: a withdrawal counts for nothing and removes what it names; an amendment
    # replaces what it names (superseded ids taken over every event in scope, as the store path).
    con.execute("""
        CREATE OR REPLACE TEMP TABLE scope_events AS
        SELECT o.* FROM outcomes o SEMI JOIN scope_refs r ON r.referral_id = o.referral_id""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE standing AS
        SELECT e.* FROM scope_events e
        ANTI JOIN (SELECT DISTINCT supersedes_id FROM scope_events WHERE supersedes_id IS NOT NULL) x
             ON x.supersedes_id = e.id
        WHERE e.kind <> 'withdraw'""")
    # The latest standing event by (occurred_on, id), as one sortable number (ids < 2^40).
    latest = "arg_max(e.code, date_diff('day', DATE '1970-01-01', e.occurred_on) * 1099511627776 + e.id)"
    # Each referral's events summed first (a GROUP BY over the events, keyed by one integer),
    # then joined to the referrals: most referrals have no event, and grouping the referrals
    # themselves by all their columns cost more than the rest of the derivation.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ev_status AS
        SELECT e.referral_id, bool_or({_YES[scope.measure]}) AS yes, {latest} AS latest,
               bool_or(e.code = 'ARREST') AS arrest,
               sum(CASE WHEN e.code = 'ARREST' THEN coalesce(e.persons, 1) END) AS persons,
               min(e.occurred_on) AS first_event,
               min(e.occurred_on) FILTER (WHERE e.code = 'ARREST') AS first_arrest
        FROM standing e GROUP BY e.referral_id""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref_status AS
        SELECT r.referral_id, r.report_id, r.agency, r.agency_kind, r.made_available_at, r.platform,
               r.incident_type, r.priority, r.state, r.country,
               coalesce(s.yes, false) AS yes,
               coalesce(s.latest IN ({terminal}), false) AS closed,
               coalesce(s.latest = 'TRANSFERRED', false) AS handed_over,
               coalesce(s.arrest, false) AS arrest,
               coalesce(s.persons, 0) AS persons,
               s.first_event, s.first_arrest
        FROM scope_refs r LEFT JOIN ev_status s ON s.referral_id = r.referral_id""")
    key = "report_id" if scope.unit == "report" else "referral_id"
    # The unit's first referral by (made available, id): one packed value, one aggregate.
    first = "epoch_us(made_available_at)::HUGEINT * 1099511627776 + referral_id"
    # A report is settled "no" only when every referral still carrying it is closed: a
    # referral handed over to another agency leaves the question to that agency's referral.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        WITH u AS (
            SELECT {key} AS key,
                   arg_min(struct_pack(agency, agency_kind, platform, incident_type, priority, state, country),
                           {first}) AS f,
                   CAST(min(made_available_at) AS DATE) AS start,
                   bool_or(yes) AS yes,
                   bool_or(yes) OR CASE WHEN count(*) > 1
                       THEN count(*) FILTER (WHERE NOT handed_over) > 0
                            AND coalesce(bool_and(closed) FILTER (WHERE NOT handed_over), false)
                       ELSE bool_and(closed) END AS settled,
                   bool_or(arrest) AS arrest, sum(persons) AS persons,
                   min(first_event) AS first_event, min(first_arrest) AS first_arrest
            FROM ref_status GROUP BY {key})
        SELECT key, f.agency, f.agency_kind, f.platform, f.incident_type, f.priority, f.state, f.country,
               start, yes, settled, arrest, persons, first_event, first_arrest,
               coalesce(CAST(f.priority AS VARCHAR), 'None') AS stratum_priority,
               coalesce(f.incident_type, 'None') AS stratum_type,
               CASE WHEN f.country IS NOT NULL OR f.state IS NOT NULL THEN 'yes' ELSE 'no' END AS located
        FROM u""")
    # The newest record read, where delays are censored while the period runs (as the store path).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table}_meta AS
        SELECT CAST(greatest((SELECT max(made_available_at) FROM scope_refs),
                             (SELECT max(recorded_at) FROM scope_events)) AS DATE) AS as_of""")


def _cube_breakdowns() -> list[str]:
    """The breakdowns the transparency report's outcome tables ask for (and prefetch): the
    groups the export's cubes are summed for."""
    from tipline.stats.transparency import OUTCOME_TABLES

    return [b for b in dict.fromkeys(b for b, _ in OUTCOME_TABLES) if b is not None]


def _censor(scope: Scope, as_of: date | None) -> date:
    """Where delays are censored: the period's end, or the newest record read while it runs."""
    return min(scope.end, as_of) if as_of else scope.end


def _cube_sql(table: str, named: Sequence[str], censor: date) -> dict[str, str]:
    """The SELECTs of the three cubes over the units of ``table`` (see :func:`_facts`), with a
    column r<i> (the raw group) and g<i> (its string) for each breakdown of ``named``.

    A breakdown's group is taken raw in the scan (a month as its first day, a priority as a
    number) and written as its string on the small result. Three plain GROUP BYs (each a scan
    of the units' few columns it needs): measured faster in DuckDB than one GROUPING SETS scan
    feeding three hash tables (1.1 against 3.3 CPU s over 3.6 M units). The sums are cast to
    BIGINT: a cube written to Parquet reads back with the types it had in memory."""
    raw = "".join(f", {_GROUP_RAW.get(b, _GROUP[b])} AS r{i}" for i, b in enumerate(named))
    rlist = "".join(f", r{i}" for i in range(len(named)))
    fmt = "".join(f", {_GROUP_FMT.get(b, 'r{i}').format(i=i)} AS g{i}" for i, b in enumerate(named))
    c = f"DATE '{censor.isoformat()}'"

    def delay(column: str) -> tuple[str, str]:
        hit = f"({column} IS NOT NULL AND {column} <= {c})"
        return f"greatest(0, date_diff('day', start, CASE WHEN {hit} THEN {column} ELSE {c} END))", hit

    out = {"cube": f"""
        SELECT *{fmt} FROM (
            SELECT agency, agency_kind, stratum_priority, stratum_type, located{rlist}, settled, yes,
                   count(*) AS n, count(*) FILTER (WHERE arrest) AS arrests, count(first_event) AS any_event,
                   CAST(coalesce(sum(persons), 0) AS BIGINT) AS persons, min(key) AS k0
            FROM (SELECT agency, agency_kind, stratum_priority, stratum_type, located, settled, yes, arrest,
                         first_event, persons, key{raw} FROM {table})
            GROUP BY agency, agency_kind, stratum_priority, stratum_type, located{rlist}, settled, yes)"""}
    for cube, column in (("cube_feedback", "first_event"), ("cube_arrest", "first_arrest")):
        days, observed = delay(column)
        out[cube] = f"""
            SELECT days, observed, n{fmt} FROM (
                SELECT days, observed{rlist}, count(*) AS n
                FROM (SELECT {days} AS days, {observed} AS observed{raw} FROM {table})
                GROUP BY days, observed{rlist})"""
    return out


def _delay_lists_sql(source: str, col: dict[str, str], bys: Sequence[str | None]) -> str:
    """Each group's delays (days, observed, units) of every breakdown of ``bys`` (None: the
    total) from a delay cube whose column ``col[b]`` holds breakdown b's group: one row per
    group, GROUPING() of those columns first (as :func:`_facts` reads it), the group's string
    per column, then three lists in (days, observed) order."""
    gcols = list(col.values())
    gid = f"GROUPING({', '.join(gcols)})" if gcols else "0"
    gsel = ", ".join(gcols) if gcols else "NULL"
    sets = ", ".join("(" + ", ".join(([col[b]] if b is not None else []) + ["days", "observed"]) + ")"
                     for b in dict.fromkeys(bys))
    order = "ORDER BY days, observed"
    return (f"SELECT gid, {gsel}, list(days {order}) AS days_list, list(observed {order}) AS observed_list, "
            f"list(n {order}) AS units_list "
            f"FROM (SELECT {gid} AS gid, {gsel}, days, observed, sum(n) AS n FROM {source} "
            f"GROUP BY GROUPING SETS ({sets})) GROUP BY ALL")


def _facts(con: duckdb.DuckDBPyConnection, table: str, bys: Sequence[str | None],
           censor: date, *, cubes: tuple[str, Sequence[str]] | None = None) -> dict[str | None, dict[Any, RowFacts]]:
    """The facts of every group of every breakdown in ``bys`` (None: the total) over the units
    of ``table``, each list in the order the store path builds it (first appearance by key).

    The units (36 M at full scale) are read into three small tables ("cubes", :func:`_cube_sql`):
    the units counted per group of every breakdown asked for x stratum x covariate pattern x
    status, with the smallest key of each cell (which fixes the order of the strata and
    patterns: the first appearance among units sorted by key is the smallest key); and the
    units counted per group x days to first feedback (to arrest) x observed. ``cubes``, when
    given, names cubes already summed (the export's, with this censoring date): (prefix, the
    breakdowns they hold, a superset of ``bys``); the units are then not read at all.
    Every fact is then a GROUPING SETS query over a cube of at most a few hundred thousand
    rows: sums of counts, and min of the smallest keys."""
    from tipline.stats.outcomes import RowFacts

    bys = list(dict.fromkeys(bys))
    if cubes is not None:
        prefix, held = cubes
        asked = {b for b in bys if b is not None}
        if not asked <= set(held):
            raise ValueError(f"the cubes {prefix} hold {list(held)}, not {bys}")
        # Only the columns of the breakdowns asked are grouped (GROUPING() takes grouped ones).
        col = {b: f"g{i}" for i, b in enumerate(held) if b in asked}
        cube, cube_feedback, cube_arrest = (f"{prefix}_{c}" for c in ("cube", "cube_feedback", "cube_arrest"))
    else:
        col = {b: f"g{i}" for i, b in enumerate(b for b in bys if b is not None)}
        cube, cube_feedback, cube_arrest = "cube", "cube_feedback", "cube_arrest"
        for name, sql in _cube_sql(table, list(col), censor).items():
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    named = list(col)
    gcols = list(col.values())

    def sets(extra: str = "") -> str:
        out = []
        for b in bys:
            cols = ([col[b]] if b is not None else []) + ([extra] if extra else [])
            out.append("(" + ", ".join(cols) + ")")
        return ", ".join(out)

    # GROUPING() sets bit i (counted from the last column) when column i is not grouped.
    full = (1 << len(gcols)) - 1
    masks = {full & ~(1 << (len(gcols) - 1 - i)): b for i, b in enumerate(named)}
    gid = f"GROUPING({', '.join(gcols)})" if gcols else "0"
    gsel = ", ".join(gcols) if gcols else "NULL"
    width = max(1, len(gcols))

    def run(select: str, source: str, extra: str,
            order: str = "") -> Iterator[tuple[tuple[str | None, Any], tuple[Any, ...]]]:
        sql = (f"SELECT {gid} AS gid, {gsel}, {select} FROM {source} "
               f"GROUP BY GROUPING SETS ({sets(extra)}) {order}")
        for row in con.execute(sql).fetchall():
            b = masks.get(int(row[0]))
            yield (b, row[1 + named.index(b)] if b is not None else "total"), row[1 + width:]

    out: dict[str | None, dict[Any, RowFacts]] = {b: {} for b in bys}
    for (b, g), (n, f, a, any_event, arrests, persons) in run(
            "sum(n), coalesce(sum(n) FILTER (WHERE settled), 0), coalesce(sum(n) FILTER (WHERE yes), 0), "
            "sum(any_event), sum(arrests), sum(persons)", cube, ""):
        out[b][g] = RowFacts(int(n), int(f), int(a), int(any_event), int(arrests), int(persons), [], [], [], [])
    counts = ("coalesce(sum(n) FILTER (WHERE settled), 0), coalesce(sum(n) FILTER (WHERE yes), 0), "
              "coalesce(sum(n) FILTER (WHERE NOT settled), 0)")
    for (b, g), (ag, pr, ty, k, a, u) in run(
            f"agency, stratum_priority, stratum_type, {counts}", cube,
            "agency, stratum_priority, stratum_type", "ORDER BY min(k0)"):
        out[b][g].strata.append(((str(ag), str(pr), str(ty)), int(k), int(a), int(u)))
    for (b, g), (ag, pr, kind, ty, loc, k, a, u) in run(
            f"agency, stratum_priority, agency_kind, stratum_type, located, {counts}", cube,
            "agency, stratum_priority, agency_kind, stratum_type, located", "ORDER BY min(k0)"):
        out[b][g].patterns.append((str(ag), (str(pr), str(kind), str(ty), str(loc)), int(k), int(a), int(u)))
    # The delays: tens of thousands of (group, days, observed) rows per cube, so each group's
    # come back as three lists (DuckDB builds them; one Python row per group, not per day),
    # read from the export where it wrote them for these cubes (:func:`_delay_lists_sql`).
    for source, attr in ((cube_feedback, "to_feedback"), (cube_arrest, "to_arrest")):
        lists = f"{source}_lists"
        # The export's lists group by every breakdown the cubes hold: read when all are asked.
        sql = (f"SELECT * FROM {lists}" if cubes is not None and named == list(cubes[1]) and _has(con, lists)
               else _delay_lists_sql(source, col, bys))
        for row in con.execute(sql).fetchall():
            b = masks.get(int(row[0]))
            if b not in out:
                continue  # a breakdown the export summed and this caller did not ask for
            g = row[1 + named.index(b)] if b is not None else "total"
            days, observed, ns = row[1 + width:]
            getattr(out[b][g], attr).extend(zip(days, observed, ns, strict=True))
    return out


def outcome_stats(con: duckdb.DuckDBPyConnection, manifest: dict[str, Any], scope: Scope, *,
                  coverage_threshold: float | None = None, replicates: int | None = None,
                  cache: dict[Any, Any] | None = None, prefetch: Sequence[str] = (),
                  timings: dict[str, float] | None = None, aggregates: bool = True) -> dict[str, Any]:
    """The document of tipline.stats.outcomes.outcome_stats, computed from the export. The
    snapshot is the one the export recorded for the scope's records (the transparency year's
    two scopes: all referrals, escalated ones). With ``aggregates`` (the default) the year's
    cubes written at export time are read where they answer the scope; without, the cubes are
    summed here from the units (the reference for them)."""
    from urllib.parse import urlencode

    from tipline.stats import outcomes as oc

    if (scope.start, scope.end) != (date(int(manifest["year"]), 1, 1), date(int(manifest["year"]), 12, 31)):
        raise ValueError("a columnar export answers for its own calendar year")
    if any(v is not None for v in (scope.agency_kind, scope.agency, scope.platform, scope.state, scope.country,
                                   scope.incident_type, scope.priority)):
        raise ValueError("the export's snapshot covers the whole year: a filtered scope has none of its own")
    snap = manifest["outcomeSnapshots"]["escalated" if scope.escalated_only else "all"]
    derived = "units_escalated" if scope.escalated_only else "units_all"
    as_of: date | None
    cubes: tuple[str, Sequence[str]] | None = None
    if (scope.unit, scope.measure) == ("report", "arrests") and _has(con, derived) \
            and derived in (manifest.get("derived") or {}):
        # The year's units, derived when the export was written (the transparency report's).
        table = derived
        raw = manifest["derived"][derived]["asOf"]
        as_of = date.fromisoformat(raw) if raw else None
        held = manifest["derived"][derived].get("cubes")
        # Their cubes too, when summed for this censoring date and holding every breakdown asked.
        if aggregates and held and held["censor"] == _censor(scope, as_of).isoformat() \
                and {scope.by, *prefetch} - {None} <= set(held["by"]) \
                and all(_has(con, f"{derived}_{c}") for c in ("cube", "cube_feedback", "cube_arrest")):
            cubes = (derived, list(held["by"]))
    else:
        table = f"{derived}_{scope.unit}_{scope.measure}"
        if not _has(con, table):
            _units(con, replace(scope, by=None), table)
        meta = con.execute(f"SELECT as_of FROM {table}_meta").fetchone()
        as_of = meta[0] if meta else None
    censor = _censor(scope, as_of)
    th = oc.Thresholds(oc.DEFAULT_COVERAGE_THRESHOLD if coverage_threshold is None else coverage_threshold,
                       oc.MIN_FEEDBACK, oc.BOOTSTRAP_REPLICATES if replicates is None else replicates)
    # The facts of the breakdowns a caller will ask for next come from the same scans.
    memo = cache if cache is not None else {}
    import time as _time

    t0 = _time.process_time()
    if (table, censor, scope.by) not in memo:
        bys: list[str | None] = [None, scope.by, *prefetch]
        for b, facts in _facts(con, table, bys, censor, cubes=cubes).items():
            memo[(table, censor, b)] = facts
    t1 = _time.process_time()
    total = memo[(table, censor, None)].get("total") or oc.RowFacts(0, 0, 0, 0, 0, 0, [], [], [], [])
    rows = list(memo[(table, censor, scope.by)].items()) if scope.by else None
    body = oc.compute_facts(scope, total, rows, censor, th)
    if timings is not None:
        timings["outcome facts (DuckDB), cpu s"] = timings.get("outcome facts (DuckDB), cpu s", 0.0) + t1 - t0
        timings["figures (Python), cpu s"] = timings.get("figures (Python), cpu s", 0.0) + \
            _time.process_time() - t1
    return {
        "query": scope.params(), "snapshot": snap, **oc._versions(),
        "citation": "/api/v1/stats/outcomes?" + urlencode({**scope.params(), "snapshot": snap}),
        "unit": scope.unit, "measure": scope.measure, "by": scope.by,
        "thresholds": {"coverage": th.coverage, "minFeedback": th.min_feedback, "confidence": oc.CONFIDENCE},
        **body,
    }


def build(directory: Path, *, now: datetime | None = None, coverage_threshold: float | None = None,
          replicates: int | None = None, timings: dict[str, float] | None = None,
          aggregates: bool = True) -> Transparency:
    """The transparency report of the export's year, computed from its Parquet files with
    DuckDB: the same document as tipline.stats.transparency.build on the records exported.
    ``timings``, when given, receives the CPU seconds (all threads) of each part.
    ``aggregates`` false ignores the export's aggregates (:data:`AGGREGATES`) and sums the
    row-level facts instead: the same report, the reference the tests hold the aggregates to."""
    import time as _time

    from tipline.stats import transparency as tr

    manifest = read_manifest(directory)
    year = int(manifest["year"])
    con = connect(directory)
    cache: dict[Any, Any] = {}
    prefetch = [b for b, _ in tr.OUTCOME_TABLES if b is not None]
    try:
        t0 = _time.process_time()
        facts = record_facts(con, year, aggregates=aggregates)
        if timings is not None:
            timings["record facts (DuckDB), cpu s"] = _time.process_time() - t0
        return tr.assemble(year, manifest["snapshot"], dict(manifest["records"]), facts,
                           lambda scope: outcome_stats(con, manifest, scope, coverage_threshold=coverage_threshold,
                                                       replicates=replicates, cache=cache, prefetch=prefetch,
                                                       timings=timings, aggregates=aggregates),
                           now=now)
    finally:
        con.close()


# --- the published report ---------------------------------------------------------------------


def _pointer(data_dir: Path, year: int) -> Path:
    from tipline.stats.transparency import snapshot_dir

    return snapshot_dir(data_dir) / f"transparency-{year}-published.json"


def published(data_dir: Path, year: int, *, coverage_threshold: float | None = None) -> Transparency | None:
    """The year's report as published from its columnar export (``tipline stats export``), or
    None when the year has no export. Computed from the export once and kept under its snapshot
    id (tipline.stats.transparency.keep, so it enters the revision log); after that, read back
    from the kept file while the export (its manifest, with every file's SHA-256) and the
    coverage threshold are the same. A page view then reads one JSON file instead of
    recomputing the year from the store."""
    from tipline.stats import transparency as tr

    directory = default_dir(data_dir, year)
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = read_manifest(directory)
    except (ValueError, OSError):
        return None  # not an export of this schema: the store path serves the year
    if int(manifest.get("year", 0)) != year:
        return None
    stamp = {"manifest": hashlib.sha256(path.read_bytes()).hexdigest(), "coverageThreshold": coverage_threshold}
    pointer = _pointer(data_dir, year)
    if pointer.exists():
        doc = json.loads(pointer.read_text(encoding="utf-8"))
        if {k: doc.get(k) for k in stamp} == stamp:
            kept = tr.recall(data_dir, year, str(doc["snapshot"]))
            if kept is not None:
                return kept
    import duckdb

    try:
        report = build(directory, coverage_threshold=coverage_threshold)
    except (duckdb.Error, OSError, KeyError) as err:
        # An export being rewritten, or damaged: the page falls back to the store (the
        # reference) rather than failing; the log says why.
        import logging

        logging.getLogger(__name__).warning("columnar export %s unreadable (%s): serving %s from the store",
                                            directory, err, year)
        return None
    tr.keep(report, data_dir)
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**stamp, "snapshot": report.snapshot, "export": str(directory)}), encoding="utf-8")
    tmp.replace(pointer)
    return report
