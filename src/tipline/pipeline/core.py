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

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session

from tipline.runtime import Runtime
from tipline.store.db import cross_report_lock, report_locks, transaction
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
    #: It reads rows that other reports' runs write (matches: their hashes; links, bundles,
    #: assess: their matches, identifiers, links). The runner commits a group's stages before
    #: the first such stage, so what they read of another worker's group is at least its
    #: committed first part (see ``_run_group``).
    reads_others: bool = False


_STAGES: dict[str, StageDef] = {}


def stage(name: str, *, version: str = "1", after: Iterable[str] = (),
          group: GroupFunc | None = None, reads_others: bool = False) -> Callable[[StageFunc], StageFunc]:
    """Register a stage. ``after`` names stages whose output this one reads; ``group`` is its
    set-based form over many reports, if it has one; ``reads_others`` says it reads what other
    reports' runs write (``StageDef.reads_others``)."""

    def register(func: StageFunc) -> StageFunc:
        if name in _STAGES and _STAGES[name].func is not func:
            raise ValueError(f"stage {name!r} registered twice")
        _STAGES[name] = StageDef(name, version, func, tuple(after), (func.__doc__ or "").strip(), group,
                                 reads_others)
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
    """All stages in dependency order (a stage comes after every stage it reads).

    Among the orders that respects, stages run level by level (those reading nothing first,
    then those reading only them, ...; by name within a level): the stages that read only
    their own report (hashes, identifiers, location, jurisdiction) come before those that read
    other reports, so a group's transaction takes the cross-report lock as late as it can and
    the costly per-report work (decoding and hashing images) runs beside other workers.
    """
    load_stages()
    level: dict[str, int] = {}

    def depth(name: str, path: tuple[str, ...]) -> int:
        if name in level:
            return level[name]
        if name in path:
            raise ValueError(f"stage cycle: {' -> '.join((*path, name))}")
        deps = [d for d in _STAGES[name].after if d in _STAGES]
        level[name] = 1 + max((depth(d, (*path, name)) for d in deps), default=-1)
        return level[name]

    for name in _STAGES:
        depth(name, ())
    return [_STAGES[n] for n in sorted(_STAGES, key=lambda n: (level[n], n))]


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
        report_locks(s, [report_id])
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


def first_in_transaction(session: Session, what: str) -> bool:
    """True the first time it is asked about ``what`` in the session's current transaction."""
    tx = session.get_transaction()
    # The transaction object itself, not its id(): a new transaction can be given the id of
    # a finished one, which would answer "already done" for work it never saw.
    seen: dict[str, Any] = session.info.setdefault("tipline.once", {})
    if tx is not None and seen.get(what) is tx:
        return False
    seen[what] = tx
    return True


@dataclass
class StoredFile:
    """One file of a report as the stages read it: id, sequence number, decoded ``details``."""

    id: str
    seq: int
    details: dict[str, Any] | None
    _model: Any = None

    def model(self) -> Any:
        """``details`` as ``FileDetails`` (None when the platform sent none), validated once."""
        if self._model is None and self.details:
            from tipline.model.report import FileDetails

            self._model = FileDetails.model_validate(self.details)
        return self._model


@dataclass
class StoredReport:
    """A report's stored document and its files' details, decoded once for a whole group.

    Shared by every stage of the group that reads them (identifiers, location, links, bundles,
    assess): read-only, a stage must never change what it is given.
    """

    #: (state, last_change_at): every write of ``reports.document`` changes one of them (an
    #: addendum sets last_change_at; a purge sets the state), so an entry whose version still
    #: matches holds the document as stored now.
    version: tuple[str, Any]
    document: dict[str, Any] | None
    files: list[StoredFile]
    _model: Any = None

    def model(self) -> Any:
        """The document as the pydantic ``Report`` (None once purged), validated once."""
        if self._model is None and self.document is not None:
            from tipline.model.report import Report as ReportModel

            self._model = ReportModel.model_validate(self.document)
        return self._model


