"""pipeline indexes: duplicates in upload order, sharers of a file or identifier in report order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The composite indexes start with the old single columns, which they replace.
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_sha256")
        batch_op.drop_index("ix_files_md5")
        batch_op.create_index("ix_files_sha256_uploaded", ["sha256", "uploaded_at", "id"], unique=False)
        batch_op.create_index("ix_files_md5_uploaded", ["md5", "uploaded_at", "id"], unique=False)
        batch_op.create_index("ix_files_sha256_report", ["sha256", "report_id"], unique=False)
    with op.batch_alter_table("report_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_report_identifiers_identifier")
        batch_op.create_index("ix_report_identifiers_identifier_report", ["identifier_id", "report_id", "role"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_report_identifiers_identifier_report")
        batch_op.create_index("ix_report_identifiers_identifier", ["identifier_id"], unique=False)
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_sha256_report")
        batch_op.drop_index("ix_files_md5_uploaded")
        batch_op.drop_index("ix_files_sha256_uploaded")
        batch_op.create_index("ix_files_md5", ["md5"], unique=False)
        batch_op.create_index("ix_files_sha256", ["sha256"], unique=False)
