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


def test_0013_fills_the_queue_read_model_as_the_code_does(runtime: Runtime) -> None:
    """A store at 0012 with assessed reports, overrides, a claim and a bank match upgrades to a
    ``queue_entries`` equal to what ``tipline.console.queue_model`` computes (the migration's
    SQL is frozen at its revision; this catches it drifting from the code)."""
    from alembic import command

    from people_helpers import make_user
    from test_group_stages import load, year
    from tipline.console import queue_model
    from tipline.console import service as svc
    from tipline.people.principal import Principal
    from tipline.pipeline.core import StageContext, run_reports
    from tipline.store.db import transaction
    from tipline.store.tables import File, FileMatch
    from tipline.store.tables_console import QueueEntry

    ids = load(runtime, year(scale=3e-6, seed=31, files="hashes"))
    run_reports(StageContext(runtime), dict.fromkeys(ids, None), group_size=50)
    ana = make_user(runtime, "mig-ana", "analyst")
    who = Principal(ana.user_id, ana.username, "analyst")
    with runtime.sessions() as s:
        finished = [r for r in ids if s.get(QueueEntry, r) is not None]
        fid = s.execute(select(File.id).where(File.report_id == finished[0])).scalars().first()
    assert len(finished) >= 3 and fid is not None
    with transaction(runtime.sessions) as s:
        svc.set_priority(s, who, finished[1], 1, "synthetic reason")
        svc.close_informational(s, who, finished[0], "synthetic reason")
        svc.claim(s, who, finished[2], minutes=30)
        # A bank match written behind the stages' back: the fill must see it all the same.
        s.add(FileMatch(file_id=fid, kind="bank", hash_type="md5", created_at=datetime.now(UTC)))
    url = runtime.settings.effective_database_url
    command.downgrade(alembic_config(url), "0012")
    upgrade(url)
    with runtime.sessions() as s:
        assert s.execute(select(sa.func.count()).select_from(QueueEntry)).scalar_one() >= len(finished)
        assert queue_model.differences(s) == (0, [])