class GroupDocuments:
    """The documents of a group's reports, decoded once for all its stages and both its
    transactions, dropped when the group ends (``_run_group``).

    Within one transaction an entry cannot go stale: the runner holds the group's report locks,
    which an addendum takes too, and no stage writes documents. Between the group's two
    transactions the locks are released, so the first read in a transaction checks the cached
    reports' versions (one statement) and drops entries that changed.
    """

    def __init__(self) -> None:
        self.entries: dict[int, StoredReport] = {}
        # The transaction the entries were last checked in, held (not its id(): a finished
        # transaction's id can be reused by the next one, which would then skip the check).
        self._checked: object | None = None
        #: Reports decoded and statements sent (the benchmark and tests read them).
        self.decoded = 0

    def get(self, session: Session, report_ids: Iterable[int]) -> dict[int, StoredReport]:
        ids = sorted(set(report_ids))
        tx = session.get_transaction()
        if tx is None or tx is not self._checked:
            self._revalidate(session)
            self._checked = tx
        missing = [rid for rid in ids if rid not in self.entries]
        if missing:
            self._load(session, missing)
        return {rid: self.entries[rid] for rid in ids if rid in self.entries}

    def _revalidate(self, session: Session) -> None:
        cached = sorted(self.entries)
        seen: set[int] = set()
        for i in range(0, len(cached), 500):
            for rid, state, changed in session.execute(
                    select(Report.id, Report.state, Report.last_change_at).where(Report.id.in_(cached[i:i + 500]))):
                seen.add(int(rid))
                if self.entries[int(rid)].version != (state, changed):
                    del self.entries[int(rid)]
        for rid in cached:
            if rid not in seen:
                self.entries.pop(rid, None)

    def _load(self, session: Session, ids: list[int]) -> None:
        from tipline.store.tables import File

        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            files: dict[int, list[StoredFile]] = {}
            for rid, fid, seq, details in session.execute(
                    select(File.report_id, File.id, File.seq, File.details)
                    .where(File.report_id.in_(chunk)).order_by(File.report_id, File.seq)):
                files.setdefault(int(rid), []).append(StoredFile(str(fid), int(seq), details))
            for rid, state, changed, document in session.execute(
                    select(Report.id, Report.state, Report.last_change_at, Report.document)
                    .where(Report.id.in_(chunk))):
                self.entries[int(rid)] = StoredReport((state, changed), document, files.get(int(rid), []))
                self.decoded += 1


def report_documents(session: Session, report_ids: Iterable[int]) -> dict[int, StoredReport]:
    """The stored documents and files' details of ``report_ids`` (a report that does not exist
    is left out), decoded once per group.

    Inside ``run_reports`` the group's ``GroupDocuments`` serves them (every stage, both
    transactions); anywhere else (a stage run alone, the stepwise reference path: a group of
    one) a cache for the session's current transaction does, so the same code reads them the
    same way.
    """
    cache: GroupDocuments | None = session.info.get(_GROUP_DOCS)
    if cache is None:
        tx = session.get_transaction()
        held: tuple[object | None, GroupDocuments] | None = session.info.get(_TX_DOCS)
        if held is None or tx is None or held[0] is not tx:
            held = (tx, GroupDocuments())
            session.info[_TX_DOCS] = held
        cache = held[1]
    return cache.get(session, report_ids)


_GROUP_DOCS = "tipline.group_documents"
_TX_DOCS = "tipline.transaction_documents"


def union_shape(n: int, most: int = 200) -> int:
    """The number of selects a UNION ALL of one per key is built with for ``n`` keys: the next
    power of two (at most ``most``), the rest filled with a key that matches nothing. Compiling
    a 200-select statement takes ~170 ms, far more than running it, and SQLAlchemy compiles
    each shape once: a shape per key count was a new compilation for nearly every group."""
    return min(most, 1 << max(0, n - 1).bit_length())


#: Statements ``insert_rows`` sent to the driver directly (not seen by SQLAlchemy's events;
#: tests that count a group's statements add these).
DRIVER_STATEMENTS = 0


