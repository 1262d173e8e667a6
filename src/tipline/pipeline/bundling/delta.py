"""Bundles from a group's link changes alone: the incidents brought up to date without reading
the components they belong to.

``bulk.bundle_group`` re-reads every component a group touches (every link and member of a
viral item's incident, thousands of rows, on every group that adds one report to it). When the
grouped links stage hands over exactly what it changed (``linkchanges.GroupLinkDelta``: every
link touching the group before and after, in memory) and the stored incidents are the plan of
the links as they were before (what every bundling run leaves, and what the per-report
incremental path assumes too), the new plan follows from the old one and the change:

* With **no bundling link removed** and every rule's ``min_reports`` 2, rule by rule the new
  links touching the group merge stored incidents and unclaimed reports. A report in no
  incident of a rule had no usable link of it (with ``min_reports`` 2 any usable link makes an
  incident), so claiming it removes no link a stored incident relies on.
* Only the reports at the ends of the group's links (``T``) need reading: their memberships,
  their incidents' rows (rule, key, lowest) and whether they are finished. A member outside
  ``T`` keeps its reason (its links did not change) and moves with its incident in one
  ``UPDATE ... WHERE incident_id = old`` when two incidents merge.
* A **reworded** link (same rules, other detail) only changes which link is its ends' lowest.
* A member an **earlier rule takes** from a later rule's incident (an offender link to a report
  already in a viral incident) is placed when that incident provably stays whole without it
  (``_still_whole``: a bounded search from the members linked to it through the incident's own
  links; one such member is a single way in), keeps two members, and gets its key moved to the
  lowest member left and its members' lowest links re-chosen where they named the lost one.

Anything else — a removed bundling link, a report in two incidents, an incident that falls
apart or whose search is too wide, a rule of ``min_reports`` above 2, an incident rule no
longer in the rules, a planned key held by an incident not read — returns None with nothing
written (a savepoint is rolled back), and the caller runs the full re-plan
(``bulk.bundle_group``). tests/test_bundles_delta.py compares the two, and both with the
reference plan, group after group on random graphs; the simulated-year tests run it through
the real stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.bulk import (
    MEMBER_COLUMNS,
    StoredIncident,
    StoredMember,
    Written,
    _chunks,
    _member_row,
)
from tipline.pipeline.bundling.reference import UnionFind
from tipline.pipeline.bundling.rules import BundlingRules, MemberReason, key_of
from tipline.pipeline.linkchanges import GroupLinkDelta
from tipline.store.tables import Base, Incident, IncidentReport, Report, ReportLink

#: Rounds and reports the search that shows an incident stays whole may take before giving up.
_ROUNDS, _REACH = 6, 5000


@dataclass
class DeltaStats:
    """How often the delta path ran and why it fell back (the benchmark prints it)."""

    applied: int = 0
    #: Of those, groups that took members from a later rule's incident (kept whole).
    took_members: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)

    def fell_back(self, why: str) -> None:
        self.fallbacks[why] = self.fallbacks.get(why, 0) + 1


@dataclass
class _Component:
    """One incident of the new plan that the change touched."""

    rule: int
    incidents: set[int] = field(default_factory=set)  # stored incidents merged into it
    nodes: set[int] = field(default_factory=set)  # reports of T joining it (no stored incident of the rule)


def bundle_from_delta(session: Session, rules: BundlingRules, report_ids: list[int], delta: GroupLinkDelta,
                      now: datetime | None = None, stats: DeltaStats | None = None) -> Written | None:
    """Bring incidents up to date from ``delta`` alone; None (nothing written) when it cannot
    be done exactly, for the caller to run ``bulk.bundle_group``."""
    # In a savepoint: a few checks come after the new incident rows are inserted (their ids
    # name the members' rows); a fallback then leaves nothing behind for the full re-plan.
    session.flush()
    savepoint = session.begin_nested()
    try:
        why = _bundle(session, rules, report_ids, delta, now or datetime.now(UTC))
    except BaseException:
        savepoint.rollback()
        raise
    if isinstance(why, str):
        savepoint.rollback()
    else:
        savepoint.commit()
    if isinstance(why, str):
        if stats is not None:
            stats.fell_back(why)
        return None
    if stats is not None:
        stats.applied += 1
        stats.took_members += why.members_removed
    return why


def _bundle(session: Session, rules: BundlingRules, report_ids: list[int], delta: GroupLinkDelta,
            now: datetime) -> Written | str:
    group = set(report_ids)
    if delta.group != group:
        return "another group's links"
    if any(r.min_reports != 2 for r in rules.rules):
        return "min_reports above 2"
    graph_rule = {r.name: k for k, r in enumerate(rules.rules)}

    def rules_of(reason: str, weight: float) -> tuple[int, ...]:
        return tuple(k for k, r in enumerate(rules.rules) if reason in r.reasons and weight >= r.min_weight)

    before = {key: v for key, v in delta.before.items() if rules_of(key[2], v[0])}
    after = {key: v for key, v in delta.after.items() if rules_of(key[2], v[0])}
    # A reworded link (same rules, other detail) changes no partition, only which link is a
    # member's lowest; a weight that moves a link between rules is a removal.
    reworded: dict[tuple[int, int, str], tuple[str, str]] = {}
    for pk, (weight, detail) in before.items():
        now_as = after.get(pk)
        if now_as is None or rules_of(pk[2], now_as[0]) != rules_of(pk[2], weight):
            return "a bundling link removed"
        if (now_as[1] or pk[2]) != (detail or pk[2]):
            reworded[pk] = (detail or pk[2], now_as[1] or pk[2])
    edges = [(a, b, reason, rules_of(reason, weight), detail or reason)
             for (a, b, reason), (weight, detail) in sorted(after.items()) if a != b]
    nodes = sorted(group | {e for a, b, *_ in edges for e in (a, b)})

    # What is read: T's memberships, their incidents' rows and the reports' states. Core rows
    # (thousands of ORM entities would cost more than the work); pending ORM writes go first.
    session.flush()
    conn = session.connection()
    member_of: dict[int, StoredMember] = {}
    incidents: dict[int, StoredIncident] = {}
    finished: dict[int, bool] = {}
    for chunk in _chunks(nodes):
        for row in conn.execute(
                select(*MEMBER_COLUMNS)
                .where(IncidentReport.report_id.in_(chunk))):
            rid, member = _member_row(row)
            if rid in member_of:
                return "a report in two incidents"
            member_of[rid] = member
        for rid, state, batched in conn.execute(
                select(Report.id, Report.state, Report.batched).where(Report.id.in_(chunk))):
            if state == "finished":
                finished[int(rid)] = bool(batched)
    for chunk in _chunks({m.incident_id for m in member_of.values()}):
        for iid, rule, key, lowest in conn.execute(
                select(Incident.id, Incident.rule, Incident.key, Incident.lowest_report_id)
                .where(Incident.id.in_(chunk))):
            incidents[int(iid)] = StoredIncident(str(rule), str(key), int(lowest))
    if not group <= finished.keys():
        return "a report of the group is not finished"
    if any(rid not in finished for rid in member_of):
        return "a member is not finished"
    own = {rules.batched_name, rules.single_name}
    old_claim: dict[int, int | None] = {}
    for rid, sm in member_of.items():
        inc = incidents[sm.incident_id]
        if inc.rule in graph_rule:
            old_claim[rid] = graph_rule[inc.rule]
        elif inc.rule in own and inc.key == key_of(inc.rule, rid) and inc.lowest == rid:
            old_claim[rid] = None  # its own batched or single incident: it is its only member
        else:
            return "an incident of an unknown rule or key"

    # Rule by rule, as ``plan_reports``: units are stored incidents of the rule (negative ids,
    # so that they never meet a report id) and reports of T no earlier rule claimed.
    new_claim: dict[int, int] = {}
    components: list[_Component] = []
    best: dict[int, tuple[int, str]] = {}
    taken: dict[int, set[int]] = {}  # stored incident -> its members of the group an earlier rule takes
    for k, _rule in enumerate(rules.rules):
        for rid, c in old_claim.items():
            if c == k and rid not in new_claim:
                new_claim[rid] = k

        def unit(rid: int, k: int = k) -> int:
            return -member_of[rid].incident_id if old_claim.get(rid) == k else rid

        uf = UnionFind()
        usable: list[tuple[int, int, str]] = []
        for a, b, _r, ks, d in edges:
            if k not in ks or a not in finished or b not in finished:
                continue
            if new_claim.get(a, k) < k or new_claim.get(b, k) < k:
                continue  # an end claimed by an earlier rule: the link is not this rule's
            for end in (a, b):
                c = old_claim.get(end)
                if c is not None and c != k:
                    # Taken from a later rule's incident: placed exactly only when the
                    # incident stays whole without it (checked below).
                    taken.setdefault(member_of[end].incident_id, set()).add(end)
            usable.append((a, b, d))
            uf.union(unit(a), unit(b))
        comps: dict[int, _Component] = {}
        for u in list(uf.parent):
            comp = comps.setdefault(uf.find(u), _Component(k))
            if u < 0:
                comp.incidents.add(-u)
            else:
                comp.nodes.add(u)
                new_claim[u] = k
        components.extend(comps.values())
        for a, b, d in usable:
            for me, other in ((a, b), (b, a)):
                if me not in best or (other, d) < best[me]:
                    best[me] = (other, d)

    if taken:
        loss = _still_whole(conn, rules, rules_of, taken, edges, member_of, incidents, finished, group, new_claim)
        if isinstance(loss, str):
            return loss
        for iid, low in loss.lowest.items():
            inc = incidents[iid]
            incidents[iid] = StoredIncident(inc.rule, inc.key, low)  # keyed anew below
    else:
        loss = _Loss()

    # The new plan's rows for what changed. A stored incident merged into another keeps no row;
    # its members (outside T: unchanged reasons) follow in one keyed UPDATE.
    kept: dict[int, int] = {}  # stored incident -> the stored incident it is now part of
    planned: list[tuple[_Component, str, int]] = []  # (component, key, lowest)
    for comp in components:
        lowest = min([incidents[i].lowest for i in comp.incidents] + sorted(comp.nodes))
        planned.append((comp, key_of(rules.rules[comp.rule].name, lowest), lowest))
    singles = {rid: key_of(rules.batched_name if finished[rid] else rules.single_name, rid)
               for rid in sorted(group) if rid not in new_claim}
    by_key = {inc.key: iid for iid, inc in incidents.items()}
    wanted = [key for _, key, _ in planned] + list(singles.values())
    wanted += [key_of(incidents[iid].rule, low) for iid, low in loss.lowest.items()]
    for keys in _chunks_str(wanted):
        for held, held_id in conn.execute(select(Incident.key, Incident.id).where(Incident.key.in_(keys))):
            if int(held_id) not in incidents or by_key.get(str(held)) != int(held_id):
                return "a planned key held by an incident not read"
    t_members, t_incidents = Base.metadata.tables["incident_reports"], Base.metadata.tables["incidents"]
    row_of: list[int | None] = []
    for comp, key, _ in planned:
        mine = sorted(comp.incidents)
        holder = by_key.get(key)
        if holder is not None and holder not in comp.incidents:
            return "a planned key held by an incident not read"
        row_of.append(holder if holder is not None else (mine[0] if mine else None))
    new = [(n, comp, key, lowest) for n, ((comp, key, lowest), iid) in enumerate(zip(planned, row_of, strict=True))
           if iid is None]
    new_singles = [(rid, key) for rid, key in singles.items() if key not in by_key]
    fresh: dict[str, int] = {}
    if new or new_singles:
        rows = [{"rule": rules.rules[comp.rule].name, "key": key, "lowest_report_id": lowest, "created_at": now,
                 "updated_at": now} for _, comp, key, lowest in new]
        rows += [{"rule": key.split(":", 1)[0], "key": key, "lowest_report_id": rid, "created_at": now,
                  "updated_at": now} for rid, key in new_singles]
        for made, made_id in session.execute(insert(Incident).returning(Incident.key, Incident.id), rows):
            fresh[str(made)] = int(made_id)
        for n, _, key, _ in new:
            row_of[n] = fresh[key]
    moves: list[dict[str, Any]] = []
    incident_updates: list[dict[str, Any]] = []
    removed: set[int] = set()
    target: dict[int, tuple[int, MemberReason]] = {}  # report of T -> (incident, reason)
    for (comp, key, lowest), held_row in zip(planned, row_of, strict=True):
        assert held_row is not None
        iid = held_row
        for other in sorted(comp.incidents - {iid}):
            moves.append({"b_old": other, "incident_id": iid})
            kept[other] = iid
            removed.add(other)
        stored = incidents.get(iid)
        if key in fresh:
            pass
        elif (comp.nodes - {m for m, s in member_of.items() if s.incident_id == iid} or len(comp.incidents) > 1
              or stored is None or (stored.key, stored.lowest) != (key, lowest)):
            incident_updates.append({"b_id": iid, "key": key, "lowest_report_id": lowest, "updated_at": now})
        name = rules.rules[comp.rule].name
        members = set(comp.nodes) | {m for m, s in member_of.items()
                                     if s.incident_id in comp.incidents and new_claim.get(m) == comp.rule}
        for m in members:
            placed = loss.reasons.get(m) or _reason(m, comp.rule, rules, best, member_of.get(m), old_claim, group,
                                                    reworded)
            if placed is None:
                return "a member's lowest link reworded to a higher one"
            target[m] = (iid, placed)
    # Members outside any touched component whose reason a reworded link changes.
    for m in sorted(set(member_of) - set(target)):
        c = new_claim.get(m)
        if c is not None and old_claim.get(m) == c:
            placed = loss.reasons.get(m) or _reason(m, c, rules, best, member_of[m], old_claim, group, reworded)
            if placed is None:
                return "a member's lowest link reworded to a higher one"
            if placed != member_of[m].reason:
                target[m] = (member_of[m].incident_id, placed)
    # A stored incident that lost members to an earlier rule (and kept its key) changed too.
    updated = {u["b_id"] for u in incident_updates}
    for iid in sorted(taken):
        if iid not in removed and iid not in updated and incidents[iid].key not in fresh:
            inc = incidents[iid]
            incident_updates.append({"b_id": iid, "key": key_of(inc.rule, inc.lowest), "lowest_report_id": inc.lowest,
                                     "updated_at": now})
    # Members outside T whose lowest link was to a member taken away: their next-lowest.
    for m, why in loss.reasons.items():
        if m not in target:
            iid = loss.relinked[m][0]
            target[m] = (kept.get(iid, iid), why)
    for rid, key in singles.items():
        name = key.split(":", 1)[0]
        text = rules.batched_description if name == rules.batched_name else rules.single_description
        target[rid] = (fresh[key] if key in fresh else by_key[key], MemberReason.described(name, text))
    member_updates: list[dict[str, Any]] = []
    member_inserts: list[dict[str, Any]] = []
    for m, (dest, why) in sorted(target.items()):
        cur = member_of.get(m) or loss.stored.get(m)
        if cur is None:
            member_inserts.append({"incident_id": dest, "report_id": m, **why.values()})
            continue
        now_in = kept.get(cur.incident_id, cur.incident_id)
        if now_in != dest or cur.reason != why:
            member_updates.append({"b_report": m, "incident_id": dest, **why.values()})
        if m in member_of and old_claim.get(m) is None and cur.incident_id != dest:
            removed.add(cur.incident_id)  # its own single or batched incident: it had no other member
    # Merged incidents' members first (they keep their reasons), then the rows of T, then the
    # incidents left without members.
    if moves:
        session.execute(update(t_members).where(t_members.c.incident_id == bindparam("b_old")), moves)
    if member_updates:
        session.execute(update(t_members).where(t_members.c.report_id == bindparam("b_report")), member_updates)
    if member_inserts:
        session.execute(insert(IncidentReport), member_inserts)
    for chunk in _chunks(removed):
        session.execute(delete(Incident).where(Incident.id.in_(chunk)))
    if incident_updates:
        session.execute(update(t_incidents).where(t_incidents.c.id == bindparam("b_id")), incident_updates)
    session.expire_all()  # rows were written around the ORM: identity-map copies are stale
    # members_removed: here, members an earlier rule took from a stored incident that stays.
    return Written(len(fresh), len(incident_updates), len(removed), len(member_updates) + len(member_inserts),
                   sum(len(lost) for lost in taken.values()))


def _reason(m: int, k: int, rules: BundlingRules, best: dict[int, tuple[int, str]], cur: StoredMember | None,
            old_claim: dict[int, int | None], group: set[int],
            reworded: dict[tuple[int, int, str], tuple[str, str]]) -> MemberReason | None:
    """The reason of member ``m`` of a rule-``k`` incident in the new plan: its link to the
    lowest-numbered member it is linked to. A report of the group has all its links in the
    hand-over (``best`` is over them); another keeps its stored lowest link unless a new link
    is lower, and None when that stored link was reworded to a higher detail (its next-lowest
    link is not known here)."""
    rule = rules.rules[k]
    cand = best.get(m)
    if m not in group and cur is not None and old_claim.get(m) == k and cur.reason.via is not None:
        via, old_d = cur.reason.via, cur.reason.detail or ""
        for reason in rule.reasons:
            change = reworded.get((min(m, via), max(m, via), reason))
            if change is not None and change[0] == old_d:
                if change[1] > old_d:
                    return None
                old_d = change[1]  # lower wording of the same lowest link: still the lowest
        if cand is None or (via, old_d) < cand:
            cand = (via, old_d)
    if cand is None:
        return cur.reason if cur is not None else None
    return MemberReason.link(rule.name, cand[1], cand[0])


def _still_whole(conn: Any, rules: BundlingRules, rules_of: Callable[[str, float], tuple[int, ...]],
                 taken: dict[int, set[int]], edges: list[Any], member_of: dict[int, StoredMember],
                 incidents: dict[int, StoredIncident], finished: dict[int, bool], group: set[int],
                 new_claim: dict[int, int]) -> str | _Loss:
    """None when every stored incident stays one incident after losing ``taken`` members to an
    earlier rule; else why not.

    The incident's members linked to those it loses (``B``) must be joined without them, which
    a search from ``B`` through the incident's own links shows (bounded; one member of ``B`` is
    joined by itself): any path through a lost member then has a way round it. The incident
    must keep two members (``min_reports`` 2). A lost lowest moves the key to the lowest member
    left; members whose lowest link was to a lost one get their next-lowest from their own links.
    A lost member of the group has all its links in ``edges``; another's own links are read."""
    by_rule = {r.name: k for k, r in enumerate(rules.rules)}
    outside = sorted({x for lost in taken.values() for x in lost} - group)
    known = {(a, b, r) for a, b, r, _ks, _d in edges}  # links touching the group: as handed over
    around = list(edges)
    for chunk in _chunks(outside):
        for a, b, r, w, d in conn.execute(
                select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                       ReportLink.detail).where(or_(ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(chunk)))):
            if (int(a), int(b), str(r)) not in known and rules_of(str(r), float(w)):
                around.append((int(a), int(b), str(r), rules_of(str(r), float(w)), d or str(r)))
    # Memberships and states of the ends of those links that T did not cover.
    members = dict(member_of)
    done = dict(finished)
    unknown = sorted({e for a, b, *_ in around for e in (a, b)} - set(members) - set(done))
    for chunk in _chunks(unknown):
        for row in conn.execute(
                select(*MEMBER_COLUMNS)
                .where(IncidentReport.report_id.in_(chunk))):
            rid, member = _member_row(row)
            if rid in members:
                return "a report in two incidents"
            members[rid] = member
        for rid, state in conn.execute(select(Report.id, Report.state).where(Report.id.in_(chunk))):
            if state == "finished":
                done[int(rid)] = False
    need: dict[int, set[int]] = {}
    loss = _Loss()
    for iid, lost in taken.items():
        k = by_rule[incidents[iid].rule]
        near = set()
        for a, b, _r, ks, _d in around:
            if k in ks and (a in lost) != (b in lost) and a in done and b in done:
                y = b if a in lost else a
                if y in members and members[y].incident_id == iid:
                    near.add(y)
        if not near:
            return "a taken member's incident might fall apart (no member linked to it)"
        if len(near) == 1:
            # One way in: every path through the lost members comes back to that member, so the
            # rest stays joined; it stays an incident if it keeps a second member (two rows).
            left = conn.execute(select(IncidentReport.report_id).where(
                IncidentReport.incident_id == iid, IncidentReport.report_id.not_in(sorted(lost))).limit(2)).all()
            if len(left) < 2:
                return "a taken member's incident might fall apart (one member left)"
        need[iid] = near
        if incidents[iid].lowest in lost:
            # Its key moves to the lowest member left (one indexed row).
            low = conn.execute(select(IncidentReport.report_id).where(
                IncidentReport.incident_id == iid, IncidentReport.report_id.not_in(sorted(lost)))
                .order_by(IncidentReport.report_id).limit(1)).scalar()
            if low is None:
                return "a taken member's incident might fall apart (no member left)"
            loss.lowest[iid] = int(low)
        # Members whose lowest link was to a lost one: their next-lowest, from their own links.
        for row in conn.execute(
                select(*MEMBER_COLUMNS)
                .where(IncidentReport.incident_id == iid, IncidentReport.via_report_id.in_(sorted(lost)))):
            rid, member = _member_row(row)
            if rid not in group and rid not in lost:
                loss.relinked[rid] = (iid, k)
                members.setdefault(rid, member)
    # The links of those members and of the lost ones' neighbours, and who is at their ends.
    links: dict[tuple[int, int, str], tuple[float, str]] = {}
    read: set[int] = set()
    seen_state: set[int] = set(finished)

    def read_links(nodes: set[int]) -> str | None:
        todo = sorted(nodes - read)
        read.update(todo)
        for chunk in _chunks(todo):
            for a, b, r, w, d in conn.execute(
                    select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                           ReportLink.detail)
                    .where(or_(ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(chunk)))):
                if rules_of(str(r), float(w)):
                    links[(int(a), int(b), str(r))] = (float(w), d or str(r))
        ends = sorted({e for a, b, _r in links for e in (a, b)} - seen_state)
        seen_state.update(ends)
        for chunk in _chunks(ends):
            for row in conn.execute(
                    select(*MEMBER_COLUMNS)
                    .where(IncidentReport.report_id.in_(chunk))):
                rid, member = _member_row(row)
                if members.setdefault(rid, member) != member:
                    return "a report in two incidents"
            for rid, state in conn.execute(select(Report.id, Report.state).where(Report.id.in_(chunk))):
                if state == "finished":
                    done[int(rid)] = False
        return None

    lost_all = {x for lost in taken.values() for x in lost}
    bad = read_links({y for near in need.values() for y in near} | set(loss.relinked))
    if bad is not None:
        return bad
    for iid, near in need.items():
        # A search from the lost members' neighbours through the incident's other members, round
        # by round, until they are all joined; bounded, since a real split would read a whole side.
        rule = rules.rules[by_rule[incidents[iid].rule]]
        reached = set(near)
        for _round in range(_ROUNDS):
            uf = UnionFind()
            grow: set[int] = set()
            for (a, b, reason), (weight, _d) in links.items():
                if (reason in rule.reasons and weight >= rule.min_weight and a in done and b in done
                        and a not in lost_all and b not in lost_all
                        and a in members and b in members
                        and members[a].incident_id == iid and members[b].incident_id == iid):
                    uf.union(a, b)
                    grow.update(e for e in (a, b) if e not in reached)
            if len({uf.find(y) for y in near}) == 1:
                break
            if not grow:
                return "a taken member's incident falls apart"
            if len(reached) > _REACH:
                return "a taken member's incident might fall apart (search too wide)"
            reached |= grow
            bad = read_links(grow)
            if bad is not None:
                return bad
        else:
            return "a taken member's incident might fall apart (search too deep)"
    for y, (_iid, k) in loss.relinked.items():
        rule = rules.rules[k]
        cand: tuple[int, str] | None = None
        for (a, b, reason), (weight, d) in links.items():
            if y not in (a, b) or reason not in rule.reasons or weight < rule.min_weight:
                continue
            o = b if a == y else a
            if o in lost_all or o not in done:
                continue
            if o in new_claim:  # a report of T: as planned above
                claim = new_claim[o]
            elif o in member_of or o not in members:  # of T and unclaimed, or in no incident
                continue
            else:  # outside T: its claim did not change (a membership's rule is its incident's)
                claim = by_rule.get(members[o].reason.rule, -1)
            if claim == k and (cand is None or (o, d) < cand):
                cand = (o, d)
        if cand is None:
            return "a taken member's incident left a member without a link"
        loss.reasons[y] = MemberReason.link(rule.name, cand[1], cand[0])
        loss.stored[y] = members[y]
    return loss


@dataclass
class _Loss:
    """What losing members to an earlier rule changes in the incidents that stay whole."""

    lowest: dict[int, int] = field(default_factory=dict)  # incident -> its new lowest member
    relinked: dict[int, tuple[int, int]] = field(default_factory=dict)  # member -> (incident, rule)
    reasons: dict[int, MemberReason] = field(default_factory=dict)  # member -> its new reason
    stored: dict[int, StoredMember] = field(default_factory=dict)  # member -> its row as read


def _chunks_str(keys: list[str]) -> list[list[str]]:
    todo = sorted(set(keys))
    return [todo[i:i + 2000] for i in range(0, len(todo), 2000)]
