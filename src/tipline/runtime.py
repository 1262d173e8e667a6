"""Wiring: one object that holds the open database, blob store and services of an instance."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tipline.config import Settings
from tipline.store.blobs import BlobStore, load_key
from tipline.store.db import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from tipline.intake.credentials import Authenticator
    from tipline.intake.service import Intake


class NotInitialised(SystemExit):
    pass


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        key_path = settings.effective_key_file
        if not key_path.exists():
            raise NotInitialised(
                f"no blob key at {key_path}: run `tipline init` (data dir {settings.data_dir})"
            )
        # One connection per thread of the server's pool: a smaller pool makes request threads
        # queue for connections, or open and close overflow ones per request.
        engine = make_engine(settings.effective_database_url, pool_size=settings.effective_pool_size)
        sessions = make_sessionmaker(engine)
        blobs = BlobStore(settings.blob_dir, load_key(key_path), settings.inline_blob_bytes)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            blobs=blobs,
        )

    # Built on first use: the intake service pulls in the XML parser and the report model
    # (~0.15 s of imports), which the CLI's read commands never need.
    @cached_property
    def intake(self) -> Intake:
        from tipline.intake.service import Intake

        return Intake(self.settings, self.sessions, self.blobs)

    @cached_property
    def auth(self) -> Authenticator:
        from tipline.intake.credentials import Authenticator

        return Authenticator(self.sessions, self.settings.auth_cache_seconds,
                             self.settings.auth_recheck_seconds)

    def close(self) -> None:
        self.engine.dispose()
