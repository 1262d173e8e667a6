"""Faults inside a group: a report that fails a stage fails alone; a killed worker loses and duplicates nothing."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpers import enrichment_results, result_diff
from tipline.config import Settings
from tipline.pipeline import core
from tipline.pipeline.core import Outcome, StageContext, run_reports, stages
from tipline.pipeline.queue import pending_report_ids
from tipline.runtime import Runtime
from tipline.sim.generate import YearGenerator
from tipline.sim.write import DirectWriter, register_platforms
from tipline.store.setup import do_init
from tipline.store.tables import Jurisdiction, Location, PipelineRun, Report

REPO = Path(__file__).resolve().parents[1]


def load(rt: Runtime, scale: float = 1.7e-6, seed: int = 31) -> list[int]:
    gen = YearGenerator(2023, scale, seed=seed, files="hashes")
    DirectWriter(rt, register_platforms(rt, gen.platforms_used()), batch=64).write(gen, lambda r, i: None)
    with rt.sessions() as s:
        return sorted(int(r) for r in s.execute(select(Report.id).where(Report.state == "finished")).scalars())


def ledger(rt: Runtime) -> dict[int, dict[str, str | None]]:
    out: dict[int, dict[str, str | None]] = {}
    with rt.sessions() as s:
        for rid, name, error in s.execute(select(PipelineRun.report_id, PipelineRun.stage, PipelineRun.error)):
            out.setdefault(int(rid), {})[str(name)] = error
    return out


@pytest.fixture
def broken_location(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The location stage raises for the report ids put in the yielded list (both of its forms)."""
    bad: list[int] = []
    st = core.get_stage("location")

    def func_(ctx: StageContext, session: Session, report_id: int) -> Outcome | None:
        if report_id in bad:
            session.execute(Location.__table__.delete().where(Location.report_id == report_id))
            raise RuntimeError(f"GeoIP file unreadable for report {report_id}")
        return st.func(ctx, session, report_id)

    def group_(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
        assert st.group is not None
        got = st.group(ctx, session, report_ids)  # writes first, then fails: the savepoint must undo it
        if any(r in bad for r in report_ids):
            raise RuntimeError("GeoIP file unreadable")
        return got

    monkeypatch.setitem(core._STAGES, "location", dataclasses.replace(st, func=func_, group=group_))
    yield bad


def test_a_report_that_fails_a_stage_in_a_group_fails_alone(runtime: Runtime, broken_location: list[int]) -> None:
    ids = load(runtime)
    bad = ids[len(ids) // 2]
    broken_location.append(bad)
    ctx = StageContext(runtime)
    run_reports(ctx, dict.fromkeys(ids), group_size=len(ids))
    book = ledger(runtime)
    # Its error is in the ledger, the stages before it ran, and its later stages did not (as
    # on the per-report path: the runner stops a report at its first failure) ...
    assert book[bad]["location"] == f"RuntimeError: GeoIP file unreadable for report {bad}"
    names = [st.name for st in stages()]
    assert book[bad] == {**dict.fromkeys(names[:names.index("location")], None), "location": book[bad]["location"]}
    # ... while every other report of the group is done.
    for rid in ids:
        if rid != bad:
            assert book[rid] == dict.fromkeys((st.name for st in stages()), None), rid
    with runtime.sessions() as s:
        located = set(s.execute(select(Location.report_id).distinct()).scalars())
        placed = set(s.execute(select(Jurisdiction.report_id)).scalars())
    assert bad not in located and bad not in placed
    assert placed == set(ids) - {bad}
    assert pending_report_ids(runtime) == [bad]
    # Once the stage works again, the report catches up and nothing else changes.
    before = enrichment_results(runtime)
    broken_location.clear()
    run_reports(ctx, {bad: None})
    assert pending_report_ids(runtime) == []
    after = enrichment_results(runtime)
    assert after["assessment"].keys() == set(ids)
    for kind in ("assessment", "jurisdiction"):
        assert {k: v for k, v in after[kind].items() if k != bad} == before[kind]


@pytest.fixture
def twin(settings: Settings, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    url = ""
    if backend == "postgresql":
        url = request.getfixturevalue("pg_cluster").new_database()
    s = Settings.from_env(tmp_path / "twin", database_url=url)
    do_init(s)
    rt = Runtime.open(s)
    yield rt
    rt.close()


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "TIPLINE_DATA_DIR": str(settings.data_dir),
            "TIPLINE_DATABASE_URL": settings.effective_database_url, "PYTHONPATH": str(REPO / "src")}


def _count(rt: Runtime, stage: str) -> int:
    with rt.sessions() as s:
        return int(s.execute(select(func.count()).select_from(PipelineRun).where(
            PipelineRun.stage == stage, PipelineRun.error.is_(None))).scalar_one())


def _no_duplicates(rt: Runtime, n_reports: int) -> None:
    with rt.sessions() as s:
        rows = s.execute(select(PipelineRun.report_id, PipelineRun.stage, func.count())
                         .group_by(PipelineRun.report_id, PipelineRun.stage)).all()
    assert all(n == 1 for _, _, n in rows)
    assert len(rows) == n_reports * len(stages())


def test_sigkill_of_a_worker_mid_group_loses_and_duplicates_nothing(settings: Settings, runtime: Runtime,
                                                                     twin: Runtime) -> None:
    ids = load(runtime, scale=5e-6, seed=32)
    assert load(twin, scale=5e-6, seed=32) == ids
    cmd = [sys.executable, "-m", "tipline", "pipeline", "run", "--concurrency", "1", "--group-size", "10"]
    proc = subprocess.Popen(cmd, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # Kill it once some groups committed and before the last did: mid-run, and (groups
        # being most of its time) almost surely mid-group.
        deadline = time.monotonic() + 240
        while _count(runtime, "route") < 20:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _count(runtime, "route")
    assert 20 <= done < len(ids), (done, len(ids))
    # What committed is whole parts of groups: a group commits its own-report stages, then the
    # cross-report ones (core.phases), so a report has no stage, exactly the first part's, or
    # all of them, never a stage of a part without the rest of that part.
    book = ledger(runtime)
    cuts = [set(), {st.name for st in core.phases()[0]}, {st.name for st in stages()}]
    assert all(set(ran) in cuts for ran in book.values()), book
    assert all(err is None for ran in book.values() for err in ran.values()), book
    again = subprocess.run(cmd, env=_env(settings), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert pending_report_ids(runtime) == []
    _no_duplicates(runtime, len(ids))

    # A clean run of the same store ends in exactly the same place.
    run_reports(StageContext(twin), dict.fromkeys(ids), group_size=10)
    _no_duplicates(twin, len(ids))
    killed: dict[str, Any] = enrichment_results(runtime)
    clean: dict[str, Any] = enrichment_results(twin)
    changed = result_diff(clean, killed)
    assert not changed, "the killed-and-resumed run differs from a clean one:\n" + "\n".join(changed)
