"""The enrichment job queue: one small interface, two implementations.

* ``InProcessQueue`` (the embedded default, SQLite or PostgreSQL): worker threads in this
  process fed by an in-memory queue. The queue itself is *not* the durable record: the
  ``reports`` table (state ``finished``) and the ``pipeline_runs`` ledger are. A reconciler
  (``pending_report_ids``) runs when a worker starts and then periodically, and re-enqueues
  every finished report whose stages have not all completed at their current version. So a
  worker that dies mid-job loses nothing: the next worker to start finds the report again.
* ``ProcrastinateQueue`` (PostgreSQL): jobs are rows in Procrastinate's tables, kept in a
  PostgreSQL schema of their own (``procrastinate``) so Alembic never sees them. A job whose
  worker stopped sending heartbeats (killed, machine lost) is put back to ``todo`` by the
  stalled-job retrier every worker runs. The same ledger reconciler also runs, for reports
  whose enqueue failed (the finish hook never fails a finish).

A job, ``enrich(report_id)``, runs the stages of that report that are not done at their
current version, plus every stage that reads the output of one of those (``plan``).
Stages are idempotent, so a job that runs twice (a retry after a crash, a reconciler racing
a hook) does no harm.

Wire-up: ``install(rt)`` appends the enqueue hook to ``rt.intake.finished_hooks`` and, for
the in-process queue, starts the worker threads; call its ``close()`` on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue as queue_mod
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import make_url

from tipline.pipeline.core import StageContext, StageDef, run_report, run_reports, stages
from tipline.runtime import Runtime
from tipline.store.tables import PipelineRun, Report, ReportLink

log = logging.getLogger("tipline.pipeline.queue")

#: PostgreSQL schema holding Procrastinate's tables, types and functions.
PROCRASTINATE_SCHEMA = "procrastinate"
#: Procrastinate task name and queue of the enrichment job of one report, and of a group.
TASK_NAME = "tipline.enrich"
GROUP_TASK_NAME = "tipline.enrich_group"
TASK_NAMES = (TASK_NAME, GROUP_TASK_NAME)
QUEUE_NAME = "enrich"
#: How often a running worker re-checks the ledger for reports left behind (seconds).
RECONCILE_INTERVAL = 60.0
#: A report whose stage failed is retried by the reconciler after this long, not at once.
RETRY_FAILED_AFTER = timedelta(minutes=10)
#: Reports per group: what the in-process worker takes from its queue at once, what one
#: Procrastinate job carries, what ``tipline pipeline run`` hands a thread (``--group-size``).
#: A group is one transaction and each stage runs once over all of it (``core.run_reports``).
GROUP_SIZE = 200
#: On SQLite intake waits for the write lock while a group runs: the in-process worker sizes
#: its groups so that one transaction takes about this long (``run_reports(max_seconds=...)``).
GROUP_SECONDS = 0.5
#: How long the Procrastinate deferrer waits for more finished reports to fill a group job.
DEFER_LINGER = 0.05


class StageFailed(RuntimeError):
    """A stage of the report failed; the ledger holds the error (raised so queues retry)."""


# --- planning: which stages a report still needs -------------------------------------------


def _ledger(rt: Runtime, report_id: int) -> dict[str, tuple[str, str | None]]:
    with rt.sessions() as s:
        return {
            r.stage: (r.version, r.error)
            for r in s.execute(
                select(PipelineRun.stage, PipelineRun.version, PipelineRun.error).where(
                    PipelineRun.report_id == report_id
                )
            )
        }


def plan(
    ledger: dict[str, tuple[str, str | None]],
    *,
    force: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    downstream: bool = True,
) -> list[str]:
    """Stages to run for one report, in dependency order.

    A stage runs when the ledger has no successful run of it at its current version, or when
    it is in ``force``; with ``downstream`` every stage that reads (transitively) the output
    of a stage that runs, runs too. ``only`` then restricts the result to the stages named.
    """
    forced = set(force or ())
    wanted = set(only) if only is not None else None
    out: list[str] = []
    running: set[str] = set()
    for st in stages():
        entry = ledger.get(st.name)
        done = entry is not None and entry[0] == st.version and entry[1] is None
        reads_rerun = downstream and any(dep in running for dep in st.after)
        if st.name in forced or not done or reads_rerun:
            running.add(st.name)
            if wanted is None or st.name in wanted:
                out.append(st.name)
    return out


def run_pending(ctx: StageContext, report_id: int, *, only: Iterable[str] | None = None) -> list[str]:
    """Run the stages this report still needs (see ``plan``); returns the stages run.

    Raises ``StageFailed`` when one of them failed (its error is in the ledger).
    """
    names = plan(_ledger(ctx.rt, report_id), only=only)
    return _run_checked(ctx, report_id, names)


def rerun(
    ctx: StageContext, report_id: int, *, stage_names: Iterable[str] | None = None, downstream: bool = True
) -> list[str]:
    """Force stages (all when ``stage_names`` is None) to run again for one report."""
    all_done: dict[str, tuple[str, str | None]] = {st.name: (st.version, None) for st in stages()}
    forced = list(all_done) if stage_names is None else list(stage_names)
    # On an all-done ledger, plan() yields exactly the forced stages and (with downstream)
    # every stage that reads them.
    names = plan(all_done, force=forced, downstream=downstream)
    return _run_checked(ctx, report_id, names)


def _run_checked(ctx: StageContext, report_id: int, names: list[str]) -> list[str]:
    if not names:
        return []
    run_report(ctx, report_id, only=names)
    failed = {k: v[1] for k, v in _ledger(ctx.rt, report_id).items() if k in names and v[1] is not None}
    if failed:
        raise StageFailed(f"report {report_id}: " + "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())))
    # What this run made due in linked reports (it arrived out of order) runs now as well.
    left = _follow(ctx, [report_id])
    if left:
        log.warning("linked reports left for the reconciler: %s", left)
    return names


# --- the reconciler's query ---------------------------------------------------------------


def pending_report_ids(
    rt: Runtime,
    *,
    since: datetime | None = None,
    limit: int | None = None,
    retry_failed_after: timedelta | None = None,
    now: datetime | None = None,
    report_ids: Iterable[int] | None = None,
) -> list[int]:
    """Finished reports (of ``report_ids``, if given) for which some stage has not succeeded at its current version.

    Same answer as ``tipline.pipeline.core.pending_reports`` (the plain reference; a test
    checks they agree) but computed in the database, so a reconcile over a year of reports
    does not load the whole ledger into memory. With ``retry_failed_after``, a report whose
    stage failed less than that long ago is left out (no hot retry loop on a broken stage).
    """
    sts = stages()
    if not sts:
        return []
    current = or_(*[and_(PipelineRun.stage == st.name, PipelineRun.version == st.version) for st in sts])
    n_ok = (
        select(func.count())
        .where(PipelineRun.report_id == Report.id, PipelineRun.error.is_(None), current)
        .scalar_subquery()
    )
    q = select(Report.id).where(Report.state == "finished", n_ok < len(sts)).order_by(Report.id)
    if since is not None:
        q = q.where(Report.finished_at >= since)
    if retry_failed_after is not None:
        cutoff = (now or datetime.now(UTC)) - retry_failed_after
        recent_failure = exists().where(
            PipelineRun.report_id == Report.id, PipelineRun.error.is_not(None), PipelineRun.done_at > cutoff
        )
        q = q.where(~recent_failure)
    if report_ids is not None:
        wanted = sorted(set(report_ids))
        out: list[int] = []
        with rt.sessions() as s:
            for i in range(0, len(wanted), 500):
                out += [int(r) for r in s.execute(q.where(Report.id.in_(wanted[i:i + 500]))).scalars()]
        return out[:limit] if limit is not None else out
    if limit is not None:
        q = q.limit(limit)
    with rt.sessions() as s:
        return [int(r) for r in s.execute(q).scalars()]


def stale_neighbours(rt: Runtime, report_ids: Iterable[int]) -> list[int]:
    """``report_ids`` and the reports linked to them that have stages to run again.

    A report enriched out of order (after a later-numbered one it links to) marks the later
    one's links as due (see the links stage): enrichment is done only when those ran too.
    """
    ids = sorted(set(report_ids))
    others: set[int] = set()
    with rt.sessions() as s:
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            others.update(int(b) for b in s.execute(select(ReportLink.report_b).where(ReportLink.report_a.in_(chunk))
                                                    ).scalars())
            others.update(int(a) for a in s.execute(select(ReportLink.report_a).where(ReportLink.report_b.in_(chunk))
                                                    ).scalars())
    # The reports themselves too: one of them may have been made due by another of them,
    # enriched later in the same run (a follow-up round ran it before its group did).
    others |= set(ids)
    if not others:
        return []
    # Only reports enriched before (they have an assessment in the ledger): one never enriched
    # waits its turn in the queue, in order, instead of being pulled ahead of its group.
    cand = sorted(others)
    assessed: set[int] = set()
    with rt.sessions() as s:
        for i in range(0, len(cand), 500):
            assessed.update(int(r) for r in s.execute(select(PipelineRun.report_id).where(
                PipelineRun.stage == "assess", PipelineRun.report_id.in_(cand[i:i + 500]))).scalars())
    if not assessed:
        return []
    return pending_report_ids(rt, report_ids=assessed, retry_failed_after=RETRY_FAILED_AFTER)


#: Rounds of stale neighbours a job runs itself before leaving the rest to the reconciler.
FOLLOW_ROUNDS = 5


def finished_report_ids(
    rt: Runtime, *, since: datetime | None = None, report_ids: Iterable[int] | None = None
) -> list[int]:
    """Finished reports (optionally since a time, or among given ids), oldest first."""
    q = select(Report.id).where(Report.state == "finished").order_by(Report.id)
    if since is not None:
        q = q.where(Report.finished_at >= since)
    ids = list(report_ids) if report_ids is not None else None
    if ids is not None:
        q = q.where(Report.id.in_(ids))
    with rt.sessions() as s:
        return [int(r) for r in s.execute(q).scalars()]


def _is_finished(rt: Runtime, report_id: int) -> bool:
    with rt.sessions() as s:
        return s.execute(select(Report.state).where(Report.id == report_id)).scalar() == "finished"


def enrich(ctx: StageContext, report_id: int) -> list[str]:
    """The job: run what a finished report still needs. Unfinished or unknown reports are skipped."""
    if not _is_finished(ctx.rt, report_id):
        log.info("report %s is not finished; nothing to enrich", report_id)
        return []
    return run_pending(ctx, report_id)


def _follow(ctx: StageContext, report_ids: list[int], *, max_seconds: float | None = None) -> dict[int, str]:
    """Run what enriching ``report_ids`` made due in linked reports (a few rounds); returns failures."""
    failed: dict[int, str] = {}
    frontier = report_ids
    for _ in range(FOLLOW_ROUNDS):
        stale = [r for r in stale_neighbours(ctx.rt, frontier) if r not in failed]
        if not stale:
            break
        failed.update(_enrich_group(ctx, stale, max_seconds=max_seconds))
        frontier = stale
    return failed


def enrich_many(ctx: StageContext, report_ids: Iterable[int], *, max_seconds: float | None = None,
                group_size: int | None = None, only: Iterable[str] | None = None) -> dict[int, str]:
    """The job for a group of reports (``enrich`` for each), in few transactions; returns failures.

    Unfinished or unknown reports are skipped. Linked reports that this made due again (see
    ``stale_neighbours``) are run too. Returns {report id: the failed stages' errors}.
    """
    ids = sorted(set(report_ids))
    failed = _enrich_group(ctx, ids, max_seconds=max_seconds, group_size=group_size, only=only)
    failed.update(_follow(ctx, ids, max_seconds=max_seconds))
    return failed


def _enrich_group(ctx: StageContext, ids: list[int], *, max_seconds: float | None = None,
                  group_size: int | None = None, only: Iterable[str] | None = None) -> dict[int, str]:
    if not ids:
        return {}
    ledgers: dict[int, dict[str, tuple[str, str | None]]] = {}
    with ctx.rt.sessions() as s:
        finished = [int(r) for r in s.execute(
            select(Report.id).where(Report.id.in_(ids), Report.state == "finished")).scalars()]
        for r in s.execute(select(PipelineRun.report_id, PipelineRun.stage, PipelineRun.version, PipelineRun.error)
                           .where(PipelineRun.report_id.in_(finished))):
            ledgers.setdefault(int(r.report_id), {})[r.stage] = (r.version, r.error)
    work: dict[int, list[str] | None] = {}
    for rid in sorted(finished):
        names = plan(ledgers.get(rid, {}), only=only)
        if names:
            work[rid] = names
    run_reports(ctx, work, max_seconds=max_seconds, group_size=group_size)
    return _failures(ctx, work)


def _failures(ctx: StageContext, work: dict[int, list[str] | None]) -> dict[int, str]:
    """{report id: errors of the stages of ``work`` that failed}, read from the ledger."""
    failed: dict[int, str] = {}
    if work:
        with ctx.rt.sessions() as s:
            for rid, name, error in s.execute(
                select(PipelineRun.report_id, PipelineRun.stage, PipelineRun.error)
                .where(PipelineRun.report_id.in_(list(work)), PipelineRun.error.is_not(None))
                .order_by(PipelineRun.report_id, PipelineRun.stage)
            ):
                if name in (work[int(rid)] or ()):
                    prior = failed.get(int(rid))
                    failed[int(rid)] = f"{prior}; {name}: {error}" if prior else f"{name}: {error}"
    return failed


def rerun_many(ctx: StageContext, report_ids: Iterable[int], *, stage_names: Iterable[str] | None = None,
               downstream: bool = True, max_seconds: float | None = None,
               group_size: int | None = None) -> dict[int, str]:
    """``rerun`` for a group of reports, in groups; returns {report id: the failed stages' errors}."""
    all_done: dict[str, tuple[str, str | None]] = {st.name: (st.version, None) for st in stages()}
    forced = list(all_done) if stage_names is None else list(stage_names)
    names = plan(all_done, force=forced, downstream=downstream)
    ids = finished_report_ids(ctx.rt, report_ids=sorted(set(report_ids)))
    if not names or not ids:
        return {}
    work: dict[int, list[str] | None] = dict.fromkeys(ids, names)
    run_reports(ctx, work, max_seconds=max_seconds, group_size=group_size)
    failed = _failures(ctx, work)
    failed.update(_follow(ctx, ids, max_seconds=max_seconds))
    return failed


def enrich_group(ctx: StageContext, report_ids: list[int]) -> None:
    """The job for a group of reports (Procrastinate): ``enrich_many``; raises ``StageFailed`` if one failed.

    Raising makes Procrastinate retry the job; a retry re-plans from the ledger, so only the
    reports (and stages) that did not succeed run again.
    """
    failed = enrich_many(ctx, report_ids)
    if failed:
        raise StageFailed("; ".join(f"report {rid}: {why}" for rid, why in sorted(failed.items())))


# --- the interface --------------------------------------------------------------------------


class JobQueue(Protocol):
    """Where finished reports go to be enriched."""

    kind: str

    def enqueue(self, report_id: int) -> None:
        """Ask for the report's pending stages to run (returns at once)."""

    def run_worker(self, *, stop: threading.Event | None = None, once: bool = False) -> None:
        """Process jobs until ``stop`` is set (or, with ``once``, until none is left)."""

    def close(self) -> None:
        """Release connections and stop background threads started by this object."""


def queue_kind(rt: Runtime, kind: str | None = None) -> str:
    """Resolve ``auto`` (the setting's default) to the concrete queue for this database."""
    from tipline.kinds.queues import resolve

    try:
        return resolve(kind or rt.settings.queue, rt.engine.dialect.name).value
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def open_queue(rt: Runtime, kind: str | None = None, *, concurrency: int | None = None,
               ctx: StageContext | None = None, group_size: int | None = None) -> JobQueue:
    """The job queue configured by ``TIPLINE_QUEUE`` (or ``kind``) for this runtime; its stages
    run in ``ctx`` when given (which then counts their outcomes). ``group_size``: reports per
    group (default ``GROUP_SIZE``)."""
    n = concurrency or rt.settings.pipeline_concurrency
    g = group_size or GROUP_SIZE
    resolved = queue_kind(rt, kind)
    if resolved == "procrastinate":
        return ProcrastinateQueue(rt, concurrency=n, ctx=ctx, group_size=g)
    return InProcessQueue(rt, concurrency=n, ctx=ctx, group=g)


# --- embedded: in-process threads over the ledger ---------------------------------------------


class InProcessQueue:
    """Worker threads in this process; durability comes from the ledger and the reconciler."""

    kind = "inprocess"

    def __init__(self, rt: Runtime, *, concurrency: int = 2, reconcile_interval: float = RECONCILE_INTERVAL,
                 ctx: StageContext | None = None, group: int = GROUP_SIZE,
                 group_seconds: float | None = GROUP_SECONDS) -> None:
        self.rt = rt
        self.ctx = ctx or StageContext(rt)
        self.concurrency = max(1, concurrency)
        self.reconcile_interval = reconcile_interval
        self._q: queue_mod.Queue[int] = queue_mod.Queue()
        self._lock = threading.Lock()
        self._queued: set[int] = set()  # queued and not yet started: enqueue twice, run once
        self._background: threading.Thread | None = None
        self._bg_stop = threading.Event()
        self.processed = 0
        self.failed = 0
        #: Reports a worker thread takes from the queue at once, and how long one transaction
        #: may run (see ``run_reports``): one commit per group instead of nine per report.
        self.group = max(1, group)
        self.group_seconds = group_seconds

    def enqueue(self, report_id: int) -> None:
        with self._lock:
            if report_id in self._queued:
                return
            self._queued.add(report_id)
        self._q.put(report_id)

    def reconcile(self, *, retry_failed_after: timedelta | None = RETRY_FAILED_AFTER) -> int:
        """Enqueue every finished report with stages left to do; returns how many."""
        ids = pending_report_ids(self.rt, retry_failed_after=retry_failed_after)
        for rid in ids:
            self.enqueue(rid)
        return len(ids)

    def _take(self, once: bool) -> list[int]:
        """Up to ``group`` queued report ids: wait for the first, then take what is already there."""
        try:
            ids = [self._q.get(timeout=0.05 if once else 0.5)]
        except queue_mod.Empty:
            return []
        while len(ids) < self.group:
            try:
                ids.append(self._q.get_nowait())
            except queue_mod.Empty:
                break
        with self._lock:
            self._queued.difference_update(ids)
        return ids

    def _work(self, stop: threading.Event, once: bool) -> None:
        while not stop.is_set():
            ids = self._take(once)
            if not ids:
                if once:
                    return
                continue
            try:
                failed = enrich_many(self.ctx, ids, max_seconds=self.group_seconds, group_size=self.group)
                with self._lock:
                    self.processed += len(ids) - len(failed)
                    self.failed += len(failed)
                for rid, why in sorted(failed.items()):
                    log.warning("report %s: %s (the reconciler retries later)", rid, why)
            except Exception:
                with self._lock:
                    self.failed += len(ids)
                log.exception("enrichment of reports %s failed", ids)
            finally:
                for _ in ids:
                    self._q.task_done()

    def run_worker(self, *, stop: threading.Event | None = None, once: bool = False) -> None:
        stop = stop or threading.Event()
        # Failed reports are retried right away when a worker is started by hand (`once`);
        # a long-running worker retries them only after RETRY_FAILED_AFTER.
        self.reconcile(retry_failed_after=None if once else RETRY_FAILED_AFTER)
        threads = [threading.Thread(target=self._work, args=(stop, once), name=f"tipline-enrich-{i}", daemon=True)
                   for i in range(self.concurrency)]
        for t in threads:
            t.start()
        if once:
            for t in threads:
                t.join()
            return
        next_reconcile = time.monotonic() + self.reconcile_interval
        while not stop.wait(0.5):
            if time.monotonic() >= next_reconcile:
                try:
                    self.reconcile()
                except Exception:
                    log.exception("reconcile failed")
                next_reconcile = time.monotonic() + self.reconcile_interval
        for t in threads:
            t.join()

    def start(self) -> None:
        """Run the worker in a background thread of this process (``tipline serve``)."""
        if self._background is not None:
            return
        self._bg_stop.clear()
        self._background = threading.Thread(target=self.run_worker, kwargs={"stop": self._bg_stop},
                                            name="tipline-enrich", daemon=True)
        self._background.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every enqueued job has been processed (True) or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._q.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        if self._background is not None:
            self._bg_stop.set()
            self._background.join(timeout=30)
            self._background = None


# --- PostgreSQL: Procrastinate --------------------------------------------------------------


def procrastinate_conninfo(database_url: str) -> str:
    """The libpq URL for a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://`` -> ``postgresql://``)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_kwargs() -> dict[str, Any]:
    # Procrastinate's SQL is unqualified: with this search_path its tables, types and
    # functions all live in (and are found in) a schema of their own, out of Alembic's way.
    return {"options": f"-c search_path={PROCRASTINATE_SCHEMA}"}


def ensure_procrastinate_schema(database_url: str) -> bool:
    """Create Procrastinate's schema once (idempotent, safe under concurrency). True if created."""
    import psycopg
    from procrastinate.schema import SchemaManager

    with psycopg.connect(procrastinate_conninfo(database_url), **_pg_kwargs()) as conn, conn.transaction():
        # One installer at a time; the others wait here and then see the tables.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('tipline.procrastinate.schema'))")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PROCRASTINATE_SCHEMA}")
        present = conn.execute(
            "SELECT to_regclass(%s)", (f"{PROCRASTINATE_SCHEMA}.procrastinate_jobs",)
        ).fetchone()
        if present is not None and present[0] is not None:
            return False
        # No parameters: psycopg sends the script with the simple protocol (many statements).
        conn.execute(SchemaManager.get_schema())
        return True


def _register_task(app: Any, ctx_factory: Callable[[], StageContext]) -> None:
    from procrastinate import RetryStrategy

    def enrich_job(report_id: int) -> None:
        enrich(ctx_factory(), report_id)

    def enrich_group_job(report_ids: list[int]) -> None:
        enrich_group(ctx_factory(), [int(r) for r in report_ids])

    app.task(name=TASK_NAME, queue=QUEUE_NAME, retry=RetryStrategy(max_attempts=3, wait=5),
             pass_context=False)(enrich_job)
    app.task(name=GROUP_TASK_NAME, queue=QUEUE_NAME, retry=RetryStrategy(max_attempts=3, wait=5),
             pass_context=False)(enrich_group_job)


class ProcrastinateQueue:
    """Jobs in PostgreSQL via Procrastinate; stalled jobs of dead workers are retried."""

    kind = "procrastinate"

    def __init__(self, rt: Runtime, *, concurrency: int = 2, reconcile_interval: float = RECONCILE_INTERVAL,
                 heartbeat_interval: float = 10.0, stalled_after: float = 30.0,
                 ctx: StageContext | None = None, group_size: int = GROUP_SIZE,
                 linger: float = DEFER_LINGER) -> None:
        from procrastinate import App, SyncPsycopgConnector

        self.rt = rt
        #: Reports per job: the deferrer puts what has queued up (waiting ``linger`` for more)
        #: into one group job; a lone report gets the one-report job with its report locks.
        self.group_size = max(1, group_size)
        self.linger = linger
        self.url = rt.settings.effective_database_url
        self.concurrency = max(1, concurrency)
        self.reconcile_interval = reconcile_interval
        self.heartbeat_interval = heartbeat_interval
        self.stalled_after = stalled_after
        self._ctx = ctx
        self._ctx_lock = threading.Lock()
        ensure_procrastinate_schema(self.url)
        self._conninfo = procrastinate_conninfo(self.url)
        # Deferring from request threads: a small synchronous pool, opened on first use.
        self._defer_app = App(connector=SyncPsycopgConnector(
            conninfo=self._conninfo, kwargs=_pg_kwargs(), min_size=1, max_size=4))
        _register_task(self._defer_app, self._context)
        self._defer_open = False
        self._open_lock = threading.Lock()
        self._to_defer: queue_mod.Queue[int] = queue_mod.Queue()
        self._defer_thread: threading.Thread | None = None

    def _context(self) -> StageContext:
        with self._ctx_lock:
            if self._ctx is None:
                self._ctx = StageContext(self.rt)
            return self._ctx

    def _deferrer(self) -> Any:
        with self._open_lock:
            if not self._defer_open:
                self._defer_app.open()
                self._defer_open = True
        return self._defer_app

    def enqueue(self, report_id: int) -> None:
        """Hand the report to a background deferrer and return at once.

        Deferring is a database transaction of its own (a WAL flush); doing it inside the
        ``/finish`` request would make every platform wait for it. A report whose defer is
        lost in a crash is found again by the reconciler (its stages are pending).
        """
        with self._open_lock:
            if self._defer_thread is None or not self._defer_thread.is_alive():
                self._defer_thread = threading.Thread(target=self._defer_loop, name="tipline-defer", daemon=True)
                self._defer_thread.start()
        self._to_defer.put(report_id)

    def _defer_loop(self) -> None:
        while True:
            batch = [self._to_defer.get()]
            deadline = time.monotonic() + self.linger
            while batch[-1] >= 0 and len(batch) < self.group_size:
                try:
                    batch.append(self._to_defer.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue_mod.Empty:
                    break
            ids = [r for r in batch if r >= 0]
            try:
                if ids:
                    self.defer_group(ids)
            except Exception:
                log.exception("deferring enrichment of reports %s failed; the reconciler will retry", ids)
            finally:
                for _ in batch:
                    self._to_defer.task_done()
            if batch[-1] < 0:  # close() asks the loop to stop after what was queued
                return

    def flush(self) -> None:
        """Wait until every report handed to ``enqueue`` has been deferred."""
        if self._defer_thread is not None and self._defer_thread.is_alive():
            self._to_defer.join()

    def defer_group(self, report_ids: list[int]) -> None:
        """Defer one job for a group of reports (one report: the one-report job), synchronously.

        A group job carries no Procrastinate lock (a job has one lock, a group has many
        reports): two jobs holding one report run their transactions one after the other on
        that report's advisory lock (``store.db.report_locks``), and the second finds its
        stages done or redoes them idempotently; the reconciler leaves out reports that
        already have a live job.
        """
        ids = sorted(set(report_ids))
        if len(ids) == 1:
            self.defer_now(ids[0])
            return
        self._deferrer().configure_task(GROUP_TASK_NAME).defer(report_ids=ids)

    def defer_now(self, report_id: int) -> None:
        """Defer the enrichment job for one report, synchronously."""
        from procrastinate.exceptions import AlreadyEnqueued

        app = self._deferrer()
        # queueing_lock: at most one waiting job per report (a second defer is a no-op);
        # lock: never two jobs of one report at once.
        with contextlib.suppress(AlreadyEnqueued):
            app.configure_task(TASK_NAME, lock=f"report:{report_id}",
                               queueing_lock=f"report:{report_id}").defer(report_id=report_id)

    def job_counts(self) -> dict[str, int]:
        """Jobs by status (todo / doing / succeeded / failed / ...)."""
        import psycopg

        with psycopg.connect(self._conninfo, **_pg_kwargs()) as conn:
            rows = conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name = ANY(%s) GROUP BY 1",
                (list(TASK_NAMES),),
            ).fetchall()
        return {str(k): int(v) for k, v in rows}

    async def _retry_stalled(self, app: Any) -> int:
        """Put jobs of workers without a recent heartbeat back to ``todo``; returns how many."""
        from procrastinate import jobs
        from procrastinate.exceptions import ConnectorException

        n = 0
        stalled = [job for name in TASK_NAMES for job in await app.job_manager.get_stalled_jobs(
            task_name=name, seconds_since_heartbeat=self.stalled_after)]
        for job in stalled:
            try:
                await app.job_manager.retry_job(job)
                n += 1
                log.warning("retrying job %s %s of a stalled worker", job.id, job.task_kwargs)
            except ConnectorException:
                # A newer job for the same report is already waiting (queueing lock): that one
                # does the work; close this one so its report lock is released.
                with contextlib.suppress(ConnectorException):
                    await app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
        return n

    def _reports_with_live_jobs(self) -> set[int]:
        """Reports that already have a job waiting or running (their stages look pending)."""
        import psycopg

        with psycopg.connect(self._conninfo, **_pg_kwargs()) as conn:
            rows = conn.execute(
                "SELECT args FROM procrastinate_jobs WHERE task_name = ANY(%s) AND status IN ('todo', 'doing')",
                (list(TASK_NAMES),),
            ).fetchall()
        out: set[int] = set()
        for (args,) in rows:
            if args.get("report_id") is not None:
                out.add(int(args["report_id"]))
            out.update(int(r) for r in args.get("report_ids") or ())
        return out

    def queued_reports(self) -> set[int]:
        """Reports with a job waiting or running (one-report and group jobs)."""
        return self._reports_with_live_jobs()

    def reconcile(self, *, retry_failed_after: timedelta | None = RETRY_FAILED_AFTER) -> int:
        # A report whose job is running right now still has pending stages in the ledger;
        # enqueueing it again would only queue a duplicate behind it.
        live = self._reports_with_live_jobs()
        ids = [rid for rid in pending_report_ids(self.rt, retry_failed_after=retry_failed_after) if rid not in live]
        # Straight into group jobs (not through the deferrer thread: a worker started with
        # --once must find them deferred before it looks for work).
        for i in range(0, len(ids), self.group_size):
            self.defer_group(ids[i:i + self.group_size])
        return len(ids)

    async def _side(self, app: Any, stop: threading.Event, worker_task: asyncio.Task[Any]) -> None:
        next_reconcile = time.monotonic() + self.reconcile_interval
        next_stalled = time.monotonic() + self.stalled_after
        while not worker_task.done():
            if stop.is_set():
                worker_task.cancel()  # graceful: running jobs finish, then the worker stops
                return
            now = time.monotonic()
            if now >= next_stalled:
                with contextlib.suppress(Exception):
                    await self._retry_stalled(app)
                next_stalled = now + max(1.0, self.stalled_after / 2)
            if now >= next_reconcile:
                try:
                    await asyncio.to_thread(self.reconcile)
                except Exception:
                    log.exception("reconcile failed")
                next_reconcile = now + self.reconcile_interval
            await asyncio.sleep(0.2)

    def run_worker(self, *, stop: threading.Event | None = None, once: bool = False) -> None:
        from procrastinate import App, PsycopgConnector

        app = App(connector=PsycopgConnector(conninfo=self._conninfo, kwargs=_pg_kwargs(),
                                             min_size=1, max_size=self.concurrency + 3))
        _register_task(app, self._context)
        stop = stop or threading.Event()

        async def main() -> None:
            async with app.open_async():
                # Jobs left 'doing' by a worker that died are due again before we start.
                await app.job_manager.prune_stalled_workers(self.stalled_after)
                await self._retry_stalled(app)
                # Then reports left behind by a failed enqueue (after the retry: a retried job
                # holds the report's queueing lock, so no duplicate is deferred).
                await asyncio.to_thread(self.reconcile, retry_failed_after=None if once else RETRY_FAILED_AFTER)
                worker = asyncio.create_task(app.run_worker_async(
                    queues=[QUEUE_NAME], concurrency=self.concurrency, wait=not once,
                    install_signal_handlers=threading.current_thread() is threading.main_thread(),
                    update_heartbeat_interval=self.heartbeat_interval,
                    stalled_worker_timeout=self.stalled_after, fetch_job_polling_interval=1.0,
                    delete_jobs="successful",
                ))
                side = asyncio.create_task(self._side(app, stop, worker))
                try:
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
                finally:
                    side.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await side

        asyncio.run(main())

    def close(self) -> None:
        thread = self._defer_thread
        if thread is not None and thread.is_alive():
            self._to_defer.put(-1)
            thread.join(timeout=30)
        with self._open_lock:
            if self._defer_open:
                self._defer_app.close()
                self._defer_open = False


# --- wiring ------------------------------------------------------------------------------------


@dataclass
class Installed:
    """What ``install`` set up; ``close()`` undoes it (stops in-process workers)."""

    rt: Runtime
    queue: JobQueue
    hook: Callable[[int], None]
    workers_started: bool

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.rt.intake.finished_hooks.remove(self.hook)
        self.queue.close()


def install(rt: Runtime, *, kind: str | None = None, start_workers: bool | None = None) -> Installed:
    """Enqueue enrichment after every finish; start in-process workers for the embedded queue.

    With Procrastinate, workers are separate processes (``tipline pipeline worker``);
    ``start_workers=True`` runs one in a background thread here as well (single-box setups).
    """
    q = open_queue(rt, kind)
    rt.intake.finished_hooks.append(q.enqueue)
    start = q.kind == "inprocess" if start_workers is None else start_workers
    if start:
        if isinstance(q, InProcessQueue):
            q.start()
        else:
            stop = threading.Event()
            t = threading.Thread(target=q.run_worker, kwargs={"stop": stop}, name="tipline-enrich", daemon=True)
            t.start()
            original_close = q.close

            def close() -> None:
                stop.set()
                t.join(timeout=30)
                original_close()

            q.close = close  # type: ignore[method-assign]
    return Installed(rt, q, q.enqueue, start)


def stage_docs() -> Iterator[StageDef]:
    """Every registered stage in run order (for ``tipline pipeline stages``)."""
    yield from stages()
