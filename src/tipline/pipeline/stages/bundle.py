"""Stage ``bundles``: group reports into incidents by rules kept as data (``data/bundling.toml``).

An incident is a connected group of reports under one rule (see the TOML file and
docs/routing.md). Two implementations compute the same partition:

- ``plan_all`` — the reference: loads every link and runs union-find rule by rule. Used by
  ``tipline bundles preview`` and by the tests.
- ``plan_for`` — what the stage runs: a breadth-first search from one report over its links,
  with batched queries, touching only the report's own group.

The stage then makes the stored ``Incident``/``IncidentReport`` rows agree with the plan for
every report whose group it touched (members moved in, stale members moved out and
re-planned), so re-running is idempotent and the result does not depend on the order in
which reports were processed. It also records how many incidents each report stands for
(``ReportIncidentCount``): NCMEC counts both reports and incidents from 2024.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import delete, func, intersect, or_, select, union, union_all, update
from sqlalchemy.orm import Session

from tipline.pipeline.core import Outcome, StageContext, cross_report_lock, stage
from tipline.pipeline.identifiers import DATA_DIR
from tipline.pipeline.linkchanges import LinkChange, forget_link_changes, take_link_change
from tipline.store.tables import Incident, IncidentReport, Report, ReportLink
from tipline.store.tables_routing import ReportIncidentCount

log = logging.getLogger("tipline.pipeline.bundles")

RULES_FILE = DATA_DIR / "bundling.toml"
_CHUNK = 2000


@dataclass(frozen=True)
class GraphRule:
    name: str
    description: str
    reasons: frozenset[str]
    min_weight: float
    min_reports: int


@dataclass(frozen=True)
class BundlingRules:
    version: str
    rules: tuple[GraphRule, ...]
    batched_name: str
    batched_description: str
    single_name: str
    single_description: str
    batched_count: str


def parse_bundling(data: dict[str, Any]) -> BundlingRules:
    """Validate and build the bundling rules; a clear ValueError for a malformed file."""
    rules: list[GraphRule] = []
    names: set[str] = set()
    for i, r in enumerate(data.get("rule", [])):
        name = str(r.get("name", "")).strip()
        if not name or ":" in name or len(name) > 40:
            raise ValueError(f"rule {i + 1}: a name of 1-40 characters without ':' is required")
        if name in names:
            raise ValueError(f"rule {name!r} defined twice")
        names.add(name)
        reasons = r.get("links")
        if not reasons or not isinstance(reasons, list):
            raise ValueError(f"rule {name!r}: 'links' must list link reasons, e.g. [\"account\"]")
        min_reports = int(r.get("min_reports", 2))
        if min_reports < 2:
            raise ValueError(f"rule {name!r}: min_reports must be at least 2")
        rules.append(GraphRule(name, str(r.get("description", name)), frozenset(map(str, reasons)),
                               float(r.get("min_weight", 0.0)), min_reports))
    batched = data.get("batched", {})
    single = data.get("single", {})
    b_name, s_name = str(batched.get("name", "batched")), str(single.get("name", "single"))
    if len({*names, b_name, s_name}) != len(names) + 2:
        raise ValueError("rule names, batched.name and single.name must all differ")
    count = str(data.get("counts", {}).get("batched", "reported_users"))
    if count not in ("reported_users", "one"):
        raise ValueError("counts.batched must be 'reported_users' or 'one'")
    return BundlingRules(str(data.get("version", "1")), tuple(rules), b_name,
                         str(batched.get("description", b_name)), s_name,
                         str(single.get("description", s_name)), count)


@lru_cache(maxsize=4)
def load_bundling(path: str | None = None) -> BundlingRules:
    """The bundling rules from ``path`` or the bundled ``bundling.toml``."""
    with open(path or RULES_FILE, "rb") as fh:
        return parse_bundling(tomllib.load(fh))


@dataclass(frozen=True)
class MemberReason:
    """Why a report is in its incident: the rule and the link to the member it names, as facts;
    ``text`` is made from them for people (and cut to fit), never read back."""

    rule: str
    via: int | None
    detail: str | None
    text: str

    @classmethod
    def link(cls, rule: str, detail: str, via: int) -> MemberReason:
        return cls(rule, via, detail, f"{rule}: {detail} (report {via})"[:255])

    @classmethod
    def described(cls, rule: str, text: str) -> MemberReason:
        """A member no link explains: batched, single, or (rarely) a rule's member without a link."""
        return cls(rule, None, None, text[:255])

    def values(self) -> dict[str, Any]:
        """The ``IncidentReport`` columns that hold it."""
        return {"reason": self.text, "rule": self.rule, "via_report_id": self.via, "link_detail": self.detail}


