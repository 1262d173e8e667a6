"""console: indexes to read a narrow queue filter from its own reports (country, US state,
incident type, escalation) instead of walking the whole queue order

Revises 0010 on this branch: 0011 is taken by other work; whichever merges second points
its ``down_revision`` at the other.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jurisdictions", schema=None) as batch_op:
        batch_op.create_index("ix_jurisdictions_country_state", ["country", "us_state"], unique=False)
        batch_op.create_index("ix_jurisdictions_state", ["us_state"], unique=False)
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index("ix_reports_incident_type", ["incident_type"], unique=False)
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.create_index("ix_assessments_escalate", ["escalate"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_assessments_escalate")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_incident_type")
    with op.batch_alter_table("jurisdictions", schema=None) as batch_op:
        batch_op.drop_index("ix_jurisdictions_state")
        batch_op.drop_index("ix_jurisdictions_country_state")
