"""People and their work: accounts, sessions, tokens, the audit trail, and what analysts and
officers record on reports and referrals (claims, labels, assessment overrides, legal
process, outcome events).

Every judgement a person makes is a new row, never an edit of the pipeline's: the
pipeline's assessment stays beside an analyst's override, an outcome amendment points at the
event it changes, and the audit trail is append-only and hash-chained.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tipline.store.base import Base, UTCDateTime

AuditId = BigInteger().with_variant(Integer(), "sqlite")


class User(Base):
    """A person who signs in. ``role`` names a member of ``tipline.kinds.roles.ROLES``."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    # Officers belong to exactly one agency; platform staff to exactly one reporter (ESP).
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("reporters.id"), index=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    # argon2id PHC string.
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Base32 TOTP secret (roles that need it); null until provisioned.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The last accepted TOTP time step: a code is accepted once (no replay within its window).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserToken(Base):
    """A bearer token of a user for the JSON API: only its SHA-256 is kept; revocable."""

    __tablename__ = "user_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # The token's public id (the part before the secret), for lookup and for the audit trail.
    lookup: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A server-side sign-in session; the cookie carries a secret whose SHA-256 is the key."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of the cookie value
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))


class SignInAttempt(Base):
    """Every sign-in attempt, for lock-out per account and rate limits per address."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (Index("ix_sign_in_attempts_address_at", "address", "at"),
                      Index("ix_sign_in_attempts_username_at", "username", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60))
    address: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    ok: Mapped[bool] = mapped_column(Boolean)
    # Why it failed, as a fixed word (password, totp, totp_reused, locked, disabled, rate, unknown).
    failure: Mapped[str | None] = mapped_column(String(20))


class AuditEvent(Base):
    """One row of the append-only, hash-chained audit trail (tipline.people.audit)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_object", "object_kind", "object_id"),
                      Index("ix_audit_events_actor_at", "actor", "at"))
    # Position in the chain: 1, 2, 3, … without gaps (appending is serialised).
    seq: Mapped[int] = mapped_column(AuditId, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    # The username (or "system", "cli:<os user>", "esp:<name>") as it was when the row was written.
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str | None] = mapped_column(String(20))
    token_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(60), index=True)
    object_kind: Mapped[str | None] = mapped_column(String(30))
    object_id: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


# --- the analyst's work -----------------------------------------------------------------


class Claim(Base):
    """Who holds a report in the analyst queue; one holder at a time, released on expiry."""

    __tablename__ = "claims"
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FileLabel(Base):
    """An analyst's judgement of a file; the latest row per file is current, older ones stay."""

    __tablename__ = "file_labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    classification: Mapped[str | None] = mapped_column(String(2))  # A1 | A2 | B1 | B2
    age_range: Mapped[str | None] = mapped_column(String(20))
    apparent_minor: Mapped[bool | None] = mapped_column(Boolean)
    generative_ai: Mapped[bool | None] = mapped_column(Boolean)
    self_generated: Mapped[bool | None] = mapped_column(Boolean)
    known_series: Mapped[str | None] = mapped_column(String(255))
    # Set when this label was copied from an exact copy (same SHA-256) labelled by hand.
    copied_from_file_id: Mapped[str | None] = mapped_column(String(32))
    labelled_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AssessmentOverride(Base):
    """A person's change to the pipeline's assessment, with the reason; latest wins."""

    __tablename__ = "assessment_overrides"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    priority: Mapped[int | None] = mapped_column(Integer)
    disposition: Mapped[str | None] = mapped_column(String(20))
    escalate: Mapped[bool | None] = mapped_column(Boolean)
    # "closed informational" and similar end states of analyst review.
    closed: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- the officer's work -------------------------------------------------------------------


class ReferralAction(Base):
    """What a person did with a referral besides outcomes: assign, transfer, manual routing."""

    __tablename__ = "referral_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(20))  # acknowledge | assign | transfer | route
    assignee_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # A transfer's new referral (of the other agency).
    target_referral_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class LegalProcess(Base):
    """Legal process an agency recorded on its referral: opens files the platform never viewed."""

    __tablename__ = "legal_process"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(30))  # search_warrant | court_order | subpoena | consent
    reference: Mapped[str] = mapped_column(String(255))
    issued_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Outcome(Base):
    """A dated outcome event on a referral (tipline.outcomes). Never edited: an amendment or a
    withdrawal is a new row whose ``supersedes_id`` names the event it changes."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("agency_id", "idempotency_key", name="uq_outcomes_idempotency"),
                      Index("ix_outcomes_referral_occurred", "referral_id", "occurred_on", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"))
    # The agency that reported it (the referral's, denormalised for the idempotency key).
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    # record | amend | withdraw
    kind: Mapped[str] = mapped_column(String(10), default="record", server_default="record")
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("outcomes.id"))
    occurred_on: Mapped[date] = mapped_column(Date)
    persons: Mapped[int | None] = mapped_column(Integer)
    children: Mapped[int | None] = mapped_column(Integer)
    arrest_type: Mapped[str | None] = mapped_column(String(30))
    result: Mapped[str | None] = mapped_column(String(40))
    nibrs_code: Mapped[str | None] = mapped_column(String(1))
    reason: Mapped[str | None] = mapped_column(String(60))
    note: Mapped[str | None] = mapped_column(Text)
    # Who and by which way in: page | api | csv | sim | cli
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    via: Mapped[str] = mapped_column(String(10))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of the request body an idempotency key was first used with (a reuse with
    # another body is refused rather than silently answered with the first result).
    request_hash: Mapped[str | None] = mapped_column(String(64))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("outcome_imports.id"))
    codes_version: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutcomeImport(Base):
    """A CSV file of outcomes an agency uploaded; the same bytes imported again change nothing."""

    __tablename__ = "outcome_imports"
    __table_args__ = (UniqueConstraint("agency_id", "sha256", name="uq_outcome_imports_file"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str | None] = mapped_column(String(255))
    rows: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReminderSent(Base):
    """A reminder mail sent to an agency (acknowledgement overdue, outcome missing)."""

    __tablename__ = "reminders_sent"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # acknowledge | outcome
    referral_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
