"""console: the analyst queue's read model (queue_entries), filled from the base tables

One narrow row per assessed, finished report with the values in effect the queue filters,
sorts and counts on (tipline.console.queue_model). An existing store's rows are written here
by the same rebuild as ``tipline console rebuild-queue``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tipline.store.base import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_FILTERS = ("disposition", "escalated", "bank_match", "incident_type", "reporter_id", "country", "us_state")


def upgrade() -> None:
    op.create_table(
        "queue_entries",
        sa.Column("report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("pipeline_priority", sa.Integer(), nullable=False),
        sa.Column("priority_overridden", sa.Boolean(), nullable=False),
        sa.Column("disposition", sa.String(length=20), nullable=False),
        sa.Column("pipeline_disposition", sa.String(length=20), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("pipeline_escalated", sa.Boolean(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("incident_type", sa.String(length=100), nullable=True),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("us_state", sa.String(length=2), nullable=True),
        sa.Column("bank_match", sa.Boolean(), nullable=False),
        sa.Column("holder_id", sa.Integer(), nullable=True),
        sa.Column("claim_expires_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"], name=op.f("fk_queue_entries_report_id_reports"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_queue_entries")),
    )
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.create_index("ix_queue_entries_walk", ["closed", "priority", "report_id", "holder_id",
                                                        "claim_expires_at"], unique=False)
        batch_op.create_index("ix_queue_entries_order", ["priority", "report_id", "holder_id", "claim_expires_at"],
                              unique=False)
        for c in _FILTERS:
            batch_op.create_index(f"ix_queue_entries_{c}", [c, "closed", "priority", "report_id"], unique=False)
        batch_op.create_index("ix_queue_entries_holder", ["holder_id", "closed", "priority", "report_id",
                                                          "claim_expires_at"], unique=False)
        batch_op.create_index("ix_queue_entries_combo", ["pipeline_priority", "pipeline_disposition",
                                                         "pipeline_escalated", "bank_match", "incident_type",
                                                         "reporter_id", "country", "us_state"], unique=False)
    # The rows of a store that already holds assessed reports.
    from sqlalchemy.orm import Session

    from tipline.console import queue_model

    with Session(bind=op.get_bind()) as s:
        queue_model.rebuild(s)


def downgrade() -> None:
    op.drop_table("queue_entries")