def insert_rows(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``model``'s table in bulk: every row carries the first row's keys.

    The group forms write tens of thousands of rows per group (a viral file's duplicate pairs,
    a group's links), and SQLAlchemy's per-row parameter handling cost more than the database's
    own work. So the rows go to the driver directly: on PostgreSQL one ``COPY ... FROM STDIN``,
    on SQLite one ``executemany`` of tuples, each value through the column type's own bind
    processor (what Core would apply). A table with a client-side default for a column the
    rows leave out goes through Core (``insert_rows_core``), which applies it; so does any
    other dialect. ``insert_rows_core`` is the plain reference a test compares this with.
    """
    if not rows:
        return
    keys = list(rows[0])
    table: Table = model.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name not in ("sqlite", "postgresql") or any(
            c.default is not None for c in table.columns if c.name not in keys):
        insert_rows_core(session, model, rows)
        return
    cols = [table.c[k] for k in keys]
    procs = [(i, p) for i, c in enumerate(cols) if (p := c.type._cached_bind_processor(dialect)) is not None]
    data: list[Any] = [[r.get(k) for k in keys] for r in rows]
    for row in data:
        for i, proc in procs:
            row[i] = proc(row[i])
    prep = dialect.identifier_preparer
    names = ", ".join(prep.quote(c.name) for c in cols)
    global DRIVER_STATEMENTS
    # Sent past SQLAlchemy, so its cursor events never see it: counted here instead.
    DRIVER_STATEMENTS += 1
    raw: Any = conn.connection.dbapi_connection
    if dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {prep.format_table(table)} ({names}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
    else:
        cur = raw.cursor()
        try:
            cur.executemany(f"INSERT INTO {prep.format_table(table)} ({names}) VALUES "
                            f"({', '.join('?' * len(cols))})", data)
        finally:
            cur.close()


def insert_rows_core(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    """One executemany INSERT of ``rows`` into ``model``'s table through Core (the reference
    for ``insert_rows``).

    The ORM's bulk insert leaves out None values and batches rows by the keys left, so rows
    that differ in which columns are NULL would cost one statement each; every row here
    carries every key the first row has.
    """
    if not rows:
        return
    keys = list(rows[0])
    table: Table = model.__table__  # type: ignore[attr-defined]
    session.execute(insert(table), [{k: r.get(k) for k in keys} for r in rows])


def forget_objects(session: Session, *classes: type) -> None:
    """Drop ORM objects of these tables from the session after a group form rewrote their rows.

    Group forms write with plain DELETE/INSERT statements; an object loaded earlier in the same
    transaction (``session.get`` by a per-report stage) would otherwise be served again in place
    of the rows now stored.
    """
    for obj in [o for o in session.identity_map.values() if isinstance(o, classes)]:
        session.expunge(obj)


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


#: Reports run as one group (one transaction, each stage once over all of them) unless the
#: caller says otherwise: large enough that a stage's fixed cost per statement is shared by
#: hundreds of reports, small enough that a group's transaction stays short (seconds).
DEFAULT_GROUP_SIZE = 200


def run_reports(ctx: StageContext, work: dict[int, list[str] | None], *, max_seconds: float | None = None,
                group_size: int | None = None) -> None:
    """Run stages for several reports in groups: ``{report id: stage names or None}``.

    A group is two transactions (``phases``: the stages that read only the group's own
    reports, then the rest). In each the stages run **stage by stage** in dependency order,
    each over every report of the group that needs it: with the stage's set-based form
    (``StageDef.group``, a bounded number of statements for the whole group) when it has one,
    else report by report. Each group call runs in a SAVEPOINT; if it raises, the savepoint
    is rolled back and that stage runs for those reports one by one through the per-report
    ``func``, each in its own savepoint, so a report that fails fails alone: its error is in
    the ledger, its later stages are skipped, and the rest of the group commits.

    ``group_size`` caps the reports in one group (default ``DEFAULT_GROUP_SIZE``).
    ``max_seconds`` bounds how long one group's transaction may run, for SQLite where intake
    waits behind it for the write lock: groups then start at one report and double while a
    group takes under half of it, halving when one takes longer (a group cannot stop half-way
    through a stage).

    If a part's commit fails (a deadlock with another worker, a serialisation error, a lost
    connection), nothing of that part is kept and its reports run it, and what follows it,
    again the plain way.
    """
    items = list(work.items())
    limit = max(1, group_size or DEFAULT_GROUP_SIZE)
    size = 1 if max_seconds is not None else limit
    start = 0
    while start < len(items):
        began = time.monotonic()
        end = min(len(items), start + size)
        _run_group(ctx, items[start:end])
        start = end
        if max_seconds is not None:
            took = time.monotonic() - began
            if took > max_seconds:
                size = max(1, size // 2)
            elif took < max_seconds / 2:
                size = min(limit, size * 2)


def record_runs(session: Session, st: StageDef, report_ids: list[int], error: str | None = None) -> None:
    """``record_run`` for many reports of one stage: two statements (per 500 reports), not two per report."""
    if not report_ids:
        return
    for i in range(0, len(report_ids), 500):
        chunk = report_ids[i:i + 500]
        session.execute(delete(PipelineRun).where(PipelineRun.stage == st.name, PipelineRun.report_id.in_(chunk)))
    now = datetime.now(UTC)
    insert_rows(session, PipelineRun, [{"report_id": rid, "stage": st.name, "done_at": now,
                                        "version": st.version, "error": error} for rid in report_ids])


def _run_stage_over(ctx: StageContext, s: Session, st: StageDef, ids: list[int]
                    ) -> tuple[dict[int, Outcome], dict[int, str]]:
    """One stage over the reports ``ids`` inside the group's transaction: (outcomes, errors)."""
    if st.group is not None:
        try:
            with s.begin_nested():
                got = st.group(ctx, s, ids)
                # In the savepoint: later stages of these reports see that this one ran (the
                # first run must read what a re-run reads).
                record_runs(s, st, ids)
                s.flush()
            return {rid: got.get(rid) or Outcome.DONE for rid in ids}, {}
        except Exception:
            # Rolled back to the savepoint: now each report alone, so one bad report cannot
            # fail the others.
            log.warning("stage %s failed over a group of %d report(s); running them one by one", st.name,
                        len(ids), exc_info=True)
    outcomes: dict[int, Outcome] = {}
    errors: dict[int, str] = {}
    for rid in ids:
        try:
            with s.begin_nested():
                outcomes[rid] = st.func(ctx, s, rid) or Outcome.DONE
                record_run(s, rid, st, None)
                s.flush()
        except Exception as exc:
            log.exception("stage %s failed for report %s", st.name, rid)
            errors[rid] = _error_text(exc)
    return outcomes, errors


