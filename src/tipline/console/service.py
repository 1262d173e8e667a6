"""Use cases of the analyst console, each taking the :class:`Principal` it acts for.

Access is decided here with :func:`~tipline.kinds.roles.may`: a caller without the
capability a call needs gets the same :class:`NotFound` as for a report that does not exist
(DESIGN.md: out of scope answers 404, never 403). Every function works inside the caller's
session; the web layer opens the transaction and writes the audit row in it, so an action
and its audit row commit or roll back together.

The *effective* priority, disposition, escalation and closed state of a report are the
latest :class:`AssessmentOverride` that sets each of them, else the pipeline's
:class:`Assessment`; the pipeline's values are never edited and stay visible beside them.

Files the platform did not view (``viewed_by_esp`` false or not given) are never shown to
analysts (US v. Wilson, DOMAIN.md A7): :func:`file_content` refuses them exactly as a
missing file, and the report view carries only their hashes and matches.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import and_, case, exists, false, func, literal, or_, select, true, tuple_
from sqlalchemy.orm import Session, aliased

from tipline.console import queue_model
from tipline.kinds.roles import Capability, may
from tipline.people.principal import Principal
from tipline.pipeline.media import frame_decoder_available
from tipline.store.tables import (
    Agency,
    Assessment,
    BankEntry,
    Blob,
    File,
    FileMatch,
    FileSignal,
    HashBank,
    Incident,
    IncidentReport,
    Jurisdiction,
    Location,
    Referral,
    Report,
    Reporter,
    ReportLink,
)
from tipline.store.tables_console import QueueEntry
from tipline.store.tables_people import AssessmentOverride, Claim, FileLabel, ReferralAction, User

#: Industry classification of a file (the Technology Coalition's scheme, as in ISPWS).
CLASSIFICATIONS: dict[str, str] = {
    "A1": "A1 — prepubescent minor, sex act",
    "A2": "A2 — prepubescent minor, lascivious exhibition",
    "B1": "B1 — pubescent minor, sex act",
    "B2": "B2 — pubescent minor, lascivious exhibition",
}
AGE_RANGES: tuple[str, ...] = ("0-2", "3-5", "6-8", "9-12", "13-15", "16-17", "adult", "unknown")
DISPOSITIONS: tuple[str, ...] = ("referral", "informational")
PRIORITIES: tuple[int, ...] = (1, 2, 3)
MAX_REASON = 2000
PER_PAGE = 50


class NotFound(Exception):
    """No such object, or not one this caller may see (the same answer for both)."""


class Refused(Exception):
    """The action cannot be done as asked; the message says why, for the person."""


def _require(principal: Principal, capability: Capability) -> None:
    if not may(principal.role, capability):
        raise NotFound()


def _reason(text: str | None) -> str:
    reason = (text or "").strip()
    if not reason:
        raise Refused("Give a reason: it is kept beside the pipeline's own.")
    if len(reason) > MAX_REASON:
        raise Refused(f"The reason is longer than {MAX_REASON} characters.")
    return reason


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _report(s: Session, report_id: int) -> Report:
    # Only finished reports reach the queue: an open one is still being written by its platform.
    row = s.get(Report, report_id)
    if row is None or row.state != "finished":
        raise NotFound()
    return row


# --- the queue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    """What the analyst narrowed the queue to; ``None`` is "any"."""

    priority: int | None = None
    disposition: str | None = None
    incident_type: str | None = None
    platform: int | None = None  # reporter id
    country: str | None = None  # ISO code, or "" for unknown
    state: str | None = None  # US state code
    escalated: bool | None = None
    bank_match: bool | None = None
    claim: str | None = None  # "unclaimed" | "mine"
    status: str = "open"  # open | closed | all

    def without(self, name: str) -> QueueFilter:
        values = {k: getattr(self, k) for k in FACETS}
        values[name] = None
        return QueueFilter(**values, status=self.status)

    def as_query(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k in FACETS:
            v = getattr(self, k)
            if v is not None:
                out[k] = (("yes" if v else "no") if isinstance(v, bool) else
                          "unknown" if k == "country" and v == "" else str(v))
        if self.status != "open":
            out["status"] = self.status
        return out


#: The filters that have counts, in the order the page shows them.
FACETS: tuple[str, ...] = ("priority", "disposition", "escalated", "bank_match", "claim", "incident_type",
                           "platform", "country", "state")


@dataclass
class QueueRow:
    report_id: int
    received_at: datetime | None
    priority: int
    pipeline_priority: int
    disposition: str
    pipeline_disposition: str
    escalated: bool
    closed: bool
    incident_type: str | None
    platform: str
    country: str | None
    state: str | None
    bank_match: bool
    holder: str | None
    holder_id: int | None
    claim_expires_at: datetime | None


@dataclass
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool


@dataclass
class QueuePage:
    rows: list[QueueRow]
    total: int
    page: int
    per_page: int
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)
    #: When the counts (and ``total``) were taken (they are reused for a few seconds).
    counted_at: datetime | None = None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _latest_override_ids() -> Any:
    """Per report, the id of the latest override that sets each field (few rows: a small table)."""
    ao = AssessmentOverride
    return (select(ao.report_id,
                   func.max(case((ao.priority.is_not(None), ao.id))).label("p"),
                   func.max(case((ao.disposition.is_not(None), ao.id))).label("d"),
                   func.max(case((ao.escalate.is_not(None), ao.id))).label("e"),
                   func.max(case((ao.closed.is_not(None), ao.id))).label("c"))
            .group_by(ao.report_id).subquery("lo"))


def _queue_base(principal: Principal, now: datetime, *, for_counts: bool = False,
                overridden: bool = False, only: Any = None, pg: bool = False) -> Any:
    """One row per assessed, finished report with its effective values (a subquery).

    ``for_counts``: the hash-bank flag from one derived table of banked reports (the GROUP BY
    reads every row anyway); otherwise a probe per row, so that a page walk that stops after
    fifty rows makes fifty probes. ``overridden``: only the reports whose priority an
    analyst changed (driven from the few overrides, not from every assessment). ``only``: a
    selectable of report ids the rows are restricted to (the reports people touched).
    ``pg``: PostgreSQL, whose planner has statistics: no ``|| ''`` on the state (it takes the
    expression for 0.5 % of rows, and then sorts all 360k instead of walking the index)."""
    lo = _latest_override_ids()
    op, od, oe, oc = (aliased(AssessmentOverride, name=n) for n in ("op", "od", "oe", "oc"))
    # The reports with a hash-bank match, as one derived table (few rows) rather than a
    # correlated probe per queue row.
    banked = (select(File.report_id.label("report_id")).join(FileMatch, FileMatch.file_id == File.id)
              .where(FileMatch.kind == "bank").group_by(File.report_id).subquery("banked"))
    # The probe goes report -> its files -> their matches; ``kind || ''`` keeps a planner
    # without statistics from walking every bank match instead.
    probe = exists(select(literal(1)).select_from(File).join(FileMatch, FileMatch.file_id == File.id)
                   .where(File.report_id == Report.id, (FileMatch.kind + "") == "bank"))
    q = (select(
        # ``|| ''`` on the filtered text columns: a walk must not leave the (priority, id) order
        # for their indexes (0012) when the value is common; a narrow one is read from them
        # by _driver instead. NULL stays NULL.
        Assessment.report_id.label("report_id"), Report.finished_at.label("received_at"),
        (Report.incident_type + "").label("incident_type"), Report.reporter_id.label("platform"),
        func.coalesce(op.priority, Assessment.priority).label("priority"),
        Assessment.priority.label("pipeline_priority"), lo.c.p.label("priority_override"),
        func.coalesce(od.disposition, Assessment.disposition).label("disposition"),
        Assessment.disposition.label("pipeline_disposition"),
        func.coalesce(oe.escalate, Assessment.escalate).label("escalated"),
        Assessment.escalate.label("pipeline_escalated"),
        func.coalesce(oc.closed, false()).label("closed"),
        (Jurisdiction.country + "").label("country"), (Jurisdiction.us_state + "").label("state"),
        (banked.c.report_id.is_not(None) if for_counts else probe).label("bank_match"),
        Claim.user_id.label("holder_id"), Claim.expires_at.label("claim_expires_at"))
        .select_from(Assessment)
        .join(Report, Report.id == Assessment.report_id)
        .join(lo, and_(lo.c.report_id == Assessment.report_id, lo.c.p.is_not(None)) if overridden
              else lo.c.report_id == Assessment.report_id, isouter=not overridden)
        .outerjoin(op, op.id == lo.c.p).outerjoin(od, od.id == lo.c.d)
        .outerjoin(oe, oe.id == lo.c.e).outerjoin(oc, oc.id == lo.c.c)
        .outerjoin(Jurisdiction, Jurisdiction.report_id == Assessment.report_id)
        # An expired claim is no claim: released by time without anyone writing.
        .outerjoin(Claim, and_(Claim.report_id == Assessment.report_id, Claim.expires_at > now))
        # Not on the state index: the walk must go along the assessments' (priority, id) index,
        # and nearly every assessed report is finished anyway.
        .where((Report.state if pg else Report.state + "") == "finished"))
    if for_counts:
        q = q.outerjoin(banked, banked.c.report_id == Assessment.report_id)
    if only is not None:
        q = q.where(Assessment.report_id.in_(only))
    return q.subquery("q")


def _where(q: Any, f: QueueFilter, principal: Principal) -> list[Any]:
    conds: list[Any] = []
    if f.status == "open":
        conds.append(q.c.closed == false())
    elif f.status == "closed":
        conds.append(q.c.closed != false())
    if f.priority is not None:
        conds.append(q.c.priority == f.priority)
    if f.disposition is not None:
        conds.append(q.c.disposition == f.disposition)
    if f.incident_type is not None:
        conds.append(q.c.incident_type == f.incident_type)
    if f.platform is not None:
        conds.append(q.c.platform == f.platform)
    if f.country is not None:
        conds.append(q.c.country.is_(None) if f.country == "" else q.c.country == f.country)
    if f.state is not None:
        conds.append(q.c.state == f.state)
    if f.escalated is not None:
        conds.append(q.c.escalated == f.escalated)
    if f.bank_match is not None:
        conds.append(q.c.bank_match == f.bank_match)
    if f.claim == "unclaimed":
        conds.append(q.c.holder_id.is_(None))
    elif f.claim == "mine":
        conds.append(q.c.holder_id == principal.user_id)
    return conds


def _row(r: Any) -> QueueRow:
    return QueueRow(report_id=r.report_id, received_at=r.received_at, priority=r.priority,
                    pipeline_priority=r.pipeline_priority, disposition=r.disposition,
                    pipeline_disposition=r.pipeline_disposition, escalated=bool(r.escalated),
                    closed=bool(r.closed), incident_type=r.incident_type, platform=r.platform_name,
                    country=r.country, state=r.state, bank_match=bool(r.bank_match), holder=r.holder,
                    holder_id=r.holder_id, claim_expires_at=r.claim_expires_at)


def _entry_where(f: QueueFilter, principal: Principal, now: datetime) -> list[Any]:
    """The filter on the read model (``queue_entries``); the same as :func:`_where` on
    :func:`_queue_base`, with an expired claim taken as no claim."""
    q = QueueEntry
    conds: list[Any] = []
    if f.status == "open":
        conds.append(q.closed == false())
    elif f.status == "closed":
        conds.append(q.closed == true())
    if f.priority is not None:
        conds.append(q.priority == f.priority)
    if f.disposition is not None:
        conds.append(q.disposition == f.disposition)
    if f.incident_type is not None:
        conds.append(q.incident_type == f.incident_type)
    if f.platform is not None:
        conds.append(q.reporter_id == f.platform)
    if f.country is not None:
        conds.append(q.country.is_(None) if f.country == "" else q.country == f.country)
    if f.state is not None:
        conds.append(q.us_state == f.state)
    if f.escalated is not None:
        conds.append(q.escalated == (true() if f.escalated else false()))
    if f.bank_match is not None:
        conds.append(q.bank_match == (true() if f.bank_match else false()))
    if f.claim == "unclaimed":
        conds.append(or_(q.holder_id.is_(None), q.claim_expires_at <= now))
    elif f.claim == "mine":
        conds.append(and_(q.holder_id == principal.user_id, q.claim_expires_at > now))
    return conds


def _entry_rows(s: Session, now: datetime, ids: Any, *, descending: bool = False) -> list[QueueRow]:
    """The queue rows of the report ids selected by ``ids``, in the queue's order."""
    q = QueueEntry
    live = and_(q.holder_id.is_not(None), q.claim_expires_at > now)
    holder = case((live, q.holder_id), else_=None)
    order = (q.priority.desc(), q.report_id.desc()) if descending else (q.priority, q.report_id)
    found = s.execute(
        select(q.report_id, q.received_at, q.priority, q.pipeline_priority, q.disposition, q.pipeline_disposition,
               q.escalated, q.closed, q.incident_type, Reporter.name.label("platform_name"),
               q.country, q.us_state.label("state"), q.bank_match, holder.label("holder_id"),
               case((live, q.claim_expires_at), else_=None).label("claim_expires_at"),
               User.username.label("holder"))
        .join(Reporter, Reporter.id == q.reporter_id).outerjoin(User, and_(User.id == q.holder_id, live))
        .where(q.report_id.in_(ids)).order_by(*order)).all()
    return [_row(r) for r in (reversed(found) if descending else found)]