def key_of(rule: str, lowest: int) -> str:
    """An incident's stable key: its rule and its lowest-numbered member."""
    return f"{rule}:{lowest}"


@dataclass(frozen=True)
class Assignment:
    """The incident a report belongs to under the rules."""

    rule: str
    key: str
    members: frozenset[int]
    reasons: dict[int, MemberReason] = field(default_factory=dict, compare=False, hash=False)

    @property
    def lowest(self) -> int:
        return min(self.members)


# --- per-report planner (the stage's path) --------------------------------------------------


class _Graph:
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
        for i in range(0, len(todo), _CHUNK):
            chunk = todo[i:i + _CHUNK]
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


def plan_for(session: Session, rules: BundlingRules, report_id: int, graph: _Graph | None = None) -> Assignment:
    """The incident of one report, computed from its links alone (the stage's path)."""
    g = graph or _Graph(session, rules)
    for k, rule in enumerate(rules.rules):
        if g.claimed(report_id, k):
            members = g.component(report_id, k)
            key = key_of(rule.name, min(members))
            return Assignment(rule.name, key, members, {m: g.reason(m, k, members) for m in members})
    name, text = ((rules.batched_name, rules.batched_description) if g.is_batched(report_id)
                  else (rules.single_name, rules.single_description))
    return Assignment(name, key_of(name, report_id), frozenset({report_id}),
                      {report_id: MemberReason.described(name, text)})


# --- reference: the whole partition at once ---------------------------------------------------


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def plan_all(session: Session, rules: BundlingRules) -> dict[int, tuple[str, str]]:
    """Reference: {report id: (rule, incident key)} for every finished report, by union-find."""
    reports = {int(r): bool(b) for r, b in session.execute(
        select(Report.id, Report.batched).where(Report.state == "finished"))}
    links = session.execute(select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason,
                                   ReportLink.weight)).all()
    out: dict[int, tuple[str, str]] = {}
    for rule in rules.rules:
        uf = _UnionFind()
        for a, b, reason, weight in links:
            if (reason in rule.reasons and weight >= rule.min_weight and a in reports and b in reports
                    and a not in out and b not in out):
                uf.union(a, b)
        groups: dict[int, list[int]] = {}
        for n in list(uf.parent):
            groups.setdefault(uf.find(n), []).append(n)
        for root, members in groups.items():
            if len(members) >= rule.min_reports:
                for m in members:
                    out[m] = (rule.name, key_of(rule.name, root))
    for rid, batched in reports.items():
        if rid not in out:
            name = rules.batched_name if batched else rules.single_name
            out[rid] = (name, key_of(name, rid))
    return out


def current_assignments(session: Session) -> dict[int, tuple[str, str]]:
    """{report id: (rule, key)} as stored now."""
    rows = session.execute(select(IncidentReport.report_id, Incident.rule, Incident.key)
                           .join(Incident, Incident.id == IncidentReport.incident_id)).all()
    return {int(r): (rule, key) for r, rule, key in rows}


# --- incident counts (reports vs incidents) ----------------------------------------------------


