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
  When the incident sheds pieces instead, each piece is an incident of its own — or, when a
  link of the group joins a piece to a report of T its rule claims (a new copy of the viral
  item linked to the piece's members), the plan is made a second time with each piece a unit
  of its own (``_Split``), so that the link joins the piece, not the incident it fell off.

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

#: Rounds (one read of links each) and reports whose links the search for the pieces that fall off an
#: incident may read before giving up (the neighbours it starts from may be more: a viral item's).
_SEARCH_ROUNDS, _REACH = 32, 5000
#: Most neighbours whose links among themselves are all read (pairs: its square, by index);
#: of more, the lowest ``_HUBS`` against all of them.
_AMONG, _HUBS = 200, 64


@dataclass
class DeltaStats:
    """How often the delta path ran and why it fell back (the benchmark prints it)."""

    applied: int = 0
    #: Reports of the group placed by the delta, and set aside for the full re-plan
    #: (``bundle_by_parts``); groups that had both.
    reports_placed: int = 0
    reports_set_aside: int = 0
    mixed: int = 0
    #: Incidents that lost members to an earlier rule and shed pieces, kept one member, or none.
    pieces: int = 0
    left_alone: int = 0
    emptied: int = 0
    #: Of the pieces, those a link of the group joins to a report their rule claims.
    pieces_joined: int = 0
    #: Of those, groups that took members from a later rule's incident (kept whole).
    took_members: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)

    def fell_back(self, why: str) -> None:
        self.fallbacks[why] = self.fallbacks.get(why, 0) + 1


@dataclass(frozen=True)
class _Fallback:
    """Why the delta cannot place part of the group, and which part: the units (report ids, and
    stored incidents as negative ids) the failing case is about, or None for the whole group."""

    why: str
    culprits: frozenset[int] | None = None


def _fallback(why: str, *culprits: int | frozenset[int] | set[int]) -> _Fallback:
    units: set[int] = set()
    for c in culprits:
        units.update(c if isinstance(c, (set, frozenset)) else (c,))
    return _Fallback(why, frozenset(units))


@dataclass
class _Component:
    """One incident of the new plan that the change touched."""

    rule: int
    incidents: set[int] = field(default_factory=set)  # stored incidents merged into it
    nodes: set[int] = field(default_factory=set)  # reports of T joining it (no stored incident of the rule)
    pieces: set[int] = field(default_factory=set)  # units of pieces that fell off a stored incident


#: Unit ids of pieces (``_Split``): below every stored incident's negative id.
_PIECE_BASE = 1 << 62


@dataclass(frozen=True)
class _Split:
    """Pieces fall off incidents that lost members to an earlier rule, and some are linked by a
    link of the group to a report of T their rule claims: the plan is made again with each
    piece a unit of its own (``_bundle(split=...)``), so that such a link joins the piece, not
    the incident it fell off."""

    pieces: dict[int, list[frozenset[int]]]  # stored incident -> its pieces


def _try(session: Session, rules: BundlingRules, report_ids: list[int], delta: GroupLinkDelta, now: datetime,
         stats: DeltaStats | None) -> Written | _Fallback:
    """``_bundle`` in a savepoint, kept when it placed the reports and rolled back when it fell
    back: a few checks come after the new incident rows are inserted (their ids name the
    members' rows), and a fallback must leave nothing behind for the full re-plan."""
    session.flush()
    savepoint = session.begin_nested()
    try:
        res = _bundle(session, rules, report_ids, delta, now, stats)
    except BaseException:
        savepoint.rollback()
        raise
    if isinstance(res, _Fallback):
        savepoint.rollback()
        if stats is not None:
            stats.fell_back(res.why)
    else:
        savepoint.commit()
        if stats is not None:
            stats.applied += 1
            stats.took_members += res.members_removed
    return res


def bundle_from_delta(session: Session, rules: BundlingRules, report_ids: list[int], delta: GroupLinkDelta,
                      now: datetime | None = None, stats: DeltaStats | None = None) -> Written | None:
    """Bring incidents up to date from ``delta`` alone; None (nothing written) when it cannot
    be done exactly, for the caller to run ``bulk.bundle_group``."""
    res = _try(session, rules, report_ids, delta, now or datetime.now(UTC), stats)
    return None if isinstance(res, _Fallback) else res


#: How many times ``bundle_by_parts`` sets a failing part aside and tries the rest again.
_PASSES = 4


