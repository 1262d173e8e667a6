"""The operator CLI, run as an operator would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from helpers import ManualClock, report_xml
from tipline.cli import main
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.web.app import create_app


def run(settings: Settings, *args: str, ok: bool = True) -> str:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_init_is_idempotent_and_keeps_the_key(settings: Settings) -> None:
    key = settings.effective_key_file.read_bytes()
    out = run(settings, "init")
    assert "kept existing key" in out and "database ready" in out
    assert settings.effective_key_file.read_bytes() == key


def test_esp_lifecycle_and_reports(settings: Settings) -> None:
    out = run(settings, "esp", "add", "Acme Social", "--username", "acme", "--password", "pw-long-enough")
    assert "added platform 'Acme Social'" in out
    run(settings, "esp", "add", "Other", "--username", "acme", "--password", "pw-long-enough", ok=False)
    run(settings, "esp", "add", "Short", "--username", "s", "--password", "short", ok=False)
    token = run(settings, "esp", "token", "Acme Social", "--label", "ci").splitlines()[0]
    assert token.startswith("tpl_")
    listing = json.loads(run(settings, "esp", "list", "--json"))
    assert listing[0]["name"] == "Acme Social" and {c["kind"] for c in listing[0]["credentials"]} == {"basic", "bearer"}
    assert "acme" in run(settings, "esp", "list")

    rt = Runtime.open(settings)
    clock = ManualClock()
    rt.auth.clock = clock
    with TestClient(create_app(runtime=rt)) as client:
        r = client.post("/ispws/submit", content=report_xml(), auth=("acme", "pw-long-enough"))
        rid = int(r.text.split("<reportId>")[1].split("<")[0])
        client.post("/ispws/upload", data={"id": str(rid)}, files={"file": ("x.png", b"bytes")},
                    auth=("acme", "pw-long-enough"))
    rows = json.loads(run(settings, "report", "list", "--json"))
    assert rows[0]["reportId"] == rid and rows[0]["files"] == 1 and rows[0]["state"] == "open"
    assert str(rid) in run(settings, "report", "list")
    shown = json.loads(run(settings, "report", "show", str(rid), "--json"))
    assert shown["state"] == "open"
    assert shown["files"][0]["md5"] == "4b3a6218bb3e3a7303e8a171a60fcf92"  # md5(b"bytes")
    assert shown["report"]["incidentSummary"]["incidentType"].startswith("Child Pornography")
    human = run(settings, "report", "show", str(rid))
    assert f"Report {rid}" in human and "md5 4b3a6218bb3e3a7303e8a171a60fcf92" in human
    run(settings, "report", "show", "999999", ok=False)

    out = run(settings, "esp", "disable", "Acme Social")
    assert "disabled" in out
    clock.advance(settings.auth_recheck_seconds + 0.1)  # the documented delay for another process
    with TestClient(create_app(runtime=rt)) as client:
        assert client.get("/ispws/status", auth=("acme", "pw-long-enough")).status_code == 401
    rt.close()


def test_command_line_entry_point(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tipline.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "serve" in out.stdout
    # A missing key is a clear message, not a trace.
    res = subprocess.run([sys.executable, "-m", "tipline.cli", "--data-dir", str(tmp_path / "none"),
                          "report", "list"], capture_output=True, text=True)
    assert res.returncode != 0 and "tipline init" in res.stderr and "Traceback" not in res.stderr
