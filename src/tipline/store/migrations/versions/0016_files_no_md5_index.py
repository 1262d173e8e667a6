"""files: drop ix_files_md5_uploaded, which only the matches stage's MD5 duplicates read

The matches stage (version 2) lists copies of the same bytes by SHA-256 alone: every stored
file has its bytes, so the same MD5 with another SHA-256 is a collision, not a copy, and no
statement searches files by MD5 any more (hash banks are matched by their own index on
``bank_entries``). One index write less per stored file, which loading pays for
(benchmarks/README.md, "loading"); tests/test_query_plans.py checks that enrichment still
finds an index for every statement.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_md5_uploaded")


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index("ix_files_md5_uploaded", ["md5", "uploaded_at", "id"], unique=False)
