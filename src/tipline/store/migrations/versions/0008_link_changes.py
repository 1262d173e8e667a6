"""link changes: what a run of the links stage changed in a report's links, for the bundles stage

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "report_link_changes",
        sa.Column("report_id", _ID, nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"], name=op.f("fk_report_link_changes_report_id_reports"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_report_link_changes")),
    )
    op.create_table(
        "report_link_change_items",
        sa.Column("report_id", _ID, nullable=False),
        sa.Column("other_report_id", _ID, nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("weight", sa.Double(), nullable=True),
        sa.Column("detail", sa.String(length=512), nullable=True),
        sa.Column("reworded", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["report_link_changes.report_id"],
                                name=op.f("fk_report_link_change_items_report_id_report_link_changes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id", "other_report_id", "reason", name=op.f("pk_report_link_change_items")),
    )


def downgrade() -> None:
    op.drop_table("report_link_change_items")
    op.drop_table("report_link_changes")
