"""Enrichment is right the first time: re-running every stage of every report changes nothing.

A simulated year is filed the two ways a year arrives — through ISPWS into a running server
that enriches on arrival, and with ``--via direct`` followed by the worker — on both
backends. After enrichment, every stage of every report is run again; the stored results
(assessment, jurisdiction, referrals, links, incidents) must be exactly what the first
run wrote. Reports enriched concurrently (two worker threads over interleaved groups, and on
PostgreSQL two worker processes) must end in the same state as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from helpers import enrichment_results as results
from helpers import result_diff as diff
from tipline.config import Settings
from tipline.pipeline.core import StageContext, run_report, run_report_stepwise
from tipline.pipeline.queue import InProcessQueue, pending_report_ids, rerun
from tipline.runtime import Runtime
from tipline.sim.calibration import PUBLIC
from tipline.sim.generate import YearGenerator
from tipline.sim.write import DirectWriter, IspwsWriter, Server, register_platforms
from tipline.store.tables import Assessment


def year(seed: int = 11) -> YearGenerator:
    """About 60 reports with stand-in images: repeats, shared accounts, viral batches, public reports."""
    gen = YearGenerator(2023, 1.7e-6, seed=seed, files="images")
    public = next(i for i, p in enumerate(gen.platforms) if p.name == PUBLIC)
    gen._platform_of[[3, 17]] = public  # a year this small rarely draws the public's share
    return gen


def rerun_everything(rt: Runtime) -> None:
    ctx = StageContext(rt)
    with rt.sessions() as s:
        ids = sorted(int(r) for r in s.execute(select(Assessment.report_id)).scalars())
    for rid in ids:
        rerun(ctx, rid)


def assert_converged(rt: Runtime) -> dict[str, Any]:
    assert pending_report_ids(rt) == [], "enrichment left reports with stages to run"
    first = results(rt)
    assert first["assessment"], "nothing was assessed"
    rerun_everything(rt)
    changed = diff(first, results(rt))
    assert not changed, "re-running every stage changed stored results:\n" + "\n".join(changed)
    return first


def _drain(rt: Runtime, *, concurrency: int, group: int = 32) -> None:
    q = InProcessQueue(rt, concurrency=concurrency, group=group)
    q.run_worker(once=True)
    q.close()


def test_direct_load_then_worker(runtime: Runtime) -> None:
    gen = year()
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=16).write(gen, lambda r, i: None)
    _drain(runtime, concurrency=1)
    first = assert_converged(runtime)
    # The year has what the rules read, so the invariant is not vacuous.
    assert first["links"] and first["incidents"] and first["referrals"]
    assert {p for (_, _, _, _, p, *_) in first["assessment"].values()} >= {2, 3}


def test_concurrent_workers_interleaved_groups(runtime: Runtime) -> None:
    """Two worker threads taking small groups: later reports are often enriched before earlier ones."""
    gen = year(seed=12)
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=16).write(gen, lambda r, i: None)
    _drain(runtime, concurrency=2, group=3)
    assert_converged(runtime)


def test_reverse_order_equals_forward_order(runtime: Runtime) -> None:
    """Enriching the newest report first ends where enriching the oldest first does."""
    gen = year(seed=13)
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=16).write(gen, lambda r, i: None)
    ctx = StageContext(runtime)
    with runtime.sessions() as s:
        from tipline.store.tables import Report

        ids = sorted(int(r) for r in s.execute(select(Report.id).where(Report.state == "finished")).scalars())
    for rid in reversed(ids):
        run_report(ctx, rid)
    _drain(runtime, concurrency=1)  # what the reversed order left stale, the worker picks up
    assert_converged(runtime)


def test_first_assessment_reads_upstream_stages(runtime: Runtime) -> None:
    """One group, all stages: the assessment equals the one the stepwise reference writes."""
    gen = year(seed=14)
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=16).write(gen, lambda r, i: None)
    _drain(runtime, concurrency=1)
    grouped = results(runtime)["assessment"]
    ctx = StageContext(runtime)
    for rid in sorted(grouped):
        run_report_stepwise(ctx, rid)
    assert results(runtime)["assessment"] == grouped
    # Nothing defaulted for want of evidence: every priority says why.
    assert all(reasons for (_, _, _, _, _, reasons, *_) in grouped.values())


def _wait_enriched(rt: Runtime, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while pending_report_ids(rt):
        assert time.monotonic() < deadline, f"still pending: {pending_report_ids(rt)}"
        time.sleep(0.2)


def test_ispws_into_a_running_server(runtime: Runtime) -> None:
    gen = year(seed=15)
    accounts = register_platforms(runtime, gen.platforms_used())
    with Server(runtime, enrich=True) as url:
        IspwsWriter(runtime, accounts, url=url).write(gen, lambda r, i: None)
        if runtime.engine.dialect.name == "postgresql":
            # The server deferred a Procrastinate job per finish; a worker process runs them.
            from tipline.pipeline.queue import ProcrastinateQueue

            ProcrastinateQueue(runtime, concurrency=2).run_worker(once=True)
        _wait_enriched(runtime)
    first = assert_converged(runtime)
    assert first["links"] and first["referrals"]


@pytest.fixture
def pg_settings(settings: Settings, backend: str) -> Iterator[Settings]:
    if backend != "postgresql":
        pytest.skip("worker processes share a store on PostgreSQL")
    yield settings


def test_two_worker_processes(pg_settings: Settings, runtime: Runtime) -> None:
    """Two `tipline pipeline worker` processes on one PostgreSQL store, Procrastinate between them."""
    from tipline.pipeline.queue import ProcrastinateQueue

    gen = year(seed=16)
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=16).write(gen, lambda r, i: None)
    q = ProcrastinateQueue(runtime)
    try:
        for rid in pending_report_ids(runtime):
            q.enqueue(rid)
    finally:
        q.close()
    env = {**os.environ, "TIPLINE_DATA_DIR": str(pg_settings.data_dir),
           "TIPLINE_DATABASE_URL": pg_settings.effective_database_url, "TIPLINE_QUEUE": "procrastinate",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "tipline", "pipeline", "worker", "--once", "--concurrency", "1"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert_converged(runtime)


def test_pipeline_run_command(settings: Settings, runtime: Runtime) -> None:
    """`tipline pipeline run --concurrency 2`: reports finish in whatever order two threads reach."""
    gen = year(seed=17)
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=16).write(gen, lambda r, i: None)
    env = {**os.environ, "TIPLINE_DATA_DIR": str(settings.data_dir),
           "TIPLINE_DATABASE_URL": settings.effective_database_url,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-m", "tipline", "pipeline", "run", "--concurrency", "2"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_converged(runtime)
