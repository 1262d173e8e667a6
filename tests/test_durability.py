"""Nothing acknowledged is lost: SIGKILL the server while clients submit, restart, check.

Runs the real ``tipline serve`` process over a real socket, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from lxml import etree
from sqlalchemy import select

from helpers import file_details_xml, report_xml
from tipline.config import Settings
from tipline.intake.credentials import add_esp
from tipline.runtime import Runtime
from tipline.store.tables import Blob, Document, File, Report

USER, PASSWORD = "durable", "durable-secret-1"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TIPLINE_DATA_DIR": str(settings.data_dir),
           "TIPLINE_DATABASE_URL": settings.database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tipline.cli", "serve", "--port", str(port)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ispws/status", auth=(USER, PASSWORD), timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start: " + log.read_text()[-2000:])


@dataclass
class Acked:
    reports: dict[int, str] = field(default_factory=dict)  # reportId -> last acknowledged state
    files: dict[str, tuple[int, str]] = field(default_factory=dict)  # fileId -> (reportId, md5)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client_loop(base: str, seed: int, acked: Acked, stop: threading.Event) -> None:
    n = 0
    with httpx.Client(base_url=base, auth=(USER, PASSWORD), timeout=10) as c:
        while not stop.is_set():
            n += 1
            try:
                root = etree.fromstring(c.post("/submit", content=report_xml()).content)
                if root.findtext("responseCode") != "0":
                    continue
                rid = int(root.findtext("reportId"))  # type: ignore[arg-type]
                with acked.lock:
                    acked.reports[rid] = "open"
                # Odd clients send files over the inline limit: both storage paths are exercised.
                data = f"client {seed} cycle {n} ".encode() * (200 if seed % 2 == 0 else 30_000)
                root = etree.fromstring(c.post("/upload", data={"id": str(rid)},
                                               files={"file": ("f.bin", data)}).content)
                if root.findtext("responseCode") != "0":
                    continue
                fid = str(root.findtext("fileId"))
                assert root.findtext("hash") == hashlib.md5(data).hexdigest()
                with acked.lock:
                    acked.files[fid] = (rid, hashlib.md5(data).hexdigest())
                c.post("/fileinfo", content=file_details_xml(rid, fid))
                root = etree.fromstring(c.post("/finish", data={"id": str(rid)}).content)
                if root.findtext("responseCode") == "0":
                    with acked.lock:
                        acked.reports[rid] = "finished"
            except (httpx.HTTPError, etree.XMLSyntaxError):
                # The server died under us: whatever was not acknowledged may be lost.
                time.sleep(0.05)


def test_sigkill_loses_nothing_acknowledged(settings: Settings, tmp_path: Path) -> None:
    rt = Runtime.open(settings)
    add_esp(rt, "Durable", USER, PASSWORD)
    rt.close()
    port = _port()
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}/ispws"
    acked = Acked()
    stop = threading.Event()
    proc = _start(settings, port, log)
    threads = [threading.Thread(target=_client_loop, args=(base, i, acked, stop)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        for _round in range(2):
            time.sleep(2.5)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.3)
            proc = _start(settings, port, log)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    assert len(acked.reports) > 20 and len(acked.files) > 10, "clients made too little progress"
    rt = Runtime.open(settings)
    try:
        for rid, state in acked.reports.items():
            view = rt.intake.view_unchecked(rid)
            assert view is not None, f"acknowledged report {rid} lost"
            if state == "finished":
                assert view.state == "finished", (rid, view.state)
        for fid, (_rid, md5) in acked.files.items():
            assert hashlib.md5(rt.intake.read_file_unchecked(fid)).hexdigest() == md5, fid
        # Nothing half-written: every report has its submit document, every file its blob,
        # every blob row its ciphertext, and every ciphertext authenticates.
        with rt.sessions() as s:
            for rep in s.execute(select(Report)).scalars():
                kinds = s.execute(select(Document.kind).where(Document.report_id == rep.id)).scalars().all()
                assert "submit" in kinds, rep.id
                assert rep.document is not None
            held = {"inline": 0, "file": 0}
            for f in s.execute(select(File)).scalars():
                blob = s.get(Blob, f.sha256)
                assert blob is not None and (blob.stored_name is not None or blob.data is not None)
                held["file" if blob.stored_name else "inline"] += 1
                content = b"".join(rt.blobs.open_held(blob.stored_name, blob.data))
                assert hashlib.sha256(content).hexdigest() == f.sha256
            assert held["inline"] and held["file"], held
    finally:
        rt.close()
