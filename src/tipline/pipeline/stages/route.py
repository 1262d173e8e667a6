"""Stage ``route``: make a report available to agencies by the rules in ``data/routing.toml``.

Reads the report's ``Jurisdiction`` (and the city of the location that placed it, for states
with several task forces) and, when the ``assess`` stage exists, its ``Assessment`` to mark
referrals escalated. Writes one ``Referral`` per agency with the rule and a readable reason.

Re-running is idempotent and keeps what law enforcement did: a referral to the same agency
keeps its ``made_available_at`` and ``acknowledged_at``; a referral the rules no longer
choose is removed unless the agency already acknowledged it (then it stays, and its reason
says it is no longer chosen by the current rules).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from tipline.pipeline.core import Outcome, StageContext, forget_objects, insert_rows, stage
from tipline.pipeline.directory import (
    Directory,
    DirectoryCache,
    RoutingRules,
    import_agencies,
    load_routing,
    read_agency_file,
    route,
)
from tipline.pipeline.geo import us_state_code
from tipline.store.tables import Agency, Assessment, Jurisdiction, Location, Referral

log = logging.getLogger("tipline.pipeline.route")

NO_LONGER = " [no longer chosen by the current routing rules; kept because the agency acknowledged it]"


def ensure_directory(session: Session) -> None:
    """Load the bundled directory when the agencies table is empty (a fresh instance).

    An operator's own directory (``tipline agency import FILE``) is never overwritten.
    """
    if session.execute(select(Agency.id).limit(1)).first() is None:
        log.info("agency directory empty: importing the bundled default")
        import_agencies(session, read_agency_file())


def city_for(session: Session, report_id: int, state: str | None, precedence: tuple[str, ...]) -> str | None:
    """The city of the most trusted location placing the report in ``state`` (for area routing)."""
    if state is None:
        return None
    rank = {c: i for i, c in enumerate(precedence)}
    rows = session.execute(select(Location).where(Location.report_id == report_id, Location.country == "US",
                                                  Location.city.is_not(None)).order_by(Location.id)).scalars().all()
    best: tuple[int, int, str] | None = None
    for r in rows:
        cls = r.location_class
        if cls not in rank or us_state_code(r.region) != state or not r.city:
            continue
        cand = (rank[cls], -int(r.confidence * 1000), r.city)
        if best is None or cand < best:
            best = cand
    return best[2] if best else None


def current_directory(ctx: StageContext, session: Session) -> Directory:
    """The agency directory, built once per process and rebuilt when the stored one changes."""
    cache: DirectoryCache = ctx.service("agency-directory", DirectoryCache)
    directory = cache.current(session)
    if directory is None:
        ensure_directory(session)
        directory = cache.current(session)
        if directory is None:
            raise RuntimeError("the agency directory is empty after importing the bundled default")
    return directory


def reference_directory(session: Session) -> Directory:
    """The directory loaded afresh from the session (the plain path :func:`current_directory` caches)."""
    ensure_directory(session)
    return Directory.load(session)


def _best_city(rows: list[Any], state: str | None, precedence: tuple[str, ...]) -> str | None:
    """``city_for`` over rows already read: the city of the most trusted location in ``state``."""
    if state is None:
        return None
    rank = {c: i for i, c in enumerate(precedence)}
    best: tuple[int, int, str] | None = None
    for r in rows:
        cls = r.location_class
        if cls not in rank or us_state_code(r.region) != state or not r.city:
            continue
        cand = (rank[cls], -int(r.confidence * 1000), r.city)
        if best is None or cand < best:
            best = cand
    return best[2] if best else None


def routes_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The route stage over a group: a fixed number of statements per 500 reports.

    Reads the group's jurisdictions, US locations with a city, assessments and referrals in
    one statement each, decides every report in memory exactly as ``route_report`` does, and
    writes the new, changed and removed referrals with one statement each.
    """
    rules = ctx.service("routing_rules", load_routing)
    directory = current_directory(ctx, session)
    ids = list(report_ids)
    now = datetime.now(UTC)
    ref: Table = Referral.__table__  # type: ignore[assignment]
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[int] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        jur = {int(r.report_id): r for r in session.execute(
            select(Jurisdiction.report_id, Jurisdiction.country, Jurisdiction.us_state)
            .where(Jurisdiction.report_id.in_(chunk)))}
        missing = [rid for rid in chunk if rid not in jur]
        if missing:
            # The per-report runs then fail these reports alone, with this error.
            raise RuntimeError(f"report {missing[0]} has no jurisdiction: run the jurisdiction stage first")
        cities: dict[int, list[Any]] = {}
        for loc in session.execute(
                select(Location.report_id, Location.location_class, Location.region, Location.city,
                       Location.confidence)
                .where(Location.report_id.in_(chunk), Location.country == "US", Location.city.is_not(None))
                .order_by(Location.id)):
            cities.setdefault(int(loc.report_id), []).append(loc)
        escalated = {int(rid): bool(esc) for rid, esc in session.execute(
            select(Assessment.report_id, Assessment.escalate).where(Assessment.report_id.in_(chunk)))}
        existing: dict[int, dict[int, Any]] = {}
        for r in session.execute(select(ref.c.id, ref.c.report_id, ref.c.agency_id, ref.c.rule, ref.c.reason,
                                        ref.c.escalated, ref.c.escalated_at, ref.c.acknowledged_at)
                                 .where(ref.c.report_id.in_(chunk))):
            existing.setdefault(int(r.report_id), {})[int(r.agency_id)] = r
        for rid in chunk:
            j = jur[rid]
            city = _best_city(cities.get(rid, []), j.us_state, rules.precedence)
            escalate = escalated.get(rid, False)
            mine = existing.get(rid, {})
            chosen: set[int] = set()
            for d in route(directory, rules, j.country, j.us_state, city):
                agency = directory.by_code[d.agency_code]
                chosen.add(agency.id)
                old = mine.get(agency.id)
                if old is None:
                    inserts.append({"report_id": rid, "agency_id": agency.id, "rule": d.rule, "reason": d.reason,
                                    "made_available_at": now, "escalated": escalate,
                                    "escalated_at": now if escalate else None})
                    continue
                esc, esc_at = bool(old.escalated), old.escalated_at
                if escalate and not esc:
                    esc, esc_at = True, now
                elif not escalate and esc and old.acknowledged_at is None:
                    esc, esc_at = False, None
                if (d.rule, d.reason, esc, esc_at) != (old.rule, old.reason, bool(old.escalated), old.escalated_at):
                    updates.append({"ref_id": old.id, "rule": d.rule, "reason": d.reason, "escalated": esc,
                                    "escalated_at": esc_at})
            for agency_id, old in mine.items():
                if agency_id in chosen:
                    continue
                if old.acknowledged_at is None:
                    deletes.append(int(old.id))
                elif not old.reason.endswith(NO_LONGER):
                    updates.append({"ref_id": old.id, "rule": old.rule, "reason": old.reason + NO_LONGER,
                                    "escalated": bool(old.escalated), "escalated_at": old.escalated_at})
    for i in range(0, len(deletes), 500):
        session.execute(delete(ref).where(ref.c.id.in_(deletes[i:i + 500])))
    if updates:
        session.execute(update(ref).where(ref.c.id == bindparam("ref_id")).values(
            rule=bindparam("rule"), reason=bindparam("reason"), escalated=bindparam("escalated"),
            escalated_at=bindparam("escalated_at")), updates)
    insert_rows(session, Referral, inserts)
    forget_objects(session, Referral)
    return dict.fromkeys(ids, Outcome.DONE)


