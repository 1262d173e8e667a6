"""pipeline facts as columns: an incident's lowest member; a membership's rule, named member and
link detail; a location's class, IP, event, event time, proxy and verified flags — converted from
the text they were written into until now

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import tipline.store.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_KV = re.compile(r"(\w+)=(\S+)")
_BATCH = 1000


def upgrade() -> None:
    # Added nullable, filled from the old text, then made NOT NULL where every row has a value.
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lowest_report_id", _ID, nullable=True))
    with op.batch_alter_table("incident_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("via_report_id", _ID, nullable=True))
        batch_op.add_column(sa.Column("link_detail", sa.String(length=512), nullable=True))
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("location_class", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("ip", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("event", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("event_at", tipline.store.tables.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("proxy", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("verified", sa.Boolean(), nullable=True))

    bind = op.get_bind()
    _convert_incidents(bind)
    _convert_memberships(bind)
    _convert_locations(bind)

    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.alter_column("lowest_report_id", existing_type=_ID, nullable=False)
    with op.batch_alter_table("incident_reports", schema=None) as batch_op:
        batch_op.alter_column("rule", existing_type=sa.String(length=40), nullable=False)
        batch_op.create_index("ix_incident_reports_incident_via", ["incident_id", "via_report_id"], unique=False)
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.alter_column("location_class", existing_type=sa.String(length=30), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("locations", schema=None) as batch_op:
        for col in ("verified", "proxy", "event_at", "event", "ip", "location_class"):
            batch_op.drop_column(col)
    with op.batch_alter_table("incident_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_reports_incident_via")
        for col in ("link_detail", "via_report_id", "rule"):
            batch_op.drop_column(col)
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("lowest_report_id")


# --- the data: read once here from the old text, never again -----------------------------------

_incidents = sa.table("incidents", sa.column("id", sa.Integer), sa.column("rule", sa.String),
                      sa.column("key", sa.String), sa.column("lowest_report_id", _ID))
_members = sa.table("incident_reports", sa.column("incident_id", sa.Integer), sa.column("report_id", _ID),
                    sa.column("reason", sa.String), sa.column("rule", sa.String),
                    sa.column("via_report_id", _ID), sa.column("link_detail", sa.String))
_locations = sa.table("locations", sa.column("id", sa.Integer), sa.column("source", sa.String),
                      sa.column("detail", sa.String), sa.column("location_class", sa.String),
                      sa.column("ip", sa.String), sa.column("event", sa.String),
                      sa.column("event_at", tipline.store.tables.UTCDateTime(timezone=True)),
                      sa.column("proxy", sa.Boolean), sa.column("verified", sa.Boolean))


def _update(bind: Any, table: Any, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """UPDATE table SET … WHERE keys = …, as one executemany per batch."""
    if not rows:
        return
    where = [table.c[k] == sa.bindparam(f"k_{k}") for k in keys]
    values: dict[str, Any] = {c: sa.bindparam(c) for c in rows[0] if not c.startswith("k_")}
    stmt = table.update().where(*where).values(**values)
    for i in range(0, len(rows), _BATCH):
        bind.execute(stmt, rows[i:i + _BATCH])


def _convert_incidents(bind: Any) -> None:
    lowest_member = dict(bind.execute(sa.select(_members.c.incident_id, sa.func.min(_members.c.report_id))
                                      .group_by(_members.c.incident_id)).all())
    rows = []
    for iid, key in bind.execute(sa.select(_incidents.c.id, _incidents.c.key)).all():
        try:
            low = int(str(key).split(":", 1)[1])
        except (IndexError, ValueError):
            low = int(lowest_member.get(iid) or 0)  # never written by the bundles stage; its members say
        rows.append({"k_id": iid, "lowest_report_id": low})
    _update(bind, _incidents, ("id",), rows)


def _convert_memberships(bind: Any) -> None:
    """Rule from the incident; named member and detail from "rule: detail (report N)".

    A reason cut at 255 characters or without a named report keeps both NULL: the bundles
    stage then re-plans that member's incident (as it did when it could not read the text).
    """
    rows = []
    for iid, rid, reason, rule in bind.execute(
            sa.select(_members.c.incident_id, _members.c.report_id, _members.c.reason, _incidents.c.rule)
            .join(_incidents, _incidents.c.id == _members.c.incident_id)).all():
        via, detail = None, None
        m = re.fullmatch(rf"{re.escape(rule)}: (.*) \(report (\d+)\)", reason or "", re.DOTALL)
        if m is not None and len(reason) < 255:
            via, detail = int(m.group(2)), m.group(1)
        rows.append({"k_incident_id": iid, "k_report_id": rid, "rule": rule, "via_report_id": via,
                     "link_detail": detail})
    _update(bind, _members, ("incident_id", "report_id"), rows)


def _location_facts(source: str, detail: str | None) -> dict[str, Any]:
    """The facts the location stage wrote as ``k=v`` text, and the class it ranked them by."""
    kv = dict(_KV.findall(detail or ""))
    at = kv.get("at")
    when = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if at and at != "none" else None
    facts: dict[str, Any] = {"location_class": source, "ip": None, "event": None, "event_at": None,
                             "proxy": None, "verified": None}
    if source == "ip":
        proxy = kv.get("proxy") == "yes"
        event = kv.get("event")
        facts.update(ip=kv.get("ip"), event=event, event_at=when, proxy=proxy,
                     location_class="ip_proxy" if proxy else "ip_login" if event == "Login" else "ip_other")
    elif source == "esp_estimate":
        verified = kv.get("verified") == "yes"
        facts.update(event_at=when, verified=verified,
                     location_class="esp_estimate_verified" if verified else "esp_estimate_unverified")
    return facts


def _convert_locations(bind: Any) -> None:
    rows = [{"k_id": lid, **_location_facts(str(source), detail)}
            for lid, source, detail in bind.execute(
                sa.select(_locations.c.id, _locations.c.source, _locations.c.detail)).all()]
    _update(bind, _locations, ("id",), rows)