def bundle_by_parts(session: Session, rules: BundlingRules, report_ids: list[int], delta: GroupLinkDelta,
                    now: datetime | None = None, stats: DeltaStats | None = None) -> set[int]:
    """Place what the delta can place exactly; return the reports of the group it could not,
    for the caller to re-plan in full (``bulk.bundle_group`` over them).

    The group falls into independent parts: reports joined by a link touching the group, or
    by a stored incident of one of them. A case the delta cannot place (a split, a removed
    link, ...) concerns one part; that part is set aside and the rest tried again, so one
    viral split no longer sends every other report of the group to the full re-plan (which
    re-reads whole components). The parts set aside share no link and no stored incident with
    the rest, so their full re-plan afterwards (exact from the links, whatever is stored)
    cannot disagree with what the delta wrote."""
    now = now or datetime.now(UTC)
    todo = set(report_ids)
    aside: set[int] = set()
    for _ in range(_PASSES):
        if not todo:
            break
        part = delta if todo == set(delta.group) else GroupLinkDelta(
            frozenset(todo),
            {k: v for k, v in delta.before.items() if k[0] in todo or k[1] in todo},
            {k: v for k, v in delta.after.items() if k[0] in todo or k[1] in todo})
        res = _try(session, rules, sorted(todo), part, now, stats)
        if not isinstance(res, _Fallback):
            if stats is not None:
                stats.reports_placed += len(todo)
                stats.mixed += bool(aside)
            todo = set()
            break
        failed = res.culprits if res.culprits is not None else frozenset(todo)
        failed = frozenset(failed & todo) or frozenset(todo)
        aside |= failed
        todo -= failed
    aside |= todo
    if stats is not None:
        stats.reports_set_aside += len(aside)
    return aside


