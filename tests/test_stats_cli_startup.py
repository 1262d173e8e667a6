"""``tipline stats outcomes`` starts like a read command: it loads numpy (and statsmodels) only
when an estimate is computed (its bootstrap and the logistic model are numpy's work), never the
web stack, the simulator or the hashing stack; counts, Wilson intervals, bounds and
Kaplan-Meier curves are plain Python; its help and the export's load nothing heavy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_cli_startup import HEAVY, PROBE
from tipline.config import Settings
from tipline.runtime import Runtime


def _probe(settings: Settings, commands: list[list[str]], heavy: list[str] | None = None,
           env: dict[str, str] | None = None) -> dict[str, list[str]]:
    env = {**os.environ, "TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url,
           **(env or {})}
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps([heavy or HEAVY, commands])], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    seen: dict[str, list[str]] = json.loads(res.stdout.rsplit("\n", 2)[-2])
    assert list(seen) == [" ".join(c) for c in commands]
    return seen


def test_nothing_to_compute_loads_nothing_heavy(runtime: Runtime, settings: Settings) -> None:
    seen = _probe(settings, [["stats", "outcomes", "--help"], ["stats", "export", "--help"],
                             ["stats", "outcomes"], ["stats", "outcomes", "--json"]])
    assert {cmd: mods for cmd, mods in seen.items() if mods} == {}


#: The numerical stack: what only an estimate (its bootstrap, the logistic model) needs.
NUMERIC = ["numpy", "scipy", "statsmodels", "pandas"]


def test_counts_intervals_and_curves_load_no_numerical_stack(runtime: Runtime, settings: Settings) -> None:
    """Coverage below the threshold: the estimate is withheld, and what is shown (counts, Wilson
    intervals, bounds, Kaplan-Meier medians) is computed in plain Python: numpy, scipy,
    statsmodels and pandas stay unloaded (each a large share of a second at start-up)."""
    from test_outcome_stats import _world

    _world(runtime)
    env = {"TIPLINE_OUTCOME_COVERAGE_THRESHOLD": "1.0"}
    commands = [["stats", "outcomes", "--from", "2023-01-01", "--to", "2023-12-31"],
                ["stats", "outcomes", "--from", "2023-01-01", "--to", "2023-12-31", "--by", "agency", "--json"]]
    seen = _probe(settings, commands, heavy=HEAVY + NUMERIC, env=env)
    assert {cmd: mods for cmd, mods in seen.items() if mods} == {}


def test_the_probe_sees_the_numerical_stack_when_an_estimate_is_computed(runtime: Runtime,
                                                                         settings: Settings) -> None:
    """The probe can fail: with the threshold at 0 the estimates and their bootstraps are
    computed (a world with more than 30 reports with feedback), and numpy is seen loading."""
    from test_outcome_stats import _large_world

    _large_world(runtime)
    seen = _probe(settings, [["stats", "outcomes", "--from", "2023-01-01", "--to", "2023-12-31"]],
                  heavy=HEAVY + NUMERIC, env={"TIPLINE_OUTCOME_COVERAGE_THRESHOLD": "0"})
    assert "numpy" in next(iter(seen.values()))
