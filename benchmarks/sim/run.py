"""Simulated-year throughput: generation alone, the direct bulk path and the ISPWS path.

    .venv/bin/python benchmarks/sim/run.py [--year 2023] [--scale 0.001] [--ispws-scale 0.00005]

Each path writes into a fresh embedded (SQLite) data directory under a temporary directory.
Prints reports/s per path; the figures in the closing notes came from this script.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.sim.generate import FilesMode, SimReport, YearGenerator
from tipline.sim.write import DirectWriter, IspwsWriter, register_platforms
from tipline.store.setup import do_init


def run(year: int, scale: float, via: str, files: FilesMode) -> float:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--year", type=int, default=2023)
    ap.add_argument("--scale", type=float, default=0.001)
    ap.add_argument("--ispws-scale", type=float, default=0.00005)
    a = ap.parse_args()
    for via, scale, files in [("generate", a.scale, "hashes"), ("direct", a.scale, "hashes"),
                              ("ispws", a.ispws_scale, "hashes"), ("direct", a.ispws_scale, "images"),
                              ("ispws", a.ispws_scale, "images")]:
        rate = run(a.year, scale, via, files)  # type: ignore[arg-type]
        print(f"{via:<9} files={files:<6} year={a.year} scale={scale:<8} {rate:8.1f} reports/s", flush=True)


if __name__ == "__main__":
    main()
