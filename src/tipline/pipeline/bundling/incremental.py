"""The incremental path: one report's incident brought up to date from its new links alone, in time
that does not depend on the incident's size (see ``add_report``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.leave import Leave, apply_leave, plan_leave
from tipline.pipeline.bundling.rules import CHUNK, BundlingRules, GraphRule, MemberReason, key_of
from tipline.pipeline.bundling.stored import (
    Member,
    Where,
    adjacency,
    fallback,
    linked_reason,
    lowest_members,
    memberships,
    merge_into,
    named_link,
    rule_links,
    stood_alone,
)
from tipline.pipeline.linkchanges import LinkChange
from tipline.store.tables import Incident, IncidentReport, Report, ReportLink


def add_report(session: Session, rules: BundlingRules, report_id: int, now: datetime,
               change: LinkChange | None = None) -> bool:
    """Bring one report's incident up to date in time independent of the incident's size.

    ``rebundle`` recomputes the whole group of a report by a breadth-first search over its
    links: a viral item seen in thousands of reports made each new report cost thousands of
    rows. The stage keeps an invariant: the stored incidents are the components of the link
    graph as it was at the last bundling. So when a report's links only grew (``change``, from
    the links stage in this transaction) or the report was never bundled, its group is its
    neighbours' incident plus the neighbours that stood alone, under the first rule that
    claims it. This handles those common cases and returns True. It returns False, changing
    nothing, when the answer needs more (links removed or unknown, two incidents would merge,
    a neighbour would leave a group of a later rule, a rule needs more than 2 reports); then
    ``rebundle`` runs. tests/test_bundles.py checks the result equals the full plan.
    """
    mine = memberships(session, [report_id])
    if mine is None:
        return fallback("not a partition")
    own = mine.get(report_id)
    alone_now = own is None or session.execute(select(IncidentReport.report_id).where(
        IncidentReport.incident_id == own.incident_id, IncidentReport.report_id != report_id).limit(1)).first() is None
    if own is not None and change is None:
        return fallback("links may have changed")
    if change is not None and change.removed:
        return fallback("links removed")
    if own is not None and not alone_now:
        assert change is not None
        return _extend(session, rules, report_id, own, change, now)
    links = [(int(b) if int(a) == report_id else int(a), str(reason), float(weight), detail)
             for a, b, reason, weight, detail in session.execute(
                 select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                        ReportLink.detail)
                 .where(or_(ReportLink.report_a == report_id, ReportLink.report_b == report_id)))]
    adj = adjacency(rules, report_id, links)
    where = memberships(session, [n for per in adj for n in per])
    if where is None:
        return fallback("not a partition")
    rank = {rule.name: k for k, rule in enumerate(rules.rules)}
    own_incident = own.incident_id if own is not None else None
    for k, rule in enumerate(rules.rules):
        # Neighbours still free at rule k: not claimed by an earlier rule.
        free = [n for n in sorted(adj[k]) if n not in where or rank.get(where[n].rule, len(rules.rules)) >= k]
        if not free:
            continue
        if rule.min_reports != 2:
            return fallback("min_reports")
        groups = sorted({where[n].incident_id for n in free if n in where and where[n].rule == rule.name})
        alone = [n for n in free if n not in where or where[n].rule != rule.name]
        if any(n not in where and not stood_alone(session, rules, n, report_id, k) for n in alone):
            return fallback("neighbour not bundled")
        leaves: list[Leave] = []
        for n in alone:
            if n in where and where[n].rule in rank:  # in an incident of a later rule: it moves here
                plan = plan_leave(session, rules, rules.rules[rank[where[n].rule]], n, where[n].incident_id)
                if plan is None:
                    return fallback("leaves later rule")
                leaves.append(plan)
        if len({plan.incident_id for plan in leaves}) != len(leaves):
            return fallback("leaves later rule")  # two leave one incident: planned apart, they could split it
        for plan in leaves:
            apply_leave(session, plan, now)
            del where[plan.report_id]  # now unbundled; it joins this report's incident below
        return _grow(session, rule, report_id, own_incident, groups, alone, adj[k], where, now)
    # No graph rule claims the report: it stands alone (batched or single).
    _stand_alone(session, rules, report_id, own_incident, now)
    return True

def _stand_alone(session: Session, rules: BundlingRules, report_id: int, own_incident: int | None,
                 now: datetime) -> None:
    """Make the report the one member of its batched or single incident."""
    batched = bool(session.execute(select(Report.batched).where(Report.id == report_id)).scalar())
    name, text = ((rules.batched_name, rules.batched_description) if batched
                  else (rules.single_name, rules.single_description))
    key = key_of(name, report_id)
    why = MemberReason.described(name, text)
    inc = session.execute(select(Incident).where(Incident.key == key)).scalar_one_or_none()
    if inc is None:
        inc = Incident(rule=name, key=key, lowest_report_id=report_id, created_at=now, updated_at=now)
        session.add(inc)
        session.flush()
    if own_incident == inc.id:
        session.execute(update(IncidentReport).where(IncidentReport.report_id == report_id).values(**why.values()))
        return
    if own_incident is not None:
        session.execute(delete(IncidentReport).where(IncidentReport.report_id == report_id))
        session.execute(delete(Incident).where(Incident.id == own_incident))
    session.add(IncidentReport(incident_id=inc.id, report_id=report_id, **why.values()))
    inc.updated_at = now
    session.flush()


def _extend(session: Session, rules: BundlingRules, report_id: int, own: Member,
            change: LinkChange, now: datetime) -> bool:
    """A report already in an incident with others gained links: add what they bring, if simple.

    Links to members of its own incident change at most reasons; links to reports that stood
    alone bring them in (as in ``_grow``). Anything else goes to the full re-plan.
    """
    rank = {rule.name: k for k, rule in enumerate(rules.rules)}
    j = rank.get(own.rule)
    if j is None:
        return fallback("in a group of no rule")
    adj = adjacency(rules, report_id, change.added)
    where = memberships(session, [n for per in adj[:j + 1] for n in per])
    if where is None:
        return fallback("not a partition")
    for k in range(j):
        if any(n not in where or rank.get(where[n].rule, len(rules.rules)) >= k for n in adj[k]):
            # Claimed by an earlier rule now: it leaves its incident and is bundled as if new.
            plan = plan_leave(session, rules, rules.rules[j], report_id, own.incident_id)
            if plan is None:
                return fallback("claimed by an earlier rule")
            apply_leave(session, plan, now)
            return add_report(session, rules, report_id, now, change)
    rule = rules.rules[j]
    free = {n: d for n, d in adj[j].items() if n not in where or rank.get(where[n].rule, len(rules.rules)) >= j}
    outside = sorted(n for n in free if not (n in where and where[n].incident_id == own.incident_id))
    # Neighbours in other incidents of this rule: those incidents merge with this one.
    merging = sorted({where[n].incident_id for n in outside if n in where and where[n].rule == rule.name})
    joiners = [n for n in outside if not (n in where and where[n].rule == rule.name)]
    leaves: list[Leave] = []
    for n in joiners:
        if n in where:
            if where[n].rule in rank:  # in an incident of a later rule: it moves here
                plan = plan_leave(session, rules, rules.rules[rank[where[n].rule]], n, where[n].incident_id)
                if plan is None:
                    return fallback("leaves later rule")
                leaves.append(plan)
        elif not stood_alone(session, rules, n, report_id, j):
            return fallback("neighbour not bundled")
    if len({p.incident_id for p in leaves}) != len(leaves):
        return fallback("leaves later rule")
    mine = named_link(own)
    if mine is None:
        return fallback("reason not recorded")
    updates: dict[int, MemberReason] = {}
    best = min([mine, *((n, min(d)) for n, d in free.items())])
    if best != mine:
        updates[report_id] = linked_reason(rule, best[1], best[0])
    for n, details in free.items():
        if n in joiners:
            continue
        theirs = named_link(where[n])
        if theirs is None:
            return fallback("reason not recorded")
        cand = min(theirs, (report_id, min(details)))
        if cand != theirs:
            updates[n] = linked_reason(rule, cand[1], cand[0])
    if joiners or merging:
        found = lowest_members(session, rule, [own.incident_id, *merging])
        if found is None:
            return fallback("incident of another rule")
        inc = min(found.values(), key=lambda v: v[1])[0]
        lowest = min([*(low for _, low in found.values()), *joiners])
        key = key_of(rule.name, lowest)
        if key != inc.key and session.execute(select(Incident.id).where(Incident.key == key)).scalar() is not None:
            return fallback("key clash")
        for plan in leaves:
            apply_leave(session, plan, now)
        others = sorted(set(found) - {inc.id})
        if others:
            merge_into(session, inc, others)
        if key != inc.key:
            inc.key, inc.lowest_report_id = key, lowest
        old = sorted({where[n].incident_id for n in joiners if n in where and n not in {p.report_id for p in leaves}}
                     - {inc.id})
        if joiners:
            session.execute(delete(IncidentReport).where(IncidentReport.report_id.in_(joiners)))
        if old:
            session.execute(delete(Incident).where(Incident.id.in_(old)))
        for n in joiners:
            # A lone report had no free link of this rule to anyone else: this report is its reason.
            session.add(IncidentReport(incident_id=inc.id, report_id=n,
                                       **linked_reason(rule, min(free[n]), report_id).values()))
        inc.updated_at = now
    for n, why in updates.items():
        session.execute(update(IncidentReport).where(IncidentReport.report_id == n).values(**why.values()))
    session.flush()
    return True


def _grow(session: Session, rule: GraphRule, report_id: int, own_incident: int | None, groups: list[int],
          alone: list[int], adj: dict[int, list[str]], where: Where, now: datetime) -> bool:
    """Add the report and its lone neighbours to its neighbours' incidents of ``rule``, merged into
    the one with the lowest key (or into a new incident when there is none)."""
    found = lowest_members(session, rule, groups)
    if found is None:
        return fallback("incident of another rule")
    lows = {iid: low for iid, (_, low) in found.items()}
    inc = min(found.values(), key=lambda v: v[1])[0] if found else None
    low = min([report_id, *alone, *lows.values()])
    key = key_of(rule.name, low)
    clash = session.execute(select(Incident.id).where(Incident.key == key)).scalar()
    if clash is not None and (inc is None or clash != inc.id):
        return fallback("key clash")
    members_in_group = [n for n in adj if n in where and where[n].incident_id in lows]
    # Members whose reason may now name this report (it has a lower id than the one named). No
    # other reason changes: members of merged incidents were linked to each other only through it.
    renamed: dict[int, MemberReason] = {}
    for n in members_in_group:
        named = where[n].via
        if named is None:
            return fallback("reason not recorded")
        if report_id < named:
            renamed[n] = linked_reason(rule, min(adj[n]), report_id)
    if inc is None:
        inc = Incident(rule=rule.name, key=key, lowest_report_id=low, created_at=now, updated_at=now)
        session.add(inc)
        session.flush()
    else:
        merged = sorted(set(lows) - {inc.id})
        if merged:
            merge_into(session, inc, merged)
        if inc.key != key:
            inc.key, inc.lowest_report_id = key, low
    # The report and its lone neighbours leave their own one-report incidents.
    leaving = [report_id, *alone]
    old = {where[n].incident_id for n in alone if n in where} | ({own_incident} if own_incident is not None else set())
    session.execute(delete(IncidentReport).where(IncidentReport.report_id.in_(leaving)))
    old.discard(inc.id)
    if old:
        session.execute(delete(Incident).where(Incident.id.in_(sorted(old))))
    members = {report_id, *alone, *members_in_group}
    first = min(n for n in adj if n in members)  # the report's reason: its link to the lowest-numbered member
    session.add(IncidentReport(incident_id=inc.id, report_id=report_id,
                               **linked_reason(rule, min(adj[first]), first).values()))
    for n in alone:
        # A lone neighbour had no free link of this rule to anyone else: this report is its reason.
        session.add(IncidentReport(incident_id=inc.id, report_id=n,
                                   **linked_reason(rule, min(adj[n]), report_id).values()))
    for n, why in renamed.items():
        session.execute(update(IncidentReport).where(IncidentReport.report_id == n).values(**why.values()))
    inc.updated_at = now
    session.flush()
    return True


def recompute_reason(session: Session, rules: BundlingRules, node: int) -> None:
    """Set a member's reason from scratch: its link to the lowest-numbered member of its incident."""
    where = memberships(session, [node])
    if not where or node not in where:
        return
    incident_id, rule_name = where[node].incident_id, where[node].rule
    rule = next((r for r in rules.rules if r.name == rule_name), None)
    if rule is None:
        return  # batched or single: the reason is the rule's description, unchanged
    links = rule_links(session, rule, [node])
    partners = sorted({b if a == node else a for a, b, _ in links} - {node})
    members: set[int] = set()
    for i in range(0, len(partners), CHUNK):
        members.update(int(r) for r in session.execute(select(IncidentReport.report_id).where(
            IncidentReport.incident_id == incident_id, IncidentReport.report_id.in_(partners[i:i + CHUNK]))).scalars())
    cands = sorted((b if a == node else a, d) for a, b, d in links if (b if a == node else a) in members)
    why = linked_reason(rule, cands[0][1], cands[0][0]) if cands else MemberReason.described(rule.name, rule.name)
    session.execute(update(IncidentReport).where(IncidentReport.report_id == node).values(**why.values()))
