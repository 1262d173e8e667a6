"""Engine, sessions and schema migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

MIGRATIONS = Path(__file__).with_name("migrations")


class TimedQueuePool(QueuePool):
    """SQLAlchemy's queue pool, recording how long each checkout took.

    The time covers waiting for a free connection and, when the pool opens a new one, the
    connect: both are time a request spends before its first statement, and under load they
    are where a pool too small for the server's thread pool shows
    (``tipline_db_pool_checkout_seconds``).
    """

    def _do_get(self) -> ConnectionPoolEntry:
        began = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            _observe_checkout(time.perf_counter() - began)


def _observe_checkout(seconds: float) -> None:
    # Imported on first use: prometheus-client costs ~0.1 s, which CLI start-up avoids.
    from tipline.metrics import record_pool_checkout

    record_pool_checkout(seconds)


def _time_commits(engine: Engine) -> None:
    """Record each COMMIT's duration: from the commit being issued to the connection's return
    to the pool, which follows it at once (the reset after a finished transaction sends
    nothing). That is the wait for the durable flush (WAL fsync) an acknowledgement rests on.
    """

    @event.listens_for(engine, "commit")
    def _commit_issued(conn: Any) -> None:
        conn.info["tipline_commit_t0"] = time.perf_counter()

    @event.listens_for(engine, "checkin")
    def _commit_done(_dbapi_conn: Any, record: Any) -> None:
        began = record.info.pop("tipline_commit_t0", None)
        if began is not None:
            from tipline.metrics import record_commit

            record_commit(time.perf_counter() - began)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine with the settings each backend needs for durable, concurrent intake.

    ``pool_size`` connections stay open once opened (``tipline serve`` passes its thread
    count, ``TIPLINE_DB_POOL_SIZE``); as many again may be opened beyond them, each closed
    after use.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            poolclass=TimedQueuePool,
            # The driver's own transaction handling is switched off so that we can BEGIN
            # IMMEDIATE: writers queue on the lock up front instead of failing to upgrade.
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we acknowledge it, power cut included.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # 64 MiB page cache per connection (default 2 MiB): a year of reports is hundreds of
            # MB, and the pipeline's lookups would otherwise go to the OS for every page.
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        # Writers queue on an in-process lock before they ask SQLite for its write lock: SQLite's
        # own busy handler polls with growing sleeps, which under load gives multi-second tails.
        # Reads begin a deferred transaction and never wait here (WAL lets them run beside a
        # writer).
        gate = WriteGate()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            unit = _WRITING.get()
            if unit is not None and not unit["begun"]:
                # Only the unit of work's own connection writes; a read session opened inside
                # it must not queue behind itself. The wait is bounded all the same.
                unit["begun"] = True
                background = bool(unit["background"])
                conn.info["tipline_write_lock"] = gate.acquire(urgent=not background,
                                                               timeout=300 if background else 30)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        @event.listens_for(engine, "checkin")
        def _sqlite_release(_dbapi_conn: Any, record: Any) -> None:
            # Checked in after COMMIT/ROLLBACK completed, so the next writer finds SQLite free.
            if record.info.pop("tipline_write_lock", False):
                gate.release()

        _time_commits(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    # No pre-ping: it costs a round trip per checkout (a tenth of intake's time); connections
    # are recycled instead, and a request that meets a dead one fails with a retryable code.
    engine = create_engine(url, poolclass=TimedQueuePool, pool_size=pool_size, max_overflow=pool_size,
                           pool_recycle=1800)
    _time_commits(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class WriteGate:
    """SQLite's one writer, queued in-process, with intake ahead of background work.

    Intake acknowledges reports while a platform waits; enrichment can wait. A background
    writer (``transaction(..., background=True)``) only takes the gate when no urgent writer
    is waiting, so a busy enrichment queue cannot starve intake.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._urgent_waiting = 0

    def acquire(self, *, urgent: bool, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._held or (not urgent and self._urgent_waiting):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False  # proceed without the gate; SQLite's own lock still holds
                    self._cond.wait(remaining)
                self._held = True
                return True
            finally:
                if urgent:
                    self._urgent_waiting -= 1

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


_WRITING: ContextVar[dict[str, bool] | None] = ContextVar("tipline_writing", default=None)


@contextmanager
def transaction(factory: sessionmaker[Session], *, background: bool = False) -> Iterator[Session]:
    """One unit of work that may write: commits on success, rolls back on any exception.

    Plain ``factory()`` sessions are for reading; on SQLite only ``transaction`` takes the
    write lock up front (BEGIN IMMEDIATE). ``background`` work (enrichment) gives way to
    intake for that lock.
    """
    token = _WRITING.set({"begun": False, "background": background})
    try:
        with factory() as session, session.begin():
            yield session
    finally:
        _WRITING.reset(token)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database schema to the newest migration."""
    from alembic import command

    # "heads": stage areas may add migration branches of their own off a common base.
    command.upgrade(alembic_config(url), "heads")


def load_models() -> None:
    """Import ``tipline.store.tables`` and every ``tipline.store.tables_*`` module, so that
    ``Base.metadata`` knows every table (migrations and the schema test rely on it)."""
    import importlib
    import pkgutil

    from tipline import store

    importlib.import_module("tipline.store.tables")
    for mod in pkgutil.iter_modules(store.__path__):
        if mod.name.startswith("tables_"):
            importlib.import_module(f"tipline.store.{mod.name}")


#: ``session.info`` key: the transaction (by id) that holds the cross-report lock.
_CROSS_LOCK = "tipline.cross_report_lock"


def cross_report_lock(session: Session) -> bool:
    """Serialise the stages that read other reports (matches, links, bundles) until commit.

    Two transactions enriching at once on PostgreSQL each read the other's reports as they
    were before either began: two copies of one image, filed seconds apart, would each find
    no duplicate, and no re-run would ever agree with that first run. Holding one advisory
    lock from the first cross-report read to the commit makes the later of the two read the
    earlier one's committed rows. (SQLite writers are serial already: BEGIN IMMEDIATE.)
    It is taken by the stages that read *other* reports' links and incidents (links,
    bundles, assess), which the runner orders after the stages that read only their own
    report (``pipeline.core.stages``): a group's hashing, identifiers and locations run
    beside other workers, and only its cross-report part is serial. ``matches`` does not
    take it: it reads only other reports' hashes, and the runner commits a group's hashes
    before its matches begin (``pipeline.core.phases``), which is enough for the later of
    two concurrent groups to see the earlier one's. What only concerns one
    report (a second job for it, an addendum) is serialised by ``report_locks`` instead.

    Returns True when this call took the lock for the current transaction, so the caller can
    refresh in-memory views of other processes' rows exactly once, after taking it.
    """
    tx = session.get_transaction()
    key = id(tx) if tx is not None else None
    if session.info.get(_CROSS_LOCK) == key:
        return False
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sql_text("SELECT pg_advisory_xact_lock(hashtext('tipline.bundles'))"))
    session.info[_CROSS_LOCK] = key
    return True


#: Advisory-lock keys of reports are this plus the report id: above every ``hashtext`` key
#: (those are 32-bit), so a report's lock never collides with a named lock.
_REPORT_LOCK_BASE = 1 << 40


def report_locks(session: Session, report_ids: list[int]) -> None:
    """Hold the advisory lock of each of ``report_ids`` until commit (PostgreSQL; one statement).

    What it serialises is per report, not global: two workers enriching the same report (a
    job retried while its first run is still alive, a reconciler racing a hook), and an
    addendum changing a report's document while a group that read the old document is in
    flight (``intake.add_document`` takes the same lock): the later transaction waits for the
    earlier one's commit and then reads what it wrote. Locks are taken in id order, in one
    statement, so two groups that share reports cannot deadlock on them. (SQLite writers are
    serial already: BEGIN IMMEDIATE.)
    """
    if not report_ids or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(sql_text(
        "SELECT pg_advisory_xact_lock(CAST(:base AS bigint) + t.r) FROM "
        "(SELECT r FROM unnest(CAST(:ids AS bigint[])) AS r ORDER BY r) AS t"),
        {"base": _REPORT_LOCK_BASE, "ids": sorted(set(int(r) for r in report_ids))})