def _page_rows(s: Session, principal: Principal, f: QueueFilter, now: datetime, page: int,
               per_page: int, *, after: tuple[int, int] | None = None,
               before: tuple[int, int] | None = None) -> list[QueueRow]:
    """One page of the queue in (priority, report id) order, from the read model.

    The report ids are taken by one walk of an index that ends in (priority, report id)
    (``queue_entries``: one per filter), reading the index alone where it can (a deep page
    skips its OFFSET in the index, not in full rows); then only that page's rows are read.
    ``after`` / ``before``: the page just after / before this (priority, report id) key
    (the next / previous links: no OFFSET at all). The reference is :func:`_page_rows_plain`."""
    q = QueueEntry
    conds = _entry_where(f, principal, now)
    key = tuple_(q.priority, q.report_id)
    ids = select(q.report_id).where(*conds)
    if before is not None:
        ids = ids.where(key < tuple_(*before)).order_by(q.priority.desc(), q.report_id.desc()).limit(per_page)
        return _entry_rows(s, now, ids.scalar_subquery(), descending=True)
    if after is not None:
        ids = ids.where(key > tuple_(*after)).order_by(q.priority, q.report_id).limit(per_page)
    else:
        ids = ids.order_by(q.priority, q.report_id).offset((page - 1) * per_page).limit(per_page)
    return _entry_rows(s, now, ids.scalar_subquery())


