"""A throwaway PostgreSQL cluster for benchmarks (fsync on: durable, as in production).

One helper for every benchmark that measures PostgreSQL, so their clusters are set up alike
(the tests have their own, with fsync off, in tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("TIPLINE_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pg_cluster(*, conf: str = "-c shared_buffers=512MB", database: str | None = None) -> Iterator[str]:
    """Start a cluster; yield its server URL (``postgresql://…:port``), or with ``database``
    the SQLAlchemy URL of that database, created empty."""
    d = Path(tempfile.mkdtemp(prefix="tipline-bench-pg-"))
    shutil.chown(d, "postgres")
    os.chmod(d, 0o700)
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    run(str(PG_BIN / "initdb"), "-D", f"{d}/data", "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run(str(PG_BIN / "pg_ctl"), "-D", f"{d}/data", "-w", "-l", f"{d}/log", "-o",
        f"-p {port} -k {d} -c listen_addresses=127.0.0.1 {conf}", "start")
    server = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        if database is None:
            yield server
        else:
            import psycopg

            with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", f"{d}/data",
                        "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
