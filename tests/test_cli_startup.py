"""The CLI answers fast: ``--help`` and the read commands load none of the heavy stacks.

Timing is measured by benchmarks/cli/startup.py; here the invariant behind it is asserted:
in a fresh interpreter, listing the commands and running each read command imports neither
the web stack, nor the simulator, nor the hashing stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from helpers import report_xml
from tipline.cli import main
from tipline.config import Settings
from tipline.cybertip.xml import parse_report
from tipline.intake.credentials import add_esp
from tipline.runtime import Runtime

#: What a read command must not import (each costs 0.1-0.5 s at start-up, or much more).
HEAVY = ["fastapi", "starlette", "uvicorn", "tipline.sim", "tipline.web", "numpy", "faiss", "pdqhash", "PIL"]

#: ``tipline --help`` and the read commands, as an operator types them.
READ_COMMANDS = [
    ["--help"],
    ["report", "list"],
    ["report", "show", "{report_id}"],
    ["esp", "list"],
    ["esp", "tokens", "Acme Social"],
    ["agency", "list"],
    ["bank", "list"],
    ["pipeline", "stages"],
    ["stats", "pipeline"],
    ["stats", "quality"],
]

# Runs each command in turn in one fresh interpreter and reports, after each, which heavy
# modules are loaded: the first command to load one is the one named in the failure.
PROBE = textwrap.dedent("""
    import json, sys
    from tipline.cli import main
    heavy, commands = json.loads(sys.argv[1])
    seen = {}
    for args in commands:
        try:
            main(args, prog_name="tipline", standalone_mode=False)
        except SystemExit:
            pass
        seen[" ".join(args)] = sorted(h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules))
    print("\\n" + json.dumps(seen))
""")


def _small_instance(runtime: Runtime, settings: Settings) -> int:
    """One platform, one finished report, enriched; the agency directory loaded."""
    rep_id = add_esp(runtime, "Acme Social", "acme", "acme-secret-1")
    body = report_xml()
    report_id, _ = runtime.intake.open_report(rep_id, parse_report(body), source="ispws", body=body,
                                              content_type="text/xml")
    runtime.intake.finish(rep_id, report_id)
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    for args in (["agency", "import"], ["pipeline", "run"]):
        res = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
    return report_id


def test_help_and_read_commands_import_no_heavy_module(runtime: Runtime, settings: Settings) -> None:
    report_id = _small_instance(runtime, settings)
    commands = [[a.format(report_id=report_id) for a in args] for args in READ_COMMANDS]
    env = {**os.environ, "TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps([HEAVY, commands])], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout.rsplit("\n", 2)[-2])
    assert list(seen) == [" ".join(c) for c in commands]  # every command ran
    assert f"Report {report_id}" in res.stdout and "acme" in res.stdout  # ... and answered
    assert {cmd: mods for cmd, mods in seen.items() if mods} == {}


def test_the_probe_sees_a_command_that_loads_the_simulator(tmp_path: Path) -> None:
    """The probe can fail: a command that needs the simulator (and numpy) shows up loading it."""
    args = ["simulate", "--year", "2023", "--scale", "0.000001", "--generate-only", "--out", str(tmp_path / "t")]
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps([HEAVY, [["--help"], args]])],
                         env={**os.environ, "TIPLINE_DATA_DIR": str(tmp_path / "data")},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout.rsplit("\n", 2)[-2])
    assert seen["--help"] == []
    assert {"tipline.sim", "numpy"} <= set(seen[" ".join(args)])
