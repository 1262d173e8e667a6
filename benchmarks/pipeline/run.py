"""End-to-end enrichment benchmark: finished reports per second through every registered stage.

For each backend: a fresh data dir (and, for PostgreSQL, a throwaway cluster with durable
defaults), a simulated year loaded with ``tipline simulate`` (or, when the simulator is not
installed or ``--source intake``, reports made through the intake service with stand-in
images), then every finished report enriched by the queue a deployment would use:

* ``sqlite``: the embedded default, ``tipline pipeline worker --queue inprocess --once`` with
  ``--workers`` threads in one process;
* ``postgresql``: Procrastinate; every report enqueued (timed: enqueue rate), then
  ``--workers`` separate ``tipline pipeline worker --queue procrastinate --once --concurrency 1``
  processes drain the queue.

Reports/s = finished reports / wall time from worker start to the last worker's exit. The run
checks that nothing is left pending and counts failed stages. With ``--profile N`` it then
re-runs every stage on N reports one at a time and prints ms per report per stage.

    .venv/bin/python benchmarks/pipeline/run.py [--scale 0.01] [--seed 1] [--backends sqlite,postgresql]
        [--workers 2] [--source simulate|intake] [--reports 2000] [--profile 200] [--keep]
        [--budget-minutes M] [--store DIR] [--pg-url URL]

A year at scale 0.01 takes about 15 minutes to simulate per backend and hours to enrich, so:
``--store DIR`` starts from a data dir already loaded by ``tipline simulate`` (copied, never
changed; for PostgreSQL with ``--pg-url``, the database it was loaded into, copied with
``CREATE DATABASE ... TEMPLATE`` in that cluster instead of a throwaway one), and
``--budget-minutes M`` stops the workers (SIGTERM: they finish their transaction) after M
minutes and reports the rate over the reports completed, with the rate through the run.

Prints a table and writes benchmarks/results/pipeline-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results"
TIPLINE = str(Path(sys.executable).parent / "tipline")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from pgcluster import pg_cluster as _pg_cluster  # noqa: E402


def pg_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (fsync on: durable, as in production); yields a database URL."""
    return _pg_cluster(conf="-c max_connections=200 -c shared_buffers=512MB", database="bench")


def simulator_available() -> bool:
    r = subprocess.run([TIPLINE, "simulate", "--help"], capture_output=True)
    return r.returncode == 0


def load_intake(env: dict[str, str], n: int, seed: int) -> None:
    """``n`` varied reports through the intake service (stand-in images, recurring users and files)."""
    os.environ.update(env)
    import random

    from sqlalchemy import select

    from tipline.config import Settings
    from tipline.cybertip.xml import parse_file_details, parse_report
    from tipline.intake.credentials import add_esp
    from tipline.runtime import Runtime
    from tipline.standin import standin_image
    from tipline.store.tables import Reporter

    rt = Runtime.open(Settings.from_env())
    add_esp(rt, "Bench Social", "bench", "bench-secret-1")
    with rt.sessions() as s:
        rep = s.execute(select(Reporter.id).where(Reporter.name == "Bench Social")).scalar_one()
    rng = random.Random(seed)
    images = [standin_image(i) for i in range(200)]  # recurring content: matches find duplicates
    for i in range(n):
        u = rng.randrange(max(1, n // 3))  # recurring users: links find repeats
        ip = f"{rng.choice([8, 23, 41, 49, 81, 103, 117, 185, 196])}.{rng.randrange(256)}.{rng.randrange(256)}.7"
        xml = f"""<report><incidentSummary>
<incidentType>Child Pornography (possession, manufacture, and distribution)</incidentType>
<incidentDateTime>2023-0{1 + i % 9}-15T12:00:00Z</incidentDateTime></incidentSummary>
<reporter><reportingPerson><firstName>B</firstName><lastName>R</lastName></reportingPerson></reporter>
<personOrUserReported><espIdentifier>user-{u}</espIdentifier><espService>Bench</espService>
<ipCaptureEvent><ipAddress>{ip}</ipAddress><eventName>Upload</eventName>
<dateTime>2023-01-15T11:00:00Z</dateTime></ipCaptureEvent></personOrUserReported></report>""".encode()
        rid, _ = rt.intake.open_report(rep, parse_report(xml), source="ispws", body=xml, content_type="text/xml")
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
            blob = rt.blobs.put(rng.choice(images) if rng.random() < 0.7 else standin_image(10_000 + i))
            fid = rt.intake.attach_file(rep, rid, blob, file_name="f.png", media_type="image/png")
            d = (f"<fileDetails><reportId>{rid}</reportId><fileId>{fid}</fileId>"
                 f"<fileViewedByEsp>{'true' if rng.random() < 0.8 else 'false'}</fileViewedByEsp></fileDetails>"
                 ).encode()
            rt.intake.file_info(rep, parse_file_details(d), body=d, content_type="text/xml")
        rt.intake.finish(rep, rid)
    rt.close()


def tip(env: dict[str, str], *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TIPLINE, *args], env=env, check=True, text=True,
                          capture_output=capture)


@contextmanager
def pg_copy(url: str) -> Iterator[str]:
    """A copy of the loaded database at ``url`` (same cluster, ``CREATE DATABASE ... TEMPLATE``)."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    name = f"bench_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{u.database}"')
    try:
        yield u.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def completed(url: str, data: Path) -> int:
    """Reports whose last stage has run: a group's stages commit together, so these are whole."""
    from sqlalchemy import create_engine, text

    from tipline.pipeline.core import stages

    last = list(stages())[-1].name
    eng = create_engine(url or f"sqlite:///{data / 'tipline.db'}")
    try:
        with eng.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM pipeline_runs WHERE stage = :s AND error IS NULL"),
                                    {"s": last}).scalar_one())
    finally:
        eng.dispose()