def incidents_in_report(document: dict[str, Any] | None, batched: bool, rules: BundlingRules) -> tuple[int, str]:
    """How many incidents a report stands for, and why (NCMEC's "adjusted for bundling" count)."""
    if not batched:
        return 1, "single report"
    if rules.batched_count == "one":
        return 1, "batched report counted once (counts.batched = one)"
    users = len((document or {}).get("personOrUserReported") or [])
    return max(1, users), f"batched: {users} reported users listed"


def counts(session: Session) -> dict[str, int | None]:
    """Reports, incidents adjusted for bundling, and bundles (Incident rows), for statistics.

    ``incidents`` is None (unknown, never zero) when some finished report has no count yet.
    """
    reports = int(session.execute(select(func.count()).select_from(Report)
                                  .where(Report.state == "finished")).scalar_one())
    counted, total = session.execute(
        select(func.count(), func.coalesce(func.sum(ReportIncidentCount.incidents), 0))
        .join(Report, Report.id == ReportIncidentCount.report_id).where(Report.state == "finished")
    ).one()
    bundles = int(session.execute(select(func.count()).select_from(Incident)).scalar_one())
    return {"reports": reports, "incidents": int(total) if counted == reports else None,
            "reports_counted": int(counted), "bundles": bundles}


# --- the stage -----------------------------------------------------------------------------------


def _apply(session: Session, a: Assignment, now: datetime, done: set[int]) -> list[int]:
    """Make stored rows agree with one assignment; returns reports that must be re-planned."""
    members = sorted(a.members)
    inc = session.execute(select(Incident).where(Incident.key == a.key)).scalar_one_or_none()
    if inc is None:
        inc = Incident(rule=a.rule, key=a.key, lowest_report_id=a.lowest, created_at=now, updated_at=now)
        session.add(inc)
        session.flush()
    current: dict[int, tuple[int, MemberReason]] = {}
    for i in range(0, len(members), _CHUNK):
        for rid, iid, text, rule, via, detail in session.execute(
            select(IncidentReport.report_id, IncidentReport.incident_id, IncidentReport.reason, IncidentReport.rule,
                   IncidentReport.via_report_id, IncidentReport.link_detail)
            .where(IncidentReport.report_id.in_(members[i:i + _CHUNK]))
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
        for i in range(0, len(stale), _CHUNK):
            session.execute(delete(IncidentReport).where(IncidentReport.incident_id == inc.id,
                                                         IncidentReport.report_id.in_(stale[i:i + _CHUNK])))
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
    graph = _Graph(session, rules)
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
        queue.extend(sorted(set(_apply(session, a, now, done)) - done, reverse=True))
    return len(done)


# --- the incremental path ----------------------------------------------------------------------

class Member(NamedTuple):
    """A report's stored membership, as the incremental path reads it."""

    incident_id: int
    rule: str  # the incident's rule
    key: str
    via: int | None  # the member its reason names
    detail: str | None  # the detail of that link


Where = dict[int, Member]  # report -> its membership


def _fallback(why: str) -> bool:
    """Leave the report to the full re-plan (``rebundle``), saying why in the debug log."""
    log.debug("bundles: full re-plan: %s", why)
    return False


def _reason_text(rule: GraphRule, detail: str, other: int) -> MemberReason:
    return MemberReason.link(rule.name, detail, other)


def _adjacency(rules: BundlingRules, report_id: int,
               links: Iterable[tuple[int, str, float, str | None]]) -> list[dict[int, list[str]]]:
    """Per rule index: {neighbour: [link details]} for links (other, reason, weight, detail) of a report."""
    adj: list[dict[int, list[str]]] = [{} for _ in rules.rules]
    for other, reason, weight, detail in links:
        if other == report_id:
            continue
        for k, rule in enumerate(rules.rules):
            if reason in rule.reasons and weight >= rule.min_weight:
                adj[k].setdefault(other, []).append(detail or reason)
    return adj


def _where(session: Session, ids: Iterable[int]) -> Where | None:
    """The incident of each report that has one; None when the stored rows are not a partition."""
    todo = sorted(set(ids))
    out: Where = {}
    for i in range(0, len(todo), _CHUNK):
        for rid, iid, rule_name, key, via, detail in session.execute(
            select(IncidentReport.report_id, Incident.id, Incident.rule, Incident.key, IncidentReport.via_report_id,
                   IncidentReport.link_detail)
            .join(Incident, Incident.id == IncidentReport.incident_id)
            .where(IncidentReport.report_id.in_(todo[i:i + _CHUNK]))
        ):
            if int(rid) in out:
                return None
            out[int(rid)] = Member(int(iid), str(rule_name), str(key), None if via is None else int(via), detail)
    return out


def _lone(session: Session, rules: BundlingRules, node: int, report_id: int, k: int) -> bool:
    """True when an unbundled report stood alone at rule ``k`` apart from ``report_id``.

    That is: each of its other links that rule ``j <= k`` counts leads to a report already in
    an incident of a rule before ``j`` (claimed there, so not free to join it). Such a report
    is left unbundled when its neighbour is bundled under an earlier rule.
    """
    links = session.execute(
        select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight)
        .where(or_(ReportLink.report_a == node, ReportLink.report_b == node),
               ReportLink.report_a != report_id, ReportLink.report_b != report_id)).all()
    counted = [(int(b) if int(a) == node else int(a), j) for a, b, reason, weight in links
               for j, rule in enumerate(rules.rules[:k + 1]) if reason in rule.reasons and weight >= rule.min_weight]
    if not counted:
        return True
    where = _where(session, [x for x, _ in counted])
    if where is None:
        return False
    rank = {rule.name: i for i, rule in enumerate(rules.rules)}
    return all(x in where and rank.get(where[x].rule, len(rules.rules)) < j for x, j in counted)


