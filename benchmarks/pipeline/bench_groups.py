"""The group path against the per-report path, side by side in one run, on both backends.

For each backend a simulated slice of the 2023 year (``--scale``; 0.000138 is ~5,000 reports)
is loaded with the direct writer into a fresh store (SQLite in a temporary data dir;
PostgreSQL in a throwaway cluster with durable defaults, fsync on), once per measurement, and
fully enriched:

* ``per-report``: every stage of every report in its own transaction through the stage's
  per-report function (``run_report_stepwise``: the reference path, what one report at a time
  costs), over the first ``--baseline`` reports (it is slow);
* ``group``: ``run_reports`` in groups of ``--group-size`` in this process (one thread): each
  stage once over the group, with its set-based form;
* on PostgreSQL also ``workers=N`` for each N of ``--workers``: the store's pending reports
  deferred as Procrastinate group jobs, then N ``tipline pipeline worker --queue procrastinate
  --once --concurrency 1 --group-size G`` processes drain them (wall time from their start to
  the last exit).

For each it reports reports/s, the ratio to the per-report path, the rate per chunk of the run
(first vs last: it must not fall as the store grows), the memory peak (``ru_maxrss`` of this
process, or of the worker processes) and, for the in-process runs, the seconds spent in each
stage and the milliseconds per report each stage took in each fifth (which stage's cost grows
with the store), and how the bundles stage placed the groups (from the links' delta, or set
aside for the full re-plan). Then it checks that nothing is pending and, after each whole-store run, counts the
reports whose stored incident is off the reference plan (``plan_all``; "off ref", target 0).
Prints a table and writes benchmarks/results/groups-<timestamp>.json.

    .venv/bin/python benchmarks/pipeline/bench_groups.py [--scale 0.000138] [--baseline 500]
        [--group-size 200] [--workers 1,2,4] [--backends sqlite,postgresql] [--profile PATH]

``--workers ''`` measures no worker processes; ``--profile PATH`` writes cProfile stats of the
group run to ``PATH.<backend>`` (read them with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(HERE))

from run import pg_cluster  # noqa: E402  (the throwaway cluster of the end-to-end benchmark)


@contextmanager
def store(backend: str, pg_url: str | None, n: int, scale: float, seed: int) -> Iterator[tuple[Any, float]]:
    """A fresh store holding the simulated slice (the ``n``-th of this run: its own database)."""
    from tipline.config import Settings
    from tipline.runtime import Runtime
    from tipline.sim.generate import YearGenerator
    from tipline.sim.write import DirectWriter, register_platforms
    from tipline.store.setup import do_init

    url = ""
    if backend == "postgresql":
        import psycopg

        assert pg_url is not None
        base = pg_url.rsplit("/", 1)[0]
        with psycopg.connect(base.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "g{n}"')
        url = f"{base}/g{n}"
    with tempfile.TemporaryDirectory(prefix="tipline-groups-") as d:
        settings = Settings.from_env(Path(d) / "data", database_url=url)
        do_init(settings)
        rt = Runtime.open(settings)
        try:
            gen = YearGenerator(2023, scale, seed=seed)
            t0 = time.monotonic()
            DirectWriter(rt, register_platforms(rt, gen.platforms_used()), batch=500).write(gen, lambda r, i: None)
            yield rt, time.monotonic() - t0
        finally:
            rt.close()


def finished(rt: Any) -> list[int]:
    from sqlalchemy import select

    from tipline.store.tables import Report

    with rt.sessions() as s:
        return sorted(int(r) for r in s.execute(select(Report.id).where(Report.state == "finished")).scalars())


@contextmanager
def stage_timer() -> Iterator[dict[str, float]]:
    """Seconds spent in each stage (both of its forms), by wrapping the registered stages."""
    import dataclasses

    from tipline.pipeline import core

    spent: dict[str, float] = defaultdict(float)
    core.stages()  # loads the stage modules
    saved = dict(core._STAGES)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[name] += time.perf_counter() - t
        return run

    for name, st in saved.items():
        core._STAGES[name] = dataclasses.replace(
            st, func=timed(name, st.func), group=timed(name, st.group) if st.group is not None else None)
    try:
        yield spent
    finally:
        core._STAGES.clear()
        core._STAGES.update(saved)


def curve(marks: list[tuple[float, int]], chunks: int = 5) -> list[float]:
    """Reports/s in ``chunks`` equal slices of the run's reports, from (seconds, reports done) marks."""
    if not marks:
        return []
    total = marks[-1][1]
    out: list[float] = []
    prev_t, prev_n = 0.0, 0
    step = total / chunks
    target = step
    for t, n in marks:
        if n >= target - 1e-9 or n == total:
            if t > prev_t:
                out.append(round((n - prev_n) / (t - prev_t), 1))
            prev_t, prev_n = t, n
            target += step
    return out


