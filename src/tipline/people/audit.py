"""The audit trail: every read of report content and every write by a person or a token is
one row, chained by SHA-256 so that an edit, a deletion, an insertion or a reordering is
found by :func:`verify`.

Appending is serialised: on PostgreSQL a transaction-scoped advisory lock is taken before
the last row is read, so two server processes never write two rows with the same
predecessor (the chain never forks); on SQLite every writing transaction already holds the
database's single write lock. The row is written in the caller's transaction, so an action
and its audit row commit or roll back together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tipline.people.principal import Principal
from tipline.store.tables_people import AuditEvent

#: The predecessor of the first row.
GENESIS = "0" * 64
#: Any fixed 64-bit number: the advisory lock that serialises appends on PostgreSQL.
_PG_LOCK = 0x7469706C696E6561  # "tiplinea"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: AuditEvent) -> bytes:
    """The bytes a row's hash covers: every field but the hash, as sorted compact JSON."""
    doc = {
        "seq": row.seq,
        "at": _iso(row.at),
        "actor_user_id": row.actor_user_id,
        "actor": row.actor,
        "role": row.role,
        "token_id": row.token_id,
        "action": row.action,
        "object_kind": row.object_kind,
        "object_id": row.object_id,
        "address": row.address,
        "request_id": row.request_id,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(row: AuditEvent) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


def record(
    session: Session,
    *,
    action: str,
    actor: Principal | None = None,
    actor_name: str | None = None,
    object_kind: str | None = None,
    object_id: str | int | None = None,
    address: str | None = None,
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one row in ``session``'s transaction and return it.

    ``actor`` is the signed-in person or token; ``actor_name`` names anyone else
    ("system", "cli:<os user>", "esp:<platform>").
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    # Microseconds are kept in the canonical form; the column keeps them on both backends.
    when = (at or datetime.now(UTC)).astimezone(UTC)
    row = AuditEvent(
        seq=seq,
        at=when,
        actor_user_id=actor.user_id if actor else None,
        actor=actor.username if actor else (actor_name or "system"),
        role=actor.role if actor else None,
        token_id=actor.token_id if actor else None,
        action=action,
        object_kind=object_kind,
        object_id=None if object_id is None else str(object_id),
        address=address,
        request_id=request_id,
        detail=detail,
        prev_hash=prev,
    )
    row.hash = row_hash(row)
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class Break:
    """The first row where the chain does not hold, and what is wrong with it."""

    seq: int
    problem: str


@dataclass(frozen=True, slots=True)
class Verdict:
    rows: int
    first_break: Break | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def _rows(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    after = 0
    while True:
        chunk = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not chunk:
            return
        yield from chunk
        after = chunk[-1].seq
        session.expunge_all()


def verify(session: Session) -> Verdict:
    """Walk the chain from the first row; name the first row that was edited, deleted,
    inserted or moved. A deletion at the end cannot be seen from the rows alone; the CLI
    compares against a count the operator kept when one is given."""
    expected_prev = GENESIS
    expected_seq = 1
    n = 0
    for row in _rows(session):
        n += 1
        if row.seq != expected_seq:
            return Verdict(n, Break(row.seq, f"row {expected_seq} is missing (next row is {row.seq})"))
        if row.prev_hash != expected_prev:
            return Verdict(n, Break(row.seq, "does not follow the row before it (a row was inserted, "
                                              "deleted or moved)"))
        if row_hash(row) != row.hash:
            return Verdict(n, Break(row.seq, "was edited: its contents do not match its hash"))
        expected_prev = row.hash
        expected_seq += 1
    return Verdict(n, None)
