"""``tipline stats outcomes`` starts like a read command: it loads numpy and statsmodels only when
there is something to compute (they are what computes the intervals and curves), never the web
stack, the simulator or the hashing stack; its help and the export's load nothing heavy.

It is not in tests/test_cli_startup.py's READ_COMMANDS because that instance holds a referral,
and computing its figures (Wilson intervals, the bootstrap, Kaplan-Meier) is numpy's work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_cli_startup import HEAVY, PROBE
from tipline.config import Settings
from tipline.runtime import Runtime


def _probe(settings: Settings, commands: list[list[str]]) -> dict[str, list[str]]:
    env = {**os.environ, "TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps([HEAVY, commands])], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    seen: dict[str, list[str]] = json.loads(res.stdout.rsplit("\n", 2)[-2])
    assert list(seen) == [" ".join(c) for c in commands]
    return seen


def test_nothing_to_compute_loads_nothing_heavy(runtime: Runtime, settings: Settings) -> None:
    seen = _probe(settings, [["stats", "outcomes", "--help"], ["stats", "export", "--help"],
                             ["stats", "outcomes"], ["stats", "outcomes", "--json"]])
    assert {cmd: mods for cmd, mods in seen.items() if mods} == {}


def test_computing_loads_numpy_and_nothing_else_heavy(runtime: Runtime, settings: Settings) -> None:
    from test_outcome_stats import _world

    _world(runtime)
    seen = _probe(settings, [["stats", "outcomes", "--from", "2023-01-01", "--to", "2023-12-31"]])
    assert list(seen.values()) == [["numpy"]]
