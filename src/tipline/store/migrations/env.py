"""Alembic environment: runs migrations with tipline's own engine settings."""

from __future__ import annotations

from alembic import context

from tipline.store.db import load_models, make_engine
from tipline.store.tables import Base

load_models()

config = context.config
target_metadata = Base.metadata


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # On a shared database, only our own tables are ours to create or drop.
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_engine(url, pool_size=1)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=_include,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