def stage_curve(marks: list[tuple[float, int]], spent_at: list[dict[str, float]],
                chunks: int = 5) -> dict[str, list[float]]:
    """Milliseconds per report each stage took in ``chunks`` equal slices of the run: which
    stage's cost grows as the store does (the rate curve says only that something does)."""
    if not marks:
        return {}
    total, step = marks[-1][1], marks[-1][1] / chunks
    out: dict[str, list[float]] = {name: [] for name in spent_at[-1]}
    prev_n, prev = 0, dict.fromkeys(spent_at[-1], 0.0)
    target = step
    for (_, n), at in zip(marks, spent_at, strict=True):
        if n >= target - 1e-9 or n == total:
            for name in out:
                out[name].append(round(1000 * (at.get(name, 0.0) - prev[name]) / max(n - prev_n, 1), 2))
            prev_n, prev = n, {name: at.get(name, 0.0) for name in out}
            target += step
    return out


def off_reference(rt: Any) -> int:
    """Finished reports whose stored incident (rule, key) is not the reference plan's
    (``bundling.reference.plan_all``: union-find over every link at once); the target is 0."""
    from tipline.pipeline.bundling.reference import current_assignments, plan_all
    from tipline.pipeline.bundling.rules import load_bundling

    with rt.sessions() as s:
        stored, planned = current_assignments(s), plan_all(s, load_bundling())
    return sum(1 for rid, want in planned.items() if stored.get(rid) != want)


def progress_line(label: str, marks: list[tuple[float, int]], spent_at: list[dict[str, float]],
                  since: int, total: int, delta: Any = None) -> str:
    """One line on a long run: reports done, the rate and each stage's ms per report since mark ``since``."""
    (t1, n1), (t0, n0) = marks[-1], marks[since] if since >= 0 else (0.0, 0)
    now, then = spent_at[-1], spent_at[since] if since >= 0 else {}
    per = ", ".join(f"{k} {1000 * (v - then.get(k, 0.0)) / max(n1 - n0, 1):.2f}" for k, v in sorted(now.items()))
    rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    line = (f"{label}: {n1:,}/{total:,} reports in {t1:.0f} s; last {n1 - n0:,} at "
            f"{(n1 - n0) / max(t1 - t0, 1e-9):.1f} reports/s; ms per report: {per}; RSS peak {rss} MB")
    if delta is not None:  # what the bundles stage placed from the links' delta, so far
        top = sorted(delta.fallbacks.items(), key=lambda kv: -kv[1])[:3]
        line += (f"; bundles placed {delta.reports_placed:,}, set aside {delta.reports_set_aside:,}"
                 + "".join(f"; {n}x {why}" for why, n in top))
    return line


