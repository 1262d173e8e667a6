"""The re-plan by search: one report's incident from a breadth-first search over its links, and
the stored rows made to agree with it for every report whose group that touches."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.rules import CHUNK, Assignment, BundlingRules, MemberReason, key_of, load_bundling
from tipline.pipeline.linkchanges import forget_link_changes
from tipline.store.tables import Incident, IncidentReport, Report, ReportLink


class LinkGraph:
    """Cached, batched access to the link graph among finished reports."""

    def __init__(self, session: Session, rules: BundlingRules) -> None:
        self.s = session
        self.rules = rules
        # node -> rule index -> [(neighbour, detail)]
        self.adj: dict[int, dict[int, list[tuple[int, str]]]] = {}
        self.comp: dict[tuple[int, int], frozenset[int]] = {}  # (rule idx, node) -> component
        self.batched: dict[int, bool] = {}

    def _fetch(self, nodes: Iterable[int]) -> None:
        todo = sorted(n for n in set(nodes) if n not in self.adj)
        for i in range(0, len(todo), CHUNK):
            chunk = todo[i:i + CHUNK]
            chunk_set = set(chunk)
            for n in chunk:
                self.adj[n] = {k: [] for k in range(len(self.rules.rules))}
            rows = self.s.execute(
                select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                       ReportLink.detail)
                .where(or_(ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(chunk)))
            ).all()
            for a, b, reason, weight, detail in rows:
                for k, rule in enumerate(self.rules.rules):
                    if reason in rule.reasons and weight >= rule.min_weight:
                        if a in chunk_set:
                            self.adj[a][k].append((b, detail or reason))
                        if b in chunk_set:
                            self.adj[b][k].append((a, detail or reason))
        # Links only ever join finished reports, but a report may have been purged since.

    def eligible(self, node: int, k: int) -> bool:
        return all(not self.claimed(node, j) for j in range(k))

    def claimed(self, node: int, k: int) -> bool:
        if not self.eligible(node, k):
            return False
        return len(self.component(node, k)) >= self.rules.rules[k].min_reports

    def component(self, start: int, k: int) -> frozenset[int]:
        """Reports reachable from ``start`` over rule-k links, among reports eligible for rule k."""
        if (k, start) in self.comp:
            return self.comp[(k, start)]
        seen = {start}
        frontier = [start]
        while frontier:
            self._fetch(frontier)
            nxt: set[int] = set()
            for n in frontier:
                for m, _ in self.adj[n][k]:
                    if m not in seen:
                        nxt.add(m)
            if k > 0:
                self._fetch(nxt)
                nxt = {m for m in nxt if self.eligible(m, k)}
            seen |= nxt
            frontier = sorted(nxt)
        comp = frozenset(seen)
        for n in comp:
            self.comp[(k, n)] = comp
        return comp

    def is_batched(self, node: int) -> bool:
        if node not in self.batched:
            self.batched[node] = bool(self.s.execute(select(Report.batched).where(Report.id == node)).scalar())
        return self.batched[node]

    def reason(self, node: int, k: int, members: frozenset[int]) -> MemberReason:
        links = sorted((m, d) for m, d in self.adj.get(node, {}).get(k, []) if m in members)
        rule = self.rules.rules[k]
        if not links:
            return MemberReason.described(rule.name, rule.name)
        m, d = links[0]
        return MemberReason.link(rule.name, d, m)


def plan_for(session: Session, rules: BundlingRules, report_id: int, graph: LinkGraph | None = None) -> Assignment:
    """The incident of one report, computed from its links alone (the stage's path)."""
    g = graph or LinkGraph(session, rules)
    for k, rule in enumerate(rules.rules):
        if g.claimed(report_id, k):
            members = g.component(report_id, k)
            key = key_of(rule.name, min(members))
            return Assignment(rule.name, key, members, {m: g.reason(m, k, members) for m in members})
    name, text = ((rules.batched_name, rules.batched_description) if g.is_batched(report_id)
                  else (rules.single_name, rules.single_description))
    return Assignment(name, key_of(name, report_id), frozenset({report_id}),
                      {report_id: MemberReason.described(name, text)})


def apply_assignment(session: Session, a: Assignment, now: datetime, done: set[int]) -> list[int]:
    """Make stored rows agree with one assignment; returns reports that must be re-planned."""
    members = sorted(a.members)
    inc = session.execute(select(Incident).where(Incident.key == a.key)).scalar_one_or_none()
    if inc is None:
        inc = Incident(rule=a.rule, key=a.key, lowest_report_id=a.lowest, created_at=now, updated_at=now)
        session.add(inc)
        session.flush()
    current: dict[int, tuple[int, MemberReason]] = {}
    for i in range(0, len(members), CHUNK):
        for rid, iid, text, rule, via, detail in session.execute(
            select(IncidentReport.report_id, IncidentReport.incident_id, IncidentReport.reason, IncidentReport.rule,
                   IncidentReport.via_report_id, IncidentReport.link_detail)
            .where(IncidentReport.report_id.in_(members[i:i + CHUNK]))
        ):
            current[int(rid)] = (int(iid), MemberReason(rule, via, detail, text or ""))
    touched: set[int] = set()
    changed = False
    for m in members:
        want = a.reasons.get(m) or MemberReason.described(a.rule, a.rule)
        cur = current.get(m)
        if cur is not None and cur[0] == inc.id:
            if cur[1] != want:
                session.execute(update(IncidentReport).where(IncidentReport.report_id == m).values(**want.values()))
            continue
        session.execute(delete(IncidentReport).where(IncidentReport.report_id == m))
        if cur is not None:
            touched.add(cur[0])
        session.add(IncidentReport(incident_id=inc.id, report_id=m, **want.values()))
        changed = True
    # Members of this incident that no longer belong to the group.
    stale = [int(r) for r in session.execute(
        select(IncidentReport.report_id).where(IncidentReport.incident_id == inc.id)).scalars()
        if int(r) not in a.members]
    if stale:
        for i in range(0, len(stale), CHUNK):
            session.execute(delete(IncidentReport).where(IncidentReport.incident_id == inc.id,
                                                         IncidentReport.report_id.in_(stale[i:i + CHUNK])))
        changed = True
    if changed:
        inc.updated_at = now
    session.flush()
    requeue = list(stale)
    for iid in sorted(touched):
        rest = [int(r) for r in session.execute(
            select(IncidentReport.report_id).where(IncidentReport.incident_id == iid)).scalars()]
        if not rest:
            session.execute(delete(Incident).where(Incident.id == iid))
        else:
            requeue.extend(r for r in rest if r not in done)
    return requeue


def rebundle(session: Session, report_ids: Iterable[int], rules: BundlingRules | None = None,
             now: datetime | None = None) -> int:
    """Bring the incidents of these reports (and of every report their groups touch) up to date.

    Returns how many reports were re-planned.
    """
    rules = rules or load_bundling()
    now = now or datetime.now(UTC)
    forget_link_changes(session)  # incidents change under what other reports' links runs recorded
    graph = LinkGraph(session, rules)
    queue = sorted(set(report_ids), reverse=True)
    done: set[int] = set()
    while queue:
        rid = queue.pop()
        if rid in done:
            continue
        if session.execute(select(Report.state).where(Report.id == rid)).scalar() != "finished":
            done.add(rid)
            session.execute(delete(IncidentReport).where(IncidentReport.report_id == rid))
            continue
        a = plan_for(session, rules, rid, graph)
        done |= a.members
        queue.extend(sorted(set(apply_assignment(session, a, now, done)) - done, reverse=True))
    return len(done)