def _page_rows_plain(s: Session, principal: Principal, f: QueueFilter, now: datetime, page: int,
                     per_page: int, only: Any = None) -> list[QueueRow]:
    """The reference for :func:`_page_rows`: one query that sorts every matching report
    (``only``: among these report ids; then it is also the driven read of a narrow filter)."""
    b = _queue_base(principal, now, only=only, pg=s.get_bind().dialect.name == "postgresql")
    return [_row(r) for r in s.execute(
        select(b, Reporter.name.label("platform_name"), User.username.label("holder"))
        .join(Reporter, Reporter.id == b.c.platform).outerjoin(User, User.id == b.c.holder_id)
        .where(*_where(b, f, principal)).order_by(b.c.priority, b.c.report_id)
        .offset((page - 1) * per_page).limit(per_page))]


def queue(s: Session, principal: Principal, f: QueueFilter | None = None, *, page: int = 1,
          per_page: int = PER_PAGE, now: datetime | None = None, after: tuple[int, int] | None = None,
          before: tuple[int, int] | None = None) -> QueuePage:
    """The queue: priority 1 first, then oldest first (report ids are given out in order of
    receipt), one page of it, with the count of every filter value.

    The page is read fresh from the read model (:func:`_page_rows`): page ``page``, or the
    page just after / before the (priority, report id) key ``after`` / ``before`` (then
    ``page`` is only what the page calls itself). The counts are every combination of facet
    values (:func:`_combos`) summed here, each facet with the *other* filters applied (so
    choosing priority 1 still shows how many priority 2 reports there are).
    """
    _require(principal, Capability.REPORT_READ)
    f = f or QueueFilter()
    now = _now(now)
    page = max(1, page)
    counted_at, combos = _combos(s, principal, now)
    rows = _page_rows(s, principal, f, now, page, per_page, after=after, before=before)
    facets, total = _facets(s, principal, f, combos)
    return QueuePage(rows, total, page, per_page, facets, counted_at)


def _claim_key(holder_id: int | None, principal: Principal) -> str:
    return "unclaimed" if holder_id is None else "mine" if holder_id == principal.user_id else "other"


# --- the counts --------------------------------------------------------------------------


class Combo(NamedTuple):
    """One combination of every facet's value (holder as a user id: the same for everyone)."""

    priority: int
    disposition: str
    escalated: bool
    bank_match: bool
    holder_id: int | None
    incident_type: str | None
    platform: int
    country: str  # "" for unknown
    state: str | None
    closed: bool


#: How old the pipeline's part of the counts may be before a page asks for a new one. The new
#: one is taken in the background while pages go on with the old (its GROUP BY reads every
#: assessed report: seconds at 362k on SQLite), and never more often than ``COUNTS_DUTY``
#: allows. What people did (claims, overrides, closes) is read fresh on every page.
COUNTS_TTL_SECONDS = 10.0
#: The most of one core the background recount may take: it waits 1/duty times its own
#: duration before the next (a 2 s recount on a loaded box runs at most every 20 s).
COUNTS_DUTY = 0.1


@dataclass
class _Snapshot:
    taken: float  # time.monotonic() when the recount ended
    took: float  # its duration in seconds
    at: datetime  # wall clock, shown on the page
    combos: dict[Combo, int]
    stale: bool = False  # a console write asked for a recount on the next page


_counts_lock = threading.Lock()
_counts: dict[str, _Snapshot] = {}
_recounting: set[str] = set()


def counts_changed() -> None:
    """After a console write: the next page starts a recount of the pipeline's part (in the
    background). The people's part needs nothing: it is read fresh on every page."""
    with _counts_lock:
        for snap in _counts.values():
            snap.stale = True


def drop_counts() -> None:
    """Forget every snapshot: the next page recounts while it waits (tests, benchmarks)."""
    with _counts_lock:
        _counts.clear()
        _touched_cache.clear()
        _combined.clear()
        _columns_cache.clear()


def _pipeline_combos_query() -> Any:
    """The pipeline's values of every queue entry, grouped: what the queue would count if
    nobody had claimed or overridden anything (one GROUP BY over the narrow read model)."""
    q = QueueEntry
    cols = [q.pipeline_priority, q.pipeline_disposition, q.pipeline_escalated, q.bank_match, q.incident_type,
            q.reporter_id, q.country, q.us_state]
    return select(*cols, func.count().label("n")).group_by(*cols)


def _recount(engine: Any, key: str) -> _Snapshot:
    t0 = time.monotonic()
    combos: dict[Combo, int] = {}
    with Session(bind=engine) as s:
        for g in s.execute(_pipeline_combos_query()):
            c = Combo(int(g[0]), g[1], bool(g[2]), bool(g[3]), None, g[4], int(g[5]), g[6] or "", g[7], False)
            # NULL and "" country fall on one combination: sum them, never keep just one.
            combos[c] = combos.get(c, 0) + int(g.n)
    snap = _Snapshot(time.monotonic(), time.monotonic() - t0, datetime.now(UTC), combos)
    with _counts_lock:
        _counts[key] = snap
    return snap


def _recount_in_background(engine: Any, key: str) -> None:
    try:
        _recount(engine, key)
    except Exception:  # noqa: BLE001 - the database went away (shutdown, a test's teardown): keep the old one
        pass
    finally:
        with _counts_lock:
            _recounting.discard(key)


def _pipeline_combos(s: Session) -> _Snapshot:
    """The pipeline's part of the counts, per database: taken while the first page waits,
    then renewed in the background."""
    engine = s.get_bind().engine
    key = str(engine.url)
    with _counts_lock:
        snap = _counts.get(key)
        if snap is not None:
            age = time.monotonic() - snap.taken
            due = (snap.stale or age >= COUNTS_TTL_SECONDS) and age >= snap.took / COUNTS_DUTY - snap.took
            if due and key not in _recounting:
                _recounting.add(key)
                threading.Thread(target=_recount_in_background, args=(engine, key), daemon=True,
                                 name="queue-recount").start()
            return snap
    return _recount(engine, key)


_touched_cache: dict[str, tuple[tuple[Any, ...], datetime | None, list[tuple[Combo, Combo]]]] = {}


