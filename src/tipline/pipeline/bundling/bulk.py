"""Bundles in bulk: many reports' incidents brought up to date at once, or the whole store rebuilt.

The per-report paths (``incremental``, ``search``) cost a few queries per report. Here a group
of reports is handled as one problem:

1. ``load_affected`` reads the part of the store the group can change, in rounds of a few
   queries each (not per report): the group's links and their ends, every member of every
   incident those reports are in, then the links of those, until nothing new turns up. The set
   it returns is closed under links and under membership of a stored incident, so planning it
   alone gives what the reference plan (``reference.plan_all``) gives for those reports.
2. ``plan_reports`` partitions it in memory by union-find, rule by rule, as ``plan_all`` does,
   and gives each member the reason the other paths give (its link to the lowest-numbered
   member it is linked to).
3. ``apply_plan`` compares the plan with the stored rows and writes only the difference, in a
   few set-based statements: an unchanged incident is not written at all; a changed one keeps
   its row (found by key, or by most members in common) and is updated once.

``rebuild_all`` is the same over every finished report and every link: one pass, for
``tipline pipeline rerun --stage bundles --all``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.reference import UnionFind
from tipline.pipeline.bundling.rules import CHUNK, BundlingRules, MemberReason, key_of
from tipline.pipeline.linkchanges import forget_link_changes
from tipline.store.tables import Base, Incident, IncidentReport, Report, ReportLink

#: A link as bulk bundling reads it: (report_a, report_b, reason, weight, detail).
Link = tuple[int, int, str, float, str | None]


class StoredMember(NamedTuple):
    """One stored ``IncidentReport`` row."""

    incident_id: int
    reason: MemberReason


class StoredIncident(NamedTuple):
    rule: str
    key: str
    lowest: int


@dataclass(frozen=True)
class PlannedIncident:
    rule: str
    key: str
    lowest: int
    members: dict[int, MemberReason]


@dataclass
class Affected:
    """What ``load_affected`` read: a set of reports closed under links and stored incidents."""

    #: Every report reached, finished or not (a link may still name a retracted report).
    nodes: set[int] = field(default_factory=set)
    #: Finished reports among them: id -> batched.
    finished: dict[int, bool] = field(default_factory=dict)
    #: The bundling links touching them, by primary key (a, b, reason).
    links: dict[tuple[int, int, str], Link] = field(default_factory=dict)
    #: Stored memberships of the nodes (a report in two incidents has two: not a partition).
    members: dict[int, list[StoredMember]] = field(default_factory=dict)
    incidents: dict[int, StoredIncident] = field(default_factory=dict)
    #: SELECT rounds it took (tests and the benchmark print it).
    rounds: int = 0


@dataclass(frozen=True)
class Written:
    """What ``apply_plan`` wrote."""

    incidents_created: int = 0
    incidents_updated: int = 0
    incidents_removed: int = 0
    members_written: int = 0
    members_removed: int = 0

    @property
    def changed(self) -> bool:
        return any((self.incidents_created, self.incidents_updated, self.incidents_removed,
                    self.members_written, self.members_removed))


def _bundling_links(rules: BundlingRules) -> Any:
    """WHERE term for links some rule groups by: IP links and links below every rule's weight
    are never read (they are most links on a busy platform)."""
    return or_(*(and_(ReportLink.reason.in_(sorted(r.reasons)), ReportLink.weight >= r.min_weight)
                 for r in rules.rules)) if rules.rules else ReportLink.reason.is_(None)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    todo = sorted(set(ids))
    for i in range(0, len(todo), CHUNK):
        yield todo[i:i + CHUNK]


#: The columns of a membership that :func:`_member_row` reads, in its order.
MEMBER_COLUMNS = (IncidentReport.report_id, IncidentReport.incident_id, IncidentReport.reason,
                  IncidentReport.rule, IncidentReport.via_report_id, IncidentReport.link_detail)


def _member_row(row: Any) -> tuple[int, StoredMember]:
    rid, iid, text, rule, via, detail = row
    return int(rid), StoredMember(int(iid), MemberReason(str(rule), None if via is None else int(via), detail,
                                                         text or ""))


def load_affected(session: Session, rules: BundlingRules, seeds: Iterable[int]) -> Affected:
    """Read the reports ``seeds`` can affect, and everything needed to plan and write them.

    Each round takes the reports new in the last one and reads, per ``CHUNK`` of them: their
    bundling links; their stored memberships together with every other member of those
    incidents; and whether they are finished and batched. Ends of links and fellow members not
    yet seen form the next round. A stored incident is read whole at once, so the rounds follow
    new links, not the incidents' own depth.
    """
    out = Affected()
    frontier = sorted(set(seeds))
    out.nodes.update(frontier)
    cond = _bundling_links(rules)
    # Core, not the ORM: rows of columns need no entity loading, and a group reads tens of
    # thousands of them (the whole of every component it touches). Core does not autoflush:
    # pending ORM changes go first (nothing, when the caller flushed).
    session.flush()
    conn = session.connection()
    while frontier:
        out.rounds += 1
        new: set[int] = set()
        for chunk in _chunks(frontier):
            for a, b, reason, weight, detail in conn.execute(
                    select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                           ReportLink.detail)
                    .where(or_(ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(chunk)), cond)):
                a, b = int(a), int(b)
                out.links[(a, b, str(reason))] = (a, b, str(reason), float(weight), detail)
                new.update((a, b))
            theirs = select(IncidentReport.incident_id).where(IncidentReport.report_id.in_(chunk))
            for row in conn.execute(
                    select(*MEMBER_COLUMNS)
                    .where(IncidentReport.incident_id.in_(theirs))):
                rid, member = _member_row(row)
                mine = out.members.setdefault(rid, [])
                if member not in mine:  # two chunks of a round may reach one incident
                    mine.append(member)
                new.add(rid)
            for iid, rule, key, lowest in conn.execute(
                    select(Incident.id, Incident.rule, Incident.key, Incident.lowest_report_id)
                    .where(Incident.id.in_(theirs))):
                out.incidents[int(iid)] = StoredIncident(str(rule), str(key), int(lowest))
            for rid, state, batched in conn.execute(
                    select(Report.id, Report.state, Report.batched).where(Report.id.in_(chunk))):
                if state == "finished":
                    out.finished[int(rid)] = bool(batched)
        frontier = sorted(new - out.nodes)
        out.nodes.update(frontier)
    return out


def plan_reports(rules: BundlingRules, finished: dict[int, bool], links: Iterable[Link]) -> list[PlannedIncident]:
    """The incidents of ``finished`` ({id: batched}) under ``links``, as ``reference.plan_all``
    would group them, with every member's reason: its link (under the incident's rule) to the
    lowest-numbered member it is linked to, ties by the link's detail (or reason)."""
    per_rule: list[list[tuple[int, int, str]]] = [[] for _ in rules.rules]
    for a, b, reason, weight, detail in links:
        if a in finished and b in finished and a != b:
            for k, rule in enumerate(rules.rules):
                if reason in rule.reasons and weight >= rule.min_weight:
                    per_rule[k].append((a, b, detail or reason))
    claimed: dict[int, int] = {}  # report -> index into out
    out: list[PlannedIncident] = []
    for k, rule in enumerate(rules.rules):
        uf = UnionFind()
        usable = [(a, b, d) for a, b, d in per_rule[k] if a not in claimed and b not in claimed]
        for a, b, _ in usable:
            uf.union(a, b)
        groups: dict[int, list[int]] = {}
        for n in list(uf.parent):
            groups.setdefault(uf.find(n), []).append(n)
        group_of: dict[int, int] = {}
        for root, members in sorted(groups.items()):
            if len(members) >= rule.min_reports:
                group_of[root] = len(out)
                out.append(PlannedIncident(rule.name, key_of(rule.name, root), root, {}))
        best: dict[int, tuple[int, str]] = {}
        for a, b, d in usable:
            if uf.find(a) in group_of:  # a and b are in one group: the link was unioned
                for me, other in ((a, b), (b, a)):
                    if me not in best or (other, d) < best[me]:
                        best[me] = (other, d)
        for root, idx in group_of.items():
            for m in groups[root]:
                other, d = best[m]
                out[idx].members[m] = MemberReason.link(rule.name, d, other)
                claimed[m] = idx
    for rid, batched in sorted(finished.items()):
        if rid not in claimed:
            name, text = ((rules.batched_name, rules.batched_description) if batched
                          else (rules.single_name, rules.single_description))
            out.append(PlannedIncident(name, key_of(name, rid), rid, {rid: MemberReason.described(name, text)}))
    return out