@dataclass
class _Leave:
    """A planned departure of one report from its incident (see ``_plan_leave``)."""

    report_id: int
    incident_id: int
    #: The incident's new lowest member, when the old one left (its key changes with it).
    new_lowest: int | None
    reasons: dict[int, MemberReason]
    #: Pieces that no longer connect to the lowest member: (rule, members) of a new incident.
    moves: list[tuple[str, list[int]]] = field(default_factory=list)
    #: The incident itself goes (no piece of two or more reports kept it).
    drop: bool = False


def _of_rule(rule: GraphRule) -> tuple[Any, Any]:
    """WHERE terms for the links a rule groups by (its reasons, at its minimum weight)."""
    return ReportLink.reason.in_(sorted(rule.reasons)), ReportLink.weight >= rule.min_weight


def _rule_links(session: Session, rule: GraphRule, nodes: list[int]) -> list[tuple[int, int, str]]:
    """Links of ``rule`` touching ``nodes``: (a, b, detail or reason)."""
    out: list[tuple[int, int, str]] = []
    for i in range(0, len(nodes), _CHUNK):
        chunk = nodes[i:i + _CHUNK]
        out.extend((int(a), int(b), str(d or r)) for a, b, r, d in session.execute(
            select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.detail)
            .where(or_(ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(chunk)), *_of_rule(rule))))
    return out


def _no_leave(why: str) -> _Leave | None:
    log.debug("bundles: cannot plan a leave: %s", why)
    return None