def bench_backend(backend: str, args: argparse.Namespace, source: str) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"tipline-bench-pipeline-{backend}-"))
    if args.store:
        shutil.rmtree(data)
        shutil.copytree(args.store, data, ignore=shutil.ignore_patterns("sim"))
    cluster = (pg_copy(args.pg_url) if args.pg_url else pg_cluster()) if backend == "postgresql" else _nullctx("")
    with cluster as url:
        env = {**os.environ, "TIPLINE_DATA_DIR": str(data), "TIPLINE_DATABASE_URL": url,
               "TIPLINE_PIPELINE_CONCURRENCY": str(args.workers)}
        tip(env, "init")
        t0 = time.monotonic()
        if args.store:
            source = f"store {args.store}"
        elif source == "simulate":
            tip(env, "simulate", "--year", "2023", "--scale", str(args.scale), "--seed", str(args.seed),
                "--files", "hashes", "--via", "direct", "--no-outcomes", capture=False)  # the pipeline is what is timed
        else:
            load_intake(env, args.reports, args.seed)
        load_s = time.monotonic() - t0
        finished = json.loads(tip(env, "stats", "pipeline", "--json").stdout)["finishedReports"]
        print(f"[{backend}] {finished} finished reports loaded in {load_s:.1f} s ({source})", flush=True)

        enqueue_s = None
        if backend == "postgresql":
            code = ("from tipline.config import Settings; from tipline.runtime import Runtime; "
                    "from tipline.pipeline.queue import ProcrastinateQueue, pending_report_ids; import time; "
                    "rt = Runtime.open(Settings.from_env()); q = ProcrastinateQueue(rt); ids = pending_report_ids(rt); "
                    "t = time.monotonic(); [q.enqueue(i) for i in ids]; q.flush(); "
                    "print(time.monotonic() - t); q.close()")
            enqueue_s = float(subprocess.run([sys.executable, "-c", code], env=env, check=True, text=True,
                                             capture_output=True).stdout.strip().splitlines()[-1])
            cmds = [[TIPLINE, "pipeline", "worker", "--queue", "procrastinate", "--once", "--concurrency", "1"]
                    for _ in range(args.workers)]
        else:
            cmds = [[TIPLINE, "pipeline", "worker", "--queue", "inprocess", "--once",
                     "--concurrency", str(args.workers)]]
        t0 = time.monotonic()
        budget = args.budget_minutes * 60 if args.budget_minutes else None
        curve: list[tuple[float, int]] = []
        stopped = False
        with ExitStack() as stack:
            logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in cmds]
            procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
                     for c, log in zip(cmds, logs, strict=True)]
            while any(p.poll() is None for p in procs):
                time.sleep(1)
                now = time.monotonic() - t0
                if now >= 60 * (len(curve) + 1):
                    curve.append((round(now), completed(url, data)))
                    print(f"[{backend}] {curve[-1][0] / 60:.0f} min: {curve[-1][1]:,} reports enriched", flush=True)
                if budget and now >= budget and not stopped:
                    stopped = True
                    print(f"[{backend}] budget of {args.budget_minutes} min reached: stopping the workers", flush=True)
                    for p in procs:
                        p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait()
            work_s = time.monotonic() - t0
            errors = []
            for log in logs:
                log.seek(0)
                errors.append(log.read())
        if any(p.returncode for p in procs) and not stopped:
            raise SystemExit(f"a worker failed: {errors}")
        done = completed(url, data)
        # Each worker's last line says how the bundles stage went (incremental vs full re-plans).
        result_bundling = [line for err in errors for line in (err or "").splitlines() if line.startswith("bundles:")]
        for line in result_bundling:
            print(f"[{backend}] {line}", flush=True)
        stats = json.loads(tip(env, "stats", "pipeline", "--json").stdout)
        # The fast path must not drift from the reference: the stored incidents (built report by
        # report, incrementally, by concurrent workers) must equal a union-find over all links.
        check = ("from tipline.config import Settings; from tipline.runtime import Runtime; "
                 "from tipline.pipeline.bundling.reference import current_assignments, plan_all; "
                 "from tipline.pipeline.bundling.rules import load_bundling; "
                 "rt = Runtime.open(Settings.from_env()); s = rt.sessions(); "
                 "a = current_assignments(s); b = plan_all(s, load_bundling()); "
                 "from collections import Counter; size = Counter(b.values()); "
                 # After a budget stop, reports not reached yet have no incident: a report counts
                 # when it has one, or when the reference puts it in a group with others.
                 "print(sum(1 for k in set(a) | {k for k, v in b.items() if size[v] > 1} if a.get(k) != b.get(k)))")
        bundle_mismatches = int(subprocess.run([sys.executable, "-c", check], env=env, check=True, text=True,
                                               capture_output=True).stdout.strip().splitlines()[-1])
        print(f"[{backend}] reports whose stored incident differs from the reference plan: {bundle_mismatches}",
              flush=True)
        pending = sum(s["pending"] for s in stats["stages"])
        failed = sum(s["failed"] for s in stats["stages"])
        result: dict[str, Any] = {
            "backend": backend, "queue": "procrastinate" if backend == "postgresql" else "inprocess",
            "workers": args.workers, "source": source, "reports": finished, "load_seconds": round(load_s, 1),
            "enqueue_per_second": round(finished / enqueue_s, 1) if enqueue_s else None,
            "seconds": round(work_s, 1), "reports_per_second": round(done / work_s, 2),
            "reports_enriched": done, "budget_minutes": args.budget_minutes if stopped else None,
            "enriched_by_minute": curve,
            "stage_runs_pending_after": pending, "stage_runs_failed": failed,
            "stages": [s["stage"] for s in stats["stages"]], "disposition": stats["disposition"],
            "priority": stats["priority"], "escalated": stats["escalated"],
            "bundling": result_bundling, "bundle_mismatches_vs_reference": bundle_mismatches,
        }
        print(f"[{backend}] {done:,} of {finished:,} reports enriched in {work_s:.1f} s = {done / work_s:.2f} "
              f"reports/s ({failed} failed, {pending} stage runs pending after)", flush=True)
        if args.profile:
            try:
                result["profile_ms_per_report"] = profile(env, args.profile)
            except subprocess.CalledProcessError as exc:
                result["profile_error"] = (exc.stderr or "")[-2000:]
                print(f"[{backend}] profile failed:\n{result['profile_error']}", flush=True)
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    else:
        result["data_dir"] = str(data)
    return result


