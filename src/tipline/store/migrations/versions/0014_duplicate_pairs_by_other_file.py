"""file_matches: duplicate pairs found from either file by an index on (other_file_id, kind)

A duplicate pair is stored once, under one of its two files, so the links and assess stages
read it from both ends: ``kind = 'duplicate' AND file_id IN (...)`` and ``kind = 'duplicate'
AND other_file_id IN (...)``. With ``ix_file_matches_kind_file`` (kind, file_id) beside a
single-column index on other_file_id, SQLite's planner served the second by the kind prefix
alone: every duplicate pair in the store read for each group, a cost that grew with the store.
This index serves it by both terms, and it still covers the foreign key's cascade (its first
column), so it replaces the single-column index rather than adding a write.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_matches", schema=None) as batch_op:
        batch_op.drop_index("ix_file_matches_other_file_id")
        batch_op.create_index("ix_file_matches_other_file_kind", ["other_file_id", "kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("file_matches", schema=None) as batch_op:
        batch_op.drop_index("ix_file_matches_other_file_kind")
        batch_op.create_index("ix_file_matches_other_file_id", ["other_file_id"], unique=False)