def _plan_leave(session: Session, rules: BundlingRules, rule: GraphRule, x: int, incident_id: int) -> _Leave | None:
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
    if remainder < rule.min_reports or len(in_small) > _CHUNK:
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
    orphan_links = _rule_links(session, rule, orphans)
    ends = sorted({n for a, b, _ in orphan_links for n in (a, b)} - {x})
    members = {int(r) for i in range(0, len(ends), _CHUNK) for r in session.execute(
        select(IncidentReport.report_id).where(in_incident, IncidentReport.report_id.in_(ends[i:i + _CHUNK]))
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
    reasons.update({r: _reason_text(rule, d, o) for r, (o, d) in best.items()})
    return _Leave(x, incident_id, new_lowest, reasons, moves, drop)


#: Reports expanded per query by one search of ``_split_search``.
_STEP = 64
#: Up to this many groups of a leaver's neighbours are checked pairwise for a common neighbour.
_PAIR_CHECKS = 8


def _common_neighbour(session: Session, rule: GraphRule, incident_id: int, x: int,
                      one: set[int], other: set[int]) -> bool:
    """Whether a member of the incident other than ``x`` is linked under ``rule`` to both groups."""
    if len(one) > _CHUNK or len(other) > _CHUNK:
        return False  # the search decides instead

    def around(nodes: set[int]) -> Any:
        cond = _of_rule(rule)
        return union(select(ReportLink.report_b.label("n")).where(ReportLink.report_a.in_(sorted(nodes)), *cond),
                     select(ReportLink.report_a.label("n")).where(ReportLink.report_b.in_(sorted(nodes)), *cond))

    both = intersect(around(one).subquery().select(), around(other).subquery().select()).subquery()
    return session.execute(
        select(both.c.n).join(IncidentReport, IncidentReport.report_id == both.c.n)
        .where(IncidentReport.incident_id == incident_id, both.c.n != x).limit(1)).first() is not None


def _member_links(session: Session, rule: GraphRule, incident_id: int, nodes: list[int]) -> set[tuple[int, int]]:
    """(node, member) for each member of incident ``incident_id`` linked to one of ``nodes`` under ``rule``."""
    out: set[tuple[int, int]] = set()
    cond = _of_rule(rule)
    for i in range(0, len(nodes), _CHUNK):
        chunk = nodes[i:i + _CHUNK]
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
    uf = _UnionFind()
    for t in targets:
        uf.find(t)
    ids = sorted(targets)
    cond = _of_rule(rule)
    if 1 < len(ids) <= _CHUNK:
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
    elif len(ids) > _CHUNK:
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
    if len(groups) == 1:
        return []
    seen = [set(g) for g in groups]
    frontier = [sorted(g) for g in groups]
    searches = _UnionFind()  # searches that met: the root holds their seen and frontier
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
    cond = _of_rule(rule)
    for i in range(0, len(nodes), _CHUNK):
        chunk = nodes[i:i + _CHUNK]
        out.extend((int(a), int(b)) for a, b in session.execute(
            select(ReportLink.report_a, ReportLink.report_b).where(ReportLink.report_a.in_(chunk), *cond)))
    return out


def _apply_leave(session: Session, leave: _Leave, now: datetime) -> None:
    session.execute(delete(IncidentReport).where(IncidentReport.report_id == leave.report_id))
    values: dict[str, Any] = {"updated_at": now}
    if leave.new_lowest is not None:
        incident = session.get(Incident, leave.incident_id)
        assert incident is not None  # _plan_leave read it in this transaction
        values |= {"key": key_of(incident.rule, leave.new_lowest), "lowest_report_id": leave.new_lowest}
    if not leave.drop:
        session.execute(update(Incident).where(Incident.id == leave.incident_id).values(**values))
    for rule_name, ids in leave.moves:
        inc = Incident(rule=rule_name, key=key_of(rule_name, min(ids)), lowest_report_id=min(ids),
                       created_at=now, updated_at=now)
        session.add(inc)
        session.flush()
        for i in range(0, len(ids), _CHUNK):
            session.execute(update(IncidentReport).where(IncidentReport.report_id.in_(ids[i:i + _CHUNK]))
                            .values(incident_id=inc.id, rule=rule_name))
    for r, why in leave.reasons.items():
        session.execute(update(IncidentReport).where(IncidentReport.report_id == r).values(**why.values()))
    if leave.drop:
        session.execute(delete(Incident).where(Incident.id == leave.incident_id))


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
    mine = _where(session, [report_id])
    if mine is None:
        return _fallback("not a partition")
    own = mine.get(report_id)
    alone_now = own is None or session.execute(select(IncidentReport.report_id).where(
        IncidentReport.incident_id == own.incident_id, IncidentReport.report_id != report_id).limit(1)).first() is None
    if own is not None and change is None:
        return _fallback("links may have changed")
    if change is not None and change.removed:
        return _fallback("links removed")
    if own is not None and not alone_now:
        assert change is not None
        return _extend(session, rules, report_id, own, change, now)
    links = [(int(b) if int(a) == report_id else int(a), str(reason), float(weight), detail)
             for a, b, reason, weight, detail in session.execute(
                 select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                        ReportLink.detail)
                 .where(or_(ReportLink.report_a == report_id, ReportLink.report_b == report_id)))]
    adj = _adjacency(rules, report_id, links)
    where = _where(session, [n for per in adj for n in per])
    if where is None:
        return _fallback("not a partition")
    rank = {rule.name: k for k, rule in enumerate(rules.rules)}
    own_incident = own.incident_id if own is not None else None
    for k, rule in enumerate(rules.rules):
        # Neighbours still free at rule k: not claimed by an earlier rule.
        free = [n for n in sorted(adj[k]) if n not in where or rank.get(where[n].rule, len(rules.rules)) >= k]
        if not free:
            continue
        if rule.min_reports != 2:
            return _fallback("min_reports")
        groups = sorted({where[n].incident_id for n in free if n in where and where[n].rule == rule.name})
        alone = [n for n in free if n not in where or where[n].rule != rule.name]
        if any(n not in where and not _lone(session, rules, n, report_id, k) for n in alone):
            return _fallback("neighbour not bundled")
        leaves: list[_Leave] = []
        for n in alone:
            if n in where and where[n].rule in rank:  # in an incident of a later rule: it moves here
                plan = _plan_leave(session, rules, rules.rules[rank[where[n].rule]], n, where[n].incident_id)
                if plan is None:
                    return _fallback("leaves later rule")
                leaves.append(plan)
        if len({plan.incident_id for plan in leaves}) != len(leaves):
            return _fallback("leaves later rule")  # two leave one incident: planned apart, they could split it
        for plan in leaves:
            _apply_leave(session, plan, now)
            del where[plan.report_id]  # now unbundled; it joins this report's incident below
        return _grow(session, rule, report_id, own_incident, groups, alone, adj[k], where, now)
    # No graph rule claims the report: it stands alone (batched or single).
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
        return True
    if own_incident is not None:
        session.execute(delete(IncidentReport).where(IncidentReport.report_id == report_id))
        session.execute(delete(Incident).where(Incident.id == own_incident))
    session.add(IncidentReport(incident_id=inc.id, report_id=report_id, **why.values()))
    inc.updated_at = now
    session.flush()
    return True


def _reason_parts(member: Member) -> tuple[int, str] | None:
    """(report named, link detail) of a stored membership; None when it names no one (a store
    migrated from reasons kept as text that could not be read: the full re-plan writes them)."""
    if member.via is None or member.detail is None:
        return None
    return member.via, member.detail


def _extend(session: Session, rules: BundlingRules, report_id: int, own: Member,
            change: LinkChange, now: datetime) -> bool:
    """A report already in an incident with others gained links: add what they bring, if simple.

    Links to members of its own incident change at most reasons; links to reports that stood
    alone bring them in (as in ``_grow``). Anything else goes to the full re-plan.
    """
    rank = {rule.name: k for k, rule in enumerate(rules.rules)}
    j = rank.get(own.rule)
    if j is None:
        return _fallback("in a group of no rule")
    adj = _adjacency(rules, report_id, change.added)
    where = _where(session, [n for per in adj[:j + 1] for n in per])
    if where is None:
        return _fallback("not a partition")
    for k in range(j):
        if any(n not in where or rank.get(where[n].rule, len(rules.rules)) >= k for n in adj[k]):
            # Claimed by an earlier rule now: it leaves its incident and is bundled as if new.
            plan = _plan_leave(session, rules, rules.rules[j], report_id, own.incident_id)
            if plan is None:
                return _fallback("claimed by an earlier rule")
            _apply_leave(session, plan, now)
            return add_report(session, rules, report_id, now, change)
    rule = rules.rules[j]
    free = {n: d for n, d in adj[j].items() if n not in where or rank.get(where[n].rule, len(rules.rules)) >= j}
    outside = sorted(n for n in free if not (n in where and where[n].incident_id == own.incident_id))
    # Neighbours in other incidents of this rule: those incidents merge with this one.
    merging = sorted({where[n].incident_id for n in outside if n in where and where[n].rule == rule.name})
    joiners = [n for n in outside if not (n in where and where[n].rule == rule.name)]
    leaves: list[_Leave] = []
    for n in joiners:
        if n in where:
            if where[n].rule in rank:  # in an incident of a later rule: it moves here
                plan = _plan_leave(session, rules, rules.rules[rank[where[n].rule]], n, where[n].incident_id)
                if plan is None:
                    return _fallback("leaves later rule")
                leaves.append(plan)
        elif not _lone(session, rules, n, report_id, j):
            return _fallback("neighbour not bundled")
    if len({p.incident_id for p in leaves}) != len(leaves):
        return _fallback("leaves later rule")
    mine = _reason_parts(own)
    if mine is None:
        return _fallback("reason not recorded")
    updates: dict[int, MemberReason] = {}
    best = min([mine, *((n, min(d)) for n, d in free.items())])
    if best != mine:
        updates[report_id] = _reason_text(rule, best[1], best[0])
    for n, details in free.items():
        if n in joiners:
            continue
        theirs = _reason_parts(where[n])
        if theirs is None:
            return _fallback("reason not recorded")
        cand = min(theirs, (report_id, min(details)))
        if cand != theirs:
            updates[n] = _reason_text(rule, cand[1], cand[0])
    if joiners or merging:
        found = _lows(session, rule, [own.incident_id, *merging])
        if found is None:
            return _fallback("incident of another rule")
        inc = min(found.values(), key=lambda v: v[1])[0]
        lowest = min([*(low for _, low in found.values()), *joiners])
        key = key_of(rule.name, lowest)
        if key != inc.key and session.execute(select(Incident.id).where(Incident.key == key)).scalar() is not None:
            return _fallback("key clash")
        for plan in leaves:
            _apply_leave(session, plan, now)
        others = sorted(set(found) - {inc.id})
        if others:
            _merge_into(session, inc, others)
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
                                       **_reason_text(rule, min(free[n]), report_id).values()))
        inc.updated_at = now
    for n, why in updates.items():
        session.execute(update(IncidentReport).where(IncidentReport.report_id == n).values(**why.values()))
    session.flush()
    return True


