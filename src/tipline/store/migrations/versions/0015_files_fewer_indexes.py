"""files: drop two indexes no statement needs, two writes less per stored file

``ix_files_report_id`` repeats the first column of ``uq_files_report_seq`` (report_id, seq),
which serves every lookup by report and the foreign key's cascade; ``ix_files_sha1`` serves no
query (duplicates and bank matches are found by SHA-256 and MD5, bank entries by their own
index). Loading a simulated year is bound by the writes of the storing process
(benchmarks/README.md, "loading"), and each file row paid for both.
tests/test_query_plans.py checks that enrichment still finds an index for every statement.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_report_id")
        batch_op.drop_index("ix_files_sha1")


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index("ix_files_sha1", ["sha1"], unique=False)
        batch_op.create_index("ix_files_report_id", ["report_id"], unique=False)
