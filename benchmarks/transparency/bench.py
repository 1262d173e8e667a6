"""The transparency report at full scale: a synthetic 36.2 M-report year as a columnar export,
and the store path against the columnar path on a store-sized slice.

    PYTHONPATH=src .venv/bin/python benchmarks/transparency/bench.py [--reports 36210368] [--slice 20000]
                                                                     [--dir DIR] [--keep]

1. **generate**: DuckDB writes the export's five Parquet files in SQL (no store involved),
   with distributions taken from NCMEC's published 2023 tables that ship with tipline
   (platforms from esps.csv, countries, US states, incident types, the user-location split,
   the referral share) and the outcome profile (agency feedback propensity by kind, arrest
   probability by priority): 36.2 M reports, 0-5 files each (~2.5 on average, ~90 M files;
   NCMEC counted 105 M in 2023), a referral per report and a second for 5 %, and the outcome
   events agencies report.
2. **full**: ``tipline.stats.columnar.build`` over it, timed: the whole report (NCMEC's
   tables, the outcome tables with both estimates), with the default coverage threshold
   (realistic feedback is thin, so the estimates are withheld) and with threshold 0 (every
   estimate and bootstrap computed: the worst case).
3. **slice**: the first ``--slice`` reports of the synthetic year loaded into a fresh SQLite
   store, then the store path (``transparency.build``) and the columnar path (export, then
   build; and build alone) timed in the same run, as a ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from tipline.stats import columnar

DATA = Path(__file__).resolve().parents[2] / "src" / "tipline" / "data" / "sim"
SLOTS = 1 << 16  # categorical draws: a value gets slots in proportion to its weight (at least one)
YEAR = 2023


def _num(s: str) -> int:
    return int(s.replace(",", "").strip() or 0)


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _slot_table(con: duckdb.DuckDBPyConnection, name: str, items: list[tuple[str, float]]) -> None:
    """A table (slot, value) of SLOTS rows: value v fills a share of slots equal to its weight."""
    total = sum(w for _, w in items)
    slots: list[str] = []
    for v, w in items:
        slots += [v] * max(1, round(SLOTS * w / total))
    slots = (slots * 2)[:SLOTS] if len(slots) < SLOTS else slots[:SLOTS]
    # One statement with the list as a parameter: executemany runs one INSERT per slot (65,536
    # statements a table, minutes on a loaded machine before any report is generated).
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT CAST(generate_subscripts($s, 1) - 1 AS INTEGER) AS slot, "
                "CAST(unnest($s) AS VARCHAR) AS value", {"s": slots})


def generate(out: Path, n: int) -> dict[str, Any]:
    """Write a synthetic year's export (five Parquet files and a manifest) with DuckDB SQL."""
    from tipline.sim.calibration import _CSV_TYPE_NAMES

    out.mkdir(parents=True, exist_ok=True)
    # A database file with a memory limit: a full year's files (105 M rows) spill to disk
    # instead of filling the machine's memory.
    db = out / ".generate.duckdb"
    con = duckdb.connect(str(db))
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET memory_limit = '4GB'")
    esps = [(r["esp"], float(_num(r["reports"]))) for r in _rows("esps.csv") if r["year"] == str(YEAR)]
    contents = _rows("ocse-report-contents.csv")
    listed = sum(w for _, w in esps)
    total = next(_num(r["quantity"]) for r in contents if r["year"] == str(YEAR) and r["label"] == "total")
    # The platforms NCMEC does not list by name share the rest, as 200 smaller platforms.
    esps += [(f"Platform {i:03d}", (total - listed) / 200) for i in range(200)]
    _slot_table(con, "platforms", esps)
    types = [(_CSV_TYPE_NAMES[r["label"]], float(_num(r["quantity"]))) for r in contents
             if r["year"] == str(YEAR) and r["category"] == "kind of exploitation" and r["label"] in _CSV_TYPE_NAMES]
    _slot_table(con, "types", types)
    to2 = {r["iso3"]: r["iso2"] for r in _rows("iso3-to-iso2.csv")}
    countries = [(to2[r["iso3"]], float(_num(r[str(YEAR)]))) for r in _rows("ocse-reports-per-country.csv")
                 if r["iso3"] in to2 and to2[r["iso3"]] != "US" and _num(r.get(str(YEAR)) or "0") > 0]
    _slot_table(con, "countries", countries)
    states = [(r["state"], float(_num(r["reports"]))) for r in _rows("ocse-reports-by-state.csv")
              if r["year"] == str(YEAR) and len(r["state"]) == 2]
    _slot_table(con, "states", states)
    where = {r["label"]: _num(r["quantity"]) for r in contents
             if r["year"] == str(YEAR) and r["category"] == "user location"}
    us = where.get("U.S.", 0) / total
    unknown = where.get("unknown", 0) / total
    h = "(hash(report_id, {salt}) % 1000000) / 1e6"
    t0 = time.perf_counter()
    con.execute(f"""
        CREATE TABLE reports AS
        WITH base AS (SELECT range AS report_id FROM range({n}))
        SELECT report_id,
               TIMESTAMP '{YEAR}-01-01' + to_microseconds(CAST(hash(report_id, 1) % 31536000000000 AS BIGINT))
                   AS opened_at,
               p.value AS platform, t.value AS incident_type,
               CASE WHEN {h.format(salt=3)} < {unknown} THEN NULL
                    WHEN {h.format(salt=3)} < {unknown + us} THEN 'US' ELSE c.value END AS country,
               CASE WHEN {h.format(salt=3)} >= {unknown} AND {h.format(salt=3)} < {unknown + us}
                    THEN CASE WHEN {h.format(salt=5)} < 0.9 THEN s.value END END AS us_state,
               CASE WHEN {h.format(salt=6)} < 0.503 THEN 'referral' ELSE 'informational' END AS disposition,
               CASE WHEN {h.format(salt=7)} < 0.00177 THEN 1 WHEN {h.format(salt=7)} < 0.1 THEN 2 ELSE 3 END
                   AS priority
        FROM base
        JOIN platforms p ON p.slot = hash(report_id, 2) % {SLOTS}
        JOIN types t ON t.slot = hash(report_id, 8) % {SLOTS}
        JOIN countries c ON c.slot = hash(report_id, 4) % {SLOTS}
        JOIN states s ON s.slot = hash(report_id, 9) % {SLOTS}""")
    # 0-5 files a report, ~2.5 on average (NCMEC 2023: 105.6 M files, ~2.9); 30 % of files are copies of 2 M viral
    # items (so duplicates, exact or near), the rest unique.
    con.execute("""
        CREATE VIEW files AS
        SELECT report_id, CASE WHEN hash(report_id, i, 1) % 100 < 52 THEN 'photo' ELSE 'video' END AS kind,
               sha256(CASE WHEN hash(report_id, i, 2) % 100 < 30 THEN 'viral' || (hash(report_id, i, 3) % 2000000)
                           ELSE report_id || '/' || i END) AS sha256,
               hash(report_id, i, 2) % 100 < 30 AS duplicate,
               hash(report_id, i, 2) % 100 < 12 AS near,
               hash(report_id, i, 2) % 100 BETWEEN 12 AND 29 AS exact
        FROM (SELECT report_id, unnest(range(CAST(hash(report_id, 10) % 6 AS INTEGER))) AS i FROM reports)""")
    # Bundling: 10 % of reports join incidents of ~3 reports.
    con.execute("""
        CREATE TABLE incidents AS SELECT report_id, report_id // 3 AS incident_id FROM reports
        WHERE hash(report_id // 3, 11) % 100 < 10""")
    con.execute("""
        CREATE TABLE agencies AS
        SELECT 'ICAC-' || value AS agency, 'icac' AS kind FROM states
        UNION SELECT 'LOCAL-' || value, 'local' FROM states
        UNION SELECT 'INTL-' || value, 'international' FROM countries
        UNION SELECT 'INTL-UNKNOWN', 'international' UNION SELECT 'FBI', 'federal' UNION SELECT 'HSI', 'federal'""")
    con.execute("""
        CREATE TABLE referrals AS
        WITH refs AS (
            SELECT r.*, n AS nth FROM reports r, LATERAL (SELECT unnest(range(
                CASE WHEN hash(report_id, 12) % 100 < 5 THEN 2 ELSE 1 END)) AS n)
        )
        SELECT row_number() OVER () AS referral_id, report_id,
               CASE WHEN nth = 1 THEN CASE WHEN country = 'US' THEN 'FBI' ELSE 'HSI' END
                    WHEN country = 'US' AND us_state IS NOT NULL THEN
                        CASE WHEN hash(report_id, 13) % 100 < 85 THEN 'ICAC-' ELSE 'LOCAL-' END || us_state
                    WHEN country = 'US' THEN 'FBI'
                    WHEN country IS NULL THEN 'INTL-UNKNOWN' ELSE 'INTL-' || country END AS agency,
               opened_at + to_microseconds(CAST(hash(report_id, nth, 14) % 1200 AS BIGINT) * 60000000)
                   AS made_available_at,
               priority = 1 AS escalated,
               CASE WHEN priority = 1 THEN opened_at + INTERVAL 45 MINUTE END AS escalated_at,
               platform, incident_type, priority, us_state AS state, country, disposition, true AS report_in_year
        FROM refs""")
    con.execute("""
        CREATE OR REPLACE TABLE referrals AS
        SELECT r.referral_id, r.report_id, r.agency, a.kind AS agency_kind, r.made_available_at, r.escalated,
               r.escalated_at, r.platform, r.incident_type, r.priority, r.state, r.country, r.disposition,
               r.report_in_year
        FROM referrals r JOIN agencies a USING (agency)""")
    # Feedback: each agency a propensity in its kind's range (tipline/data/sim/outcomes.toml);
    # the truth an arrest with probability by priority; reported referrals get an
    # acknowledgement, then an arrest (and a charge) or a closing, or stay open (30 %).
    con.execute("""
        CREATE TABLE fb AS
        SELECT r.referral_id, r.made_available_at, r.priority,
               (hash(r.referral_id, 20) % 1000000) / 1e6 < (
                   CASE a.kind WHEN 'icac' THEN 0.15 + 0.30 * (hash(a.agency) % 1000) / 1e3
                               WHEN 'local' THEN 0.15 + 0.30 * (hash(a.agency) % 1000) / 1e3
                               WHEN 'federal' THEN 0.05 + 0.20 * (hash(a.agency) % 1000) / 1e3
                               ELSE 0.05 + 0.15 * (hash(a.agency) % 1000) / 1e3 END) AS reported,
               (hash(r.referral_id, 21) % 1000000) / 1e6 < CASE r.priority WHEN 1 THEN 0.35 WHEN 2 THEN 0.15
                                                            ELSE 0.05 END AS arrested,
               hash(r.referral_id, 22) % 100 < 30 AS open
        FROM referrals r JOIN agencies a USING (agency)""")
    con.execute("""
        CREATE TABLE outcomes AS
        WITH ev AS (
            SELECT referral_id, 'ACKNOWLEDGED' AS code, 2 AS day, NULL::INTEGER AS persons, made_available_at
            FROM fb WHERE reported
            UNION ALL SELECT referral_id, 'ARREST', 90, 1 + CAST(hash(referral_id, 23) % 4 = 0 AS INTEGER),
                             made_available_at FROM fb WHERE reported AND arrested AND NOT open
            UNION ALL SELECT referral_id, 'CHARGED', 110, NULL, made_available_at
                      FROM fb WHERE reported AND arrested AND NOT open
            UNION ALL SELECT referral_id, CASE WHEN hash(referral_id, 24) % 2 = 0 THEN 'CLOSED_NOT_ACTIONABLE'
                                               ELSE 'CLOSED_NOT_PURSUED' END, 120, NULL, made_available_at
                      FROM fb WHERE reported AND NOT arrested AND NOT open
        )
        SELECT row_number() OVER () AS id, referral_id, code, 'record' AS kind, NULL::BIGINT AS supersedes_id,
               CAST(made_available_at AS DATE) + day AS occurred_on, persons, NULL::VARCHAR AS result,
               NULL::INTEGER AS children, CASE WHEN code = 'ARREST' THEN 'T' END AS arrest_type,
               NULL::VARCHAR AS nibrs_code,
               CASE WHEN code LIKE 'CLOSED%' THEN 'no_offence' END AS reason,
               made_available_at + to_microseconds(CAST((day + hash(referral_id, code) % 60) AS BIGINT)
                                                   * 86400000000) AS recorded_at
        FROM ev""")
    counts: dict[str, int] = {}
    for name, cols in columnar.COLUMNS.items():
        select = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in cols)
        con.execute(f"COPY (SELECT {select} FROM {name}) TO '{out / (name + '.parquet')}' (FORMAT parquet)")
        counts[name] = int(con.execute(f"SELECT count(*) FROM read_parquet('{out / (name + '.parquet')}')")
                           .fetchone()[0])  # type: ignore[index]
    seconds = time.perf_counter() - t0
    con.close()
    db.unlink()
    derive_s, derive_cpu, derived = derive(out)
    return {"seconds": seconds, "rows": counts, "derive seconds": derive_s, "derive cpu seconds": derive_cpu,
            "bytes": sum((out / f"{n}.parquet").stat().st_size for n in columnar.COLUMNS),
            "derived bytes": sum((out / f"{n}.parquet").stat().st_size for n in columnar.DERIVED),
            "derived": derived}


