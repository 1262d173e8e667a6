"""console indexes: the queue in priority then age order; reports with a hash-bank match

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.create_index("ix_assessments_priority_report", ["priority", "report_id"], unique=False)
    with op.batch_alter_table("file_matches", schema=None) as batch_op:
        batch_op.create_index("ix_file_matches_kind_file", ["kind", "file_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("file_matches", schema=None) as batch_op:
        batch_op.drop_index("ix_file_matches_kind_file")
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_assessments_priority_report")
