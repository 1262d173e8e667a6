"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL cluster.

PostgreSQL: a throwaway cluster started as the ``postgres`` user (``pg_ctl`` refuses root),
one fresh database per test. Set ``TIPLINE_TEST_REQUIRE_PG=1`` (CI does) to make a
missing PostgreSQL an error instead of a skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tipline.config import Settings
from tipline.intake.credentials import add_esp
from tipline.runtime import Runtime
from tipline.store.setup import do_init


def _pg_bin() -> Path:
    if "TIPLINE_TEST_PG_BIN" in os.environ:
        return Path(os.environ["TIPLINE_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
REQUIRE_PG = os.environ.get("TIPLINE_TEST_REQUIRE_PG") == "1"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tipline-pg-"))
        shutil.chown(self.dir, "postgres")
        os.chmod(self.dir, 0o700)
        self.port = _free_port()
        self._n = itertools.count()

    def _run(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    def start(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self._run(str(PG_BIN / "pg_ctl"), "-D", f"{self.dir}/data", "-w", "-l", f"{self.dir}/log",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c max_connections=300", "start")

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                        f"{self.dir}/data", "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(self._n)}"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster | None]:
    if not (PG_BIN / "initdb").exists() or os.geteuid() != 0:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but {PG_BIN}/initdb is missing or not root")
        yield None
        return
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    url = ""
    if backend == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        if cluster is None:
            pytest.skip("PostgreSQL not available")
        url = cluster.new_database()
    s = Settings.from_env(tmp_path / "data", database_url=url)
    do_init(s)
    return s


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings)
    yield rt
    rt.close()


ESP_USER, ESP_PASS = "acme", "acme-secret-1"
OTHER_USER, OTHER_PASS = "globex", "globex-secret-1"


@pytest.fixture
def esps(runtime: Runtime) -> dict[str, tuple[str, str]]:
    add_esp(runtime, "Acme Social", ESP_USER, ESP_PASS)
    add_esp(runtime, "Globex Chat", OTHER_USER, OTHER_PASS)
    return {"acme": (ESP_USER, ESP_PASS), "globex": (OTHER_USER, OTHER_PASS)}


@pytest.fixture
def client(runtime: Runtime, esps: dict[str, tuple[str, str]]) -> Iterator[TestClient]:
    from tipline.web.app import create_app

    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from browsers import ARGS, CHROMIUM

    if not CHROMIUM.exists():
        pytest.fail(f"TIPLINE_TEST_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def guarded(browser: Any, server: Any) -> Iterator[tuple[Any, Any]]:
    """A fresh page of ``browser`` whose requests to any host but the module's ``server``
    are blocked and recorded, with console and request errors recorded
    (:class:`browsers.Guard`); tests end with ``guard.assert_clean()``."""
    from browsers import Guard

    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    guard = Guard(server.url)
    guard.install(ctx)
    page = ctx.new_page()
    guard.watch(page)
    try:
        yield page, guard
    finally:
        ctx.close()