def derive(out: Path, memory_limit: str = "2GB") -> tuple[float, float, dict[str, Any]]:
    """The export's derived files (tipline.stats.columnar.derive, as ``tipline stats export``
    writes them) and the manifest; (wall, CPU seconds, what the manifest records)."""
    con = duckdb.connect()
    counts = {n: int(con.execute(f"SELECT count(*) FROM read_parquet('{out / (n + '.parquet')}')")
                     .fetchall()[0][0]) for n in columnar.COLUMNS}
    con.close()
    t0, c0 = time.perf_counter(), time.process_time()
    derived = columnar.derive(out, YEAR, memory_limit=memory_limit)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    CPU["derive peak RSS MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    manifest = {"schema": columnar.SCHEMA, "year": YEAR, "exportedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "snapshot": "synthetic0000000", "records": {"reports": counts["reports"]},
                "outcomeSnapshots": {"all": "ssynthetic", "escalated": "ssynthetic"}, "rows": counts, "sha256": {},
                "derived": derived}
    (out / columnar.MANIFEST).write_text(json.dumps(manifest, indent=1))
    return round(wall, 2), round(cpu, 2), derived


CPU: dict[str, float] = {}


def _timed(fn: Callable[[], Any], label: str = "") -> tuple[float, Any]:
    """Wall seconds (and, under ``label`` in CPU, the process's CPU seconds: on a shared, loaded
    machine the wall time measures the neighbours too; CPU / 2 is the idle 2-core wall time's floor)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    if label:
        CPU[label] = round(time.process_time() - c0, 2)
    return time.perf_counter() - t0, result


def full(directory: Path, *, aggregates: bool = True) -> dict[str, Any]:
    # Imports first, timed apart: the first report in a process pays for them (the published
    # tables' module pulls in tipline.sim.calibration, numpy and the report model: ~0.3 CPU s).
    modules = ("duckdb", "tipline.stats.transparency", "tipline.stats.outcomes", "tipline.stats.published",
               "tipline.sim.calibration")
    seconds, _ = _timed(lambda: [__import__(m) for m in modules], "imports")
    out: dict[str, Any] = {"imports": {"seconds": round(seconds, 2), "cpu seconds": CPU["imports"]},
                           "load average (1 min) before": round(__import__("os").getloadavg()[0], 1)}
    for label, threshold in (("default threshold (0.5)", None), ("threshold 0: every estimate computed", 0.0)):
        parts: dict[str, float] = {}
        seconds, report = _timed(lambda threshold=threshold, parts=parts: columnar.build(
            directory, coverage_threshold=threshold, timings=parts, aggregates=aggregates), label)
        total = dict(zip([c.name for c in report.table("outcomes").columns], report.table("outcomes").rows[0],
                         strict=True))
        out[label] = {"seconds": round(seconds, 2), "cpu seconds": CPU[label],
                      "reports": report.table("reports").rows[0][1],
                      "coverage": total["coverage"], "estimate": total["estimate"],
                      "estimateWeighted": total["estimateWeighted"],
                      "parts, cpu s": {k: round(v, 2) for k, v in parts.items()}}
    out["peak RSS MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["load average (1 min) after"] = round(__import__("os").getloadavg()[0], 1)
    return out


def load_slice(directory: Path, k: int, data_dir: Path) -> Any:
    """The first ``k`` synthetic reports (and their files, referrals, outcomes) into a fresh
    SQLite store, with SQLAlchemy Core bulk inserts."""
    from sqlalchemy import insert

    from tipline.config import Settings
    from tipline.kinds.outcomes import registry
    from tipline.runtime import Runtime
    from tipline.store.setup import do_init
    from tipline.store.tables import (
        Agency,
        Assessment,
        Blob,
        File,
        FileMatch,
        IncidentReport,
        Jurisdiction,
        Referral,
        Report,
        Reporter,
    )
    from tipline.store.tables_people import Outcome

    settings = Settings.from_env(data_dir)
    do_init(settings)
    rt = Runtime.open(settings)
    con = columnar.connect(directory)
    con.execute(f"CREATE TEMP TABLE r AS SELECT * FROM reports WHERE report_id < {k}")
    now = datetime(YEAR + 1, 6, 1, tzinfo=UTC)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return con.execute(sql).fetchall()

    def utc(v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None else None

    with rt.sessions.begin() as s:
        plats = {p: i + 1 for i, (p,) in enumerate(rows("SELECT DISTINCT platform FROM r ORDER BY 1"))}
        s.execute(insert(Reporter), [{"id": i, "name": p, "kind": "esp", "enabled": True, "created_at": now}
                                     for p, i in plats.items()])
        refs = rows(f"SELECT * FROM referrals WHERE report_id < {k}")
        agencies = {a: (i + 1, kind) for i, (a, kind) in enumerate(sorted({(x[2], x[3]) for x in refs}))}
        s.execute(insert(Agency), [{"id": i, "code": a, "name": a, "kind": kind, "active": True}
                                   for a, (i, kind) in agencies.items()])
        reps = rows("SELECT * FROM r")
        s.execute(insert(Report), [{"id": x[0] + 1, "reporter_id": plats[x[2]], "source": "api", "state": "finished",
                                    "opened_at": utc(x[1]), "last_change_at": utc(x[1]), "finished_at": utc(x[1]),
                                    "incident_type": x[3], "file_count": 0, "batched": False,
                                    "normalisations": []} for x in reps])
        s.execute(insert(Assessment), [{"report_id": x[0] + 1, "quality": 0.5, "missing": [], "disposition": x[6],
                                        "disposition_reasons": [], "priority": x[7], "priority_reasons": [],
                                        "escalate": x[7] == 1, "rules_version": "bench", "assessed_at": utc(x[1])}
                                       for x in reps])
        s.execute(insert(Jurisdiction), [{"report_id": x[0] + 1, "country": x[4], "us_state": x[5], "source": "ip",
                                          "confidence": 1.0, "resolved_at": utc(x[1])} for x in reps])
        files = rows(f"SELECT report_id, kind, sha256, near, exact FROM files WHERE report_id < {k}")
        s.execute(insert(Blob), [{"sha256": sha, "size": 1000, "created_at": now} for sha in {f[2] for f in files}])
        s.execute(insert(File), [{"id": f"{i:032x}", "report_id": f[0] + 1, "seq": i, "size": 1000,
                                  "uploaded_at": now, "sha256": f[2], "md5": f[2][:32], "sha1": f[2][:40],
                                  "media_type": "image/jpeg" if f[1] == "photo" else "video/mp4"}
                                 for i, f in enumerate(files)])
        matches = [{"file_id": f"{i:032x}", "kind": "duplicate", "hash_type": "pdq", "distance": 5 if f[3] else 0,
                    "created_at": now} for i, f in enumerate(files) if f[3] or f[4]]
        if matches:
            s.execute(insert(FileMatch), matches)
        members = rows(f"SELECT report_id, incident_id FROM incidents WHERE report_id < {k}")
        if members:
            from tipline.store.tables import Incident

            s.execute(insert(Incident), [{"id": i + 1, "rule": "bench", "key": f"bench-{i}",
                                          "lowest_report_id": 3 * i + 1, "created_at": now, "updated_at": now}
                                         for (i,) in
                                         rows(f"SELECT DISTINCT incident_id FROM incidents WHERE report_id < {k}")])
            s.execute(insert(IncidentReport), [{"report_id": m[0] + 1, "incident_id": m[1] + 1, "rule": "bench"}
                                               for m in members])
        s.execute(insert(Referral), [{"id": x[0], "report_id": x[1] + 1, "agency_id": agencies[x[2]][0],
                                      "rule": "bench", "reason": "bench", "made_available_at": utc(x[4]),
                                      "escalated": x[5], "escalated_at": utc(x[6])} for x in refs])
        evs = rows(f"SELECT o.*, f.agency FROM outcomes o JOIN referrals f USING (referral_id) WHERE f.report_id < {k}")
        s.execute(insert(Outcome), [{"id": e[0], "referral_id": e[1], "agency_id": agencies[e[13]][0], "code": e[2],
                                     "kind": e[3], "occurred_on": e[5], "persons": e[6], "arrest_type": e[9],
                                     "reason": e[11], "via": "api", "codes_version": registry().version,
                                     "recorded_at": utc(e[12])} for e in evs])
    con.close()
    return rt


def slice_ratio(directory: Path, k: int, tmp: Path) -> dict[str, Any]:
    from tipline.stats import transparency as tr

    t_load, rt = _timed(lambda: load_slice(directory, k, tmp / "data"))
    try:
        t_store, ref = _timed(lambda: tr.build(rt.sessions, YEAR), "store")
        t_export, _ = _timed(lambda: columnar.export(rt.sessions, YEAR, tmp / "export"), "export")
        t_columnar, fast = _timed(lambda: columnar.build(tmp / "export"), "columnar")
        same = {t["key"]: t for t in ref.as_json()["tables"]} == {t["key"]: t for t in fast.as_json()["tables"]}
    finally:
        rt.close()
    return {"reports": ref.records["reports"], "load into SQLite s": round(t_load, 2),
            "store path s": round(t_store, 2), "export s": round(t_export, 2), "columnar build s": round(t_columnar, 2),
            "store / columnar build": round(t_store / t_columnar, 1),
            "store / (export + columnar build)": round(t_store / (t_export + t_columnar), 2),
            "cpu seconds": {k: CPU[k] for k in ("store", "export", "columnar")},
            "store / columnar build, cpu": round(CPU["store"] / CPU["columnar"], 1),
            "identical tables": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=36_210_368)
    ap.add_argument("--slice", type=int, default=20_000, help="reports in the store-sized slice (0: skip)")
    ap.add_argument("--dir", type=Path, default=None, help="where the synthetic export goes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic export")
    ap.add_argument("--reuse", action="store_true", help="use the export already in --dir")
    ap.add_argument("--derive", action="store_true",
                    help="with --reuse: (re)write the export's derived files first (an export made before them)")
    ap.add_argument("--memory-limit", default="2GB",
                    help="with --derive: DuckDB's memory limit while deriving (it spills beyond it)")
    ap.add_argument("--derive-only", action="store_true", help="with --derive: write the derived files, no report")
    ap.add_argument("--no-aggregates", action="store_true",
                    help="build from the row-level facts, ignoring the export's aggregates (the reference path)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tipline-transparency-"))
    directory = args.dir or tmp / "year"
    try:
        if not args.reuse:
            gen = generate(directory, args.reports)
            print(json.dumps({"generate": gen}, indent=1), flush=True)
        elif args.derive:
            wall, cpu, _ = derive(directory, args.memory_limit)
            print(json.dumps({"derive": {"seconds": wall, "cpu seconds": cpu,
                                         "peak RSS MB (the process so far)": CPU["derive peak RSS MB"],
                                         "load average (1 min)": round(__import__("os").getloadavg()[0], 1)}},
                             indent=1), flush=True)
        if args.derive_only:
            return
        print(json.dumps({"full": full(directory, aggregates=not args.no_aggregates)}, indent=1), flush=True)
        if args.slice:
            print(json.dumps({"slice": slice_ratio(directory, args.slice, tmp / "slice")}, indent=1), flush=True)
    finally:
        shutil.rmtree(tmp / "slice", ignore_errors=True)
        if not args.keep and args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
