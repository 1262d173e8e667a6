"""A published CyberTipline client, unchanged but for its base URL, against a live tipline.

``cybertipline-tools`` (npm, TypeScript, MIT) parses responses with fast-xml-parser, which is
exactly the client that breaks on numeric-looking fileIds or namespaced roots.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from helpers import report_xml
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.web.app import create_app

JS = Path(__file__).parent / "clients" / "js"
INCIDENT = "Child Pornography (possession, manufacture, and distribution)"
REQUIRE = os.environ.get("TIPLINE_TEST_REQUIRE_PG") == "1"  # CI: everything required


def _node_ready() -> bool:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return False
    if not (JS / "node_modules" / "cybertipline-tools").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=JS, check=True,
                       timeout=300)
    return True


@pytest.fixture
def live_server(runtime: Runtime, esps: object) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/ispws"
    server.should_exit = True
    thread.join(5)


def _curl(*args: str) -> str:
    if shutil.which("curl") is None:
        if REQUIRE:
            pytest.fail("curl missing")
        pytest.skip("curl missing")
    run = subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


NAMES = ["写真.png", "صورة الملف.jpg", "фото 1.png"]


@pytest.mark.parametrize("name", NAMES, ids=["japanese", "arabic", "cyrillic"])
def test_curl_upload_of_any_file_name(live_server: str, runtime: Runtime, tmp_path: Path, name: str) -> None:
    """Plain ``curl -F``, as a platform's shell script would send it: the name arrives as sent."""
    image = tmp_path / name
    image.write_bytes(standin_image(7))
    report = tmp_path / "report.xml"
    report.write_bytes(report_xml())
    auth = "acme:acme-secret-1"
    out = _curl("-u", auth, "-H", "Content-Type: text/xml; charset=utf-8", "--data-binary", f"@{report}",
                f"{live_server}/submit")
    rid = int(re.search(r"<reportId>(\d+)</reportId>", out).group(1))  # type: ignore[union-attr]
    out = _curl("-u", auth, "-F", f"id={rid}", "-F", f"file=@{image};type=image/png", f"{live_server}/upload")
    assert "<responseCode>0</responseCode>" in out, out
    assert f"<hash>{hashlib.md5(image.read_bytes()).hexdigest()}</hash>" in out
    view = runtime.intake.view_unchecked(rid)
    assert view is not None and [f.file_name for f in view.files] == [name]

    # The JSON API, same client: 201 and the name kept, never a 503.
    api = live_server.removesuffix("/ispws") + "/api/v1"
    out = _curl("-u", auth, "-H", "Content-Type: application/json", "--data-binary",
                json.dumps({"incidentSummary": {"incidentType": INCIDENT, "incidentDateTime": "2026-10-01T12:00:00Z"},
                            "reporter": {"reportingPerson": {"email": [{"value": "safety@example.com"}]}}}),
                f"{api}/reports")
    api_rid = json.loads(out)["reportId"]
    out = _curl("-u", auth, "-w", "\n%{http_code}", "-F", f"file=@{image};type=image/png",
                f"{api}/reports/{api_rid}/files")
    body, status = out.rsplit("\n", 1)
    assert status == "201", body
    view = runtime.intake.view_unchecked(api_rid)
    assert view is not None and [f.file_name for f in view.files] == [name]


def test_curl_upload_under_a_non_latin1_field_name_is_a_client_error(live_server: str, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(standin_image(8))
    report = tmp_path / "report.xml"
    report.write_bytes(report_xml())
    auth = "acme:acme-secret-1"
    out = _curl("-u", auth, "--data-binary", f"@{report}", f"{live_server}/submit")
    rid = int(re.search(r"<reportId>(\d+)</reportId>", out).group(1))  # type: ignore[union-attr]
    out = _curl("-u", auth, "-F", f"id={rid}", "-F", "説明=写真", "-F", f"ファイル=@{image}", f"{live_server}/upload")
    assert "<responseCode>4200</responseCode>" in out, out


def test_cybertipline_tools_full_cycle(live_server: str, runtime: Runtime, tmp_path: Path) -> None:
    if not _node_ready():
        if REQUIRE:
            pytest.fail("node/npm missing")
        pytest.skip("node/npm missing")
    image = tmp_path / "standin.png"
    image.write_bytes(standin_image(42))
    env = {**os.environ, "TIPLINE_BASE": live_server, "TIPLINE_USER": "acme", "TIPLINE_PASS": "acme-secret-1"}
    run = subprocess.run(["node", "cycle.mjs", str(image)], cwd=JS, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["status"].startswith("Remote User : acme, Remote Ip : 127.0.0.1")
    assert out["requestId"] != "unknown"
    assert out["fileIdType"] == "string" and len(out["fileId"]) == 32
    assert out["hash"] == hashlib.md5(image.read_bytes()).hexdigest()
    assert out["finishCode"] == 0
    assert out["retractCode"] == 0 and out["retractAgainCode"] == 5101
    assert "401" in out["badAuth"]

    view = runtime.intake.view_unchecked(int(out["reportId"]))
    assert view is not None and view.state == "finished"
    assert view.incident_type == "Online Enticement of Children for Sexual Acts"
    assert view.normalisations, "the spelling fix must be recorded"
    assert view.escalation == "Adult is arranging to meet a child this weekend"
    assert view.files[0].details is not None
    assert view.files[0].details.get("industryClassification") == "B2"
    assert runtime.intake.read_file_unchecked(out["fileId"]) == image.read_bytes()
    retracted = runtime.intake.view_unchecked(int(out["retracted"]))
    assert retracted is not None and retracted.state == "retracted"
