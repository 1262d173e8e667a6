"""people and their work: accounts, sessions, tokens, sign-in attempts, the audit trail,
claims, file labels, assessment overrides, referral actions, legal process, outcomes,
outcome imports and reminders; who holds a referral and where it came from

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tipline.store.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("object_kind", sa.String(length=30), nullable=True),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
        batch_op.create_index("ix_audit_events_actor_at", ["actor", "at"], unique=False)
        batch_op.create_index("ix_audit_events_object", ["object_kind", "object_id"], unique=False)

    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("failure", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempts")),
    )
    with op.batch_alter_table("sign_in_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_attempts_address_at", ["address", "at"], unique=False)
        batch_op.create_index("ix_sign_in_attempts_username_at", ["username", "at"], unique=False)

    op.create_table(
        "reminders_sent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("referral_ids", sa.JSON(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("sent_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name=op.f("fk_reminders_sent_agency_id_agencies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders_sent")),
    )
    with op.batch_alter_table("reminders_sent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminders_sent_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=True),
        sa.Column("reporter_id", sa.Integer(), nullable=True),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("password_changed_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_sign_ins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", tipline.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name=op.f("fk_users_agency_id_agencies")),
        sa.ForeignKeyConstraint(["reporter_id"], ["reporters.id"], name=op.f("fk_users_reporter_id_reporters")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_users_reporter_id"), ["reporter_id"], unique=False)

    op.create_table(
        "assessment_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("disposition", sa.String(length=20), nullable=True),
        sa.Column("escalate", sa.Boolean(), nullable=True),
        sa.Column("closed", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_assessment_overrides_report_id_reports"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_assessment_overrides_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessment_overrides")),
    )
    with op.batch_alter_table("assessment_overrides", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assessment_overrides_report_id"), ["report_id"], unique=False)

    op.create_table(
        "claims",
        sa.Column("report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_claims_report_id_reports"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_claims_user_id_users")),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_claims")),
    )
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_claims_user_id"), ["user_id"], unique=False)

    op.create_table(
        "outcome_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("imported_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name=op.f("fk_outcome_imports_agency_id_agencies")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_outcome_imports_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome_imports")),
        sa.UniqueConstraint("agency_id", "sha256", name="uq_outcome_imports_file"),
    )
    op.create_table(
        "user_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("created_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_tokens_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_tokens")),
        sa.UniqueConstraint("lookup", name=op.f("uq_user_tokens_lookup")),
    )
    with op.batch_alter_table("user_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "file_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("classification", sa.String(length=2), nullable=True),
        sa.Column("age_range", sa.String(length=20), nullable=True),
        sa.Column("apparent_minor", sa.Boolean(), nullable=True),
        sa.Column("generative_ai", sa.Boolean(), nullable=True),
        sa.Column("self_generated", sa.Boolean(), nullable=True),
        sa.Column("known_series", sa.String(length=255), nullable=True),
        sa.Column("copied_from_file_id", sa.String(length=32), nullable=True),
        sa.Column("labelled_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_file_labels_file_id_files"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_file_labels_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_labels")),
    )
    with op.batch_alter_table("file_labels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_file_labels_file_id"), ["file_id"], unique=False)

    op.create_table(
        "legal_process",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("recorded_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referrals.id"], name=op.f("fk_legal_process_referral_id_referrals"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_legal_process_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_process")),
    )
    with op.batch_alter_table("legal_process", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_legal_process_referral_id"), ["referral_id"], unique=False)

    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), server_default="record", nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("persons", sa.Integer(), nullable=True),
        sa.Column("children", sa.Integer(), nullable=True),
        sa.Column("arrest_type", sa.String(length=30), nullable=True),
        sa.Column("result", sa.String(length=40), nullable=True),
        sa.Column("nibrs_code", sa.String(length=1), nullable=True),
        sa.Column("reason", sa.String(length=60), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("via", sa.String(length=10), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("codes_version", sa.String(length=20), nullable=False),
        sa.Column("recorded_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name=op.f("fk_outcomes_agency_id_agencies")),
        sa.ForeignKeyConstraint(
            ["import_id"], ["outcome_imports.id"], name=op.f("fk_outcomes_import_id_outcome_imports")
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referrals.id"], name=op.f("fk_outcomes_referral_id_referrals"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["supersedes_id"], ["outcomes.id"], name=op.f("fk_outcomes_supersedes_id_outcomes")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_outcomes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.UniqueConstraint("agency_id", "idempotency_key", name="uq_outcomes_idempotency"),
    )
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outcomes_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index("ix_outcomes_referral_occurred", ["referral_id", "occurred_on", "id"], unique=False)

    op.create_table(
        "referral_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("assignee_user_id", sa.Integer(), nullable=True),
        sa.Column("target_referral_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", tipline.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee_user_id"], ["users.id"], name=op.f("fk_referral_actions_assignee_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"],
            ["referrals.id"],
            name=op.f("fk_referral_actions_referral_id_referrals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_referral_actions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_actions")),
    )
    with op.batch_alter_table("referral_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_actions_referral_id"), ["referral_id"], unique=False)

    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact_email", sa.String(length=255), nullable=True))

    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assigned_user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("transferred_from_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_referrals_assigned_user_id_users"), "users", ["assigned_user_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_referrals_transferred_from_id_referrals"), "referrals", ["transferred_from_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_referrals_transferred_from_id_referrals"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_referrals_assigned_user_id_users"), type_="foreignkey")
        batch_op.drop_column("transferred_from_id")
        batch_op.drop_column("assigned_user_id")

    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_column("contact_email")

    with op.batch_alter_table("referral_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_actions_referral_id"))

    op.drop_table("referral_actions")
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_outcomes_referral_occurred")
        batch_op.drop_index(batch_op.f("ix_outcomes_agency_id"))

    op.drop_table("outcomes")
    with op.batch_alter_table("legal_process", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_process_referral_id"))

    op.drop_table("legal_process")
    with op.batch_alter_table("file_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_file_labels_file_id"))

    op.drop_table("file_labels")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))

    op.drop_table("web_sessions")
    with op.batch_alter_table("user_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_tokens_user_id"))

    op.drop_table("user_tokens")
    op.drop_table("outcome_imports")
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claims_user_id"))

    op.drop_table("claims")
    with op.batch_alter_table("assessment_overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessment_overrides_report_id"))

    op.drop_table("assessment_overrides")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_reporter_id"))
        batch_op.drop_index(batch_op.f("ix_users_agency_id"))

    op.drop_table("users")
    with op.batch_alter_table("reminders_sent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminders_sent_agency_id"))

    op.drop_table("reminders_sent")
    with op.batch_alter_table("sign_in_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_sign_in_attempts_username_at")
        batch_op.drop_index("ix_sign_in_attempts_address_at")

    op.drop_table("sign_in_attempts")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_object")
        batch_op.drop_index("ix_audit_events_actor_at")
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
