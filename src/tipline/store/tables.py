"""Database tables (SQLAlchemy 2 declarative).

Kinds (report state, source, document kind, credential kind) are stored as strings so a
new kind needs no migration. Later pipeline stages (hashes, identifiers, incidents,
assessments, referrals, outcomes, audit) get tables of their own that point at
``reports.id`` / ``files.id``; nothing here has to be reshaped for them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger elsewhere.
ReportId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Reporter(Base):
    """Who reports: an ESP (platform) organisation, or the public web form."""

    __tablename__ = "reporters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # "esp" | "public"
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    credentials: Mapped[list[Credential]] = relationship(back_populates="reporter")


class Credential(Base):
    """A secret a reporter authenticates with: HTTP Basic password or API bearer token."""

    __tablename__ = "credentials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("reporters.id"))
    kind: Mapped[str] = mapped_column(String(20))  # "basic" | "bearer"
    # Basic: the username. Bearer: the token's public id (the part before the secret).
    lookup: Mapped[str] = mapped_column(String(255), unique=True)
    # Basic: argon2id PHC string. Bearer: SHA-256 hex of the high-entropy secret.
    secret_hash: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reporter: Mapped[Reporter] = relationship(back_populates="credentials")


class Report(Base):
    """A CyberTipline report: state, key parsed fields, and the whole parsed tree as JSON."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("reporter_id", "idempotency_key", name="uq_reports_idempotency"),
        Index("ix_reports_state_expires", "state", "expires_at"),
        Index("ix_reports_reporter_opened", "reporter_id", "opened_at"),
        {"sqlite_autoincrement": True},  # never reuse the id of a purged report
    )
    id: Mapped[int] = mapped_column(ReportId, primary_key=True, autoincrement=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("reporters.id"))
    source: Mapped[str] = mapped_column(String(20))  # "ispws" | "api" | "web"
    state: Mapped[str] = mapped_column(String(20))  # open | finished | retracted | expired
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_change_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # max(opened + 24 h, last change + 1 h) while open; null once finished or retracted.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    incident_type: Mapped[str | None] = mapped_column(String(100))
    incident_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalation: Mapped[str | None] = mapped_column(Text)
    batched: Mapped[bool] = mapped_column(Boolean, default=False)
    # The parsed report (tipline.model.report.Report as JSON); null once purged.
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    normalisations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # Public reports: SHA-256 of the receipt code (the code itself is only shown once).
    receipt_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    files: Mapped[list[File]] = relationship(back_populates="report", order_by="File.seq")


class Document(Base):
    """A body exactly as received (submit XML, fileinfo XML, JSON, web form), byte for byte."""

    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(20))  # submit | fileinfo | json | web | addendum
    content_type: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class Blob(Base):
    """Encrypted content, one row per distinct SHA-256 (uploads of the same bytes share it)."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    stored_name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class File(Base):
    """An uploaded file of a report: opaque 32-hex id, hashes, and the platform's fileDetails."""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("report_id", "seq", name="uq_files_report_seq"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str | None] = mapped_column(String(255))
    media_type: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32), index=True)
    sha1: Mapped[str] = mapped_column(String(40), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # tipline.model.report.FileDetails as JSON, from /fileinfo (latest wins; every body is kept).
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    details_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    file_relevance: Mapped[str | None] = mapped_column(String(40))
    viewed_by_esp: Mapped[bool | None] = mapped_column(Boolean)
    industry_classification: Mapped[str | None] = mapped_column(String(2))
    report: Mapped[Report] = relationship(back_populates="files")
