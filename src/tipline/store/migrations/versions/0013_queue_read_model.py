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
    # The rows of a store that already holds assessed reports, by SQL frozen here as
    # tipline.console.queue_model.entries_select compiled at this revision: a migration must
    # not call today's code, which may read columns later migrations add.
    # tests/test_migrations.py checks the fill against the current code.
    bind = op.get_bind()
    false = "false" if bind.dialect.name == "postgresql" else "0"
    op.execute(_FILL.format(false=false))


_FILL = """
INSERT INTO queue_entries (report_id, received_at, priority, pipeline_priority, priority_overridden,
    disposition, pipeline_disposition, escalated, pipeline_escalated, closed, incident_type, reporter_id,
    country, us_state, bank_match, holder_id, claim_expires_at)
SELECT assessments.report_id, reports.finished_at, coalesce(op.priority, assessments.priority),
    assessments.priority, lo.p IS NOT NULL, coalesce(od.disposition, assessments.disposition),
    assessments.disposition, coalesce(oe.escalate, assessments.escalate), assessments.escalate,
    coalesce(oc.closed, {false}), reports.incident_type, reports.reporter_id, jurisdictions.country,
    jurisdictions.us_state, banked.report_id IS NOT NULL, claims.user_id, claims.expires_at
FROM assessments JOIN reports ON reports.id = assessments.report_id
LEFT OUTER JOIN (SELECT assessment_overrides.report_id AS report_id,
        max(CASE WHEN (assessment_overrides.priority IS NOT NULL) THEN assessment_overrides.id END) AS p,
        max(CASE WHEN (assessment_overrides.disposition IS NOT NULL) THEN assessment_overrides.id END) AS d,
        max(CASE WHEN (assessment_overrides.escalate IS NOT NULL) THEN assessment_overrides.id END) AS e,
        max(CASE WHEN (assessment_overrides.closed IS NOT NULL) THEN assessment_overrides.id END) AS c
    FROM assessment_overrides GROUP BY assessment_overrides.report_id) AS lo
    ON lo.report_id = assessments.report_id
LEFT OUTER JOIN assessment_overrides AS op ON op.id = lo.p
LEFT OUTER JOIN assessment_overrides AS od ON od.id = lo.d
LEFT OUTER JOIN assessment_overrides AS oe ON oe.id = lo.e
LEFT OUTER JOIN assessment_overrides AS oc ON oc.id = lo.c
LEFT OUTER JOIN jurisdictions ON jurisdictions.report_id = assessments.report_id
LEFT OUTER JOIN claims ON claims.report_id = assessments.report_id
LEFT OUTER JOIN (SELECT files.report_id AS report_id
    FROM files JOIN file_matches ON file_matches.file_id = files.id
    WHERE file_matches.kind = 'bank' GROUP BY files.report_id) AS banked
    ON banked.report_id = assessments.report_id
WHERE reports.state = 'finished'
"""


def downgrade() -> None:
    op.drop_table("queue_entries")
