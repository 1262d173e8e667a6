"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tipline.runtime import Runtime
from tipline.store.db import load_models
from tipline.store.tables import Base

load_models()


def test_models_and_migrations_agree(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Server-side type differences of JSON/timestamps on SQLite are not schema drift.
    real = [d for d in diff if d[0] not in ("modify_type",)]
    assert real == [], real