@contextmanager
def _nullctx(value: str) -> Iterator[str]:
    yield value


def profile(env: dict[str, str], n: int) -> dict[str, float]:
    """Re-run every stage for the first ``n`` finished reports, one at a time: ms per report per stage."""
    code = f"""
import json, time, collections
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.pipeline import core
from tipline.pipeline.queue import finished_report_ids
rt = Runtime.open(Settings.from_env())
ctx = core.StageContext(rt)
ids = finished_report_ids(rt)[:{n}]
tot = collections.Counter()
for rid in ids[:10]:  # warm shared services (indexes, GeoIP reader) outside the measurement
    for st in core.stages():
        core.run_stage(ctx, st, rid)
for rid in ids[10:]:
    for st in core.stages():
        t = time.perf_counter(); core.run_stage(ctx, st, rid); tot[st.name] += time.perf_counter() - t
m = max(1, len(ids) - 10)
print(json.dumps({{k: round(1000 * v / m, 1) for k, v in tot.items()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, text=True, capture_output=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.01, help="Simulated 2023 year scale (0.01 = ~362,000 reports).")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--workers", type=int, default=2, help="Worker threads (sqlite) / processes (postgresql).")
    ap.add_argument("--source", choices=["auto", "simulate", "intake"], default="auto")
    ap.add_argument("--reports", type=int, default=2000, help="Reports to make with --source intake.")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="Profile stages on N reports afterwards.")
    ap.add_argument("--keep", action="store_true", help="Keep the data directories.")
    ap.add_argument("--budget-minutes", type=float, default=0, help="Stop the workers after this long (0: run out).")
    ap.add_argument("--store", help="A data dir already loaded by `tipline simulate` (copied, not changed).")
    ap.add_argument("--pg-url", help="With --store: the PostgreSQL database that store was loaded into.")
    args = ap.parse_args()
    source = args.source
    if source == "auto":
        source = "simulate" if simulator_available() else "intake"
    results = [bench_backend(b.strip(), args, source) for b in args.backends.split(",") if b.strip()]
    run = {"benchmark": "pipeline", "when": datetime.now(UTC).isoformat(), "host": platform.node(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "scale": args.scale if source == "simulate"
           else None, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"pipeline-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(run, indent=2))
    print()
    print("| backend | queue | workers | reports enriched / in year | seconds | reports/s | enqueue/s | failed "
          "| pending after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['queue']} | {r['workers']} | {r['reports_enriched']:,} / {r['reports']:,} | "
              f"{r['seconds']} | "
              f"{r['reports_per_second']} | {r['enqueue_per_second'] or '-'} | {r['stage_runs_failed']} | "
              f"{r['stage_runs_pending_after']} |")
    for r in results:
        if "profile_ms_per_report" in r:
            prof = Counter(r["profile_ms_per_report"])
            print(f"\n{r['backend']}: ms per report per stage (one at a time): "
                  + ", ".join(f"{k} {v}" for k, v in prof.most_common()))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
