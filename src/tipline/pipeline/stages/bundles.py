"""Stage ``bundles``: put each report into its incident (``tipline.pipeline.bundling``).

The stored ``Incident``/``IncidentReport`` rows are made to agree with the rules for every
report whose group the report touches, so re-running is idempotent and the result does not
depend on the order in which reports were processed. When the links stage recorded that the
report's links only grew, its incident is updated from them alone (``bundling.incremental``);
otherwise its group is re-planned by a search over its links (``bundling.search``). The stage
also records how many incidents each report stands for (``ReportIncidentCount``): NCMEC
counts both reports and incidents from 2024.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.incremental import add_report, recompute_reason
from tipline.pipeline.bundling.rules import incidents_in_report, load_bundling
from tipline.pipeline.bundling.search import rebundle
from tipline.pipeline.core import Outcome, StageContext, cross_report_lock, stage
from tipline.pipeline.linkchanges import take_link_change
from tipline.store.tables import Report
from tipline.store.tables_routing import ReportIncidentCount


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
            recompute_reason(session, rules, node)
    return Outcome.UPDATED
