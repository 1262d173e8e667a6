"""hashing: provenance of file signals

Revision ID: 0003_hashing
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_hashing"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_signal_sources",
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("media_format", sa.String(length=20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_file_signal_sources_file_id_files"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_file_signal_sources")),
    )
    op.create_index("ix_file_signals_computed_at", "file_signals", ["computed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_file_signals_computed_at", table_name="file_signals")
    op.drop_table("file_signal_sources")