def _bundle(session: Session, rules: BundlingRules, report_ids: list[int], delta: GroupLinkDelta,
            now: datetime, stats: DeltaStats | None = None,
            split: dict[int, list[frozenset[int]]] | None = None) -> Written | _Fallback:
    group = set(report_ids)
    if delta.group != group:
        return _Fallback("another group's links")
    if any(r.min_reports != 2 for r in rules.rules):
        return _Fallback("min_reports above 2")
    graph_rule = {r.name: k for k, r in enumerate(rules.rules)}

    known: dict[tuple[str, float], tuple[int, ...]] = {}  # a few reasons and weights, asked per link

    def rules_of(reason: str, weight: float) -> tuple[int, ...]:
        got = known.get((reason, weight))
        if got is None:
            got = known[(reason, weight)] = tuple(k for k, r in enumerate(rules.rules)
                                                  if reason in r.reasons and weight >= r.min_weight)
        return got

    before = {key: v for key, v in delta.before.items() if rules_of(key[2], v[0])}
    after = {key: v for key, v in delta.after.items() if rules_of(key[2], v[0])}
    # A reworded link (same rules, other detail) changes no partition, only which link is a
    # member's lowest; a weight that moves a link between rules is a removal.
    reworded: dict[tuple[int, int, str], tuple[str, str]] = {}
    removed_ends: set[int] = set()
    for pk, (weight, detail) in before.items():
        now_as = after.get(pk)
        if now_as is None or rules_of(pk[2], now_as[0]) != rules_of(pk[2], weight):
            removed_ends.update(pk[:2])
        elif (now_as[1] or pk[2]) != (detail or pk[2]):
            reworded[pk] = (detail or pk[2], now_as[1] or pk[2])
    edges = [(a, b, reason, rules_of(reason, weight), detail or reason)
             for (a, b, reason), (weight, detail) in sorted(after.items()) if a != b]
    nodes = sorted(group | {e for a, b, *_ in edges for e in (a, b)} | removed_ends)
    # The group's independent parts: reports joined by a bundling link touching the group (as
    # it was or is) or by a stored incident. A failing case names its units; the reports of the
    # group in their parts are what ``bundle_by_parts`` sets aside.
    part = UnionFind()
    for a, b, _r in (*before, *after):
        part.union(a, b)

    def fail(why: str, *culprits: int | set[int] | frozenset[int]) -> _Fallback:
        roots = {part.find(u) for u in _fallback(why, *culprits).culprits or ()}
        return _Fallback(why, frozenset(g for g in group if part.find(g) in roots))

    # What is read: T's memberships, their incidents' rows and the reports' states. Core rows
    # (thousands of ORM entities would cost more than the work); pending ORM writes go first.
    session.flush()
    conn = session.connection()
    member_of: dict[int, StoredMember] = {}
    incidents: dict[int, StoredIncident] = {}
    finished: dict[int, bool] = {}
    doubled: set[int] = set()
    for chunk in _chunks(nodes):
        for row in conn.execute(
                select(*MEMBER_COLUMNS)
                .where(IncidentReport.report_id.in_(chunk))):
            rid, member = _member_row(row)
            part.union(rid, -member.incident_id)
            if rid in member_of:
                doubled.add(rid)
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
    if doubled:
        return fail("a report in two incidents", doubled)
    if removed_ends:
        return fail("a bundling link removed", removed_ends)
    if not group <= finished.keys():
        return fail("a report of the group is not finished", group - finished.keys())
    unfinished = {rid for rid in member_of if rid not in finished}
    if unfinished:
        return fail("a member is not finished", unfinished)
    own = {rules.batched_name, rules.single_name}
    old_claim: dict[int, int | None] = {}
    for rid, sm in member_of.items():
        inc = incidents[sm.incident_id]
        if inc.rule in graph_rule:
            old_claim[rid] = graph_rule[inc.rule]
        elif inc.rule in own and inc.key == key_of(inc.rule, rid) and inc.lowest == rid:
            old_claim[rid] = None  # its own batched or single incident: it is its only member
        else:
            return fail("an incident of an unknown rule or key", rid)

    # Rule by rule, as ``plan_reports``: units are stored incidents of the rule (negative ids,
    # so that they never meet a report id) and reports of T no earlier rule claimed.
    new_claim: dict[int, int] = {}
    components: list[_Component] = []
    # On the second look (``_Split``), a report of T in a piece is in the piece's unit.
    piece_of: dict[int, frozenset[int]] = {}  # piece unit -> its members
    piece_unit: dict[int, int] = {}  # member of a piece -> its unit
    for _iid, found in sorted((split or {}).items()):
        for piece in found:
            u = -(_PIECE_BASE + len(piece_of))
            piece_of[u] = piece
            piece_unit.update((x, u) for x in piece)
    best: dict[int, tuple[int, str]] = {}
    taken: dict[int, set[int]] = {}  # stored incident -> its members of the group an earlier rule takes
    for k, _rule in enumerate(rules.rules):
        for rid, c in old_claim.items():
            if c == k and rid not in new_claim:
                new_claim[rid] = k

        def unit(rid: int, k: int = k) -> int:
            if old_claim.get(rid) != k:
                return rid
            return piece_unit.get(rid, -member_of[rid].incident_id)

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
            if u <= -_PIECE_BASE:
                comp.pieces.add(u)
            elif u < 0:
                comp.incidents.add(-u)
            else:
                comp.nodes.add(u)
                new_claim[u] = k
        # A piece joined by nothing but a link inside it stays a piece (written as one below).
        components.extend(c for c in comps.values() if c.incidents or c.nodes or len(c.pieces) > 1)
        for a, b, d in usable:
            for me, other in ((a, b), (b, a)):
                if me not in best or (other, d) < best[me]:
                    best[me] = (other, d)

    joined: set[frozenset[int]] = {piece_of[u] for comp in components for u in comp.pieces}
    if taken:
        merged = {i for comp in components if len(comp.incidents) + len(comp.nodes) + len(comp.pieces) > 1
                  for i in comp.incidents}
        touched = {i for comp in components for i in comp.incidents}
        seen = _still_whole(conn, rules, rules_of, taken, edges, member_of, incidents, finished, group, new_claim,
                            merged, touched, split)
        if isinstance(seen, _Split):
            # Seen only now: plan again with the pieces as units (nothing is written yet).
            return _bundle(session, rules, report_ids, delta, now, stats, seen.pieces)
        if isinstance(seen, _Fallback):
            return fail(seen.why, seen.culprits or {x for lost in taken.values() for x in lost})
        loss = seen
        if set(loss.joins) != joined:  # the pieces joined by links, seen two ways, must agree
            return fail("a piece joined by a link its plan does not show", *loss.joins, *joined,
                        {x for lost in taken.values() for x in lost})
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
        lowest = min([incidents[i].lowest for i in comp.incidents] + sorted(comp.nodes)
                     + [min(piece_of[u]) for u in comp.pieces])
        planned.append((comp, key_of(rules.rules[comp.rule].name, lowest), lowest))
    singles = {rid: key_of(rules.batched_name if finished[rid] else rules.single_name, rid)
               for rid in sorted(group) if rid not in new_claim}
    # A member left alone in its incident when an earlier rule took the others (``_Loss.orphans``):
    # its own single or batched incident now, as a report that no rule groups.
    for y, batched in [*loss.orphans.values(), *loss.alone.items()]:
        singles[y] = key_of(rules.batched_name if batched else rules.single_name, y)
        new_claim.pop(y, None)  # no rule groups it now
    for found in loss.pieces.values():
        for piece in found:
            for x in piece:
                new_claim.pop(x, None)  # in its piece's incident, not in the one it fell off
    # Pieces of two or more that fell off an incident: incidents of its rule of their own.
    pieces = [(incidents[iid].rule, key_of(incidents[iid].rule, min(piece)), piece)
              for iid, found in loss.pieces.items() for piece in found if len(piece) > 1 and piece not in joined]
    by_key = {inc.key: iid for iid, inc in incidents.items()}
    units_of: dict[str, set[int]] = {}  # planned key -> the units it is about (for a fallback)
    for comp, key, _ in planned:
        units_of.setdefault(key, set()).update(comp.nodes, (-i for i in comp.incidents),
                                               *(piece_of[u] for u in comp.pieces))
    for rid, key in singles.items():
        units_of.setdefault(key, set()).add(rid)
    for iid, low in loss.lowest.items():
        units_of.setdefault(key_of(incidents[iid].rule, low), set()).add(-iid)
    # A stored incident whose lowest member fell off in a piece (or was taken) gives up its key:
    # the piece, or the incident a piece joins, is keyed by that member now. Its row is keyed
    # anew (below) or, left with one member, goes; a new row takes the old key.
    released = {incidents[iid].key: iid for iid in (*loss.lowest, *loss.orphans)}
    for _rule_name, key, piece in pieces:
        units_of.setdefault(key, set()).update(piece)
        if key in by_key and released.get(key) != by_key[key]:
            return fail("a piece that fell off holds a stored key", piece, -by_key[key])
    for keys in _chunks_str(list(units_of)):
        for held, held_id in conn.execute(select(Incident.key, Incident.id).where(Incident.key.in_(keys))):
            if int(held_id) not in incidents or by_key.get(str(held)) != int(held_id):
                return fail("a planned key held by an incident not read", units_of[str(held)])
    rekeyed: set[int] = set()  # incidents whose released key a new row takes
    for _rule_name, key, _piece in pieces:
        if key in released:
            rekeyed.add(by_key.pop(key))
    t_members, t_incidents = Base.metadata.tables["incident_reports"], Base.metadata.tables["incidents"]
    row_of: list[int | None] = []
    for comp, key, _ in planned:
        mine = sorted(comp.incidents)
        holder = by_key.get(key)
        if holder is not None and holder not in comp.incidents and released.get(key) == holder:
            rekeyed.add(by_key.pop(key))  # a joined piece holds the old lowest: a new row for it
            holder = None
        if holder is not None and holder not in comp.incidents:
            return fail("a planned key held by an incident not read", units_of[key], -holder)
        row_of.append(holder if holder is not None else (mine[0] if mine else None))
    new = [(n, comp, key, lowest) for n, ((comp, key, lowest), iid) in enumerate(zip(planned, row_of, strict=True))
           if iid is None]
    new_singles = [(rid, key) for rid, key in singles.items() if key not in by_key]
    fresh: dict[str, int] = {}
    if rekeyed:  # out of the way of the new row taking its key; keyed as planned below
        session.execute(update(t_incidents).where(t_incidents.c.id == bindparam("b_id")),
                        [{"b_id": iid, "key": f"~moving:{iid}"} for iid in sorted(rekeyed)])
    if new or new_singles or pieces:
        rows = [{"rule": rules.rules[comp.rule].name, "key": key, "lowest_report_id": lowest, "created_at": now,
                 "updated_at": now} for _, comp, key, lowest in new]
        rows += [{"rule": name, "key": key, "lowest_report_id": min(piece), "created_at": now, "updated_at": now}
                 for name, key, piece in pieces]
        rows += [{"rule": key.split(":", 1)[0], "key": key, "lowest_report_id": rid, "created_at": now,
                  "updated_at": now} for rid, key in new_singles]
        for made, made_id in session.execute(insert(Incident).returning(Incident.key, Incident.id), rows):
            fresh[str(made)] = int(made_id)
        for n, _, key, _ in new:
            row_of[n] = fresh[key]
    moves: list[dict[str, Any]] = []
    incident_updates: list[dict[str, Any]] = []
    # Incidents left with one member (it stands alone now) or none.
    removed: set[int] = set(loss.orphans) | loss.dissolved
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
                return fail("a member's lowest link reworded to a higher one", m)
            target[m] = (iid, placed)
        for u in comp.pieces:  # a piece that fell off and joins this incident: reasons as found
            for x in piece_of[u]:
                target[x] = (iid, loss.reasons[x])
    # Members outside any touched component whose reason a reworded link changes.
    for m in sorted(set(member_of) - set(target)):
        c = new_claim.get(m)
        if c is not None and old_claim.get(m) == c:
            placed = loss.reasons.get(m) or _reason(m, c, rules, best, member_of[m], old_claim, group, reworded)
            if placed is None:
                return fail("a member's lowest link reworded to a higher one", m)
            if placed != member_of[m].reason:
                target[m] = (member_of[m].incident_id, placed)
    # A stored incident that lost members to an earlier rule changed too (its key, when it gave
    # it up: a new row holds it — ``rekeyed`` — so no stored key is ever among the fresh ones).
    updated = {u["b_id"] for u in incident_updates}
    for iid in sorted(taken):
        if iid not in removed and iid not in updated:
            inc = incidents[iid]
            incident_updates.append({"b_id": iid, "key": key_of(inc.rule, inc.lowest), "lowest_report_id": inc.lowest,
                                     "updated_at": now})
    # Members outside T whose lowest link was to a member taken away: their next-lowest.
    for m, why in loss.reasons.items():
        if m not in target and m in loss.relinked:  # (members of pieces are placed below)
            iid = loss.relinked[m][0]
            target[m] = (kept.get(iid, iid), why)
    for _name, key, piece in pieces:
        for x in piece:
            target[x] = (fresh[key], loss.reasons[x])
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
    if rekeyed - removed - {u["b_id"] for u in incident_updates}:  # a moved key must land somewhere
        return fail("an incident that gave up its key is keyed by nothing", *(-i for i in rekeyed))
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
    if stats is not None:
        stats.pieces += sum(len(found) for found in loss.pieces.values())
        stats.pieces_joined += len(joined)
        stats.left_alone += len(loss.orphans)
        stats.emptied += len(loss.dissolved)
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
                 new_claim: dict[int, int], merged: set[int], touched: set[int],
                 split: dict[int, list[frozenset[int]]] | None = None) -> _Fallback | _Loss | _Split:
    """What losing ``taken`` members to an earlier rule does to their stored incidents, when
    each provably stays one incident, is left with one member, or with none; else why not
    (a fallback naming the incident's units).

    The incident's members linked to those it loses (``B``) must be joined without them, which
    a search from ``B`` through the incident's own links shows (bounded; one member of ``B`` is
    joined by itself): any path through a lost member then has a way round it. The incident
    must keep two members (``min_reports`` 2). A lost lowest moves the key to the lowest member
    left; members whose lowest link was to a lost one get their next-lowest from their own links.
    A lost member of the group has all its links in ``edges``; another's own links are read.

    Left with one member ``y`` (a two-report incident losing one): under the last graph rule,
    with no new link of ``y`` and every other link of ``y`` of that rule ending at a report an
    earlier rule claims (or not finished), no rule groups ``y`` any more, and it stands alone
    (``_Loss.orphans``). Left with none: the incident goes (``_Loss.dissolved``). Whether the
    neighbours ``B`` are joined is first asked of the links among ``B`` alone (a few indexed
    rows: a viral item's anchors link to each other), and only then of the links around them
    (an anchor links to every sharer: a search through them reads the item's whole component)."""
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
                return _fallback("a report in two incidents", rid, -member.incident_id, -members[rid].incident_id)
            members[rid] = member
        for rid, state in conn.execute(select(Report.id, Report.state).where(Report.id.in_(chunk))):
            if state == "finished":
                done[int(rid)] = False
    # The links read around the incidents, by report, and who is at their ends.
    links: dict[tuple[int, int, str], tuple[float, str]] = {}
    adj: dict[int, list[tuple[int, int, str]]] = {}  # report -> the keys of its links read so far
    read: set[int] = set()
    seen_state: set[int] = set(finished)

    def add_link(a: int, b: int, r: str, w: float, d: str | None) -> bool:
        key = (a, b, r)
        if key in links or not rules_of(r, w):
            return False
        links[key] = (w, d or r)
        adj.setdefault(a, []).append(key)
        adj.setdefault(b, []).append(key)
        return True

    def read_links(nodes: set[int] | frozenset[int]) -> _Fallback | None:
        todo = sorted(nodes - read)
        read.update(todo)
        fresh: set[int] = set()
        for chunk in _chunks(todo):
            for a, b, r, w, d in conn.execute(
                    select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                           ReportLink.detail)
                    .where(or_(ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(chunk)))):
                if add_link(int(a), int(b), str(r), float(w), d):
                    fresh.update((int(a), int(b)))
        ends = sorted(fresh - seen_state)
        seen_state.update(ends)
        for chunk in _chunks(ends):
            for row in conn.execute(
                    select(*MEMBER_COLUMNS)
                    .where(IncidentReport.report_id.in_(chunk))):
                rid, member = _member_row(row)
                if members.setdefault(rid, member) != member:
                    return _fallback("a report in two incidents", rid, -member.incident_id, -members[rid].incident_id)
            for rid, state in conn.execute(select(Report.id, Report.state).where(Report.id.in_(chunk))):
                if state == "finished":
                    done[int(rid)] = False
        return None

    lost_all = {x for lost in taken.values() for x in lost}

    def joining(x: int, o: int, key: tuple[int, int, str], k: int) -> bool:
        """Whether link ``key`` from ``x`` (in a piece) joins ``o`` to it in the plan: a link of
        the group (the rule loop saw it) to a finished report of T the rule claims."""
        return key in known and o in finished and new_claim.get(o) == k and o not in lost_all

    def apart(piece: set[int] | frozenset[int], k: int, gone: set[int], joins: bool = False) -> str | None:
        """None when nothing but its own links groups ``piece`` — members of a rule-``k``
        incident left without the others — under the rules: the rule is the last (no later
        rule can take it), and each of its links of the rule (as they are now: a report of T's
        new ones too) ends in the piece, at a report in ``gone``, at one an earlier rule claims,
        or at one not finished; else why not. A report of T joining the incident through the
        piece is such a link (its claim is the rule's): that is a why — unless ``joins``, when a
        link of the group to such a report is allowed (the plan joins them: ``_Split``)."""
        if k != len(rules.rules) - 1:
            return "a taken member's incident falls apart (a later rule might group a piece)"
        bad = read_links(piece)
        if bad is not None:
            return bad.why
        rule = rules.rules[k]
        for a, b, reason in {key for x in piece for key in adj.get(x, ())}:
            if (reason not in rule.reasons or links[(a, b, reason)][0] < rule.min_weight
                    or (a in piece) == (b in piece)):
                continue
            o = b if a in piece else a
            if o in gone or o not in done:
                continue
            if joins and joining(a if a in piece else b, o, (a, b, reason), k):
                continue
            if o in member_of or o in finished:
                # A report of T (with a stored membership or, not bundled yet, without): as
                # planned now, its old claim or a new one. A report of T that no rule claims
                # cannot be at a link of the rule (its ends are in T, or the stored plan would
                # hold it): that falls back below.
                claim = new_claim.get(o)
            elif o in members:  # outside T: its claim did not change
                claim = by_rule.get(members[o].reason.rule)
            else:
                return "a taken member's incident left a piece linked to a report not bundled yet"
            if claim is None or claim >= k:
                return "a taken member's incident left a piece with another link of its rule"
        return None

    def outer(x: int, k: int, piece: frozenset[int]) -> list[tuple[int, str]]:
        """The links of the group from ``x`` that join it to a report of T outside its piece."""
        rule = rules.rules[k]
        got = []
        for a, b, reason in adj.get(x, ()):
            weight, d = links[(a, b, reason)]
            o = b if a == x else a
            if (o not in piece and reason in rule.reasons and weight >= rule.min_weight
                    and joining(x, o, (a, b, reason), k)):
                got.append((o, d))
        return got

    need: dict[int, set[int]] = {}
    again = False  # a case the plan with pieces as units (``_Split``) decides
    alone_in: dict[int, int] = {}  # incident -> its one member left, standing alone
    loss = _Loss()
    for iid, lost in taken.items():
        k = by_rule[incidents[iid].rule]
        near = set()
        for a, b, _r, ks, _d in around:
            if k in ks and (a in lost) != (b in lost) and a in done and b in done:
                y = b if a in lost else a
                if y in members and members[y].incident_id == iid:
                    near.add(y)
        units = {-iid, *lost}
        if not near:
            left = conn.execute(select(IncidentReport.report_id).where(
                IncidentReport.incident_id == iid, IncidentReport.report_id.not_in(sorted(lost))).limit(1)).all()
            if left:
                return _fallback("a taken member's incident might fall apart (no member linked to it)", units)
            loss.dissolved.add(iid)  # every member taken: nothing of it is left
            continue
        if len(near) == 1 and iid not in merged:
            # One way in: every path through the lost members comes back to that member, so the
            # rest stays joined; it stays an incident if it keeps a second member (two rows).
            # (Merged with other units by a new link, one member left is enough.)
            left = conn.execute(select(IncidentReport.report_id).where(
                IncidentReport.incident_id == iid, IncidentReport.report_id.not_in(sorted(lost))).limit(2)).all()
            if len(left) < 2:
                (y,) = near
                why = apart({y}, k, lost_all)
                if why is not None:
                    return _fallback(why, units, y)
                alone_in[iid] = y
                continue
        need[iid] = near
    # The links among each incident's neighbours B first: enough when they join B by themselves.
    # A few B are read whole against all of B: every pair when B is small, else the lowest-
    # numbered (the earliest copies of an item, which later ones link to: a duplicate links to
    # the earliest duplicates first), each against all of B by index.
    allnear = sorted({y for near in need.values() for y in near})
    hubs = allnear if len(allnear) <= _AMONG else allnear[:_HUBS]
    if len(allnear) > 1:
        for chunk in _chunks(allnear):
            for a, b, r, w, d in conn.execute(
                    select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                           ReportLink.detail)
                    .where(ReportLink.report_a.in_(hubs), ReportLink.report_b.in_(chunk))):
                add_link(int(a), int(b), str(r), float(w), d)
    split_off: set[int] = set()  # members of fragments: in an incident of their own now
    for iid, near in need.items():
        k = by_rule[incidents[iid].rule]
        found = _fragments(iid, k, rules, near, links, adj, members, done, lost_all, read_links)
        if isinstance(found, _Fallback):
            return _fallback(found.why, -iid, taken[iid])
        if not found:
            continue
        # Pieces that fell off: each is an incident of the rule (or, alone, single or batched)
        # when nothing but the pieces' own links joins them under the rules: the rule is the
        # last (no later rule can take them), and each of their links of the rule (as they are
        # now: a report of T's new ones too) ends in the piece, at a member taken, at a report
        # an earlier rule claims, or at one not finished. A report of T joining the incident
        # through a piece is such a link (its claim is the rule's): that falls back.
        for fell in found:
            why = apart(fell, k, lost_all, joins=True)
            if why is not None:
                return _fallback(why, -iid, fell)
            split_off |= fell
        loss.pieces[iid] = [frozenset(p) for p in found]
        if split is None and any(outer(x, k, p) for p in loss.pieces[iid] for x in p):
            # Planned again with the pieces as units (``_Split`` below); what is left of the
            # incident is judged then (a link between two of its pieces made it a unit here).
            continue
        left = conn.execute(select(IncidentReport.report_id).where(
            IncidentReport.incident_id == iid, IncidentReport.report_id.not_in(sorted(lost_all | split_off)))
            .limit(2)).all()
        if len(left) < 2 and iid not in merged:
            # What is left of it is one member: alone too, when nothing else joins it (and no
            # link inside a piece made the incident a unit of the new plan).
            if iid in touched:
                if split is None:  # perhaps a new link inside a piece: as a unit, it touches no incident
                    again = True
                    continue
                return _fallback("a taken member's incident falls apart (one member left)", -iid)
            (y,) = (int(r) for (r,) in left)
            why = apart({y}, k, lost_all | split_off)
            if why is not None:
                return _fallback(why, -iid, y)
            alone_in[iid] = y
    pieces = [(iid, piece) for iid, found in loss.pieces.items() for piece in found]

    joins = [piece for iid, piece in pieces if any(outer(x, by_rule[incidents[iid].rule], piece) for x in piece)]
    if (joins or again) and split is None:
        return _Split(loss.pieces)
    if split is not None and {i: set(f) for i, f in split.items()} != {i: set(f) for i, f in loss.pieces.items()}:
        return _fallback("a taken member's incident fell into other pieces on a second look", *split)
    loss.joins = joins
    batched: dict[int, bool] = {}
    singles = sorted({x for _, piece in pieces if len(piece) == 1 for x in piece} | set(alone_in.values()))
    for chunk in _chunks(singles):
        batched.update((int(r), bool(b)) for r, b in conn.execute(
            select(Report.id, Report.batched).where(Report.id.in_(chunk))))
    for iid, y in alone_in.items():
        loss.orphans[iid] = (y, batched.get(y, False))
        loss.stored[y] = members[y]
    for iid, piece in pieces:
        k = by_rule[incidents[iid].rule]
        rule = rules.rules[k]
        if len(piece) == 1 and piece not in joins:
            (x,) = piece
            loss.alone[x] = batched.get(x, False)
        else:
            for x in piece:  # its link to the lowest-numbered member of its incident it is linked to
                cand: tuple[int, str] | None = min(outer(x, k, piece), default=None)
                for a, b, reason in adj.get(x, ()):
                    weight, d = links[(a, b, reason)]
                    if reason in rule.reasons and weight >= rule.min_weight:
                        o = b if a == x else a
                        if o in piece and o != x and (cand is None or (o, d) < cand):
                            cand = (o, d)
                assert cand is not None  # a piece of two or more (or joined) is joined by its links
                loss.reasons[x] = MemberReason.link(rule.name, cand[1], cand[0])
        for x in piece:
            loss.stored[x] = members[x]
    gone = lost_all | split_off
    for iid in need:
        if iid in loss.orphans:
            continue
        k = by_rule[incidents[iid].rule]
        if incidents[iid].lowest in gone:
            # Its key moves to the lowest member left (one indexed row).
            low = conn.execute(select(IncidentReport.report_id).where(
                IncidentReport.incident_id == iid, IncidentReport.report_id.not_in(sorted(gone)))
                .order_by(IncidentReport.report_id).limit(1)).scalar()
            if low is None:
                return _fallback("a taken member's incident might fall apart (no member left)", -iid)
            loss.lowest[iid] = int(low)
        # Members whose lowest link was to one that left: their next-lowest, from their own links.
        for row in conn.execute(
                select(*MEMBER_COLUMNS)
                .where(IncidentReport.incident_id == iid, IncidentReport.via_report_id.in_(sorted(gone)))):
            rid, member = _member_row(row)
            if rid not in group and rid not in gone:
                loss.relinked[rid] = (iid, k)
                members.setdefault(rid, member)
    bad = read_links(set(loss.relinked))
    if bad is not None:
        return bad
    for y, (_iid, k) in loss.relinked.items():
        rule = rules.rules[k]
        cand = None
        for a, b, reason in adj.get(y, ()):
            weight, d = links[(a, b, reason)]
            if reason not in rule.reasons or weight < rule.min_weight:
                continue
            o = b if a == y else a
            if o in gone or o not in done:
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
            return _fallback("a taken member's incident left a member without a link", y, -_iid)
        loss.reasons[y] = MemberReason.link(rule.name, cand[1], cand[0])
        loss.stored[y] = members[y]
    return loss


