"""Database tables (SQLAlchemy 2 declarative).

Kinds (report state, source, document kind, credential kind) are stored as strings so a
new kind needs no migration. Later pipeline stages (hashes, identifiers, incidents,
assessments, referrals, outcomes, audit) get tables of their own that point at
``reports.id`` / ``files.id``; nothing here has to be reshaped for them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

# Re-exported (the redundant aliases say so): other table modules, migrations and tests import
# them from here.
from tipline.store.base import NAMING as NAMING
from tipline.store.base import Base as Base
from tipline.store.base import ReportId as ReportId
from tipline.store.base import UTCDateTime as UTCDateTime


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
    # opened + 24 h, kept so that the expiry can be moved in a single UPDATE on each change.
    open_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Files uploaded so far; the next file's sequence number comes from it (no max() query).
    file_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
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
    # None: the hashes are known but the bytes are not held (simulated years with
    # ``--files hashes``, hash-only submissions).
    stored_name: Mapped[str | None] = mapped_column(String(128))
    # Ciphertext of a small blob kept in the row itself (see tipline.store.blobs).
    data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    md5: Mapped[str | None] = mapped_column(String(32))
    sha1: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class File(Base):
    """An uploaded file of a report: opaque 32-hex id, hashes, and the platform's fileDetails."""

    __tablename__ = "files"
    # Duplicates of a file in upload order (matches stage) and the reports holding a file (links
    # stage) are index ranges, however many copies a viral file has: no sort of every copy.
    __table_args__ = (UniqueConstraint("report_id", "seq", name="uq_files_report_seq"),
                      Index("ix_files_sha256_uploaded", "sha256", "uploaded_at", "id"),
                      Index("ix_files_sha256_report", "sha256", "report_id"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # No index of its own: uq_files_report_seq leads with it (migration 0015).
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str | None] = mapped_column(String(255))
    media_type: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    sha1: Mapped[str] = mapped_column(String(40))  # shown and exported, never searched by
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # tipline.model.report.FileDetails as JSON, from /fileinfo (latest wins; every body is kept).
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    details_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    file_relevance: Mapped[str | None] = mapped_column(String(40))
    viewed_by_esp: Mapped[bool | None] = mapped_column(Boolean)
    industry_classification: Mapped[str | None] = mapped_column(String(2))
    report: Mapped[Report] = relationship(back_populates="files")


# --- enrichment (pipeline stages 2-5) -----------------------------------------------------
# Every stage writes only rows keyed by the report (or file) it ran for, and replaces them
# when it runs again: re-running a stage for a report is idempotent.


class PipelineRun(Base):
    """That a stage ran for a report, and with which outcome (the reconciler's ledger)."""

    __tablename__ = "pipeline_runs"
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(40), primary_key=True)
    done_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[str] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)


