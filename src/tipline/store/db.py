"""Engine, sessions and schema migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine with the settings each backend needs for durable, concurrent intake."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
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
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    with factory() as session, session.begin():
        yield session


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