def _clashes(session: Session, plan: list[PlannedIncident], known: set[int]) -> set[int]:
    """Incidents outside those read that hold a planned key (a stored key naming a report that
    is no longer its lowest member): their members must be read and re-planned too."""
    keys = sorted(p.key for p in plan)
    found: set[int] = set()
    for i in range(0, len(keys), CHUNK):
        found.update(int(r) for r in session.execute(
            select(IncidentReport.report_id).join(Incident, Incident.id == IncidentReport.incident_id)
            .where(Incident.key.in_(keys[i:i + CHUNK]))).scalars())
        found.update(int(r) for r in session.execute(
            select(Incident.lowest_report_id).where(Incident.key.in_(keys[i:i + CHUNK]))).scalars())
    return found - known


def plan_affected(session: Session, rules: BundlingRules,
                  seeds: Iterable[int]) -> tuple[Affected, list[PlannedIncident]]:
    """``load_affected`` then ``plan_reports``, widened while a planned key is held outside."""
    todo = set(seeds)
    while True:
        affected = load_affected(session, rules, todo)
        plan = plan_reports(rules, affected.finished, affected.links.values())
        more = _clashes(session, plan, affected.nodes)
        if not more:
            return affected, plan
        todo = affected.nodes | more


def apply_plan(session: Session, affected: Affected, plan: list[PlannedIncident], now: datetime) -> Written:
    """Make the stored incidents of ``affected`` equal ``plan``, writing only what differs.

    A planned incident keeps the stored row with its key, else the row of its rule with most
    of its members (so a re-keyed incident is one UPDATE, its members untouched); rows no plan
    keeps are removed. Every write is one statement for all rows of its kind.
    """
    current: dict[int, StoredMember] = {}
    doubled: set[int] = set()
    for rid, rows in affected.members.items():
        if len(rows) == 1:
            current[rid] = rows[0]
        else:
            doubled.add(rid)  # in two incidents: both rows go, the plan's is written anew
    by_key = {inc.key: iid for iid, inc in affected.incidents.items()}
    row_of: dict[str, int] = {}  # planned key -> stored incident id kept
    for p in plan:
        if p.key in by_key:
            row_of[p.key] = by_key[p.key]
    free = set(affected.incidents) - set(row_of.values())
    for p in sorted((p for p in plan if p.key not in row_of), key=lambda p: (-len(p.members), p.key)):
        overlap = Counter(current[m].incident_id for m in p.members
                          if m in current and current[m].incident_id in free
                          and affected.incidents[current[m].incident_id].rule == p.rule)
        if overlap:
            iid = min(overlap, key=lambda i: (-overlap[i], i))
            row_of[p.key] = iid
            free.discard(iid)
    new = [p for p in plan if p.key not in row_of]
    if new:
        for key, iid in session.execute(
                insert(Incident).returning(Incident.key, Incident.id),
                [{"rule": p.rule, "key": p.key, "lowest_report_id": p.lowest, "created_at": now, "updated_at": now}
                 for p in new]):
            row_of[str(key)] = int(iid)
    member_updates: list[dict[str, Any]] = []
    member_inserts: list[dict[str, Any]] = []
    incident_updates: list[dict[str, Any]] = []
    fresh = {p.key for p in new}
    stored_members: dict[int, set[int]] = {}
    for m, row in current.items():
        stored_members.setdefault(row.incident_id, set()).add(m)
    for p in plan:
        iid = row_of[p.key]
        moved = False
        for m, why in p.members.items():
            cur = current.get(m)
            if cur is None:
                member_inserts.append({"incident_id": iid, "report_id": m, **why.values()})
                moved = True
            elif cur.incident_id != iid:
                member_updates.append({"b_report": m, "incident_id": iid, **why.values()})
                moved = True
            elif cur.reason != why:
                member_updates.append({"b_report": m, "incident_id": iid, **why.values()})
        if p.key in fresh:
            continue
        stored = affected.incidents[iid]
        # Members that left show as members moved elsewhere or removed: the incident changed too.
        lost = not stored_members.get(iid, set()) <= p.members.keys()
        if moved or lost or (stored.rule, stored.key, stored.lowest) != (p.rule, p.key, p.lowest):
            incident_updates.append({"b_id": iid, "rule": p.rule, "key": p.key, "lowest_report_id": p.lowest,
                                     "updated_at": now})
    planned = {m for p in plan for m in p.members}
    gone = sorted(doubled | {m for m in current if m not in planned})
    # Core tables: an executemany UPDATE keyed by a column the ORM form cannot express.
    t_members, t_incidents = Base.metadata.tables["incident_reports"], Base.metadata.tables["incidents"]
    for chunk in _chunks(gone):
        session.execute(delete(IncidentReport).where(IncidentReport.report_id.in_(chunk)))
    if member_updates:
        session.execute(update(t_members).where(t_members.c.report_id == bindparam("b_report")), member_updates)
    if member_inserts:
        session.execute(insert(IncidentReport), member_inserts)
    if incident_updates:
        session.execute(update(t_incidents).where(t_incidents.c.id == bindparam("b_id")), incident_updates)
    removed = sorted(free)
    for chunk in _chunks(removed):
        session.execute(delete(Incident).where(Incident.id.in_(chunk)))
    return Written(len(new), len(incident_updates), len(removed), len(member_updates) + len(member_inserts),
                   len(gone))


