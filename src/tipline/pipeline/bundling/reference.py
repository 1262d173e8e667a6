"""The reference plan: every finished report's incident at once, by union-find over all links.

Used by ``tipline bundles preview`` and by the tests that check the stage's paths agree with it;
also the two counts statistics report (reports, and incidents adjusted for bundling)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.rules import BundlingRules, key_of
from tipline.store.tables import Incident, IncidentReport, Report, ReportIncidentCount, ReportLink


class UnionFind:
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
        uf = UnionFind()
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
