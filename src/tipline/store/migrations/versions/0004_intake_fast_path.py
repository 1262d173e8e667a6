"""intake fast path: open_deadline and file_count on reports, inline blob data; merges the stage branches

Revision ID: 0004
Revises: 0003_hashing, 0003_routing
Create Date: 2026-11-26
"""

from __future__ import annotations

from datetime import UTC, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = ("0003_hashing", "0003_routing")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_deadline", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("file_count", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data", sa.LargeBinary(), nullable=True))
    # Backfill in Python: interval arithmetic is not portable between SQLite and PostgreSQL.
    conn = op.get_bind()
    reports = sa.table("reports", sa.column("id", sa.Integer), sa.column("opened_at", sa.DateTime(timezone=True)),
                       sa.column("open_deadline", sa.DateTime(timezone=True)),
                       sa.column("file_count", sa.Integer))
    files = sa.table("files", sa.column("report_id", sa.Integer))
    per_report = sa.select(files.c.report_id, sa.func.count()).group_by(files.c.report_id)
    counts: dict[int, int] = dict(conn.execute(per_report).all())
    for rid, opened in conn.execute(sa.select(reports.c.id, reports.c.opened_at)).all():
        if opened.tzinfo is None:
            opened = opened.replace(tzinfo=UTC)
        conn.execute(reports.update().where(reports.c.id == rid).values(
            open_deadline=opened + timedelta(hours=24), file_count=counts.get(rid, 0)))


def downgrade() -> None:
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.drop_column("data")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_column("file_count")
        batch_op.drop_column("open_deadline")
