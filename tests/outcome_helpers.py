"""A small world for outcome tests: two agencies, an officer of each, an analyst, a platform
user, and finished reports made available to them (referrals), on either backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Agency, Referral, Report, Reporter
from tipline.store.tables_people import AuditEvent, Outcome, OutcomeImport, User

#: When the world's referrals were made available (outcomes must not predate it).
MADE = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
#: The "now" the tests record at.
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class World:
    agency_a: int
    agency_b: int
    officer_a: Principal
    officer_b: Principal
    analyst: Principal
    platform: Principal
    refs_a: list[int] = field(default_factory=list)
    refs_b: list[int] = field(default_factory=list)


def _user(s: object, username: str, role: str, agency_id: int | None = None,
          reporter_id: int | None = None) -> Principal:
    from sqlalchemy.orm import Session

    assert isinstance(s, Session)
    u = User(username=username, role=role, agency_id=agency_id, reporter_id=reporter_id,
             password_hash="x", password_changed_at=NOW, created_at=NOW)
    s.add(u)
    s.flush()
    return Principal(u.id, username, role, agency_id=agency_id, reporter_id=reporter_id)


def make_world(rt: Runtime, n: int = 3) -> World:
    """Two agencies (A, B) with ``n`` referrals each, made available on MADE."""
    with transaction(rt.sessions) as s:
        a = Agency(code="TEST-A", name="Test Task Force A", kind="icac", country="US", us_state="CA")
        b = Agency(code="TEST-B", name="Test Task Force B", kind="icac", country="US", us_state="TX")
        rep = Reporter(name="Outcome Test Platform", kind="esp", created_at=NOW)
        s.add_all([a, b, rep])
        s.flush()
        w = World(a.id, b.id, _user(s, "officer-a", "officer", a.id), _user(s, "officer-b", "officer", b.id),
                  _user(s, "analyst-1", "analyst"), _user(s, "platform-1", "platform", reporter_id=rep.id))
        for agency, out in ((a.id, w.refs_a), (b.id, w.refs_b)):
            for _ in range(n):
                r = Report(reporter_id=rep.id, source="api", state="finished", opened_at=MADE - timedelta(hours=2),
                           last_change_at=MADE - timedelta(hours=1), finished_at=MADE - timedelta(hours=1),
                           file_count=0, normalisations=[])
                s.add(r)
                s.flush()
                ref = Referral(report_id=r.id, agency_id=agency, rule="test", reason="test referral",
                               made_available_at=MADE, escalated=False)
                s.add(ref)
                s.flush()
                out.append(ref.id)
    return w


def counts(rt: Runtime) -> tuple[int, int, int]:
    """Rows of outcomes, outcome imports and audit events: what a refused call must not change."""
    with rt.sessions() as s:
        return tuple(int(s.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[return-value]
                     for t in (Outcome, OutcomeImport, AuditEvent))
