"""Reads of the stored incidents and links that the incremental path and the leave plan share."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.rules import CHUNK, BundlingRules, GraphRule, MemberReason
from tipline.store.tables import Incident, IncidentReport, ReportLink

log = logging.getLogger("tipline.pipeline.bundles")


class Member(NamedTuple):
    """A report's stored membership, as the incremental path reads it."""

    incident_id: int
    rule: str  # the incident's rule
    key: str
    via: int | None  # the member its reason names
    detail: str | None  # the detail of that link


Where = dict[int, Member]  # report -> its membership


def fallback(why: str) -> bool:
    """Leave the report to the full re-plan (``rebundle``), saying why in the debug log."""
    log.debug("bundles: full re-plan: %s", why)
    return False


def linked_reason(rule: GraphRule, detail: str, other: int) -> MemberReason:
    return MemberReason.link(rule.name, detail, other)


def adjacency(rules: BundlingRules, report_id: int,
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


def memberships(session: Session, ids: Iterable[int]) -> Where | None:
    """The incident of each report that has one; None when the stored rows are not a partition."""
    todo = sorted(set(ids))
    out: Where = {}
    for i in range(0, len(todo), CHUNK):
        for rid, iid, rule_name, key, via, detail in session.execute(
            select(IncidentReport.report_id, Incident.id, Incident.rule, Incident.key, IncidentReport.via_report_id,
                   IncidentReport.link_detail)
            .join(Incident, Incident.id == IncidentReport.incident_id)
            .where(IncidentReport.report_id.in_(todo[i:i + CHUNK]))
        ):
            if int(rid) in out:
                return None
            out[int(rid)] = Member(int(iid), str(rule_name), str(key), None if via is None else int(via), detail)
    return out


def stood_alone(session: Session, rules: BundlingRules, node: int, report_id: int, k: int) -> bool:
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
    where = memberships(session, [x for x, _ in counted])
    if where is None:
        return False
    rank = {rule.name: i for i, rule in enumerate(rules.rules)}
    return all(x in where and rank.get(where[x].rule, len(rules.rules)) < j for x, j in counted)


def of_rule(rule: GraphRule) -> tuple[Any, Any]:
    """WHERE terms for the links a rule groups by (its reasons, at its minimum weight)."""
    return ReportLink.reason.in_(sorted(rule.reasons)), ReportLink.weight >= rule.min_weight


def rule_links(session: Session, rule: GraphRule, nodes: list[int]) -> list[tuple[int, int, str]]:
    """Links of ``rule`` touching ``nodes``: (a, b, detail or reason)."""
    out: list[tuple[int, int, str]] = []
    for i in range(0, len(nodes), CHUNK):
        chunk = nodes[i:i + CHUNK]
        out.extend((int(a), int(b), str(d or r)) for a, b, r, d in session.execute(
            select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.detail)
            .where(or_(ReportLink.report_a.in_(chunk), ReportLink.report_b.in_(chunk)), *of_rule(rule))))
    return out


def named_link(member: Member) -> tuple[int, str] | None:
    """(report named, link detail) of a stored membership; None when it names no one (a store
    migrated from reasons kept as text that could not be read: the full re-plan writes them)."""
    if member.via is None or member.detail is None:
        return None
    return member.via, member.detail


def lowest_members(session: Session, rule: GraphRule, ids: list[int]) -> dict[int, tuple[Incident, int]] | None:
    """{incident id: (incident, its lowest member)} for incidents of ``rule``; None if one is of another rule."""
    out: dict[int, tuple[Incident, int]] = {}
    for iid in ids:
        inc = session.get(Incident, iid)
        if inc is None or inc.rule != rule.name:
            return None
        out[inc.id] = (inc, inc.lowest_report_id)
    return out


def merge_into(session: Session, keep: Incident, others: list[int]) -> None:
    """Move every member of ``others`` into ``keep`` and remove them. Their members were linked to
    ``keep``'s only through the report being bundled, so their reasons stand."""
    session.execute(update(IncidentReport).where(IncidentReport.incident_id.in_(others)).values(incident_id=keep.id))
    session.execute(delete(Incident).where(Incident.id.in_(others)))
