"""``core.insert_rows`` (rows handed to the driver: COPY on PostgreSQL, executemany on SQLite)
stores exactly what ``core.insert_rows_core`` (the plain Core INSERT) stores, on both backends:
JSON lists, booleans, NULLs, aware timestamps and floats read back equal, and a client-side
default for a left-out column is still applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select

from test_group_stages import load, year
from tipline.pipeline.core import insert_rows, insert_rows_core
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Assessment, Report


def _rows(ids: list[int]) -> list[dict[str, Any]]:
    plus2 = timezone(timedelta(hours=2))
    return [{"report_id": rid, "quality": i / 7, "missing": [] if i % 2 else ["a", {"b": i}],
             "disposition": "referral" if i % 3 else "informational",
             "disposition_reasons": ["x ünïcode", "tab\tnew\nline \\ back"] if i % 2 else [],
             "priority": 1 + i % 3, "priority_reasons": [f"r{i}"], "escalate": bool(i % 2),
             "rules_version": "v1" if i % 4 else "v2",
             "assessed_at": datetime(2023, 1, 1, 12, 0, i % 60, 123456, tzinfo=UTC if i % 2 else plus2)}
            for i, rid in enumerate(ids)]


def _stored(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.sessions() as s:
        return [tuple(r) for r in s.execute(
            select(Assessment.report_id, Assessment.quality, Assessment.missing, Assessment.disposition,
                   Assessment.disposition_reasons, Assessment.priority, Assessment.priority_reasons,
                   Assessment.escalate, Assessment.rules_version, Assessment.assessed_at)
            .order_by(Assessment.report_id)).all()]


def test_insert_rows_equals_the_core_insert(runtime: Runtime) -> None:
    load(runtime, year())
    with runtime.sessions() as s:
        ids = sorted(int(r) for r in s.execute(select(Report.id)).scalars())[:12]
    assert len(ids) >= 6
    rows = _rows(ids)
    got: list[list[tuple[Any, ...]]] = []
    for write in (insert_rows, insert_rows_core):
        with transaction(runtime.sessions, background=True) as s:
            s.execute(delete(Assessment))
            # In a savepoint, as the runner calls it.
            with s.begin_nested():
                write(s, Assessment, rows)
        got.append(_stored(runtime))
    assert got[0] == got[1]
    assert len(got[0]) == len(ids)
    # A left-out column with a client-side default: the default is applied (through Core).
    with transaction(runtime.sessions, background=True) as s:
        s.execute(delete(Assessment))
        insert_rows(s, Assessment, [{k: v for k, v in r.items() if k != "missing"} for r in rows])
    assert all(r[2] == [] for r in _stored(runtime))