class FileSignal(Base):
    """Perceptual signals of a file: PDQ and its quality for images; frame hashes for video."""

    __tablename__ = "file_signals"
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    media_kind: Mapped[str] = mapped_column(String(20))  # image | video | other
    pdq: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    pdq_quality: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    # vPDQ: [{"frame": n, "ts": seconds, "pdq": hex, "quality": q}, ...] for videos.
    video_frames: Mapped[list[Any] | None] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class HashBank(Base):
    """A named list of known hashes (e.g. an imported HMA/ThreatExchange PDQ list)."""

    __tablename__ = "hash_banks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    pdq_threshold: Mapped[int] = mapped_column(Integer, default=31)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BankEntry(Base):
    __tablename__ = "bank_entries"
    __table_args__ = (
        UniqueConstraint("bank_id", "hash_type", "value", name="uq_bank_entries_value"),
        Index("ix_bank_entries_type_value", "hash_type", "value"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("hash_banks.id", ondelete="CASCADE"), index=True)
    hash_type: Mapped[str] = mapped_column(String(20))  # md5 | sha1 | sha256 | pdq
    value: Mapped[str] = mapped_column(String(128))  # lowercase hex
    label: Mapped[str | None] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FileMatch(Base):
    """A file matched a bank entry, or is a (near-)duplicate of another stored file."""

    __tablename__ = "file_matches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # bank | duplicate
    hash_type: Mapped[str] = mapped_column(String(20))
    distance: Mapped[int] = mapped_column(Integer, default=0)
    bank_entry_id: Mapped[int | None] = mapped_column(ForeignKey("bank_entries.id", ondelete="CASCADE"), index=True)
    # Indexed with kind (migration 0014): a duplicate pair is read from this end as well.
    other_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_file_matches_other_file_kind", "other_file_id", "kind"),)


class Identifier(Base):
    """A normalised account, e-mail, phone number, IP address or device id."""

    __tablename__ = "identifiers"
    __table_args__ = (UniqueConstraint("kind", "scope", "value", name="uq_identifiers_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # account | email | phone | ip | device
    # The namespace the value is unique in: the service for accounts, the id type for devices.
    scope: Mapped[str] = mapped_column(String(100), default="")
    value: Mapped[str] = mapped_column(String(512))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)  # e.g. a known proxy/CGNAT address


class ReportIdentifier(Base):
    __tablename__ = "report_identifiers"
    # identifier -> reports in id order: the links stage's "earliest sharers of a key" is an index range.
    __table_args__ = (Index("ix_report_identifiers_identifier_report", "identifier_id", "report_id", "role"),)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    identifier_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(30), primary_key=True)  # reported | recipient | victim | reporter
    source: Mapped[str | None] = mapped_column(String(255))  # where in the report it was found


class ReportLink(Base):
    """Two reports share something: content (exact/near), an account, e-mail, device or IP."""

    __tablename__ = "report_links"
    __table_args__ = (Index("ix_report_links_b", "report_b"),)
    report_a: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    report_b: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(30), primary_key=True)
    detail: Mapped[str | None] = mapped_column(String(512))
    weight: Mapped[float] = mapped_column(default=1.0)


class ReportLinkChange(Base):
    """The links stage changed this report's links and the bundles stage has not read it yet
    (tipline.pipeline.linkchanges): links were removed or altered, or only those items added."""

    __tablename__ = "report_link_changes"
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    removed: Mapped[bool] = mapped_column(Boolean)


class ReportLinkChangeItem(Base):
    """One link of a ``ReportLinkChange``: added, or kept with a new detail (``reworded``)."""

    __tablename__ = "report_link_change_items"
    report_id: Mapped[int] = mapped_column(ForeignKey("report_link_changes.report_id", ondelete="CASCADE"),
                                           primary_key=True)
    other_report_id: Mapped[int] = mapped_column(ReportId, primary_key=True)
    reason: Mapped[str] = mapped_column(String(30), primary_key=True)
    weight: Mapped[float | None] = mapped_column()  # added links only
    detail: Mapped[str | None] = mapped_column(String(512))
    reworded: Mapped[bool] = mapped_column(Boolean)


class Incident(Base):
    """A bundle of reports about the same thing (batched, viral content, one offender)."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255), unique=True)  # stable: re-runs find the same incident
    #: The lowest-numbered member: with ``rule`` it makes the key ("rule:lowest"), kept as a fact
    #: so that nothing splits the key to learn it.
    lowest_report_id: Mapped[int] = mapped_column(ReportId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IncidentReport(Base):
    """A report's membership of an incident, and why: the rule, and the link to the member it names."""

    __tablename__ = "incident_reports"
    # Members whose reason names a given report (the report leaving an incident renames them).
    __table_args__ = (Index("ix_incident_reports_incident_via", "incident_id", "via_report_id"),)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True, index=True)
    #: Readable text made from the columns below (cut at 255); nothing reads it back.
    reason: Mapped[str | None] = mapped_column(String(255))
    rule: Mapped[str] = mapped_column(String(40))
    #: The member this one is linked to (the lowest-numbered), or None for a batched or single
    #: report. No foreign key: a purged report is named until the next re-plan, as text was.
    via_report_id: Mapped[int | None] = mapped_column(ReportId)
    #: That link's detail (or reason when it has none), whole (the text may be cut).
    link_detail: Mapped[str | None] = mapped_column(String(512))