def _touched(s: Session, principal: Principal, now: datetime, snapshot: float) -> list[tuple[Combo, Combo]]:
    """Every report people touched (an override, or a claim row even if expired): its
    pipeline combination and the one in effect now.

    Re-read whenever the overrides or claims changed, in any process (a fingerprint of the
    two small tables, two aggregate reads), when a claim among them has expired since, and
    with every new pipeline snapshot (whose combinations the moves start from)."""
    ao = AssessmentOverride
    mark = (snapshot, *s.execute(select(func.count(), func.max(ao.id))).one(),
            *s.execute(select(func.count(), func.max(Claim.claimed_at), func.sum(Claim.user_id),
                              func.sum(Claim.report_id), func.max(Claim.expires_at))).one())
    key = str(s.get_bind().engine.url)
    with _counts_lock:
        hit = _touched_cache.get(key)
    if hit is not None and hit[0] == mark and (hit[1] is None or now < hit[1]):
        return hit[2]
    ids = select(ao.report_id).union(select(Claim.report_id))
    e = QueueEntry
    live = and_(e.holder_id.is_not(None), e.claim_expires_at > now)
    q = (select(e.report_id, e.priority, e.pipeline_priority, e.disposition, e.pipeline_disposition, e.escalated,
                e.pipeline_escalated, e.closed, e.bank_match, e.incident_type, e.reporter_id.label("platform"),
                e.country, e.us_state.label("state"), case((live, e.holder_id), else_=None).label("holder_id"),
                case((live, e.claim_expires_at), else_=None).label("claim_expires_at"))
         .where(e.report_id.in_(ids)).subquery("q"))
    moves: list[tuple[Combo, Combo]] = []
    expiry: datetime | None = None
    for r in s.execute(select(q)):
        rest = (bool(r.bank_match), r.incident_type, int(r.platform), r.country or "", r.state)
        was = Combo(int(r.pipeline_priority), r.pipeline_disposition, bool(r.pipeline_escalated),
                    rest[0], None, *rest[1:], False)
        is_ = Combo(int(r.priority), r.disposition, bool(r.escalated), rest[0], r.holder_id, *rest[1:],
                    bool(r.closed))
        moves.append((was, is_))
        if r.claim_expires_at is not None:
            expiry = r.claim_expires_at if expiry is None else min(expiry, r.claim_expires_at)
    with _counts_lock:
        _touched_cache[key] = (mark, expiry, moves)
    return moves


def _combos(s: Session, principal: Principal, now: datetime) -> tuple[datetime, dict[Combo, int]]:
    """Report counts per combination of every facet's value and the closed flag: the
    pipeline's snapshot, with each report people touched moved from its pipeline
    combination to the one in effect now. The reference is :func:`_combos_plain`."""
    snap = _pipeline_combos(s)
    moves = _touched(s, principal, now, snap.taken)
    key = str(s.get_bind().engine.url)
    with _counts_lock:
        hit = _combined.get(key)
    # The same snapshot and the same moves (both cached objects): the same sum as last page.
    if hit is not None and hit[0] is snap and hit[1] is moves:
        return snap.at, hit[2]
    combos = dict(snap.combos)
    for was, is_ in moves:
        combos[was] = combos.get(was, 0) - 1
        combos[is_] = combos.get(is_, 0) + 1
    # A report the pipeline assessed after the snapshot and people touched since is not in the
    # snapshot yet: its move would go below zero until the next recount. Drop those.
    out = {c: n for c, n in combos.items() if n > 0}
    with _counts_lock:
        _combined[key] = (snap, moves, out)
    return snap.at, out


_combined: dict[str, tuple[_Snapshot, list[tuple[Combo, Combo]], dict[Combo, int]]] = {}


def _combos_plain(s: Session, principal: Principal, now: datetime) -> dict[Combo, int]:
    """The reference for :func:`_combos`: one GROUP BY over every report's values in effect."""
    q = _queue_base(principal, now, for_counts=True)
    cols = [q.c.priority, q.c.disposition, q.c.escalated, q.c.bank_match, q.c.holder_id,
            q.c.incident_type, q.c.platform, q.c.country, q.c.state, q.c.closed]
    out: dict[Combo, int] = {}
    for g in s.execute(select(*cols, func.count().label("n")).group_by(*cols)):
        c = Combo(int(g[0]), g[1], bool(g[2]), bool(g[3]), g[4], g[5], int(g[6]), g[7] or "", g[8], bool(g[9]))
        out[c] = out.get(c, 0) + int(g.n)
    return out


def _tallies_plain(principal: Principal, f: QueueFilter, combos: dict[Combo, int]
                   ) -> tuple[dict[str, Counter[Any]], int]:
    """The reference for :func:`_tallies`: each facet's counts and the total, one combination
    at a time."""
    # One pass: a combination that fails no filter counts for the total and every facet; one
    # that fails exactly one filter counts only for that facet's values (each facet's counts
    # are taken with the *other* filters applied).
    wanted = [(k, getattr(f, k)) for k in FACETS if getattr(f, k) is not None]
    total = 0
    tallies: dict[str, Counter[Any]] = {k: Counter() for k in FACETS}
    me = principal.user_id
    for v, n in combos.items():
        if f.status == "open" and v.closed or f.status == "closed" and not v.closed:
            continue
        holder = v.holder_id
        claim = "unclaimed" if holder is None else "mine" if holder == me else "other"
        failed = None
        for k, want in wanted:
            if (claim if k == "claim" else getattr(v, k)) != want:
                if failed is not None:
                    failed = "-"  # two or more: counts nowhere
                    break
                failed = k
        if failed == "-":
            continue
        if failed is None:
            total += n
            for k in FACETS:
                tallies[k][claim if k == "claim" else getattr(v, k)] += n
        else:
            tallies[failed][claim if failed == "claim" else getattr(v, failed)] += n

    return tallies, total


@dataclass
class _Columns:
    """The combinations as columns of codes (one array per facet, a code per distinct value),
    so that a page's counts are a few vector operations instead of a loop over 15,000
    combinations in Python."""

    n: Any  # int64 counts
    closed: Any  # bool
    holder: Any  # int64 holder id, -1 for none
    codes: dict[str, Any]  # facet -> int64 code of each combination's value
    values: dict[str, list[Any]]  # facet -> the value of each code

    @staticmethod
    def of(combos: dict[Combo, int]) -> _Columns:
        keys = list(combos)
        codes: dict[str, Any] = {}
        values: dict[str, list[Any]] = {}
        for k in FACETS:
            if k == "claim":
                continue
            index: dict[Any, int] = {}
            codes[k] = np.fromiter((index.setdefault(getattr(c, k), len(index)) for c in keys), dtype=np.int64,
                                   count=len(keys))
            values[k] = list(index)
        return _Columns(np.fromiter(combos.values(), dtype=np.int64, count=len(keys)),
                        np.fromiter((c.closed for c in keys), dtype=bool, count=len(keys)),
                        np.fromiter((-1 if c.holder_id is None else c.holder_id for c in keys), dtype=np.int64,
                                    count=len(keys)), codes, values)


_columns_cache: dict[str, tuple[dict[Combo, int], _Columns]] = {}

#: The claim facet's values, by code (0: nobody holds it, 1: the caller, 2: someone else).
_CLAIMS = ["unclaimed", "mine", "other"]


def _tallies(principal: Principal, f: QueueFilter, cols: _Columns) -> tuple[dict[str, Counter[Any]], int]:
    """Each facet's counts (with the *other* filters applied) and the total, vectorised; the
    reference is :func:`_tallies_plain`."""
    me = -2 if principal.user_id is None else principal.user_id
    claim = np.where(cols.holder == -1, 0, np.where(cols.holder == me, 1, 2))
    codes = {**cols.codes, "claim": claim}
    values = {**cols.values, "claim": _CLAIMS}
    base = (np.ones(len(cols.n), dtype=bool) if f.status == "all" else
            ~cols.closed if f.status == "open" else cols.closed)
    fails = np.zeros(len(cols.n), dtype=np.int64)
    match: dict[str, Any] = {}
    for k in FACETS:
        want = getattr(f, k)
        if want is None:
            continue
        vals = values[k]
        code = next((i for i, v in enumerate(vals) if v == want), None)
        match[k] = codes[k] == code if code is not None else np.zeros(len(cols.n), dtype=bool)
        fails += ~match[k]
    passing = base & (fails == 0)
    total = int(cols.n[passing].sum())
    tallies: dict[str, Counter[Any]] = {}
    for k in FACETS:
        sel = passing | (base & (fails == 1) & ~match[k]) if k in match else passing
        sums = np.bincount(codes[k][sel], weights=cols.n[sel], minlength=len(values[k]))
        tallies[k] = Counter({values[k][i]: int(x) for i, x in enumerate(sums) if x})
    return tallies, total


