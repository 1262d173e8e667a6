"""A published CyberTipline client, unchanged but for its base URL, against a live tipline.

``cybertipline-tools`` (npm, TypeScript, MIT) parses responses with fast-xml-parser, which is
exactly the client that breaks on numeric-looking fileIds or namespaced roots.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.web.app import create_app

JS = Path(__file__).parent / "clients" / "js"
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

    view = runtime.intake.view(int(out["reportId"]))
    assert view is not None and view.state == "finished"
    assert view.incident_type == "Online Enticement of Children for Sexual Acts"
    assert view.normalisations, "the spelling fix must be recorded"
    assert view.escalation == "Adult is arranging to meet a child this weekend"
    assert view.files[0].details is not None
    assert view.files[0].details.get("industryClassification") == "B2"
    assert runtime.intake.read_file(out["fileId"]) == image.read_bytes()
    retracted = runtime.intake.view(int(out["retracted"]))
    assert retracted is not None and retracted.state == "retracted"