def bundle_group(session: Session, rules: BundlingRules, report_ids: Iterable[int],
                 now: datetime | None = None) -> tuple[Affected, Written]:
    """Bring the incidents of ``report_ids`` (and of every report their groups touch) up to date
    from the stored links, with a bounded number of statements for the whole group."""
    session.flush()  # the writes below go around the ORM: pending ORM changes go first
    forget_link_changes(session)  # incidents change under what the links stage recorded
    seeds = set(report_ids)
    affected, plan = plan_affected(session, rules, seeds)
    # A report reached only by a link (its own bundles stage has not run: a content link finds
    # files of reports still being enriched) is bundled here only when a group takes it in, as
    # the per-report stage does; standing alone it waits for its own run.
    plan = [p for p in plan if p.rule in {r.name for r in rules.rules}
            or any(m in seeds or m in affected.members for m in p.members)]
    written = apply_plan(session, affected, plan, now or datetime.now(UTC))
    session.expire_all()  # rows were written around the ORM: identity-map copies are stale
    return affected, written


def load_all(session: Session, rules: BundlingRules) -> Affected:
    """Every finished report, bundling link, membership and incident: the whole store, read once."""
    out = Affected(rounds=1)
    out.finished = {int(r): bool(b) for r, b in session.execute(
        select(Report.id, Report.batched).where(Report.state == "finished"))}
    for a, b, reason, weight, detail in session.execute(
            select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                   ReportLink.detail).where(_bundling_links(rules))):
        out.links[(int(a), int(b), str(reason))] = (int(a), int(b), str(reason), float(weight), detail)
    for row in session.execute(select(*MEMBER_COLUMNS)):
        rid, member = _member_row(row)
        out.members.setdefault(rid, []).append(member)
    out.incidents = {int(i): StoredIncident(str(r), str(k), int(lo)) for i, r, k, lo in session.execute(
        select(Incident.id, Incident.rule, Incident.key, Incident.lowest_report_id))}
    out.nodes = set(out.finished) | set(out.members)
    return out


def rebuild_all(session: Session, rules: BundlingRules, now: datetime | None = None) -> tuple[Affected, Written]:
    """Every incident computed from all stored links in one pass, and the store made equal to it
    (only differences written). Incidents of no finished report are removed."""
    session.flush()
    forget_link_changes(session)
    affected = load_all(session, rules)
    plan = plan_reports(rules, affected.finished, affected.links.values())
    written = apply_plan(session, affected, plan, now or datetime.now(UTC))
    session.expire_all()
    return affected, written