def _lows(session: Session, rule: GraphRule, ids: list[int]) -> dict[int, tuple[Incident, int]] | None:
    """{incident id: (incident, its lowest member)} for incidents of ``rule``; None if one is of another rule."""
    out: dict[int, tuple[Incident, int]] = {}
    for iid in ids:
        inc = session.get(Incident, iid)
        if inc is None or inc.rule != rule.name:
            return None
        out[inc.id] = (inc, inc.lowest_report_id)
    return out


def _merge_into(session: Session, keep: Incident, others: list[int]) -> None:
    """Move every member of ``others`` into ``keep`` and remove them. Their members were linked to
    ``keep``'s only through the report being bundled, so their reasons stand."""
    session.execute(update(IncidentReport).where(IncidentReport.incident_id.in_(others)).values(incident_id=keep.id))
    session.execute(delete(Incident).where(Incident.id.in_(others)))


def _grow(session: Session, rule: GraphRule, report_id: int, own_incident: int | None, groups: list[int],
          alone: list[int], adj: dict[int, list[str]], where: Where, now: datetime) -> bool:
    """Add the report and its lone neighbours to its neighbours' incidents of ``rule``, merged into
    the one with the lowest key (or into a new incident when there is none)."""
    found = _lows(session, rule, groups)
    if found is None:
        return _fallback("incident of another rule")
    lows = {iid: low for iid, (_, low) in found.items()}
    inc = min(found.values(), key=lambda v: v[1])[0] if found else None
    low = min([report_id, *alone, *lows.values()])
    key = key_of(rule.name, low)
    clash = session.execute(select(Incident.id).where(Incident.key == key)).scalar()
    if clash is not None and (inc is None or clash != inc.id):
        return _fallback("key clash")
    members_in_group = [n for n in adj if n in where and where[n].incident_id in lows]
    # Members whose reason may now name this report (it has a lower id than the one named). No
    # other reason changes: members of merged incidents were linked to each other only through it.
    renamed: dict[int, MemberReason] = {}
    for n in members_in_group:
        named = where[n].via
        if named is None:
            return _fallback("reason not recorded")
        if report_id < named:
            renamed[n] = _reason_text(rule, min(adj[n]), report_id)
    if inc is None:
        inc = Incident(rule=rule.name, key=key, lowest_report_id=low, created_at=now, updated_at=now)
        session.add(inc)
        session.flush()
    else:
        merged = sorted(set(lows) - {inc.id})
        if merged:
            _merge_into(session, inc, merged)
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
                               **_reason_text(rule, min(adj[first]), first).values()))
    for n in alone:
        # A lone neighbour had no free link of this rule to anyone else: this report is its reason.
        session.add(IncidentReport(incident_id=inc.id, report_id=n,
                                   **_reason_text(rule, min(adj[n]), report_id).values()))
    for n, why in renamed.items():
        session.execute(update(IncidentReport).where(IncidentReport.report_id == n).values(**why.values()))
    inc.updated_at = now
    session.flush()
    return True