def _facets(s: Session, principal: Principal, f: QueueFilter, combos: dict[Combo, int]
            ) -> tuple[dict[str, list[FacetValue]], int]:
    key = str(s.get_bind().engine.url)
    with _counts_lock:
        hit = _columns_cache.get(key)
    if hit is not None and hit[0] is combos:
        cols = hit[1]
    else:
        cols = _Columns.of(combos)
        with _counts_lock:
            _columns_cache[key] = (combos, cols)
    tallies, total = _tallies(principal, f, cols)
    names = dict(s.execute(select(Reporter.id, Reporter.name)).all())
    out: dict[str, list[FacetValue]] = {}
    for facet in FACETS:
        counts = tallies[facet]
        chosen = getattr(f, facet)
        values: list[FacetValue] = []
        if facet == "claim":
            for key, label in (("unclaimed", "unclaimed"), ("mine", "mine")):
                values.append(FacetValue(key, label, counts.get(key, 0), chosen == key))
        elif facet in ("escalated", "bank_match"):
            for b in (True, False):
                values.append(FacetValue("yes" if b else "no", "yes" if b else "no", counts.get(b, 0), chosen is b))
        else:
            keys = [k for k in counts if k is not None]
            if facet == "priority":
                keys = sorted(set(keys) | set(PRIORITIES))
            else:
                keys = sorted(keys, key=lambda k: (-counts[k], str(k)))
            for k in keys:
                label = (names.get(k, str(k)) if facet == "platform" else
                         "unknown" if facet == "country" and k == "" else f"priority {k}" if facet == "priority"
                         else str(k))
                value = "unknown" if facet == "country" and k == "" else str(k)
                values.append(FacetValue(value, label, counts.get(k, 0), chosen is not None and chosen == k))
        out[facet] = values
    return out, total


# --- claims ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimState:
    holder_id: int | None
    holder: str | None
    expires_at: datetime | None


def current_claim(s: Session, report_id: int, now: datetime | None = None) -> ClaimState:
    row = s.get(Claim, report_id)
    if row is None or row.expires_at <= _now(now):
        return ClaimState(None, None, None)
    user = s.get(User, row.user_id)
    return ClaimState(row.user_id, user.username if user else f"user {row.user_id}", row.expires_at)


def claim(s: Session, principal: Principal, report_id: int, *, minutes: int,
          now: datetime | None = None) -> ClaimState:
    """Take the report; refused, naming the holder, while someone else holds it. Claiming
    one's own claim again renews it."""
    _require(principal, Capability.REPORT_TRIAGE)
    _report(s, report_id)
    now = _now(now)
    # Lock the row (PostgreSQL) so that two analysts claiming at once cannot both win.
    row = s.execute(select(Claim).where(Claim.report_id == report_id).with_for_update()).scalar_one_or_none()
    if row is not None and row.expires_at > now and row.user_id != principal.user_id:
        holder = s.get(User, row.user_id)
        until = row.expires_at.strftime("%H:%M UTC")
        raise Refused(f"Report {report_id} is claimed by {holder.username if holder else row.user_id} "
                      f"until {until}.")
    expires = now + timedelta(minutes=minutes)
    if row is None:
        s.add(Claim(report_id=report_id, user_id=principal.user_id, claimed_at=now, expires_at=expires))
        s.flush()
    else:
        row.user_id, row.claimed_at, row.expires_at = principal.user_id, now, expires
    queue_model.refresh(s, [report_id])  # the read model, in this transaction
    counts_changed()
    return ClaimState(principal.user_id, principal.username, expires)


def release(s: Session, principal: Principal, report_id: int, now: datetime | None = None) -> None:
    """Give the report back. Only its holder releases it by hand (a supervisor reassigns)."""
    _require(principal, Capability.REPORT_TRIAGE)
    _report(s, report_id)
    row = s.get(Claim, report_id)
    if row is None or row.expires_at <= _now(now):
        raise Refused(f"Report {report_id} is not claimed.")
    if row.user_id != principal.user_id and not may(principal.role, Capability.QUEUE_SUPERVISE):
        holder = s.get(User, row.user_id)
        raise Refused(f"Report {report_id} is claimed by {holder.username if holder else row.user_id}; "
                      "only they or a supervisor can release it.")
    s.delete(row)
    s.flush()
    queue_model.refresh(s, [report_id])  # the read model, in this transaction
    counts_changed()


def reassign(s: Session, principal: Principal, report_id: int, username: str, *, minutes: int,
             now: datetime | None = None) -> ClaimState:
    """A supervisor hands the report to another analyst (or supervisor)."""
    _require(principal, Capability.QUEUE_SUPERVISE)
    _report(s, report_id)
    now = _now(now)
    target = s.execute(select(User).where(User.username == username.strip())).scalar_one_or_none()
    if target is None or target.disabled_at is not None or not may(target.role, Capability.REPORT_TRIAGE):
        raise Refused(f"There is no active analyst called {username.strip()!r}.")
    row = s.execute(select(Claim).where(Claim.report_id == report_id).with_for_update()).scalar_one_or_none()
    expires = now + timedelta(minutes=minutes)
    if row is None:
        s.add(Claim(report_id=report_id, user_id=target.id, claimed_at=now, expires_at=expires))
        s.flush()
    else:
        row.user_id, row.claimed_at, row.expires_at = target.id, now, expires
    queue_model.refresh(s, [report_id])  # the read model, in this transaction
    counts_changed()
    return ClaimState(target.id, target.username, expires)


def _check_holder(s: Session, principal: Principal, report_id: int, now: datetime) -> None:
    """Writes on a report someone else holds are refused (a supervisor may act anyway)."""
    c = current_claim(s, report_id, now)
    if c.holder_id is not None and c.holder_id != principal.user_id and not may(
            principal.role, Capability.QUEUE_SUPERVISE):
        raise Refused(f"Report {report_id} is claimed by {c.holder}; claim it first when it is released.")


# --- the report page ---------------------------------------------------------------------


def viewable(f: File) -> bool:
    """Only files the platform says it viewed may be shown to analysts (US v. Wilson)."""
    return f.viewed_by_esp is True


GATE_REASON = ("The platform did not say it viewed this file (fileViewedByEsp is {value}). Under "
               "United States v. Wilson (9th Cir. 2021) opening it may need a warrant, so it is never "
               "shown here: only its hashes and matches.")


@dataclass
class FileView:
    id: str
    seq: int
    name: str | None
    media_type: str | None
    size: int
    md5: str
    sha1: str
    sha256: str
    viewed_by_esp: bool | None
    shown: bool
    gate_reason: str | None
    media_kind: str | None
    pdq: str | None
    pdq_quality: int | None
    video_frames: int | None
    preview: str | None  # why no picture, when there is none (for a viewable file)
    platform_classification: str | None
    relevance: str | None
    details: dict[str, Any] | None
    matches: list[dict[str, Any]]
    label: FileLabel | None
    label_by: str | None
    copies: int  # exact copies (same SHA-256) in this report's incidents, this file excluded


