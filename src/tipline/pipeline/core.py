"""The stage registry and the runner.

A stage is a function ``(ctx, session, report_id) -> Outcome | None`` that reads stored
records and writes only rows keyed by that report (or its files), replacing what an earlier
run wrote. So any stage can be re-run for one report, some, or all, and the result is the
same. Stages hand each other nothing but stored rows; what a stage returns says only how it
went, and the runner counts it (``StageContext.outcomes``).

Stage modules live in ``tipline.pipeline.stages`` and register themselves with ``@stage``;
they are discovered by import, so adding a stage never means editing a list elsewhere.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from tipline.runtime import Runtime
from tipline.store.db import cross_report_lock, transaction
from tipline.store.tables import PipelineRun, Report

__all__ = ["cross_report_lock"]  # stages take it from here

log = logging.getLogger("tipline.pipeline")



class Outcome(StrEnum):
    """How one run of a stage went; a stage that returns None is ``DONE``."""

    #: Wrote its output from what it reads.
    DONE = "done"
    #: Brought its output up to date from what the stage before it recorded as changed.
    UPDATED = "updated from recorded changes"
    #: Could not use recorded changes, or had none, and recomputed from everything it reads.
    RECOMPUTED = "recomputed"


StageFunc = Callable[["StageContext", Session, int], "Outcome | None"]
#: The same stage over a group of reports: ``(ctx, session, report_ids) -> {report id: outcome}``,
#: with a bounded number of statements per group rather than per report. It must write exactly
#: what ``StageFunc`` run on each report in turn would write (a test compares them); if it
#: raises, the runner runs that group's reports through ``StageFunc`` one by one, so a report
#: that fails, fails alone.
GroupFunc = Callable[["StageContext", Session, "list[int]"], "dict[int, Outcome]"]


@dataclass(frozen=True)
class StageDef:
    name: str
    version: str
    func: StageFunc
    after: tuple[str, ...]
    doc: str
    #: The set-based form of ``func``, if the stage has one (see ``GroupFunc``).
    group: GroupFunc | None = None


_STAGES: dict[str, StageDef] = {}


def stage(name: str, *, version: str = "1", after: Iterable[str] = (),
          group: GroupFunc | None = None) -> Callable[[StageFunc], StageFunc]:
    """Register a stage. ``after`` names stages whose output this one reads; ``group`` is its
    set-based form over many reports, if it has one."""

    def register(func: StageFunc) -> StageFunc:
        if name in _STAGES and _STAGES[name].func is not func:
            raise ValueError(f"stage {name!r} registered twice")
        _STAGES[name] = StageDef(name, version, func, tuple(after), (func.__doc__ or "").strip(), group)
        return func

    return register


_loaded = False
_load_lock = threading.Lock()


def load_stages() -> None:
    """Import every module of ``tipline.pipeline.stages`` once."""
    global _loaded
    with _load_lock:
        if _loaded:
            return
        from tipline.pipeline import stages as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
        _loaded = True


def stages() -> list[StageDef]:
    """All stages in dependency order (a stage comes after every stage it reads)."""
    load_stages()
    done: list[StageDef] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name not in _STAGES:
            return
        if name in path:
            raise ValueError(f"stage cycle: {' -> '.join((*path, name))}")
        for dep in _STAGES[name].after:
            visit(dep, (*path, name))
        seen.add(name)
        done.append(_STAGES[name])

    for name in sorted(_STAGES):
        visit(name, ())
    return done


def get_stage(name: str) -> StageDef:
    load_stages()
    if name not in _STAGES:
        raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in stages())}")
    return _STAGES[name]


@dataclass
class StageContext:
    """What stages may use besides the database session: the runtime and shared services.

    Services that are costly to build (the near-duplicate index, the GeoIP reader, the agency
    directory) are built once per process and kept in ``services``.
    """

    rt: Runtime
    services: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (stage, outcome) -> committed runs in this context, counted by the runner.
    outcomes: Counter[tuple[str, Outcome]] = field(default_factory=Counter)

    def count(self, runs: Iterable[tuple[str, Outcome]]) -> None:
        with self.lock:
            self.outcomes.update(runs)

    def service(self, key: str, build: Callable[[], Any]) -> Any:
        with self.lock:
            if key not in self.services:
                self.services[key] = build()
            return self.services[key]


def run_stage(ctx: StageContext, st: StageDef, report_id: int) -> None:
    """Run one stage for one report in its own transaction and record it in the ledger."""
    with transaction(ctx.rt.sessions, background=True) as s:
        outcome = st.func(ctx, s, report_id) or Outcome.DONE
        record_run(s, report_id, st, None)
    from tipline.metrics import record_stage_runs  # here: keeps prometheus-client off CLI start-up

    record_stage_runs([(st.name, None)])
    ctx.count([(st.name, outcome)])


def record_run(session: Session, report_id: int, st: StageDef, error: str | None) -> None:
    """Write the ledger row of one stage run, in the transaction that wrote the stage's output.

    Later stages read the ledger to know which upstream output exists (``assess`` treats a
    stage that has not run as unknown evidence), so the row must be visible to them at once,
    not only when a group of reports commits.
    """
    session.execute(delete(PipelineRun).where(PipelineRun.report_id == report_id, PipelineRun.stage == st.name))
    session.execute(insert(PipelineRun), [{"report_id": report_id, "stage": st.name, "done_at": datetime.now(UTC),
                                           "version": st.version, "error": error}])


def _selected(only: Iterable[str] | None) -> list[StageDef]:
    wanted = set(only) if only is not None else None
    return [st for st in stages() if wanted is None or st.name in wanted]


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def run_report_stepwise(ctx: StageContext, report_id: int, only: Iterable[str] | None = None) -> None:
    """Reference runner: every stage in a transaction of its own (one commit per stage).

    ``run_reports`` does the same work in one transaction per group of reports; this plain
    path is what it falls back to when that transaction cannot commit, and what tests compare
    it with.
    """
    for st in _selected(only):
        try:
            run_stage(ctx, st, report_id)
        except Exception as exc:
            log.exception("stage %s failed for report %s", st.name, report_id)
            with transaction(ctx.rt.sessions, background=True) as s:
                record_run(s, report_id, st, _error_text(exc))
            from tipline.metrics import record_stage_runs

            record_stage_runs([(st.name, "failed")])
            # Later stages read this one's output: stop here, the reconciler retries.
            return


def run_reports(ctx: StageContext, work: dict[int, list[str] | None], *, max_seconds: float | None = None) -> None:
    """Run stages for several reports, grouped into few transactions: ``{report id: stage names or None}``.

    Each report's stages run in dependency order, report after report, exactly as
    ``run_report_stepwise`` would run them one after another; each stage inside a SAVEPOINT,
    so a failing stage rolls back only its own writes, is recorded in the ledger with its
    error, and stops the later stages of that report alone. A group commits once, which is
    what makes this fast: on a durable store a commit is an fsync (7-10 ms here) and a report
    has nine stages. ``max_seconds`` closes a group once it has run that long, so that on
    SQLite intake never waits long behind enrichment for the write lock.

    If a group's commit fails (a deadlock with another worker, a serialisation error, a lost
    connection), nothing of that group is kept and its reports are run again the plain way.
    """
    items = list(work.items())
    start = 0
    while start < len(items):
        start = _run_group(ctx, items, start, max_seconds)


def _run_group(ctx: StageContext, items: list[tuple[int, list[str] | None]], start: int,
               max_seconds: float | None) -> int:
    """Run reports from ``items[start]`` on in one transaction; returns the index after the last one run."""
    began = time.monotonic()
    end = start
    ledger: list[tuple[StageDef, str | None]] = []  # what ran, for the metrics once committed
    outcomes: list[tuple[str, Outcome]] = []
    try:
        with transaction(ctx.rt.sessions, background=True) as s:
            while end < len(items):
                report_id, names = items[end]
                end += 1
                for st in _selected(names):
                    try:
                        with s.begin_nested():
                            outcome = st.func(ctx, s, report_id) or Outcome.DONE
                            # In the savepoint: a later stage of this report sees that this
                            # one ran (the first run must read what a re-run reads).
                            record_run(s, report_id, st, None)
                            s.flush()
                        ledger.append((st, None))
                        outcomes.append((st.name, outcome))
                    except Exception as exc:
                        log.exception("stage %s failed for report %s", st.name, report_id)
                        record_run(s, report_id, st, _error_text(exc))
                        ledger.append((st, "failed"))
                        break  # later stages read this one's output; the reconciler retries
                if max_seconds is not None and time.monotonic() - began >= max_seconds:
                    break
    except Exception:
        log.warning("a group of %d report(s) could not commit; running them one by one", end - start,
                    exc_info=True)
        for report_id, names in items[start:end]:
            run_report_stepwise(ctx, report_id, only=names)
    else:
        from tipline.metrics import record_stage_runs

        # Counted once the group committed (a failed commit is counted by the stepwise rerun).
        record_stage_runs((st.name, err) for st, err in ledger)
        ctx.count(outcomes)
    return end


def run_report(ctx: StageContext, report_id: int, only: Iterable[str] | None = None) -> None:
    """Run every stage (or those named) for a finished report, in dependency order, in one transaction."""
    run_reports(ctx, {report_id: list(only) if only is not None else None})


def pending_reports(ctx: StageContext, *, since: datetime | None = None, limit: int | None = None) -> list[int]:
    """Finished reports for which some stage has not run successfully at its current version."""
    all_stages = stages()
    with ctx.rt.sessions() as s:
        q = select(Report.id).where(Report.state == "finished").order_by(Report.id)
        if since is not None:
            q = q.where(Report.finished_at >= since)
        ids = list(s.execute(q).scalars())
        done: dict[int, set[str]] = {}
        for rid, name, version, error in s.execute(
            select(PipelineRun.report_id, PipelineRun.stage, PipelineRun.version, PipelineRun.error)
        ):
            st = _STAGES.get(name)
            if st is not None and st.version == version and error is None:
                done.setdefault(rid, set()).add(name)
    want = {st.name for st in all_stages}
    out = [rid for rid in ids if not want <= done.get(rid, set())]
    return out[:limit] if limit is not None else out