def _fragments(iid: int, k: int, rules: BundlingRules, near: set[int],
               links: dict[tuple[int, int, str], tuple[float, str]], adj: dict[int, list[tuple[int, int, str]]],
               members: dict[int, StoredMember], done: dict[int, bool], lost: set[int],
               read_links: Callable[[set[int]], _Fallback | None]) -> list[set[int]] | _Fallback:
    """The pieces that fall off incident ``iid`` when it loses ``lost``: [] when it stays whole.

    Every member left is joined (without the lost ones) to a neighbour of them in ``near``
    (follow its old path to a lost member: the last member before it is one), so the pieces
    are what the neighbours fall into. Those joined by links among themselves form the core
    (the largest such group); from all the others at once a search through the incident's
    members goes round by round (one read per round), each part stopping as soon as it is
    joined to the core. A part whose every member's links were read without reaching the core
    is a piece, complete. Bounded by ``_SEARCH_ROUNDS`` and ``_REACH``: wider falls back.
    """
    rule = rules.rules[k]

    def inside(x: int) -> bool:
        return x in done and x not in lost and x in members and members[x].incident_id == iid

    uf = UnionFind()

    def join(xs: set[int]) -> set[int]:
        """Union ``xs`` with the members their usable links reach; those members."""
        out: set[int] = set()
        for x in xs:
            for a, b, reason in adj.get(x, ()):
                if reason in rule.reasons and links[(a, b, reason)][0] >= rule.min_weight:
                    o = b if a == x else a
                    if inside(o):
                        uf.union(x, o)
                        out.add(o)
        return out

    for y in near:
        uf.find(y)
        for a, b, reason in adj.get(y, ()):
            if a in near and b in near and reason in rule.reasons and links[(a, b, reason)][0] >= rule.min_weight:
                uf.union(a, b)
    groups: dict[int, set[int]] = {}
    for y in sorted(near):
        groups.setdefault(uf.find(y), set()).add(y)
    if len(groups) == 1:
        return []
    core = min(min(g) for g in groups.values() if len(g) == max(len(g) for g in groups.values()))
    seen = set(near)
    expanded: set[int] = set()
    frontier = {y for y in near if uf.find(y) != uf.find(core)}
    for _round in range(_SEARCH_ROUNDS):
        bad = read_links(frontier)
        if bad is not None:
            return bad
        seen |= join(frontier)
        expanded |= frontier
        root = uf.find(core)
        frontier = {x for x in seen if x not in expanded and uf.find(x) != root}
        if not frontier:
            break
        if len(expanded) > _REACH:
            return _Fallback("a taken member's incident might fall apart (search too wide)")
    else:
        return _Fallback("a taken member's incident might fall apart (search too deep)")
    root = uf.find(core)
    pieces: dict[int, set[int]] = {}
    for x in seen:
        if uf.find(x) != root:
            pieces.setdefault(uf.find(x), set()).add(x)
    return list(pieces.values())


