"""How long the ``tipline`` command takes to answer: ``--help`` and the read commands.

Each command runs in a fresh interpreter (as an operator's shell runs it), ``--runs`` times,
after one warm-up run that fills the OS file cache; the figure is the median wall time from
process start to exit. Bytecode is cached (as a pip install does), in a
temporary ``PYTHONPYCACHEPREFIX``. The data directory is a small demo instance (the three sample reports
of ``tipline demo``, the bundled agency directory, enriched), made once in a temporary
directory unless ``--data-dir`` names one.

    PYTHONPATH=src .venv/bin/python benchmarks/cli/startup.py [--runs 21] [--json out.json] [--only 'stats outcomes']
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The commands measured: ``--help`` and every read command (the issue's list).
COMMANDS: list[list[str]] = [
    ["--help"],
    ["report", "list"],
    ["report", "show", "1"],
    ["esp", "list"],
    ["agency", "list"],
    ["bank", "list"],
    ["pipeline", "stages"],
    ["stats", "pipeline"],
    ["stats", "quality"],
    # Outcome statistics: counts, Wilson intervals, bounds, Kaplan-Meier medians (plain Python;
    # numpy only when an estimate is computed, i.e. coverage above the threshold).
    ["stats", "outcomes"],
    ["stats", "outcomes", "--by", "agency", "--json"],
]


def tipline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tipline", *args], env=env, capture_output=True, text=True)


def prepare(data_dir: Path, env: dict[str, str]) -> None:
    """A small instance: the demo's sample reports, the agency directory, all enriched."""
    for args in (["demo", "--no-serve", "--sim-scale", "0"], ["agency", "import"], ["pipeline", "run"]):
        res = tipline(env, *args)
        if res.returncode != 0:
            raise SystemExit(f"tipline {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")


def measure(env: dict[str, str], args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each run. CPU time (user + system of the child) is what
    the command costs; on a machine shared with other work the wall time also counts waiting."""
    tipline(env, *args)  # warm-up: file cache, .pyc files
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = tipline(env, *args)
        wall.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if res.returncode != 0:
            raise SystemExit(f"tipline {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="Timed runs per command (median reported).")
    ap.add_argument("--data-dir", type=Path, default=None, help="Existing data dir (default: a fresh demo one).")
    ap.add_argument("--json", type=Path, default=None, help="Also write every timing here.")
    ap.add_argument("--limit", type=float, default=None,
                    help="Exit 1 when a command's median exceeds this many seconds (e.g. 0.3).")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="Keep PYTHONDONTWRITEBYTECODE from the environment: every module compiled on every run.")
    ap.add_argument("--only", default=None,
                    help="Measure only the commands that start with these words (e.g. 'stats outcomes').")
    a = ap.parse_args()
    commands = [c for c in COMMANDS if a.only is None or " ".join(c).startswith(a.only)]
    with tempfile.TemporaryDirectory(prefix="tipline-cli-bench-") as tmp:
        data_dir = a.data_dir or Path(tmp) / "data"
        env = {**os.environ, "TIPLINE_DATA_DIR": str(data_dir)}
        if not a.no_bytecode:
            # As installed (pip compiles to .pyc): bytecode is cached, here under the temporary
            # directory so that neither the source tree nor the venv is written to.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        if a.data_dir is None:
            prepare(data_dir, env)
        # The interpreter alone, for scale: what no change to tipline can remove.
        bare = _median_of([sys.executable, "-c", "pass"], env, a.runs)
        # ... and importing click and SQLAlchemy's ORM, which any command reading the database needs.
        floor = _median_of([sys.executable, "-c", "import click, sqlalchemy.orm"], env, a.runs)
        print(f"python -c pass: median {bare * 1000:.0f} ms; import click, sqlalchemy.orm: "
              f"median {floor * 1000:.0f} ms ({a.runs} runs)")
        print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
        print(f"{'COMMAND':<28} {'MEDIAN':>8} {'MIN':>8} {'MAX':>8} {'CPU MEDIAN':>11}")
        results: dict[str, dict[str, list[float]]] = {}
        over = []
        for args in commands:
            times, cpu = measure(env, args, a.runs)
            name = "tipline " + " ".join(args)
            results[name] = {"wall": times, "cpu": cpu}
            med = statistics.median(times)
            print(f"{name:<28} {med * 1000:>6.0f}ms {min(times) * 1000:>6.0f}ms {max(times) * 1000:>6.0f}ms "
                  f"{statistics.median(cpu) * 1000:>9.0f}ms", flush=True)
            if a.limit is not None and med > a.limit:
                over.append(name)
        print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    if a.json:
        a.json.write_text(json.dumps({"runs": a.runs, "python": bare, "click+sqlalchemy.orm": floor,
                                       "seconds": results}, indent=2))
    if over:
        raise SystemExit(f"median over {a.limit} s: {', '.join(over)}")


def _median_of(cmd: list[str], env: dict[str, str], runs: int) -> float:
    _timed(cmd, env)  # warm-up, as for the commands
    return statistics.median(_timed(cmd, env) for _ in range(runs))


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