def _gate_reason(f: File) -> str | None:
    if viewable(f):
        return None
    return GATE_REASON.format(value="false" if f.viewed_by_esp is False else "not given")


def _current_labels(s: Session, file_ids: Iterable[str]) -> dict[str, FileLabel]:
    ids = list(file_ids)
    if not ids:
        return {}
    latest = (select(FileLabel.file_id, func.max(FileLabel.id).label("id")).where(FileLabel.file_id.in_(ids))
              .group_by(FileLabel.file_id).subquery())
    return {lab.file_id: lab for lab in s.scalars(select(FileLabel).join(latest, latest.c.id == FileLabel.id))}


def incident_report_ids(s: Session, report_id: int) -> list[int]:
    """This report and every report that shares an incident with it."""
    incidents = select(IncidentReport.incident_id).where(IncidentReport.report_id == report_id)
    ids = set(s.scalars(select(IncidentReport.report_id).where(IncidentReport.incident_id.in_(incidents))))
    ids.add(report_id)
    return sorted(ids)


def _copies(s: Session, f: File, scope_reports: list[int]) -> list[File]:
    return list(s.scalars(select(File).where(File.sha256 == f.sha256, File.report_id.in_(scope_reports),
                                             File.id != f.id).order_by(File.report_id, File.seq)))


def _preview_reason(f: File, sig: FileSignal | None, held: bool) -> str | None:
    if not held:
        return "No picture: the bytes of this file are not held (the platform sent its hashes only)."
    kind = sig.media_kind if sig else None
    if kind == "video":
        if frame_decoder_available():
            return None  # a representative frame is decoded for its picture (tipline.web.thumbs)
        n = len(sig.video_frames or []) if sig else 0
        return (f"No frame available: this video's {n} representative frames are kept as vPDQ hashes, "
                "not as pictures, and this installation has no video decoder (PyAV) to render one.")
    if kind not in (None, "image") or (f.media_type and not f.media_type.startswith("image/")):
        return "No picture: this file is not an image."
    return None


