"""Simulated-year throughput: loading a year in bulk (old writer vs Intake's bulk path), and each path.

    # loading: the same reports, old and new side by side, SQLite and PostgreSQL
    .venv/bin/python benchmarks/sim/run.py load [--reports 20000] [--backends sqlite,postgresql]
    # each path (generation alone, direct, ISPWS) into the embedded store
    .venv/bin/python benchmarks/sim/run.py paths [--year 2023] [--scale 0.001] [--ispws-scale 0.00005]

``load`` takes the first ``--reports`` reports of the scale-0.01 2023 year (the target year's own
mix: same platforms, files per report, public share), generates them once into memory (timed
apart), then files them twice into fresh stores of each backend: with the writer from before
Intake had a bulk use case (``legacy_direct.py``, the baseline) and with ``DirectWriter``
(``tipline.intake.bulk``: COPY on PostgreSQL, executemany on SQLite). Only the writes are
timed. PostgreSQL is a throwaway cluster with fsync on. Prints a table and, with ``--json``,
writes the figures. benchmarks/README.md ("loading") has the recorded run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from legacy_direct import LegacyDirectWriter  # noqa: E402

from tipline.config import Settings  # noqa: E402
from tipline.runtime import Runtime  # noqa: E402
from tipline.sim.generate import FilesMode, SimReport, YearGenerator  # noqa: E402
from tipline.sim.write import DirectWriter, IspwsWriter, register_platforms  # noqa: E402
from tipline.store.setup import do_init  # noqa: E402

PG_BIN = Path(os.environ.get("TIPLINE_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
YEAR_REPORTS = 362_104  # the scale-0.01 2023 year


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pg_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster (fsync on, as in production); yields its server URL."""
    d = Path(tempfile.mkdtemp(prefix="tipline-bench-pg-"))
    shutil.chown(d, "postgres")
    os.chmod(d, 0o700)
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    run(str(PG_BIN / "initdb"), "-D", f"{d}/data", "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run(str(PG_BIN / "pg_ctl"), "-D", f"{d}/data", "-w", "-l", f"{d}/log", "-o",
        f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c shared_buffers=512MB", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", f"{d}/data",
                        "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


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


def time_writer(settings: Settings, gen: YearGenerator, reports: list[SimReport], writer_kind: str) -> float:
    """Seconds to file ``reports`` with one writer into ``settings``' store (writes only)."""
    rt = Runtime.open(settings)
    try:
        accounts = register_platforms(rt, gen.platforms_used())
        count = 0

        def done(r: SimReport, rid: int) -> None:
            nonlocal count
            count += 1

        writer: Any = (LegacyDirectWriter(rt, accounts) if writer_kind == "legacy"
                       else DirectWriter(rt, accounts, key_prefix="bench"))
        t0 = time.perf_counter()
        writer.write(reports, done)
        seconds = time.perf_counter() - t0
        assert count == len(reports)
        return seconds
    finally:
        rt.close()


def load(a: argparse.Namespace) -> None:
    gen = YearGenerator(2023, 0.01, 1, files="hashes")
    t0 = time.perf_counter()
    reports = list(itertools.islice(gen, a.reports))
    gen_s = time.perf_counter() - t0
    files = sum(len(r.files) for r in reports)
    print(f"generated {len(reports):,} reports ({files:,} files) of the 2023 scale-0.01 year in {gen_s:.1f} s "
          f"({len(reports) / gen_s:,.0f} reports/s)", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in a.backends.split(","):
            cluster = pg_cluster() if backend == "postgresql" else None
            server = cluster.__enter__() if cluster is not None else None
            try:
                seconds: dict[str, float] = {}
                for kind in ("legacy", "bulk"):
                    settings = _store(Path(tmp), f"{backend}_{kind}", server)
                    seconds[kind] = time_writer(settings, gen, reports, kind)
                    print(f"  {backend:<10} {kind:<6} {seconds[kind]:7.1f} s  "
                          f"{len(reports) / seconds[kind]:8.0f} reports/s", flush=True)
            finally:
                if cluster is not None:
                    cluster.__exit__(None, None, None)
            row = {"backend": backend, "reports": len(reports), "files": files,
                   "legacy_s": round(seconds["legacy"], 2), "bulk_s": round(seconds["bulk"], 2),
                   "legacy_rps": round(len(reports) / seconds["legacy"], 1),
                   "bulk_rps": round(len(reports) / seconds["bulk"], 1),
                   "speedup": round(seconds["legacy"] / seconds["bulk"], 2),
                   # the year = its generation plus its writes, at the rates measured here
                   "year_min_legacy": round(YEAR_REPORTS * (gen_s + seconds["legacy"]) / len(reports) / 60, 1),
                   "year_min_bulk": round(YEAR_REPORTS * (gen_s + seconds["bulk"]) / len(reports) / 60, 1)}
            rows.append(row)
    print("\n| backend | reports | legacy s | bulk s | legacy reports/s | bulk reports/s | speed-up "
          "| year, legacy (min) | year, bulk (min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['reports']:,} | {r['legacy_s']} | {r['bulk_s']} | {r['legacy_rps']:,} "
              f"| {r['bulk_rps']:,} | {r['speedup']}× | {r['year_min_legacy']} | {r['year_min_bulk']} |")
    print(f"(generation: {len(reports) / gen_s:,.0f} reports/s, included in the year columns)")
    if a.json:
        load1, load5, _ = os.getloadavg()
        Path(a.json).write_text(json.dumps({
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_1_5": [load1, load5], "generation_s": round(gen_s, 2),
            "rows": rows}, indent=2) + "\n")


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
    lo.add_argument("--reports", type=int, default=20_000)
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