@dataclass
class _Loss:
    """What losing members to an earlier rule changes in the incidents that stay whole."""

    lowest: dict[int, int] = field(default_factory=dict)  # incident -> its new lowest member
    relinked: dict[int, tuple[int, int]] = field(default_factory=dict)  # member -> (incident, rule)
    reasons: dict[int, MemberReason] = field(default_factory=dict)  # member -> its new reason
    stored: dict[int, StoredMember] = field(default_factory=dict)  # member -> its row as read
    #: incident -> (its one member left, whether that report is batched): it stands alone now.
    orphans: dict[int, tuple[int, bool]] = field(default_factory=dict)
    #: incident -> the pieces that fell off it (each an incident of its own now) ...
    pieces: dict[int, list[frozenset[int]]] = field(default_factory=dict)
    #: Pieces a link of the group joins to a report of T their rule claims (``_Split``).
    joins: list[frozenset[int]] = field(default_factory=list)
    #: ... of which the members of pieces of one: report -> whether it is batched.
    alone: dict[int, bool] = field(default_factory=dict)
    dissolved: set[int] = field(default_factory=set)  # incidents every member of which was taken


def _chunks_str(keys: list[str]) -> list[list[str]]:
    todo = sorted(set(keys))
    return [todo[i:i + 2000] for i in range(0, len(todo), 2000)]
