"""Simulated-year throughput: loading a year in bulk (old writer vs Intake's bulk path), and each path.

    # loading: the same reports, old and new side by side, SQLite and PostgreSQL
    .venv/bin/python benchmarks/sim/run.py load [--scale 0.0003] [--backends sqlite,postgresql] [--json F]
    # each path (generation alone, direct, ISPWS) into the embedded store
    .venv/bin/python benchmarks/sim/run.py paths [--year 2023] [--scale 0.001] [--ispws-scale 0.00005]

``load`` files the 2023 year at ``--scale`` (the target year's calibration, a smaller sample)
into fresh stores of each backend, side by side in one run: with the writer from before Intake
had a bulk use case (``legacy_direct.py``, the baseline) and with ``DirectWriter``
(``tipline.intake.bulk``: COPY on PostgreSQL, executemany on SQLite), once from reports
generated beforehand (the writes alone) and once generating inside the timed run, as
``tipline simulate`` does (also with 2 forked producer processes). PostgreSQL is a throwaway
cluster with fsync on. The year column extrapolates each rate to the 362,104 reports of the
scale-0.01 year. Prints a table and, with ``--json``,
writes the figures. benchmarks/README.md ("loading") has the recorded run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from legacy_direct import LegacyDirectWriter  # noqa: E402

from tipline.config import Settings  # noqa: E402
from tipline.runtime import Runtime  # noqa: E402
from tipline.sim.generate import FilesMode, SimReport, YearGenerator  # noqa: E402
from tipline.sim.write import DirectWriter, IspwsWriter, register_platforms  # noqa: E402
from tipline.store.setup import do_init  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from pgcluster import pg_cluster as _pg_cluster  # noqa: E402

YEAR_REPORTS = 362_104  # the scale-0.01 2023 year


def pg_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster (fsync on, as in production); yields its server URL."""
    return _pg_cluster()


def _store(tmp: Path, name: str, server: str | None) -> Settings:
    url = ""
    if server is not None:
        import psycopg

        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://{server.removeprefix('postgresql://')}/{name}"
    settings = Settings.from_env(tmp / name, database_url=url)
    do_init(settings)
    return settings


