"""the audit trail is append-only in the database itself: triggers refuse UPDATE, DELETE
(and on PostgreSQL TRUNCATE) of audit_events for every database role, the service's own
included

A trigger rather than grants: the service usually owns its tables (it runs the migrations),
and an owner can always grant itself back what a REVOKE took; a trigger holds for the owner
too, and removing it is a DDL statement that `tipline audit verify` notices (it checks the
guard is in place). On SQLite a batch rebuild of the table (copy, drop, rename) drops its
triggers: a later migration that rebuilds audit_events must create them again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: Names `tipline.people.trail.guard_problems` looks for.
PG_FUNCTION = "audit_events_append_only"
PG_ROW_TRIGGER = "audit_events_no_change"
PG_TRUNCATE_TRIGGER = "audit_events_no_truncate"
SQLITE_TRIGGERS = ("audit_events_no_update", "audit_events_no_delete")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$""")
        op.execute(f"CREATE TRIGGER {PG_ROW_TRIGGER} BEFORE UPDATE OR DELETE ON audit_events "
                   f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()")
        op.execute(f"CREATE TRIGGER {PG_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON audit_events "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()")
    else:
        for name, verb in zip(SQLITE_TRIGGERS, ("UPDATE", "DELETE"), strict=True):
            op.execute(f"CREATE TRIGGER {name} BEFORE {verb} ON audit_events "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: {verb} refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {PG_TRUNCATE_TRIGGER} ON audit_events")
        op.execute(f"DROP TRIGGER IF EXISTS {PG_ROW_TRIGGER} ON audit_events")
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
