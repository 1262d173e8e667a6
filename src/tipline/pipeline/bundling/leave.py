"""One report leaving its incident, planned without re-planning the rest (see ``plan_leave``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, intersect, or_, select, union, union_all, update
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.reference import UnionFind
from tipline.pipeline.bundling.rules import CHUNK, BundlingRules, GraphRule, MemberReason, key_of
from tipline.pipeline.bundling.stored import linked_reason, of_rule, rule_links
from tipline.store.tables import Incident, IncidentReport, Report, ReportLink

log = logging.getLogger("tipline.pipeline.bundles")


@dataclass
class Leave:
    """A planned departure of one report from its incident (see ``plan_leave``)."""

    report_id: int
    incident_id: int
    #: The incident's new lowest member, when the old one left (its key changes with it).
    new_lowest: int | None
    reasons: dict[int, MemberReason]
    #: Pieces that no longer connect to the lowest member: (rule, members) of a new incident.
    moves: list[tuple[str, list[int]]] = field(default_factory=list)
    #: The incident itself goes (no piece of two or more reports kept it).
    drop: bool = False


def _no_leave(why: str) -> Leave | None:
    log.debug("bundles: cannot plan a leave: %s", why)
    return None


def plan_leave(session: Session, rules: BundlingRules, rule: GraphRule, x: int, incident_id: int) -> Leave | None:
    """Plan report ``x`` leaving its incident of ``rule`` without re-planning anything else.

    The rest falls into the connected pieces of the incident without ``x``; every member is in
    the piece of one of ``x``'s neighbours (its path to ``x`` ends at one). ``_split_search``
    finds the pieces at the cost of the smaller ones: an incident of a viral item has thousands
    of members and is usually left connected, or loses a few reports that only ``x`` tied to
    it. The largest piece keeps the incident (re-keyed when its lowest member changes), the
    others become incidents of their own or lone reports, and the members whose reason named
    ``x`` name another member of their piece. Only those rows are read and written. The rest's
    members stay free for this rule (nothing else changed), so no report outside joins a piece.
    """
    incident = session.get(Incident, incident_id)
    if incident is None or incident.rule != rule.name or rule.min_reports != 2:
        return _no_leave("unexpected incident")
    in_incident = IncidentReport.incident_id == incident_id
    targets = {n for _, n in _member_links(session, rule, incident_id, [x])} - {x}
    if not targets:
        return _no_leave("no neighbour inside")
    small = _split_search(session, rule, incident_id, x, targets)
    others = select(IncidentReport.report_id).where(in_incident, IncidentReport.report_id != x)
    n_rest = int(session.execute(select(func.count()).select_from(others.subquery())).scalar_one())
    in_small = {r for p in small for r in p}
    remainder = n_rest - len(in_small)  # members of the one piece the search did not read whole
    if remainder < rule.min_reports or len(in_small) > CHUNK:
        # Too few left to stay an incident (every piece is then read), or too many read to
        # exclude by id: read the remainder too.
        rest = {int(r) for r in session.execute(others).scalars()}
        small.append(rest - in_small)
        in_small = rest
        remainder = 0
    if remainder:
        stay_low = int(session.execute(select(func.min(IncidentReport.report_id)).where(
            in_incident, IncidentReport.report_id != x, IncidentReport.report_id.not_in(sorted(in_small))
        )).scalar_one())
        stay_size, moved = remainder, small
    else:
        ordered = sorted((p for p in small if p), key=lambda p: (-len(p), min(p)))
        stay_low, stay_size, moved = min(ordered[0]), len(ordered[0]), ordered[1:]
    drop = stay_size < rule.min_reports  # then every piece is a lone report
    if drop:
        moved = [p for p in small if p]
    new_lowest = stay_low if not drop and incident.lowest_report_id != stay_low else None
    moves: list[tuple[str, list[int]]] = []
    batched = {int(r) for r in session.execute(select(Report.id).where(
        Report.id.in_(sorted(r for p in moved if len(p) == 1 for r in p)), Report.batched.is_(True))).scalars()}
    reasons: dict[int, MemberReason] = {}
    for piece in moved:
        if len(piece) >= rule.min_reports:
            moves.append((rule.name, sorted(piece)))
        else:
            (r,) = piece
            name, text = ((rules.batched_name, rules.batched_description) if r in batched
                          else (rules.single_name, rules.single_description))
            moves.append((name, [r]))
            reasons[r] = MemberReason.described(name, text)
    new_keys = [key_of(rule.name, new_lowest)] if new_lowest is not None else []
    for k in new_keys + [key_of(name, min(ids)) for name, ids in moves]:
        if session.execute(select(Incident.id).where(Incident.key == k)).scalar() is not None:
            return _no_leave("key clash")
    # Members whose reason named x now name their lowest other neighbour in their piece.
    orphans = sorted(int(r) for r in session.execute(
        select(IncidentReport.report_id).where(in_incident, IncidentReport.via_report_id == x)).scalars()
        if int(r) not in reasons and int(r) != x)
    orphan_links = rule_links(session, rule, orphans)
    ends = sorted({n for a, b, _ in orphan_links for n in (a, b)} - {x})
    members = {int(r) for i in range(0, len(ends), CHUNK) for r in session.execute(
        select(IncidentReport.report_id).where(in_incident, IncidentReport.report_id.in_(ends[i:i + CHUNK]))
    ).scalars()}
    orphan_set = set(orphans)
    best: dict[int, tuple[int, str]] = {}
    for a, b, detail in orphan_links:
        for me, other in ((a, b), (b, a)):
            # A member linked to another member is in its piece: pieces are the components.
            if me in orphan_set and other != me and other in members:
                cand = (other, detail)
                if me not in best or cand < best[me]:
                    best[me] = cand
    if set(best) != orphan_set:
        return _no_leave("a member would name no one")
    reasons.update({r: linked_reason(rule, d, o) for r, (o, d) in best.items()})
    return Leave(x, incident_id, new_lowest, reasons, moves, drop)


#: Reports expanded per query by one search of ``_split_search``.
_STEP = 64
#: Up to this many groups of a leaver's neighbours are checked pairwise for a common neighbour.
_PAIR_CHECKS = 8


def _common_neighbour(session: Session, rule: GraphRule, incident_id: int, x: int,
                      one: set[int], other: set[int]) -> bool:
    """Whether a member of the incident other than ``x`` is linked under ``rule`` to both groups."""
    if len(one) > CHUNK or len(other) > CHUNK:
        return False  # the search decides instead

    def around(nodes: set[int]) -> Any:
        cond = of_rule(rule)
        return union(select(ReportLink.report_b.label("n")).where(ReportLink.report_a.in_(sorted(nodes)), *cond),
                     select(ReportLink.report_a.label("n")).where(ReportLink.report_b.in_(sorted(nodes)), *cond))

    both = intersect(around(one).subquery().select(), around(other).subquery().select()).subquery()
    return session.execute(
        select(both.c.n).join(IncidentReport, IncidentReport.report_id == both.c.n)
        .where(IncidentReport.incident_id == incident_id, both.c.n != x).limit(1)).first() is not None


def _member_links(session: Session, rule: GraphRule, incident_id: int, nodes: list[int]) -> set[tuple[int, int]]:
    """(node, member) for each member of incident ``incident_id`` linked to one of ``nodes`` under ``rule``."""
    out: set[tuple[int, int]] = set()
    cond = of_rule(rule)
    for i in range(0, len(nodes), CHUNK):
        chunk = nodes[i:i + CHUNK]
        for mine, theirs in ((ReportLink.report_a, ReportLink.report_b), (ReportLink.report_b, ReportLink.report_a)):
            out.update((int(m), int(t)) for m, t in session.execute(
                select(mine, theirs).join(IncidentReport, IncidentReport.report_id == theirs)
                .where(mine.in_(chunk), IncidentReport.incident_id == incident_id, *cond)))
    return out


def _split_search(session: Session, rule: GraphRule, incident_id: int, x: int, targets: set[int]) -> list[set[int]]:
    """All pieces of the incident without ``x`` but one, each whole; the last one is not read.

    One search per group of ``x``'s neighbours (those linked to one another, or through a
    common neighbour, start together). The searches that have read least go next, together in
    one query; searches that meet merge; a search with nothing left to read is a whole piece.
    When one search is left, the members no finished search reached are its piece. The cost is
    that of the smaller pieces (plus the hops that merge searches), not of the incident: the
    usual leave from a viral incident reads a few rows.
    """
    groups = _neighbour_groups(session, rule, incident_id, x, targets)
    if len(groups) == 1:
        return []
    return _search_pieces(session, rule, incident_id, x, groups)


def _neighbour_groups(session: Session, rule: GraphRule, incident_id: int, x: int,
                      targets: set[int]) -> list[set[int]]:
    """``x``'s neighbours in groups that are surely in one piece: linked to one another, or
    (for a few groups) through a common neighbour in the incident."""
    uf = UnionFind()
    for t in targets:
        uf.find(t)
    ids = sorted(targets)
    cond = of_rule(rule)
    if 1 < len(ids) <= CHUNK:
        # Links among them, filtered in SQL: first sharers have thousands of links and are
        # linked to one another. The lowest is usually linked to all the others: only the
        # links of those it is not linked to are read.
        hub = ids[0]
        for a, b in session.execute(select(ReportLink.report_a, ReportLink.report_b).where(
                or_(ReportLink.report_a == hub, ReportLink.report_b == hub),
                ReportLink.report_a.in_(ids), ReportLink.report_b.in_(ids), *cond)):
            uf.union(int(a), int(b))
        # Then, round by round, which of the others have a link into the hub's group: one row
        # per report (DISTINCT in SQL), not one per link.
        joined = {t for t in ids if uf.find(t) == uf.find(hub)}
        rest = [t for t in ids if t not in joined]
        while rest:
            found: set[int] = set()
            for i in range(0, len(rest), _STEP):
                chunk, into = rest[i:i + _STEP], sorted(joined)
                pairs = union_all(
                    select(ReportLink.report_a.label("n")).where(
                        ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(into), *cond),
                    select(ReportLink.report_b.label("n")).where(
                        ReportLink.report_b.in_(chunk), ReportLink.report_a.in_(into), *cond)).subquery()
                found.update(int(n) for n in session.execute(select(pairs.c.n).distinct()).scalars())
            if not found:
                break
            for n in found:
                uf.union(hub, n)
            joined |= found
            rest = [t for t in rest if t not in found]
        if len(rest) > 1:  # those left: links among themselves only
            for a, b in session.execute(select(ReportLink.report_a, ReportLink.report_b).where(
                    ReportLink.report_a.in_(rest), ReportLink.report_b.in_(rest), *cond)):
                uf.union(int(a), int(b))
    elif len(ids) > CHUNK:
        for a, b in _rule_pairs(session, rule, ids):
            if b in targets:
                uf.union(a, b)
    by_root: dict[int, set[int]] = {}
    for t in targets:
        by_root.setdefault(uf.find(t), set()).add(t)
    groups = sorted(by_root.values(), key=min)
    if 1 < len(groups) <= _PAIR_CHECKS:
        # Two hops next: two groups with a common neighbour in the incident are one piece. In
        # SQL, so that the anchors' thousands of links are never read into Python.
        roots = {min(g): g for g in groups}
        for i, gi in enumerate(groups):
            for gj in groups[i + 1:]:
                if uf.find(min(gi)) != uf.find(min(gj)) and _common_neighbour(session, rule, incident_id, x, gi, gj):
                    uf.union(min(gi), min(gj))
        merged: dict[int, set[int]] = {}
        for low, g in roots.items():
            merged.setdefault(uf.find(low), set()).update(g)
        groups = sorted(merged.values(), key=min)
    return groups


def _search_pieces(session: Session, rule: GraphRule, incident_id: int, x: int,
                   groups: list[set[int]]) -> list[set[int]]:
    """One search per group, least-read first; every piece but the last one left, each whole."""
    seen = [set(g) for g in groups]
    frontier = [sorted(g) for g in groups]
    searches = UnionFind()  # searches that met: the root holds their seen and frontier
    owner = {n: i for i, g in enumerate(seen) for n in g}
    active = set(range(len(seen)))
    done: list[set[int]] = []
    while len(active) > 1:
        least = min(len(seen[j]) for j in active)
        turn = sorted(j for j in active if len(seen[j]) == least)
        for j in turn:
            if not frontier[j] and len(active) > 1:
                done.append(seen[j])
                active.discard(j)
        batch: list[int] = []
        for j in turn:
            if j in active and len(active) > 1 and frontier[j]:
                batch.extend(frontier[j][:_STEP])
                frontier[j] = frontier[j][_STEP:]
        if not batch:
            continue
        for node, n in sorted(_member_links(session, rule, incident_id, batch)):
            if n == x:
                continue
            i = searches.find(owner[node])
            if n not in owner:
                owner[n] = i
                seen[i].add(n)
                frontier[i].append(n)
                continue
            j = searches.find(owner[n])
            if j != i and j in active:
                # Two searches met: one piece from now on, kept by the union's root.
                searches.union(i, j)
                keep, gone = (i, j) if searches.find(i) == i else (j, i)
                seen[keep] |= seen[gone]
                frontier[keep].extend(frontier[gone])
                active.discard(gone)
    return done


def _rule_pairs(session: Session, rule: GraphRule, nodes: list[int]) -> list[tuple[int, int]]:
    """Links of ``rule`` from ``nodes`` as (a, b) pairs, ids only."""
    out: list[tuple[int, int]] = []
    cond = of_rule(rule)
    for i in range(0, len(nodes), CHUNK):
        chunk = nodes[i:i + CHUNK]
        out.extend((int(a), int(b)) for a, b in session.execute(
            select(ReportLink.report_a, ReportLink.report_b).where(ReportLink.report_a.in_(chunk), *cond)))
    return out


def apply_leave(session: Session, leave: Leave, now: datetime) -> None:
    session.execute(delete(IncidentReport).where(IncidentReport.report_id == leave.report_id))
    values: dict[str, Any] = {"updated_at": now}
    if leave.new_lowest is not None:
        incident = session.get(Incident, leave.incident_id)
        assert incident is not None  # plan_leave read it in this transaction
        values |= {"key": key_of(incident.rule, leave.new_lowest), "lowest_report_id": leave.new_lowest}
    if not leave.drop:
        session.execute(update(Incident).where(Incident.id == leave.incident_id).values(**values))
    for rule_name, ids in leave.moves:
        inc = Incident(rule=rule_name, key=key_of(rule_name, min(ids)), lowest_report_id=min(ids),
                       created_at=now, updated_at=now)
        session.add(inc)
        session.flush()
        for i in range(0, len(ids), CHUNK):
            session.execute(update(IncidentReport).where(IncidentReport.report_id.in_(ids[i:i + CHUNK]))
                            .values(incident_id=inc.id, rule=rule_name))
    for r, why in leave.reasons.items():
        session.execute(update(IncidentReport).where(IncidentReport.report_id == r).values(**why.values()))
    if leave.drop:
        session.execute(delete(Incident).where(Incident.id == leave.incident_id))
