"""Hashing-area table: where a file's perceptual signal came from (issue 3, items 3-5)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tipline.store.tables import Base, FileSignal, UTCDateTime


class FileSignalSource(Base):
    """Provenance of a file's ``file_signals`` row: computed here, or supplied by the platform.

    ``source``: ``computed`` (decoded and hashed from the held bytes), ``platform`` (the PDQ
    the platform gave in its fileDetails, bytes not held), or ``none`` (nothing to hash).
    ``detail`` says why a signal is missing (decode error, video too large, vpdq absent).
    """

    __tablename__ = "file_signal_sources"
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    media_format: Mapped[str | None] = mapped_column(String(20))  # sniffed: jpeg, png, iso-bmff ...
    detail: Mapped[str | None] = mapped_column(Text)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The near-duplicate index of each worker process picks up hashes other processes stored
# by scanning file_signals for recent computed_at values; this keeps that scan cheap.
Index("ix_file_signals_computed_at", FileSignal.computed_at)
