"""Stage ``bundles``: put each report into its incident (``tipline.pipeline.bundling``).

The stored ``Incident``/``IncidentReport`` rows are made to agree with the rules for every
report whose group the report touches, so re-running is idempotent and the result does not
depend on the order in which reports were processed. When the links stage recorded that the
report's links only grew, its incident is updated from them alone (``bundling.incremental``);
otherwise its group is re-planned by a search over its links (``bundling.search``). The stage
also records how many incidents each report stands for (``ReportIncidentCount``): NCMEC
counts both reports and incidents from 2024.

``bundles_group`` is the set-based form over a group of reports (``bundling.bulk``): the same
rows, with a bounded number of statements per group; ``rebuild_bundles`` recomputes every
incident of the store in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from tipline.pipeline.bundling.bulk import Written, bundle_group, rebuild_all
from tipline.pipeline.bundling.delta import DeltaStats, bundle_by_parts
from tipline.pipeline.bundling.incremental import add_report, recompute_reason
from tipline.pipeline.bundling.rules import CHUNK, BundlingRules, incidents_in_report, load_bundling
from tipline.pipeline.bundling.search import rebundle
from tipline.pipeline.core import Outcome, StageContext, cross_report_lock, get_stage, report_documents, stage
from tipline.pipeline.linkchanges import drop_links_delta, forget_link_changes, take_link_change, take_links_delta
from tipline.store.tables import Base, PipelineRun, Report, ReportIncidentCount


def _write_counts(session: Session, rules: BundlingRules, report_ids: Iterable[int], *, group: bool = False) -> None:
    """Record how many incidents each report stands for, writing only counts that differ
    (the per-report stage replaces its one row; here the rows of a group or a store at once).

    ``group``: the reports are a group's, whose documents its other stages decoded already
    (``report_documents``); a whole-store rebuild reads them chunk by chunk instead, so that
    it never holds every document at once.
    """
    want: dict[int, tuple[int, str]] = {}
    have: dict[int, tuple[int, str]] = {}
    ids = sorted(set(report_ids))
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        if group:
            docs = report_documents(session, chunk)
            for rid, batched in session.execute(select(Report.id, Report.batched).where(Report.id.in_(chunk))):
                doc = docs.get(int(rid))
                n, basis = incidents_in_report(doc.document if doc is not None else None, bool(batched), rules)
                want[int(rid)] = (n, basis[:60])
        else:
            for rid, document, batched in session.execute(
                    select(Report.id, Report.document, Report.batched).where(Report.id.in_(chunk))):
                n, basis = incidents_in_report(document, bool(batched), rules)
                want[int(rid)] = (n, basis[:60])
        have.update((int(r), (int(n), str(b))) for r, n, b in session.execute(
            select(ReportIncidentCount.report_id, ReportIncidentCount.incidents, ReportIncidentCount.basis)
            .where(ReportIncidentCount.report_id.in_(chunk))))
    stale = sorted(r for r in have if r not in want)  # the report is gone: so is its count
    for i in range(0, len(stale), CHUNK):
        session.execute(delete(ReportIncidentCount).where(ReportIncidentCount.report_id.in_(stale[i:i + CHUNK])))
    changed = [{"b_report": r, "incidents": n, "basis": b} for r, (n, b) in want.items()
               if r in have and have[r] != (n, b)]
    if changed:
        t = Base.metadata.tables["report_incident_counts"]  # Core: an executemany keyed UPDATE
        session.execute(update(t).where(t.c.report_id == bindparam("b_report")), changed)
    added = [{"report_id": r, "incidents": n, "basis": b} for r, (n, b) in want.items() if r not in have]
    if added:
        session.execute(insert(ReportIncidentCount), added)


#: Whether ``bundles_group`` places what it can from the links stage's hand-over
#: (``bundling.delta``) before re-planning the rest in full. The full re-plan re-reads every
#: component a group touches (a viral item's whole incident, on every group that adds one
#: report to it), so without the delta the stage's cost grows with the store; the parts the
#: delta cannot place exactly (a split, a removed link) are set aside and re-planned in full.
USE_DELTA = True


def bundles_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The stage over a group of reports at once: the incidents of all of them (and of every
    report their groups touch) brought up to date from the links stage's hand-over where that
    is exact, else recomputed from the stored links by union-find in memory; only changed rows
    written; the same rows as the stage run on each report in turn."""
    rules = ctx.service("bundling_rules", load_bundling)
    cross_report_lock(session)  # as the per-report stage: one bundling transaction at a time
    _write_counts(session, rules, report_ids, group=True)
    # The links stage of this transaction handed over what it changed: the incidents of most
    # of the group follow from that alone; the parts it cannot place exactly are re-planned.
    delta = take_links_delta(session)
    full: set[int] | list[int] = report_ids
    if delta is not None and USE_DELTA:
        full = bundle_by_parts(session, rules, report_ids, delta, stats=ctx.service("bundles-delta", DeltaStats))
    if full:
        bundle_group(session, rules, full)
    else:
        forget_link_changes(session)  # incidents changed under what the links stage recorded
    # DONE, not RECOMPUTED: the group form never tries recorded link changes (the runner's
    # summary counts RECOMPUTED as the per-report path's fallback).
    return {rid: Outcome.DONE for rid in report_ids}


def rebuild_bundles(session: Session, rules: BundlingRules | None = None) -> Written:
    """Every incident of the store recomputed from all stored links in one pass, every finished
    report's incident count rewritten where it differs, and the ledger told the stage ran for
    each (``tipline pipeline rerun --stage bundles --all``)."""
    rules = rules or load_bundling()
    cross_report_lock(session)
    drop_links_delta(session)
    _, written = rebuild_all(session, rules)
    finished = sorted(int(r) for r in session.execute(select(Report.id).where(Report.state == "finished")).scalars())
    _write_counts(session, rules, finished)
    _record_runs(session, finished)
    return written


def _record_runs(session: Session, report_ids: list[int]) -> None:
    """The ledger rows ``core.record_run`` writes one by one, for many reports in a few statements."""
    st = get_stage("bundles")
    now = datetime.now(UTC)
    for i in range(0, len(report_ids), CHUNK):
        session.execute(delete(PipelineRun).where(PipelineRun.stage == st.name,
                                                  PipelineRun.report_id.in_(report_ids[i:i + CHUNK])))
    rows: list[dict[str, Any]] = [{"report_id": r, "stage": st.name, "done_at": now, "version": st.version,
                                   "error": None} for r in report_ids]
    if rows:
        session.execute(insert(PipelineRun), rows)


@stage("bundles", version="1", after=("links",), group=bundles_group, reads_others=True)
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
    drop_links_delta(session)  # incidents change here: a group's hand-over no longer describes them
    change = take_link_change(session, report_id)
    if not add_report(session, rules, report_id, datetime.now(UTC), change):
        rebundle(session, [report_id], rules)
        return Outcome.RECOMPUTED
    if change is not None and change.redetailed:
        for node in sorted({report_id, *change.reworded_reports}):
            recompute_reason(session, rules, node)
    return Outcome.UPDATED
