"""The analyst queue's read model: ``queue_entries``, one narrow row per assessed, finished
report holding the values in effect that the queue filters, sorts and counts on.

Every writer of an input calls :func:`refresh` with the reports it changed, inside its own
transaction, so the read model commits or rolls back with the change: the pipeline's
assess, jurisdiction and matches stages (per-report and group forms), and the console's
overrides, claims, releases, reassignments and closes. :func:`refresh` recomputes those
rows from the base tables with :func:`entries_select` — the same definition the rebuild
uses — so there is one statement of what a row holds, not one per writer.

This module imports only the store's tables: the pipeline stages import it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import case, delete, exists, false, func, insert, literal, select, text
from sqlalchemy.orm import Session, aliased

from tipline.store.tables import Assessment, File, FileMatch, Jurisdiction, Report
from tipline.store.tables_console import QueueEntry
from tipline.store.tables_people import AssessmentOverride, Claim

#: Report ids per statement: far below both backends' parameter limits.
CHUNK = 500

COLUMNS: tuple[str, ...] = (
    "report_id", "received_at", "priority", "pipeline_priority", "priority_overridden", "disposition",
    "pipeline_disposition", "escalated", "pipeline_escalated", "closed", "incident_type", "reporter_id",
    "country", "us_state", "bank_match", "holder_id", "claim_expires_at")


def entries_select(only: Any = None, *, banked_table: bool = False) -> Any:
    """The rows of ``queue_entries`` computed from the base tables, in :data:`COLUMNS` order.

    ``only``: a list or selectable of report ids. ``banked_table``: the hash-bank flag from
    one derived table of banked reports (the rebuild reads every row anyway) instead of a
    probe per row (a refresh of a few reports). The claim is taken whatever its expiry: the
    queue compares the expiry with the time it reads."""
    ao = AssessmentOverride
    lo = (select(ao.report_id,
                 func.max(case((ao.priority.is_not(None), ao.id))).label("p"),
                 func.max(case((ao.disposition.is_not(None), ao.id))).label("d"),
                 func.max(case((ao.escalate.is_not(None), ao.id))).label("e"),
                 func.max(case((ao.closed.is_not(None), ao.id))).label("c"))
          .group_by(ao.report_id))
    if only is not None:
        lo = lo.where(ao.report_id.in_(only))
    los = lo.subquery("lo")
    op, od, oe, oc = (aliased(AssessmentOverride, name=n) for n in ("op", "od", "oe", "oc"))
    if banked_table:
        banked = (select(File.report_id.label("report_id")).join(FileMatch, FileMatch.file_id == File.id)
                  .where(FileMatch.kind == "bank").group_by(File.report_id).subquery("banked"))
        bank: Any = banked.c.report_id.is_not(None)
    else:
        bank = exists(select(literal(1)).select_from(File).join(FileMatch, FileMatch.file_id == File.id)
                      .where(File.report_id == Assessment.report_id, FileMatch.kind == "bank"))
    q = (select(
        Assessment.report_id, Report.finished_at,
        func.coalesce(op.priority, Assessment.priority), Assessment.priority, los.c.p.is_not(None),
        func.coalesce(od.disposition, Assessment.disposition), Assessment.disposition,
        func.coalesce(oe.escalate, Assessment.escalate), Assessment.escalate,
        func.coalesce(oc.closed, false()),
        Report.incident_type, Report.reporter_id, Jurisdiction.country, Jurisdiction.us_state,
        bank, Claim.user_id, Claim.expires_at)
        .select_from(Assessment)
        .join(Report, Report.id == Assessment.report_id)
        .outerjoin(los, los.c.report_id == Assessment.report_id)
        .outerjoin(op, op.id == los.c.p).outerjoin(od, od.id == los.c.d)
        .outerjoin(oe, oe.id == los.c.e).outerjoin(oc, oc.id == los.c.c)
        .outerjoin(Jurisdiction, Jurisdiction.report_id == Assessment.report_id)
        .outerjoin(Claim, Claim.report_id == Assessment.report_id)
        .where(Report.state == "finished"))
    if banked_table:
        q = q.outerjoin(banked, banked.c.report_id == Assessment.report_id)
    if only is not None:
        q = q.where(Assessment.report_id.in_(only))
    return q


def refresh(session: Session, report_ids: Iterable[int]) -> None:
    """Rewrite the rows of these reports from the base tables (a report no longer assessed or
    finished loses its row). Call it in the transaction that changed their inputs, after the
    change is flushed."""
    ids = sorted({int(r) for r in report_ids})
    session.flush()
    pg = session.get_bind().dialect.name == "postgresql"
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        if pg:
            # Two transactions refreshing one report (a pipeline group and an analyst's claim)
            # take turns here, and the second reads the rows after the first committed (READ
            # COMMITTED: a new statement, a new snapshot): without it each would write a row
            # that misses the other's change, or meet the other's row twice. NO KEY UPDATE:
            # foreign-key checks on the reports (KEY SHARE) go on meanwhile; in id order, so
            # two refreshes never wait for each other in a cycle. SQLite has one writer.
            session.execute(select(Report.id).where(Report.id.in_(chunk)).order_by(Report.id)
                            .with_for_update(key_share=True))
        session.execute(delete(QueueEntry).where(QueueEntry.report_id.in_(chunk))
                        .execution_options(synchronize_session=False))
        session.execute(insert(QueueEntry).from_select(list(COLUMNS), entries_select(chunk)))


def rebuild(session: Session) -> int:
    """Rewrite the whole read model from the base tables; the number of rows written."""
    table = QueueEntry
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        # Refreshes by pipeline workers and the console wait until this commits: one of
        # theirs between the DELETE and the INSERT would otherwise meet its own row twice.
        session.execute(text("LOCK TABLE queue_entries IN EXCLUSIVE MODE"))
    session.execute(delete(table).execution_options(synchronize_session=False))
    session.execute(insert(QueueEntry).from_select(list(COLUMNS), entries_select(banked_table=True)))
    return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def differences(session: Session, limit: int = 20) -> tuple[int, list[int]]:
    """How many reports' rows differ from what the base tables give, and the first ``limit``
    of their ids (a row missing, extra or with another value)."""
    stored = {tuple(r) for r in session.execute(select(*(QueueEntry.__table__.c[c] for c in COLUMNS)))}
    wanted = {tuple(r) for r in session.execute(entries_select(banked_table=True))}
    wrong = sorted({int(r[0]) for r in stored ^ {_normal(w) for w in wanted}})
    return len(wrong), wrong[:limit]


def _normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # As stored: the flags are booleans (SQLite gives 0/1 from an expression).
    return tuple(bool(v) if COLUMNS[i] in _FLAGS and v is not None else v for i, v in enumerate(row))


_FLAGS = {"priority_overridden", "escalated", "pipeline_escalated", "closed", "bank_match"}