def phases() -> list[list[StageDef]]:
    """The stages split where a group's transaction commits: those before the first stage
    that reads other reports' rows (``StageDef.reads_others``), then the rest.

    Committing the first part (hashes, identifiers, location, jurisdiction: what reads only
    the group's own reports) before the second begins is what lets ``matches`` run beside
    other workers without the cross-report lock: a group publishes its hashes before it
    searches for others', so of two groups enriching copies of one image at once, the one
    that searches second finds the other's (each commits before it searches, so they cannot
    both search before the other committed). Its other effect: the costly part of a group
    is never rolled back by a deadlock or a lost connection in the part that waits for
    other workers.
    """
    order = stages()
    cut = next((i for i, st in enumerate(order) if st.reads_others), len(order))
    return [p for p in (order[:cut], order[cut:]) if p]


def _run_group(ctx: StageContext, group: list[tuple[int, list[str] | None]]) -> None:
    """Run one group of reports in two transactions, stage by stage (see ``run_reports`` and
    ``phases``)."""
    wanted = {rid: {st.name for st in _selected(names)} for rid, names in group}
    failed: set[int] = set()
    parts = phases()
    docs = GroupDocuments()  # the group's decoded documents, for both parts; dropped on return
    for n, part in enumerate(parts):
        if not _run_phase(ctx, [rid for rid, _ in group if rid not in failed], wanted, part, failed, docs):
            # Nothing of this part was kept: this part and the later ones the plain way.
            left = {st.name for p in parts[n:] for st in p}
            for rid, _ in group:
                if rid not in failed and wanted[rid] & left:
                    run_report_stepwise(ctx, rid, only=sorted(wanted[rid] & left))
            return


def _run_phase(ctx: StageContext, order: list[int], wanted: dict[int, set[str]], part: list[StageDef],
               failed: set[int], docs: GroupDocuments | None = None) -> bool:
    """The stages ``part`` over the reports ``order`` in one transaction; False if it could not
    commit. Reports whose stage failed are added to ``failed`` (their error is committed)."""
    if not any(st.name in wanted[rid] for rid in order for st in part):
        return True
    ledger: list[tuple[str, str | None]] = []  # what ran, for the metrics once committed
    outcomes: list[tuple[str, Outcome]] = []
    now_failed: set[int] = set()
    try:
        with transaction(ctx.rt.sessions, background=True) as s:
            # The group's own reports, for the whole transaction: no second job enriches one of
            # them meanwhile and no addendum changes a document the group read (store.db).
            report_locks(s, order)
            if docs is not None:
                s.info[_GROUP_DOCS] = docs
            for st in part:
                ids = [rid for rid in order if rid not in now_failed and st.name in wanted[rid]]
                if not ids:
                    continue
                done, errors = _run_stage_over(ctx, s, st, ids)
                if errors:
                    # Outside the rolled-back savepoints: the error is what the ledger keeps.
                    for rid, err in errors.items():
                        record_run(s, rid, st, err)
                    now_failed.update(errors)  # later stages read this one's output; the reconciler retries
                ledger += [(st.name, None)] * len(done) + [(st.name, "failed")] * len(errors)
                outcomes += [(st.name, o) for o in done.values()]
    except Exception:
        log.warning("a group of %d report(s) could not commit; running them one by one", len(order),
                    exc_info=True)
        return False
    from tipline.metrics import record_stage_runs

    # Counted once the part committed (a failed commit is counted by the stepwise rerun).
    record_stage_runs(ledger)
    ctx.count(outcomes)
    failed.update(now_failed)
    return True


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
