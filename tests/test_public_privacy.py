"""The privacy notice: who runs the service (a setting), what is kept, for how long, who sees it.

It must tell the truth: the test checks its claims against what intake stores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tipline.cli import do_init
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.store.tables import Base
from tipline.web.app import create_app

CODE_RE = re.compile(r'id="receipt-code">(TPL(?:-[0-9A-Z]{4}){4})</p>')


def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[tuple[TestClient, Runtime]]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings.from_env(tmp_path / "data", database_url="")
    do_init(settings)
    rt = Runtime.open(settings)
    with TestClient(create_app(runtime=rt), raise_server_exceptions=False) as c:
        yield c, rt
    rt.close()


@pytest.fixture
def named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Runtime]]:
    yield from _client(tmp_path, monkeypatch, TIPLINE_OPERATOR_NAME="Example Child Protection Hotline",
                       TIPLINE_OPERATOR_CONTACT="privacy@hotline.example")


def test_privacy_notice_names_the_operator(named: tuple[TestClient, Runtime]) -> None:
    client, _ = named
    resp = client.get("/privacy")
    assert resp.status_code == 200
    html = resp.text
    assert '<strong id="operator-name">Example Child Protection Hotline</strong>' in html
    assert "privacy@hotline.example" in html
    for heading in ("Who runs this service", "What is kept", "For how long", "Who sees it"):
        assert heading in html
    assert "<script" not in html.lower()
    assert resp.headers["cache-control"] == "no-store"


def test_privacy_notice_without_an_operator_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIPLINE_OPERATOR_NAME", raising=False)
    monkeypatch.delenv("TIPLINE_OPERATOR_CONTACT", raising=False)
    for client, _ in _client(tmp_path, monkeypatch):
        html = client.get("/privacy").text
        assert "has not yet given its name" in html and 'id="operator-contact"' not in html


def test_every_public_page_links_the_privacy_notice(named: tuple[TestClient, Runtime]) -> None:
    client, _ = named
    pages = [client.get("/report"), client.get("/report/receipt"), client.get("/privacy"),
             client.post("/report", data={"incident": "nope"}),  # the form with errors
             client.post("/report/receipt", data={"code": "x"}),
             client.post("/report", content=b"junk", headers={"content-type": "text/plain"})]  # error page
    data = {"incident": "images", "description": "Pictures of a child on a forum.", "form_token": "p" * 20}
    receipt = client.post("/report", data=data, files=[("files", ("", b"", "application/octet-stream"))])
    m = CODE_RE.search(receipt.text)
    assert m
    pages += [receipt, client.post("/report/receipt", data={"code": m.group(1), "information": "more"})]
    for resp in pages:
        assert 'href="/privacy">Privacy notice</a>' in resp.text, resp.url


def test_what_the_notice_says_is_kept_is_the_truth(named: tuple[TestClient, Runtime]) -> None:
    """No IP address and no receipt code is stored anywhere; files are stored encrypted."""
    client, rt = named
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000
    data = {"incident": "images", "description": "Pictures of a child on a forum.", "form_token": "q" * 20}
    resp = client.post("/report", data=data, files=[("files", ("a.png", png, "image/png"))],
                       headers={"x-forwarded-for": "203.0.113.77"})
    m = CODE_RE.search(resp.text)
    assert m, resp.text
    client.post("/report/receipt", data={"code": m.group(1), "information": "more"})
    stored: list[str] = []
    with rt.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        stored.append(bytes(value).decode("latin-1"))
                    elif isinstance(value, dict | list):
                        stored.append(json.dumps(value))
                    else:
                        stored.append(str(value))
    everything = "\n".join(stored)
    # TestClient's peer address is "testclient"; neither it nor a forwarded address is kept.
    assert "203.0.113.77" not in everything and "testclient" not in everything
    assert m.group(1) not in everything and m.group(1).replace("-", "") not in everything
    assert png[:8].decode("latin-1") not in everything  # inline ciphertext in the database
    for path in Path(rt.settings.blob_dir).rglob("*"):
        if path.is_file():
            assert png[:8] not in path.read_bytes()  # encrypted at rest