def report_view(s: Session, principal: Principal, report_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the pipeline found about one report, each with its reason, for the page."""
    _require(principal, Capability.REPORT_READ)
    r = _report(s, report_id)
    now = _now(now)
    reporter = s.get(Reporter, r.reporter_id)
    files = list(s.scalars(select(File).where(File.report_id == report_id).order_by(File.seq)))
    file_ids = [f.id for f in files]
    signals = {sig.file_id: sig for sig in s.scalars(select(FileSignal).where(FileSignal.file_id.in_(file_ids)))} \
        if file_ids else {}
    held = {b.sha256: (b.stored_name is not None or b.held) for b in s.execute(
        select(Blob.sha256, Blob.stored_name, Blob.data.is_not(None).label("held"))
        .where(Blob.sha256.in_({f.sha256 for f in files})))} if files else {}
    matches: dict[str, list[dict[str, Any]]] = {fid: [] for fid in file_ids}
    if file_ids:
        # A duplicate pair is stored once, under either file: read both directions.
        q = (select(FileMatch, BankEntry.label, HashBank.name)
             .outerjoin(BankEntry, BankEntry.id == FileMatch.bank_entry_id)
             .outerjoin(HashBank, HashBank.id == BankEntry.bank_id)
             .where(or_(FileMatch.file_id.in_(file_ids), FileMatch.other_file_id.in_(file_ids)))
             .order_by(FileMatch.id))
        found = s.execute(q).all()
        others = {m.other_file_id if m.file_id in matches else m.file_id for m, _, _ in found} - {None}
        other_report = dict(s.execute(select(File.id, File.report_id).where(File.id.in_(others))).all()) \
            if others else {}
        seen: set[tuple[Any, ...]] = set()
        for m, label, bank in found:
            mine, other = (m.file_id, m.other_file_id) if m.file_id in matches else (m.other_file_id, m.file_id)
            if mine not in matches:
                continue
            # A pair may be stored under both of its files: show it once.
            key = (mine, m.kind, m.hash_type, m.distance, m.bank_entry_id, other)
            if key in seen:
                continue
            seen.add(key)
            if m.kind == "bank":
                why = f"{m.hash_type.upper()} {'equal' if m.distance == 0 else f'within {m.distance} bits'} " \
                      f"of an entry of hash bank {bank}" + (f" ({label})" if label else "")
            else:
                why = (f"{'exact' if m.distance == 0 else 'near'} duplicate ({m.hash_type.upper()}, distance "
                       f"{m.distance}) of file {other} in report {other_report.get(other or '')}")
            matches[mine].append({"kind": m.kind, "hashType": m.hash_type, "distance": m.distance, "bank": bank,
                                  "label": label, "otherReportId": other_report.get(other) if other else None,
                                  "reason": why})
    scope_reports = incident_report_ids(s, report_id)
    labels = _current_labels(s, file_ids)
    labellers = dict(s.execute(select(User.id, User.username).where(
        User.id.in_({lab.user_id for lab in labels.values() if lab.user_id}))).all()) if labels else {}
    copy_counts = dict(s.execute(select(File.sha256, func.count()).where(
        File.sha256.in_({f.sha256 for f in files}), File.report_id.in_(scope_reports))
        .group_by(File.sha256)).all()) if files else {}
    views: list[FileView] = []
    for f in files:
        sig = signals.get(f.id)
        shown = viewable(f)
        views.append(FileView(
            id=f.id, seq=f.seq, name=f.file_name, media_type=f.media_type, size=f.size, md5=f.md5, sha1=f.sha1,
            sha256=f.sha256, viewed_by_esp=f.viewed_by_esp, shown=shown, gate_reason=_gate_reason(f),
            media_kind=sig.media_kind if sig else None, pdq=sig.pdq.hex() if sig and sig.pdq else None,
            pdq_quality=sig.pdq_quality if sig else None,
            video_frames=len(sig.video_frames or []) if sig and sig.media_kind == "video" else None,
            preview=_preview_reason(f, sig, held.get(f.sha256, False)) if shown else None,
            platform_classification=f.industry_classification, relevance=f.file_relevance,
            details=f.details, matches=matches.get(f.id, []), label=labels.get(f.id),
            label_by=labellers.get(labels[f.id].user_id or 0) if f.id in labels else None,
            copies=int(copy_counts.get(f.sha256, 1)) - 1))

    links = []
    for ln in s.scalars(select(ReportLink).where(or_(ReportLink.report_a == report_id,
                                                     ReportLink.report_b == report_id))
                        .order_by(ReportLink.report_a, ReportLink.report_b, ReportLink.reason)):
        links.append({"reportId": ln.report_b if ln.report_a == report_id else ln.report_a,
                      "reason": ln.reason, "detail": ln.detail, "weight": ln.weight})
    incidents = []
    for inc, reason in s.execute(select(Incident, IncidentReport.reason).join(IncidentReport)
                                 .where(IncidentReport.report_id == report_id).order_by(Incident.id)).all():
        members = s.execute(select(IncidentReport.report_id, IncidentReport.reason)
                            .where(IncidentReport.incident_id == inc.id).order_by(IncidentReport.report_id)
                            .limit(200)).all()
        n = s.execute(select(func.count()).where(IncidentReport.incident_id == inc.id)).scalar_one()
        incidents.append({"id": inc.id, "rule": inc.rule, "reason": reason, "count": int(n),
                          "members": [{"reportId": m[0], "reason": m[1]} for m in members]})
    locations = list(s.scalars(select(Location).where(Location.report_id == report_id)
                               .order_by(Location.confidence.desc(), Location.id)))
    jurisdiction = s.get(Jurisdiction, report_id)
    referrals = []
    for ref, ag in s.execute(select(Referral, Agency).join(Agency).where(Referral.report_id == report_id)
                             .order_by(Referral.id)).all():
        actions = list(s.scalars(select(ReferralAction).where(ReferralAction.referral_id == ref.id)
                                 .order_by(ReferralAction.id)))
        state = ("acknowledged" if ref.acknowledged_at else "made available")
        referrals.append({"referral": ref, "agency": ag, "state": state, "actions": actions})
    assessment = s.get(Assessment, report_id)
    overrides = list(s.execute(select(AssessmentOverride, User.username)
                               .outerjoin(User, User.id == AssessmentOverride.user_id)
                               .where(AssessmentOverride.report_id == report_id)
                               .order_by(AssessmentOverride.id)).all())
    eff = effective(s, report_id)
    return {
        "report": r, "reporter": reporter, "document": r.document or {}, "files": views, "links": links,
        "incidents": incidents, "locations": locations, "jurisdiction": jurisdiction, "referrals": referrals,
        "assessment": assessment, "overrides": overrides, "effective": eff,
        "claim": current_claim(s, report_id, now),
    }


@dataclass
class Effective:
    priority: int | None
    disposition: str | None
    escalated: bool
    closed: bool
    priority_override: AssessmentOverride | None
    disposition_override: AssessmentOverride | None


def effective(s: Session, report_id: int) -> Effective:
    a = s.get(Assessment, report_id)
    rows = list(s.scalars(select(AssessmentOverride).where(AssessmentOverride.report_id == report_id)
                          .order_by(AssessmentOverride.id.desc())))

    def latest(attr: str) -> AssessmentOverride | None:
        return next((o for o in rows if getattr(o, attr) is not None), None)

    p, d, e, c = latest("priority"), latest("disposition"), latest("escalate"), latest("closed")
    return Effective(
        priority=p.priority if p else (a.priority if a else None),
        disposition=d.disposition if d else (a.disposition if a else None),
        escalated=bool(e.escalate if e else (a.escalate if a else False)),
        closed=bool(c.closed) if c else False, priority_override=p, disposition_override=d)


# --- files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldFile:
    file_id: str
    report_id: int
    sha256: str
    stored_name: str | None
    inline: bytes | None


def file_content(s: Session, principal: Principal, file_id: str) -> HeldFile:
    """Where a file's bytes are, for a picture of it; a file the platform did not view is
    "not found" for analysts, exactly as one that does not exist."""
    _require(principal, Capability.REPORT_READ)
    f = s.get(File, file_id)
    if f is None or not viewable(f):
        raise NotFound()
    _report(s, f.report_id)
    blob = s.get(Blob, f.sha256)
    if blob is None or (blob.stored_name is None and blob.data is None):
        raise NotFound()
    return HeldFile(f.id, f.report_id, f.sha256, blob.stored_name, blob.data)


# --- labels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelInput:
    classification: str | None
    age_range: str | None
    apparent_minor: bool
    generative_ai: bool
    self_generated: bool
    known_series: str | None


@dataclass(frozen=True)
class Labelled:
    file_id: str
    report_id: int
    copies: list[str]  # file ids the label was copied to
    incidents: list[int]


def label_file(s: Session, principal: Principal, file_id: str, given: LabelInput,
               now: datetime | None = None) -> Labelled:
    """Label a file, and every exact copy (same SHA-256) in the reports of its incidents.

    Only a file an analyst may see is labelled by hand (a gated one is "not found"); its
    copies are the same bytes, so the label is copied to them whether or not their own
    platform viewed them."""
    _require(principal, Capability.REPORT_TRIAGE)
    f = s.get(File, file_id)
    if f is None or not viewable(f):
        raise NotFound()
    _report(s, f.report_id)
    now = _now(now)
    _check_holder(s, principal, f.report_id, now)
    if given.classification is not None and given.classification not in CLASSIFICATIONS:
        raise Refused("Choose a classification among A1, A2, B1 and B2 (or none).")
    if given.age_range is not None and given.age_range not in AGE_RANGES:
        raise Refused("Choose an age range from the list.")
    series = (given.known_series or "").strip() or None
    if series is not None and len(series) > 255:
        raise Refused("The series name is longer than 255 characters.")

    def row(fid: str, copied: str | None) -> FileLabel:
        return FileLabel(file_id=fid, user_id=principal.user_id, classification=given.classification,
                         age_range=given.age_range, apparent_minor=given.apparent_minor,
                         generative_ai=given.generative_ai, self_generated=given.self_generated,
                         known_series=series, copied_from_file_id=copied, labelled_at=now)

    s.add(row(f.id, None))
    scope = incident_report_ids(s, f.report_id)
    copies = _copies(s, f, scope)
    for c in copies:
        s.add(row(c.id, f.id))
    s.flush()
    incidents = sorted(s.scalars(select(IncidentReport.incident_id).where(IncidentReport.report_id == f.report_id)))
    return Labelled(f.id, f.report_id, [c.id for c in copies], incidents)


# --- decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What an analyst decided on a report, as recorded (also the audit row's detail)."""

    action: str  # priority | disposition | escalate | close | route
    report_id: int
    detail: dict[str, Any]


def _override(s: Session, principal: Principal, report_id: int, reason: str, now: datetime, **values: Any
              ) -> AssessmentOverride:
    if s.get(Assessment, report_id) is None:
        raise Refused(f"Report {report_id} has not been assessed by the pipeline yet; decide when it has.")
    row = AssessmentOverride(report_id=report_id, user_id=principal.user_id, reason=reason, at=now, **values)
    s.add(row)
    s.flush()
    queue_model.refresh(s, [report_id])  # the read model, in this transaction
    counts_changed()
    return row


def _deciding(s: Session, principal: Principal, report_id: int, now: datetime | None) -> datetime:
    """What every decision on a report checks first: the capability, that the report is in
    the queue, and that nobody else holds it; the time the decision is made."""
    _require(principal, Capability.REPORT_TRIAGE)
    _report(s, report_id)
    when = _now(now)
    _check_holder(s, principal, report_id, when)
    return when


def _set_value(s: Session, principal: Principal, report_id: int, field: str, value: Any, reason: str | None,
               now: datetime | None, *, allowed: tuple[Any, ...], refusal: str) -> Decision:
    """A new version of one effective value (priority or disposition), kept beside the pipeline's."""
    when = _deciding(s, principal, report_id, now)
    if value not in allowed:
        raise Refused(refusal)
    why = _reason(reason)
    before = getattr(effective(s, report_id), field)
    o = _override(s, principal, report_id, why, when, **{field: value})
    return Decision(field, report_id, {"from": before, "to": value, "reason": why, "override": o.id})


def set_priority(s: Session, principal: Principal, report_id: int, priority: int, reason: str | None,
                 now: datetime | None = None) -> Decision:
    """Change the report's priority with a reason (a new version; the pipeline's stays)."""
    return _set_value(s, principal, report_id, "priority", priority, reason, now, allowed=PRIORITIES,
                      refusal="Priority is 1, 2 or 3.")


def set_disposition(s: Session, principal: Principal, report_id: int, disposition: str, reason: str | None,
                    now: datetime | None = None) -> Decision:
    """Change the report's disposition with a reason (a new version; the pipeline's stays)."""
    return _set_value(s, principal, report_id, "disposition", disposition, reason, now, allowed=DISPOSITIONS,
                      refusal="Disposition is referral or informational.")


def escalate(s: Session, principal: Principal, report_id: int, reason: str | None,
             now: datetime | None = None) -> Decision:
    """Mark the report escalated, and every referral of it with it (the agencies see it first)."""
    now = _deciding(s, principal, report_id, now)
    why = _reason(reason)
    o = _override(s, principal, report_id, why, now, escalate=True)
    refs = list(s.scalars(select(Referral).where(Referral.report_id == report_id, Referral.escalated == false())))
    for ref in refs:
        ref.escalated, ref.escalated_at = True, now
    return Decision("escalate", report_id, {"reason": why, "override": o.id, "referrals": [r.id for r in refs]})


def close_informational(s: Session, principal: Principal, report_id: int, reason: str | None,
                        now: datetime | None = None) -> Decision:
    """Close the report as informational, with a reason; its claim ends."""
    now = _deciding(s, principal, report_id, now)
    why = _reason(reason)
    o = _override(s, principal, report_id, why, now, disposition="informational", closed=True)
    # Closing ends the analyst's hold on it.
    held = s.get(Claim, report_id)
    if held is not None:
        s.delete(held)
        queue_model.refresh(s, [report_id])  # the claim is gone from the read model too
    return Decision("close", report_id, {"reason": why, "override": o.id})


def route_manually(s: Session, principal: Principal, report_id: int, agency_code: str, reason: str | None,
                   now: datetime | None = None) -> Decision:
    """Make the report available to another agency by hand: a referral with rule "manual"."""
    now = _deciding(s, principal, report_id, now)
    why = _reason(reason)
    agency = s.execute(select(Agency).where(Agency.code == agency_code.strip())).scalar_one_or_none()
    if agency is None or not agency.active:
        raise Refused(f"There is no active agency with the code {agency_code.strip()!r} in the directory.")
    if s.execute(select(Referral.id).where(Referral.report_id == report_id,
                                           Referral.agency_id == agency.id)).first() is not None:
        raise Refused(f"Report {report_id} is already available to {agency.code}.")
    eff = effective(s, report_id)
    ref = Referral(report_id=report_id, agency_id=agency.id, rule="manual", reason=why, made_available_at=now,
                   escalated=eff.escalated, escalated_at=now if eff.escalated else None)
    s.add(ref)
    s.flush()
    s.add(ReferralAction(referral_id=ref.id, user_id=principal.user_id, action="route", reason=why, at=now))
    s.flush()
    return Decision("route", report_id, {"agency": agency.code, "reason": why, "referral": ref.id})


ACTIONS = ("priority", "disposition", "escalate", "close", "route")


def decide(s: Session, principal: Principal, report_id: int, action: str, *, reason: str | None,
           priority: int | None = None, disposition: str | None = None, agency: str | None = None,
           now: datetime | None = None) -> Decision:
    """One decision named by ``action`` (the form's button)."""
    if action == "priority":
        if priority is None:
            raise Refused("Choose a priority.")
        return set_priority(s, principal, report_id, priority, reason, now)
    if action == "disposition":
        if not disposition:
            raise Refused("Choose a disposition.")
        return set_disposition(s, principal, report_id, disposition, reason, now)
    if action == "escalate":
        return escalate(s, principal, report_id, reason, now)
    if action == "close":
        return close_informational(s, principal, report_id, reason, now)
    if action == "route":
        if not agency:
            raise Refused("Give the code of the agency to route to.")
        return route_manually(s, principal, report_id, agency, reason, now)
    raise Refused(f"Unknown action {action!r}.")


def incident_members(s: Session, principal: Principal, incident_id: int) -> list[int]:
    _require(principal, Capability.REPORT_READ)
    if s.get(Incident, incident_id) is None:
        raise NotFound()
    return sorted(s.scalars(select(IncidentReport.report_id).join(Report, Report.id == IncidentReport.report_id)
                            .where(IncidentReport.incident_id == incident_id, Report.state == "finished")))


def decide_incident(s: Session, principal: Principal, incident_id: int, action: str, **kwargs: Any) -> list[Decision]:
    """The same decision on every report of an incident; all or nothing (one transaction)."""
    _require(principal, Capability.REPORT_TRIAGE)
    done = []
    for rid in incident_members(s, principal, incident_id):
        if action == "route":
            agency = (kwargs.get("agency") or "").strip()
            already = s.execute(select(Referral.id).join(Agency).where(
                Referral.report_id == rid, Agency.code == agency)).first()
            if already is not None:
                continue  # this member already reaches the agency: nothing to add
        done.append(decide(s, principal, rid, action, **kwargs))
    if not done:
        raise Refused(f"Nothing to change: every report of incident {incident_id} already has that.")
    return done


# --- supervisors -------------------------------------------------------------------------


@dataclass
class Holder:
    user_id: int
    username: str
    role: str
    reports: list[tuple[int, datetime]]  # report id, claim expiry


def workload(s: Session, principal: Principal, now: datetime | None = None) -> dict[str, Any]:
    """Who holds what, and the oldest unclaimed open report of each priority."""
    _require(principal, Capability.QUEUE_SUPERVISE)
    now = _now(now)
    holders: dict[int, Holder] = {}
    for c, u in s.execute(select(Claim, User).join(User, User.id == Claim.user_id)
                          .where(Claim.expires_at > now).order_by(User.username, Claim.report_id)).all():
        holders.setdefault(u.id, Holder(u.id, u.username, u.role, [])).reports.append((c.report_id, c.expires_at))
    e = QueueEntry
    waiting_now = [e.closed == false(), or_(e.holder_id.is_(None), e.claim_expires_at <= now)]
    oldest = []
    for p in PRIORITIES:
        row = s.execute(select(e.report_id, e.received_at).where(e.priority == p, *waiting_now)
                        .order_by(e.report_id).limit(1)).first()
        waiting = s.execute(select(func.count()).select_from(e).where(e.priority == p, *waiting_now)).scalar_one()
        oldest.append({"priority": p, "reportId": row.report_id if row else None,
                       "receivedAt": row.received_at if row else None, "waiting": int(waiting)})
    analysts = list(s.scalars(select(User.username).where(User.role.in_(("analyst", "supervisor")),
                                                          User.disabled_at.is_(None)).order_by(User.username)))
    return {"holders": list(holders.values()), "oldest": oldest, "analysts": analysts, "now": now}


def agencies(s: Session, principal: Principal) -> list[Agency]:
    """The directory, for the manual routing form."""
    _require(principal, Capability.REPORT_TRIAGE)
    return list(s.scalars(select(Agency).where(Agency.active.is_(True)).order_by(Agency.code)))