@stage("route", version="1", after=("jurisdiction", "assess"), group=routes_group)
def route_stage(ctx: StageContext, session: Session, report_id: int) -> None:
    """Make the report available to the agencies its jurisdiction routes to (rules in routing.toml)."""
    routes_group(ctx, session, [report_id])


def route_report(session: Session, report_id: int, rules: RoutingRules, directory: Directory) -> None:
    """Write the report's referrals as chosen by ``rules`` over ``directory`` (the plain path, object by object).

    The reference ``routes_group`` is compared with (tests/test_routing.py); the stage itself
    runs ``routes_group``.
    """
    jur = session.get(Jurisdiction, report_id)
    if jur is None:
        raise RuntimeError(f"report {report_id} has no jurisdiction: run the jurisdiction stage first")
    city = city_for(session, report_id, jur.us_state, rules.precedence)
    decisions = route(directory, rules, jur.country, jur.us_state, city)
    assessment = session.get(Assessment, report_id)
    escalate = bool(assessment is not None and assessment.escalate)
    now = datetime.now(UTC)
    existing = {r.agency_id: r for r in session.execute(
        select(Referral).where(Referral.report_id == report_id)).scalars()}
    chosen: set[int] = set()
    for d in decisions:
        agency = directory.by_code[d.agency_code]
        chosen.add(agency.id)
        ref = existing.get(agency.id)
        if ref is None:
            session.add(Referral(report_id=report_id, agency_id=agency.id, rule=d.rule, reason=d.reason,
                                 made_available_at=now, escalated=escalate, escalated_at=now if escalate else None))
            continue
        ref.rule, ref.reason = d.rule, d.reason
        if escalate and not ref.escalated:
            ref.escalated, ref.escalated_at = True, now
        elif not escalate and ref.escalated and ref.acknowledged_at is None:
            ref.escalated, ref.escalated_at = False, None
    for agency_id, ref in existing.items():
        if agency_id in chosen:
            continue
        if ref.acknowledged_at is None:
            session.delete(ref)
        elif not ref.reason.endswith(NO_LONGER):
            ref.reason = ref.reason + NO_LONGER
