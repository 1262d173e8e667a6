"""routing: incidents each report stands for (reports vs incidents counts)

Revision ID: 0003_routing
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_routing"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_incident_counts",
        sa.Column("report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("incidents", sa.Integer(), nullable=False),
        sa.Column("basis", sa.String(length=60), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_report_incident_counts_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_report_incident_counts")),
    )


def downgrade() -> None:
    op.drop_table("report_incident_counts")