@stage("bundles", version="1", after=("links",))
def bundles_stage(ctx: StageContext, session: Session, report_id: int) -> Outcome:
    """Put the report into its incident (offender, viral, batched or single) and record its incident count."""
    rules = ctx.service("bundling_rules", load_bundling)
    row = session.execute(select(Report.document, Report.batched).where(Report.id == report_id)).one_or_none()
    session.execute(delete(ReportIncidentCount).where(ReportIncidentCount.report_id == report_id))
    if row is not None:
        n, basis = incidents_in_report(row.document, bool(row.batched), rules)
        session.add(ReportIncidentCount(report_id=report_id, incidents=n, basis=basis[:60]))
    # Workers bundle one at a time (until their transaction ends): two reports grouped at
    # once from the same snapshot could each miss the other's membership change.
    cross_report_lock(session)
    change = take_link_change(session, report_id)
    if not add_report(session, rules, report_id, datetime.now(UTC), change):
        rebundle(session, [report_id], rules)
        return Outcome.RECOMPUTED
    if change is not None and change.redetailed:
        for node in sorted({report_id, *change.reworded_reports}):
            _recompute_reason(session, rules, node)
    return Outcome.UPDATED


def _recompute_reason(session: Session, rules: BundlingRules, node: int) -> None:
    """Set a member's reason from scratch: its link to the lowest-numbered member of its incident."""
    where = _where(session, [node])
    if not where or node not in where:
        return
    incident_id, rule_name = where[node].incident_id, where[node].rule
    rule = next((r for r in rules.rules if r.name == rule_name), None)
    if rule is None:
        return  # batched or single: the reason is the rule's description, unchanged
    links = _rule_links(session, rule, [node])
    partners = sorted({b if a == node else a for a, b, _ in links} - {node})
    members: set[int] = set()
    for i in range(0, len(partners), _CHUNK):
        members.update(int(r) for r in session.execute(select(IncidentReport.report_id).where(
            IncidentReport.incident_id == incident_id, IncidentReport.report_id.in_(partners[i:i + _CHUNK]))).scalars())
    cands = sorted((b if a == node else a, d) for a, b, d in links if (b if a == node else a) in members)
    why = _reason_text(rule, cands[0][1], cands[0][0]) if cands else MemberReason.described(rule.name, rule.name)
    session.execute(update(IncidentReport).where(IncidentReport.report_id == node).values(**why.values()))
