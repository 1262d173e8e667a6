"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.orm import Session

from tipline.runtime import Runtime
from tipline.store.db import alembic_config, load_models, make_engine, upgrade
from tipline.store.tables import Base, Incident, IncidentReport, Location

load_models()


def test_models_and_migrations_agree(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Server-side type differences of JSON/timestamps on SQLite are not schema drift.
    real = [d for d in diff if d[0] not in ("modify_type",)]
    assert real == [], real


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database URL with no schema yet, on the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    if cluster is None:
        pytest.skip("PostgreSQL not available")
    return str(cluster.new_database())


def test_0007_turns_the_text_written_before_into_columns(empty_url: str) -> None:
    """A store at 0006 holding incidents, memberships and locations as the stages wrote them then
    (facts inside text) upgrades to the same facts as columns."""
    from alembic import command

    command.upgrade(alembic_config(empty_url), "0006")
    engine = make_engine(empty_url)
    now = datetime(2024, 5, 1, tzinfo=UTC)
    long_detail = "x" * 300  # its reason was cut at 255 characters: it names no one any more
    with engine.begin() as conn:
        t = {name: sa.Table(name, sa.MetaData(), autoload_with=conn)
             for name in ("reporters", "reports", "incidents", "incident_reports", "locations")}
        conn.execute(t["reporters"].insert(), [{"id": 1, "name": "acme", "kind": "esp", "enabled": True,
                                                "created_at": now}])
        conn.execute(t["reports"].insert(), [
            {"id": i, "reporter_id": 1, "source": "ispws", "state": "finished", "opened_at": now,
             "last_change_at": now, "file_count": 0, "batched": i == 9, "normalisations": []}
            for i in (3, 5, 7, 9)])
        conn.execute(t["incidents"].insert(), [
            {"id": 1, "rule": "viral", "key": "viral:3", "created_at": now, "updated_at": now},
            {"id": 2, "rule": "batched", "key": "batched:9", "created_at": now, "updated_at": now}])
        conn.execute(t["incident_reports"].insert(), [
            {"incident_id": 1, "report_id": 3, "reason": "viral: same bytes (report 5)"},
            {"incident_id": 1, "report_id": 5, "reason": "viral: near-identical (pdq 4) (report 3)"},
            {"incident_id": 1, "report_id": 7, "reason": f"viral: {long_detail} (report 3)"[:255]},
            {"incident_id": 2, "report_id": 9, "reason": "A platform-batched report"}])
        conn.execute(t["locations"].insert(), [
            {"id": 1, "report_id": 3, "source": "ip", "confidence": 0.7, "country": "US",
             "detail": "ip=8.8.8.8 event=Login at=2024-03-05T09:00:00Z proxy=no flags=none path=p"},
            {"id": 2, "report_id": 3, "source": "ip", "confidence": 0.6, "country": "US",
             "detail": "ip=9.9.9.9 event=Upload at=none proxy=no flags=none path=q"},
            {"id": 3, "report_id": 5, "source": "ip", "confidence": 0.1, "country": "NL",
             "detail": "ip=1.2.3.4 event=Login at=none proxy=yes flags=none path=r"},
            {"id": 4, "report_id": 5, "source": "esp_estimate", "confidence": 0.9, "country": "US",
             "detail": "verified=yes at=2024-02-01T10:11:12Z path=s"},
            {"id": 5, "report_id": 7, "source": "public_form_child", "confidence": 0.5, "country": "GB",
             "detail": "type=unknown zip=none path=t"}])
    engine.dispose()

    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with Session(engine) as s:
            assert {(i.key, i.rule, i.lowest_report_id) for i in s.execute(select(Incident)).scalars()} == {
                ("viral:3", "viral", 3), ("batched:9", "batched", 9)}
            members = {m.report_id: (m.rule, m.via_report_id, m.link_detail)
                       for m in s.execute(select(IncidentReport)).scalars()}
            assert members == {3: ("viral", 5, "same bytes"), 5: ("viral", 3, "near-identical (pdq 4)"),
                               7: ("viral", None, None), 9: ("batched", None, None)}
            locs = {loc.id: (loc.location_class, loc.ip, loc.event, loc.event_at, loc.proxy, loc.verified)
                    for loc in s.execute(select(Location)).scalars()}
            assert locs == {
                1: ("ip_login", "8.8.8.8", "Login", datetime(2024, 3, 5, 9, tzinfo=UTC), False, None),
                2: ("ip_other", "9.9.9.9", "Upload", None, False, None),
                3: ("ip_proxy", "1.2.3.4", "Login", None, True, None),
                4: ("esp_estimate_verified", None, None, datetime(2024, 2, 1, 10, 11, 12, tzinfo=UTC), None, True),
                5: ("public_form_child", None, None, None, None, None)}
        with engine.connect() as conn:  # and the schema is the models' (as for a fresh store)
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if d[0] not in ("modify_type",)] == []
    finally:
        engine.dispose()
