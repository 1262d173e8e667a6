"""``tipline simulate --via direct`` in process, with its CPU split by process and by phase.

    PYTHONPATH=src .venv/bin/python benchmarks/sim/cli_cpu.py --data /tmp/x/data [--scale 0.001] [--json F]

Runs what the CLI runs (``simulate_year``, ``--files hashes --no-outcomes``, ``--workers`` default
the CPU count) into a fresh data directory and prints one JSON line: the filing seconds the CLI
reports, the wall, the CPU of this (the storing) process and of its forked producers
(``RUSAGE_CHILDREN``: counted once they are joined), split into the load and the time
stamping after it, and the peak RSS. It only wraps functions from outside, so the same script
measures any tree put on ``PYTHONPATH`` (e.g. ``main``'s, for a side-by-side run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _cpu(who: int) -> float:
    u = resource.getrusage(who)
    return u.ru_utime + u.ru_stime


def _sys(who: int) -> float:
    return resource.getrusage(who).ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="a fresh data directory (made here)")
    ap.add_argument("--year", type=int, default=2023)
    ap.add_argument("--scale", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    import tipline.sim.outcomes as outcomes
    from tipline.commands.simulate import simulate_year
    from tipline.config import Settings

    stamp: dict[str, float] = {}
    real_stamp = outcomes.stamp_report_times

    def timed_stamp(*args: Any, **kw: Any) -> Any:
        t0, c0 = time.monotonic(), time.process_time()
        try:
            return real_stamp(*args, **kw)
        finally:
            stamp["wall"], stamp["cpu"] = time.monotonic() - t0, time.process_time() - c0

    outcomes.stamp_report_times = timed_stamp  # simulate imports it from the module at call time
    settings = Settings.from_env(a.data)
    workers = a.workers or os.cpu_count() or 1
    load_avg = os.getloadavg()[0]
    t0, self0, kids0 = time.monotonic(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    sys0, ksys0 = _sys(resource.RUSAGE_SELF), _sys(resource.RUSAGE_CHILDREN)
    summary = simulate_year(settings, a.year, a.scale, seed=a.seed, via="direct", files_mode="hashes",
                            outcomes=False, workers=workers)
    wall = time.monotonic() - t0
    self_cpu = _cpu(resource.RUSAGE_SELF) - self0
    kids_cpu = _cpu(resource.RUSAGE_CHILDREN) - kids0
    n = int(summary["reports"])
    out = {
        "tree": os.environ.get("PYTHONPATH", ""), "scale": a.scale, "reports": n, "workers": workers,
        "filing_s": summary["seconds"], "wall_s": round(wall, 2),
        "writer_cpu_s": round(self_cpu, 2), "producers_cpu_s": round(kids_cpu, 2),
        "writer_sys_s": round(_sys(resource.RUSAGE_SELF) - sys0, 2),
        "producers_sys_s": round(_sys(resource.RUSAGE_CHILDREN) - ksys0, 2),
        "stamp_cpu_s": round(stamp.get("cpu", 0.0), 2), "stamp_wall_s": round(stamp.get("wall", 0.0), 2),
        "cpu_ms_per_report": round(1000 * (self_cpu + kids_cpu) / n, 3),
        "writer_ms_per_report": round(1000 * self_cpu / n, 3),
        "producers_ms_per_report": round(1000 * kids_cpu / n, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_avg_start": round(load_avg, 2), "load_avg_end": round(os.getloadavg()[0], 2),
    }
    line = json.dumps(out)
    print(line, file=sys.stderr)
    if a.json:
        with a.json.open("a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