def run_in_process(rt: Any, ids: list[int], job: Callable[[Any, list[int]], None], chunk: int,
                   label: str = "run", every: float = 60.0) -> dict[str, Any]:
    """Run ``job`` over ``ids`` in chunks; a progress line to stderr every ``every`` seconds
    (a year takes hours: the curve is seen while it is drawn, and kept if the run is cut short)."""
    from tipline.pipeline.core import StageContext
    from tipline.pipeline.queue import pending_report_ids

    ctx = StageContext(rt)
    marks: list[tuple[float, int]] = []
    spent_at: list[dict[str, float]] = []  # the stage seconds so far, at each mark
    with stage_timer() as spent:
        t0, c0 = time.monotonic(), time.process_time()
        shown, shown_at = -1, 0.0
        for i in range(0, len(ids), chunk):
            job(ctx, ids[i:i + chunk])
            marks.append((time.monotonic() - t0, min(len(ids), i + chunk)))
            spent_at.append(dict(spent))
            if marks[-1][0] - shown_at >= every:
                print(progress_line(label, marks, spent_at, shown, len(ids), ctx.services.get("bundles-delta")),
                      file=sys.stderr, flush=True)
                shown, shown_at = len(marks) - 1, marks[-1][0]
        secs, cpu = time.monotonic() - t0, time.process_time() - c0
    left = len(set(pending_report_ids(rt)) & set(ids))
    off = off_reference(rt) if len(ids) == len(finished(rt)) else None  # a part of the store: not comparable
    # How the bundles stage placed the groups (absent on trees without ``bundling.delta``).
    delta = ctx.services.get("bundles-delta")
    delta_info = {"applied": delta.applied, "took_members": delta.took_members,
                  "reports_placed": delta.reports_placed, "reports_set_aside": delta.reports_set_aside,
                                     "fallbacks": dict(delta.fallbacks)} if delta is not None else None
    # CPU seconds of this process (the database server's are not in it): on a shared machine
    # the wall rate follows the load; reports per CPU second says what one free core does.
    return {"reports": len(ids), "seconds": round(secs, 2), "reports_per_s": round(len(ids) / secs, 1),
            "cpu_seconds": round(cpu, 2), "reports_per_cpu_s": round(len(ids) / cpu, 1),
            "curve": curve(marks), "stage_seconds": {k: round(v, 2) for k, v in sorted(spent.items())},
            "stage_ms_per_report_curve": stage_curve(marks, spent_at),
            "pending_after": left, "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "bundles_delta": delta_info, "off_reference": off}


def run_workers(rt: Any, n_workers: int, group_size: int) -> dict[str, Any]:
    """Defer the store's pending reports as group jobs, then drain them with ``n_workers`` processes."""
    from tipline.pipeline.queue import ProcrastinateQueue, pending_report_ids

    ids = pending_report_ids(rt)
    q = ProcrastinateQueue(rt, group_size=group_size)
    t0 = time.monotonic()
    try:
        for i in range(0, len(ids), group_size):
            q.defer_group(ids[i:i + group_size])
    finally:
        q.close()
    defer_s = time.monotonic() - t0
    env = {**os.environ, "TIPLINE_DATA_DIR": str(rt.settings.data_dir),
           "TIPLINE_DATABASE_URL": rt.settings.effective_database_url, "TIPLINE_QUEUE": "procrastinate",
           "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "tipline", "pipeline", "worker", "--once", "--concurrency", "1",
           "--group-size", str(group_size)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(n_workers)]
    marks: list[tuple[float, int]] = []
    total = len(ids)
    while any(p.poll() is None for p in procs):
        time.sleep(1.0)
        marks.append((time.monotonic() - t0, total - len(pending_report_ids(rt))))
    secs = time.monotonic() - t0
    errs = [p.stderr.read().decode()[-400:] if p.stderr else "" for p in procs]
    left = len(pending_report_ids(rt))
    marks.append((secs, total - left))
    return {"workers": n_workers, "reports": total, "seconds": round(secs, 2), "off_reference": off_reference(rt),
            "reports_per_s": round(total / secs, 1), "defer_seconds": round(defer_s, 2), "curve": curve(marks),
            "pending_after": left, "exit_codes": [p.returncode for p in procs],
            "maxrss_mb_worker": round(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024),
            "stderr_tail": errs if any(p.returncode for p in procs) else []}


def bench_backend(backend: str, args: argparse.Namespace, pg_url: str | None) -> dict[str, Any]:
    from tipline.pipeline.core import run_report_stepwise
    from tipline.pipeline.queue import enrich_many

    out: dict[str, Any] = {"backend": backend}
    n = 0

    def per_report(ctx: Any, group: list[int]) -> None:
        for rid in group:
            run_report_stepwise(ctx, rid)

    def grouped(ctx: Any, group: list[int]) -> None:
        enrich_many(ctx, group, group_size=args.group_size)

    if args.baseline:
        n += 1
        with store(backend, pg_url, n, args.scale, args.seed) as (rt, load_s):
            ids = finished(rt)
            out["per_report"] = run_in_process(rt, ids[:args.baseline], per_report, max(1, args.baseline // 10),
                                               f"{backend} per-report")
            print(f"{backend} per-report: {out['per_report']['reports_per_s']} reports/s", flush=True)
    n += 1
    with store(backend, pg_url, n, args.scale, args.seed) as (rt, load_s):
        ids = finished(rt)
        out["reports_in_store"] = len(ids)
        out["load_seconds"] = round(load_s, 1)
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        out["group"] = run_in_process(rt, ids, grouped, args.group_size, f"{backend} group")
        if args.profile:
            prof.disable()
            prof.dump_stats(f"{args.profile}.{backend}")
            print(f"{backend} group profile: {args.profile}.{backend}", flush=True)
        print(f"{backend} group: {out['group']['reports_per_s']} reports/s", flush=True)
    out["ratio"] = (round(out["group"]["reports_per_s"] / out["per_report"]["reports_per_s"], 1)
                    if "per_report" in out else None)
    if backend == "postgresql":
        out["workers"] = []
        for w in args.workers:
            n += 1
            with store(backend, pg_url, n, args.scale, args.seed) as (rt, _):
                res = run_workers(rt, w, args.group_size)
                out["workers"].append(res)
                print(f"{backend} workers={w}: {res['reports_per_s']} reports/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.000138, help="Simulated 2023 slice (0.000138: ~5,000 reports).")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--baseline", type=int, default=500,
                    help="Reports the per-report path runs over (0: none, and no store loaded for it).")
    ap.add_argument("--group-size", type=int, default=200)
    ap.add_argument("--workers", default="1,2,4", help="Worker processes to measure on PostgreSQL.")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--profile", metavar="PATH",
                    help="cProfile the group run; stats written to PATH.<backend> (its rate is then not comparable).")
    args = ap.parse_args()
    args.workers = [int(w) for w in args.workers.split(",") if w]
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_at_start": os.getloadavg()},
        "args": {k: v for k, v in vars(args).items()}, "backends": []}
    with ExitStack() as stack:
        for backend in args.backends.split(","):
            pg_url = stack.enter_context(pg_cluster()) if backend == "postgresql" else None
            results["backends"].append(bench_backend(backend, args, pg_url))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"groups-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\n{'backend':<11} {'path':<12} {'reports':>8} {'rep/s':>8} {'rep/cpu-s':>9} {'curve (per fifth)':<36} "
          f"{'RSS MB':>7} {'off ref':>7}")
    for b in results["backends"]:
        rows = [("per-report", b["per_report"])] if "per_report" in b else []
        rows += [("group", b["group"])]
        rows += [(f"workers={w['workers']}", w) for w in b.get("workers", [])]
        for name, r in rows:
            off = "-" if r.get("off_reference") is None else r["off_reference"]
            print(f"{b['backend']:<11} {name:<12} {r['reports']:>8} {r['reports_per_s']:>8} "
                  f"{r.get('reports_per_cpu_s', '-'):>9} {str(r['curve']):<36} "
                  f"{r.get('maxrss_mb', r.get('maxrss_mb_worker')):>7} {off:>7}")
        print(f"{b['backend']:<11} group/per-report ratio {b['ratio']}x; stage seconds (group): "
              f"{b['group']['stage_seconds']}")
        print(f"{b['backend']:<11} ms per report per fifth (group): "
              + "; ".join(f"{k} {v}" for k, v in b["group"]["stage_ms_per_report_curve"].items()))
        if b["group"].get("bundles_delta") is not None:
            print(f"{b['backend']:<11} bundles from the links' delta: {b['group']['bundles_delta']}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