def time_writer(settings: Settings, gen: YearGenerator, reports: Iterable[SimReport], variant: str,
                workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds to file ``reports`` with one writer into ``settings``' store.

    CPU counts this process and its children (the forked producers), so it says what the
    run would take on cores nobody else uses.
    """
    rt = Runtime.open(settings)
    try:
        accounts = register_platforms(rt, gen.platforms_used())
        count = 0

        def done(r: SimReport, rid: int) -> None:
            nonlocal count
            count += 1

        writer: Any = (LegacyDirectWriter(rt, accounts) if variant == "legacy"
                       else DirectWriter(rt, accounts, key_prefix="bench", workers=workers))
        c0, t0 = _cpu(), time.perf_counter()
        writer.write(reports, done)
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        assert count == len(gen) or not isinstance(reports, YearGenerator)
        return seconds, cpu
    finally:
        rt.close()


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


#: (name, writer, producer processes, whether the reports are generated inside the timed run)
VARIANTS = [("legacy, writes only", "legacy", 1, False), ("bulk, writes only", "bulk", 1, False),
            ("legacy", "legacy", 1, True), ("bulk", "bulk", 1, True), ("bulk, 2 producers", "bulk", 2, True)]


def load(a: argparse.Namespace) -> None:
    gen = YearGenerator(2023, a.scale, 1, files="hashes")
    n = len(gen)
    t0 = time.perf_counter()
    reports = list(gen)
    gen_s = time.perf_counter() - t0
    files = sum(len(r.files) for r in reports)
    print(f"2023 at scale {a.scale}: {n:,} reports, {files:,} files; generated in {gen_s:.1f} s "
          f"({n / gen_s:,.0f} reports/s); load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in a.backends.split(","):
            cluster = pg_cluster() if backend == "postgresql" else None
            server = cluster.__enter__() if cluster is not None else None
            try:
                for k, (name, variant, workers, generated) in enumerate(VARIANTS):
                    settings = _store(Path(tmp), f"{backend}_{k}", server)
                    source: Iterable[SimReport] = YearGenerator(2023, a.scale, 1, files="hashes") if generated \
                        else reports
                    wall, cpu = time_writer(settings, gen, source, variant, workers)
                    rows.append({"backend": backend, "variant": name, "reports": n, "files": files,
                                 "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                                 "reports_per_s": round(n / wall, 1), "load_avg": round(os.getloadavg()[0], 1),
                                 "year_min": round(YEAR_REPORTS / (n / wall) / 60, 1)})
                    print(f"  {backend:<10} {name:<20} {wall:7.1f} s wall {cpu:7.1f} s CPU "
                          f"{n / wall:8.0f} reports/s", flush=True)
            finally:
                if cluster is not None:
                    cluster.__exit__(None, None, None)
    base = {(r["backend"], r["variant"].replace("bulk", "legacy").replace(", 2 producers", "")): r["wall_s"]
            for r in rows if r["variant"].startswith("legacy")}
    print("\n| backend | what is timed | wall s | CPU s | reports/s | × legacy | 362,104-report year (min) "
          "| load avg |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        legacy = base[(r["backend"], "legacy, writes only" if "writes only" in r["variant"] else "legacy")]
        r["speedup"] = round(legacy / r["wall_s"], 2)
        print(f"| {r['backend']} | {r['variant']} | {r['wall_s']} | {r['cpu_s']} | {r['reports_per_s']:,} "
              f"| {r['speedup']} | {r['year_min']} | {r['load_avg']} |")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.platform(),
            "cpus": os.cpu_count(), "scale": a.scale, "generation_s": round(gen_s, 2), "rows": rows},
            indent=2) + "\n")


def run_path(year: int, scale: float, via: str, files: FilesMode) -> float:
    gen = YearGenerator(year, scale, 1, files=files)
    if via == "generate":
        t0 = time.perf_counter()
        n = sum(1 for _ in gen)
        return n / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(Path(tmp) / "data")
        do_init(settings)
        rt = Runtime.open(settings)
        try:
            accounts = register_platforms(rt, gen.platforms_used())
            count = 0

            def done(r: SimReport, rid: int) -> None:
                nonlocal count
                count += 1

            writer = IspwsWriter(rt, accounts) if via == "ispws" else DirectWriter(rt, accounts)
            t0 = time.perf_counter()
            writer.write(gen, done)
            return count / (time.perf_counter() - t0)
        finally:
            rt.close()


def paths(a: argparse.Namespace) -> None:
    for via, scale, files in [("generate", a.scale, "hashes"), ("direct", a.scale, "hashes"),
                              ("ispws", a.ispws_scale, "hashes"), ("direct", a.ispws_scale, "images"),
                              ("ispws", a.ispws_scale, "images")]:
        rate = run_path(a.year, scale, via, files)  # type: ignore[arg-type]
        print(f"{via:<9} files={files:<6} year={a.year} scale={scale:<8} {rate:8.1f} reports/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    lo = sub.add_parser("load", help="old direct writer vs Intake's bulk path, same reports, both backends")
    lo.add_argument("--scale", type=float, default=0.0003,
                    help="of 2023 (0.0003: 10,863 reports; the target year is 0.01)")
    lo.add_argument("--backends", default="sqlite,postgresql")
    lo.add_argument("--json", default=None, help="write the figures to this file")
    pa = sub.add_parser("paths", help="generation alone, direct and ISPWS, into the embedded store")
    pa.add_argument("--year", type=int, default=2023)
    pa.add_argument("--scale", type=float, default=0.001)
    pa.add_argument("--ispws-scale", type=float, default=0.00005)
    a = ap.parse_args()
    load(a) if a.what == "load" else paths(a)


if __name__ == "__main__":
    main()
