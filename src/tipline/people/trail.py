"""Reading the audit trail: the auditor's filters, pages of rows, exports, and the checks
``tipline audit verify`` makes beyond the chain itself (the append-only guard, an anchor the
operator kept).

Access is decided here, from the caller's role: a caller without ``audit.read`` gets
:class:`NotVisible`, which the web layer answers exactly as a page that does not exist.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from tipline.kinds.roles import Capability, may
from tipline.people import audit
from tipline.people.principal import Principal
from tipline.store.tables_people import AuditEvent

#: Rows on one page of the auditor's view.
PAGE_ROWS = 100
#: Longest filter value read (the columns are shorter still; anything longer matches nothing).
MAX_FILTER = 100
#: Columns of an export, in order (CSV header and JSON keys).
COLUMNS = ("seq", "at", "actor", "actor_user_id", "role", "token_id", "action", "object_kind",
           "object_id", "address", "request_id", "detail", "prev_hash", "hash")


class NotVisible(LookupError):
    """The caller may not read the audit trail (answered as "not found")."""


def require_reader(principal: Principal) -> None:
    if not may(principal.role, Capability.AUDIT_READ):
        raise NotVisible()


@dataclass(frozen=True, slots=True)
class AuditQuery:
    actor: str = ""
    action: str = ""
    object_kind: str = ""
    object_id: str = ""
    #: Inclusive lower and exclusive upper bound on ``at``.
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, str]:
        """The query as the page's form sends it (for links to the next page and exports)."""
        out = {"actor": self.actor, "action": self.action, "object_kind": self.object_kind,
               "object_id": self.object_id}
        if self.since:
            out["since"] = self.since.strftime("%Y-%m-%dT%H:%M")
        if self.until:
            out["until"] = self.until.strftime("%Y-%m-%dT%H:%M")
        return {k: v for k, v in out.items() if v}

    def described(self) -> dict[str, str]:
        """For the audit row of an export: which filters it used."""
        return self.params()


@dataclass(slots=True)
class QueryProblems:
    #: field name → message, in form order.
    errors: dict[str, str] = field(default_factory=dict)


def _when(raw: str, *, end: bool) -> datetime:
    """A date (the whole day) or a date and time (to the minute), in UTC."""
    raw = raw.strip()
    if len(raw) == 10:
        day = date.fromisoformat(raw)
        start = datetime.combine(day, time(), UTC)
        return start + timedelta(days=1) if end else start
    at = datetime.fromisoformat(raw)
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    # A minute given as the end includes that minute.
    return at + timedelta(minutes=1) if end and at.second == 0 and at.microsecond == 0 else at


def parse_query(values: Mapping[str, str]) -> tuple[AuditQuery, QueryProblems]:
    """Read the filter form; every bad value gets a message naming the field, and is dropped."""
    problems = QueryProblems()
    text_values: dict[str, str] = {}
    for name, label in (("actor", "Actor"), ("action", "Action"), ("object_kind", "Object kind"),
                        ("object_id", "Object id")):
        value = str(values.get(name, "") or "").strip()
        if len(value) > MAX_FILTER:
            problems.errors[name] = f"{label}: at most {MAX_FILTER} characters."
            value = ""
        elif any(ord(ch) < 32 for ch in value):
            # No stored value holds a control character (PostgreSQL refuses NUL outright).
            problems.errors[name] = f"{label}: letters, digits and punctuation only (no control characters)."
            value = ""
        text_values[name] = value
    bounds: dict[str, datetime | None] = {"since": None, "until": None}
    for name, label in (("since", "From"), ("until", "Until")):
        raw = str(values.get(name, "") or "").strip()
        if not raw:
            continue
        try:
            bounds[name] = _when(raw[:40], end=name == "until")
        except (ValueError, OverflowError):  # not a date; or the day after 9999-12-31
            problems.errors[name] = f"{label}: a date (2026-12-03) or a date and time (2026-12-03T14:30), in UTC."
    query = AuditQuery(**text_values, since=bounds["since"], until=bounds["until"])
    if query.since and query.until and query.until <= query.since:
        problems.errors["until"] = "Until: must be later than From."
        query = replace(query, until=None)
    return query, problems


def _filtered(q: AuditQuery, stmt: Select[Any]) -> Select[Any]:
    if q.actor:
        stmt = stmt.where(func.lower(AuditEvent.actor) == q.actor.lower())
    if q.action:
        stmt = stmt.where(AuditEvent.action == q.action)
    if q.object_kind:
        stmt = stmt.where(AuditEvent.object_kind == q.object_kind)
    if q.object_id:
        stmt = stmt.where(AuditEvent.object_id == q.object_id)
    if q.since:
        stmt = stmt.where(AuditEvent.at >= q.since)
    if q.until:
        stmt = stmt.where(AuditEvent.at < q.until)
    return stmt