class ReportIncidentCount(Base):
    """Incidents one report stands for (batched reports: one per reported user listed).

    NCMEC counts both reports and incidents from 2024: a platform may put many incidents (one
    per user involved in a viral item) into one bundled report. This is that count for one
    report (1 for an ordinary report); ``Incident``/``IncidentReport`` above are the other
    direction, the bundles grouping reports about the same thing.
    """

    __tablename__ = "report_incident_counts"
    report_id: Mapped[int] = mapped_column(ReportId, ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    incidents: Mapped[int] = mapped_column(Integer)
    basis: Mapped[str] = mapped_column(String(60))  # e.g. "batched: 7 reported users" | "single report"


class Location(Base):
    """One location estimate for a report, from one source."""

    __tablename__ = "locations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(30))  # ip | esp_estimate | user_supplied
    detail: Mapped[str | None] = mapped_column(String(255))  # readable: the IP address, event, path
    #: The precedence class (routing.toml [jurisdiction]) the location stage gave the row.
    location_class: Mapped[str] = mapped_column(String(30))
    ip: Mapped[str | None] = mapped_column(String(64))  # IP sources: the address (normalised when valid)
    event: Mapped[str | None] = mapped_column(String(20))  # IP sources: Login, Upload, … (Unknown if none)
    #: When the IP was captured or the platform estimated the place, to the second; None if not said.
    event_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    proxy: Mapped[bool | None] = mapped_column(Boolean)  # IP sources: flagged possibleProxy
    verified: Mapped[bool | None] = mapped_column(Boolean)  # platform estimates: verified by the platform
    country: Mapped[str | None] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(100))  # US state code for the US
    city: Mapped[str | None] = mapped_column(String(100))
    latitude: Mapped[float | None] = mapped_column()
    longitude: Mapped[float | None] = mapped_column()
    confidence: Mapped[float] = mapped_column(default=0.0)


class Jurisdiction(Base):
    """The resolved jurisdiction of a report: country and, in the US, state — or unknown."""

    __tablename__ = "jurisdictions"
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    country: Mapped[str | None] = mapped_column(String(2))  # None: unknown, never guessed
    us_state: Mapped[str | None] = mapped_column(String(2))
    source: Mapped[str | None] = mapped_column(String(30))
    confidence: Mapped[float] = mapped_column(default=0.0)
    reason: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Agency(Base):
    """A law-enforcement agency reports can be made available to (directory kept as data)."""

    __tablename__ = "agencies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(30))  # icac | federal | international | local
    country: Mapped[str | None] = mapped_column(String(2))
    us_state: Mapped[str | None] = mapped_column(String(2))
    # Counties/regions served within the state, when a state has several task forces.
    area: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notes: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where acknowledgement and outcome reminders are mailed (besides the agency's officers).
    contact_email: Mapped[str | None] = mapped_column(String(255))


class Referral(Base):
    """A report made available to an agency, why, and whether it was escalated."""

    __tablename__ = "referrals"
    __table_args__ = (UniqueConstraint("report_id", "agency_id", name="uq_referrals_report_agency"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    rule: Mapped[str] = mapped_column(String(60))
    reason: Mapped[str] = mapped_column(Text)
    made_available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The officer of the agency who holds it (tipline.store.tables_people.ReferralAction keeps
    # the history); the referral this one was transferred from, when an agency handed it over.
    assigned_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    transferred_from_id: Mapped[int | None] = mapped_column(ForeignKey("referrals.id"))


class Assessment(Base):
    """Quality, disposition and priority of a report, with reasons an analyst can read."""

    __tablename__ = "assessments"
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    quality: Mapped[float] = mapped_column()  # 0..1
    missing: Mapped[list[Any]] = mapped_column(JSON, default=list)
    disposition: Mapped[str] = mapped_column(String(20))  # referral | informational
    disposition_reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(Integer)  # 1 (child in imminent danger) .. 3
    priority_reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    escalate: Mapped[bool] = mapped_column(Boolean, default=False)
    rules_version: Mapped[str] = mapped_column(String(40))
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Referrals point at users (who holds one); the people tables must be known whenever these
# are, or the first flush fails to resolve that foreign key. Imported last: it needs Base.
from tipline.store import tables_people as _tables_people  # noqa: E402,F401
