"""Wiring: one object that holds the open database, blob store and services of an instance."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tipline.config import Settings
from tipline.intake.credentials import Authenticator
from tipline.intake.service import Intake
from tipline.store.blobs import BlobStore, load_key
from tipline.store.db import make_engine, make_sessionmaker


class NotInitialised(SystemExit):
    pass


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    intake: Intake
    auth: Authenticator

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        key_path = settings.effective_key_file
        if not key_path.exists():
            raise NotInitialised(
                f"no blob key at {key_path}: run `tipline init` (data dir {settings.data_dir})"
            )
        engine = make_engine(settings.effective_database_url)
        sessions = make_sessionmaker(engine)
        blobs = BlobStore(settings.blob_dir, load_key(key_path), settings.inline_blob_bytes)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            blobs=blobs,
            intake=Intake(settings, sessions, blobs),
            auth=Authenticator(sessions, settings.auth_cache_seconds, settings.auth_recheck_seconds),
        )

    def close(self) -> None:
        self.engine.dispose()