@dataclass(frozen=True, slots=True)
class TrailPage:
    rows: list[AuditEvent]
    #: Rows matching the filters in all.
    matching: int
    #: ``before`` for the next (older) page, or None on the last page.
    older: int | None
    #: Every action and object kind the trail holds (for the filter's choices).
    actions: list[str]
    object_kinds: list[str]


def search(session: Session, principal: Principal, q: AuditQuery, *, before: int | None = None,
           limit: int = PAGE_ROWS) -> TrailPage:
    """One page of matching rows, newest first; ``before`` is the ``seq`` to continue under."""
    require_reader(principal)
    stmt = _filtered(q, select(AuditEvent))
    if before is not None:
        stmt = stmt.where(AuditEvent.seq < before)
    rows = list(session.scalars(stmt.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
    older = rows[limit - 1].seq if len(rows) > limit else None
    matching = session.scalar(_filtered(q, select(func.count()).select_from(AuditEvent))) or 0
    actions = sorted(a for a in session.scalars(select(AuditEvent.action).distinct()) if a)
    kinds = sorted(k for k in session.scalars(select(AuditEvent.object_kind).distinct()) if k)
    return TrailPage(rows[:limit], int(matching), older, actions, kinds)


def matching_rows(session: Session, principal: Principal, q: AuditQuery, *,
                  batch: int = 2000) -> Iterator[AuditEvent]:
    """Every matching row in chain order (oldest first), read in batches: an export of the
    whole trail never holds it in memory."""
    require_reader(principal)
    return operator_rows(session, q, batch=batch)


def operator_rows(session: Session, q: AuditQuery, *, batch: int = 2000) -> Iterator[AuditEvent]:
    """As :func:`matching_rows`, for the operator at the command line (who holds the database
    itself, so no role is asked)."""
    after = 0
    while True:
        chunk = list(session.scalars(_filtered(q, select(AuditEvent)).where(AuditEvent.seq > after)
                                     .order_by(AuditEvent.seq).limit(batch)))
        if not chunk:
            return
        yield from chunk
        after = chunk[-1].seq
        session.expunge_all()


def row_json(row: AuditEvent) -> dict[str, Any]:
    return {"seq": row.seq, "at": audit._iso(row.at), "actor": row.actor, "actor_user_id": row.actor_user_id,
            "role": row.role, "token_id": row.token_id, "action": row.action,
            "object_kind": row.object_kind, "object_id": row.object_id, "address": row.address,
            "request_id": row.request_id, "detail": row.detail, "prev_hash": row.prev_hash,
            "hash": row.hash}


def csv_lines(rows: Iterator[AuditEvent]) -> Iterator[str]:
    """The rows as CSV, one line at a time (header first); ``detail`` as compact JSON."""
    import json

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")

    def flush() -> str:
        out = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return out

    writer.writerow(COLUMNS)
    yield flush()
    for row in rows:
        doc = row_json(row)
        doc["detail"] = json.dumps(row.detail, sort_keys=True, separators=(",", ":")) if row.detail else ""
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
        writer.writerow([_cell(doc[c]) for c in COLUMNS])
        yield flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    out = str(value)
    return "'" + out if out[:1] in ("=", "+", "-", "@", "\t", "\r") else out


# --- what verify checks besides the chain ----------------------------------------------------


def head(session: Session) -> tuple[int, str] | None:
    """The newest row's position and hash: what an operator keeps to notice a later
    deletion at the end of the trail (which the rows alone cannot show)."""
    row = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return (int(row[0]), str(row[1])) if row else None


def anchor_problem(session: Session, seq: int, hash_: str) -> str | None:
    """Why the row the operator noted as ``seq:hash`` is not in the trail as it was, or None."""
    found = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq))
    if found is None:
        return f"row {seq} you kept is gone (the trail ends at {(head(session) or (0, ''))[0]})"
    if found != hash_:
        return f"row {seq} you kept has another hash now ({found[:12]}…, you kept {hash_[:12]}…)"
    return None


#: The guard migration 0008 installs (names as written there).
_PG_TRIGGERS = {"audit_events_no_change", "audit_events_no_truncate"}
_SQLITE_TRIGGERS = {"audit_events_no_update", "audit_events_no_delete"}


def guard_problems(session: Session) -> list[str]:
    """What is missing of the database's refusal to UPDATE or DELETE audit rows."""
    if session.get_bind().dialect.name == "postgresql":
        present = set(session.scalars(text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass "
            "AND NOT tgisinternal AND tgenabled <> 'D'")))
        expected = _PG_TRIGGERS
    else:
        present = set(session.scalars(text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'")))
        expected = _SQLITE_TRIGGERS
    return [f"the append-only trigger {name} is missing or disabled" for name in sorted(expected - present)]
