"""No enrichment statement reads a table that grows with the store through anything but an index
on the rows it wants.

A group of reports must cost the same in the first minute of a year and in the last (issue 12),
so every statement the stages run — set-based and per-report — is planned by the database
here and the plans are checked: no full scan of a table that grows with the store, and no
index search by a low-cardinality column alone (``kind = 'duplicate'`` is most of
``file_matches``). A slice of a simulated year is too small for the planners' statistics to
matter, which is the point: what is checked is that an index *can* serve each statement.
SQLite plans without statistics (``EXPLAIN QUERY PLAN``); PostgreSQL is asked with sequential
scans switched off, so a ``Seq Scan`` it still picks is one no index can replace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from tipline.pipeline.core import StageContext, run_report_stepwise, run_reports
from tipline.runtime import Runtime
from tipline.sim.generate import YearGenerator
from tipline.sim.write import DirectWriter, register_platforms
from tipline.store.tables import Base, Report

#: Tables whose size does not follow the number of reports (configuration, a per-transaction
#: scratch list), where reading all rows is what the statement means.
BOUNDED = {"agencies", "hash_banks", "report_link_changes", "platforms", "esps", "bank_entries"}
#: A full read that is meant: the PDQ index loads every stored hash once per process, then
#: follows new ones by ``computed_at`` (tipline.pipeline.stages.matches.FileIndex.refresh; with
#: each file's upload time, joined by the files' primary key).
ONCE_PER_PROCESS = re.compile(r"FROM file_signals (JOIN files ON files\.id = file_signals\.file_id )?"
                              r"WHERE file_signals\.pdq IS NOT NULL\s*$")
#: Columns with a handful of values: an index search by these alone reads a share of the table.
COARSE = {"kind", "state", "role", "stage", "reason", "rule", "batched"}


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[dict[str, Any]]:
    """Every SELECT, UPDATE and DELETE run on ``runtime``'s engine while the test runs, once each."""
    seen: dict[str, Any] = {}

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not many and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            seen.setdefault(statement, parameters)

    event.listen(runtime.engine, "before_cursor_execute", capture)
    yield seen
    event.remove(runtime.engine, "before_cursor_execute", capture)


def _sqlite_problems(raw: Any, statement: str, params: Any, tables: set[str]) -> list[str]:
    out = []
    for row in raw.cursor().execute("EXPLAIN QUERY PLAN " + statement, params).fetchall():
        line = str(row[3])
        scan = re.match(r"SCAN (\w+)", line)
        if scan and scan.group(1) in tables and scan.group(1) not in BOUNDED:
            out.append(line)
        search = re.match(r"SEARCH (\w+) USING (?:COVERING )?INDEX \w+ \((.*)\)$", line)
        if search and search.group(1) not in BOUNDED:
            cols = {c.split("=")[0].split(">")[0].split("<")[0] for c in search.group(2).split(" AND ")}
            if cols <= COARSE:
                out.append(line)
    return out


def _postgresql_problems(raw: Any, statement: str, params: Any, tables: set[str]) -> list[str]:
    cur = raw.cursor()
    cur.execute("SET LOCAL enable_seqscan = off")
    cur.execute("EXPLAIN " + statement, params)
    out = []
    for (line,) in cur.fetchall():
        scan = re.search(r"Seq Scan on (\w+)", line)
        if scan and scan.group(1) in tables and scan.group(1) not in BOUNDED:
            out.append(line.strip())
    return out


def test_enrichment_reads_no_growing_table_without_an_index(runtime: Runtime, backend: str,
                                                            statements: dict[str, Any]) -> None:
    gen = YearGenerator(2023, 5e-6, seed=31, files="hashes")
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=64).write(gen, lambda r, i: None)
    with runtime.sessions() as s:
        ids = sorted(int(r) for r in s.execute(select(Report.id).where(Report.state == "finished")).scalars())
    assert len(ids) > 100
    statements.clear()  # loading is not what is checked
    ctx = StageContext(runtime)
    half = len(ids) // 2
    # Both paths: groups (a backlog, a re-run) and a report at a time (live intake), over a
    # store that already holds enriched reports, links, incidents and duplicate pairs.
    run_reports(ctx, dict.fromkeys(ids[:half]), group_size=50)
    for rid in ids[half:half + 10]:
        run_report_stepwise(ctx, rid)
    run_reports(ctx, dict.fromkeys(ids[half + 10:]), group_size=50)
    assert len(statements) > 100, "the capture missed the stages' statements"

    tables = set(Base.metadata.tables)
    check = _sqlite_problems if backend == "sqlite" else _postgresql_problems
    problems: list[str] = []
    raw = runtime.engine.raw_connection()
    try:
        for statement, params in statements.items():
            if ONCE_PER_PROCESS.search(" ".join(statement.split())):
                continue
            for line in check(raw, statement, params, tables):
                problems.append(f"{line}\n    {' '.join(statement.split())[:600]}")
    finally:
        raw.rollback()
        raw.close()
    assert not problems, "statements that read a growing table without a fitting index:\n" + "\n".join(problems)
