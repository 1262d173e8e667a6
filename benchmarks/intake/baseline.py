"""The bare baseline for the intake benchmark: the four ISPWS paths doing the least work.

Same stack as tipline (FastAPI/Starlette on uvicorn, SQLAlchemy with the same pool size and,
on SQLite, the same WAL + synchronous=FULL + BEGIN IMMEDIATE settings; blocking work in the
thread pool), so the ratio tipline/baseline isolates tipline's own work:

- ``/submit`` and ``/fileinfo``: parse the XML with lxml (no validation), insert one row;
- ``/upload``: read the multipart with Starlette's ``request.form()``, MD5 the bytes (the
  answer carries the hash), insert one row — the bytes are not stored, not encrypted, not
  fsynced;
- ``/finish``: update one row, then read the report's fileIds for the answer.

No authentication. The answers are the same XML shapes tipline sends, so the same client
checks pass. Run: ``BASELINE_DATABASE_URL=... uvicorn --app-dir benchmarks/intake
baseline:app_factory --factory --workers 2`` (``init_db(url)`` first, once).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Any

from fastapi import FastAPI, Request, Response
from lxml import etree
from sqlalchemy import Engine, create_engine, event, text
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
CONTENT_TYPE = "application/xml; charset=UTF-8"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS bl_report (
        id {serial} PRIMARY KEY, root VARCHAR(64) NOT NULL, body {blob} NOT NULL,
        state VARCHAR(16) NOT NULL, finished_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS bl_file (
        id {serial} PRIMARY KEY, file_id CHAR(32) NOT NULL, report_id BIGINT NOT NULL,
        size BIGINT NOT NULL, md5 CHAR(32) NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS bl_file_report ON bl_file (report_id)",
    """CREATE TABLE IF NOT EXISTS bl_fileinfo (
        id {serial} PRIMARY KEY, report_id BIGINT NOT NULL, file_id VARCHAR(64) NOT NULL,
        body {blob} NOT NULL)""",
]


def make_engine(url: str) -> Engine:
    """The same engine settings as tipline.store.db.make_engine (pool 10 + 10 overflow)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30,
                                                  "isolation_level": None},
                               pool_size=10, max_overflow=10)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def init_db(url: str) -> None:
    engine = make_engine(url)
    sqlite = url.startswith("sqlite")
    fmt = {"serial": "INTEGER" if sqlite else "BIGSERIAL", "blob": "BLOB" if sqlite else "BYTEA"}
    with engine.begin() as conn:
        for stmt in SCHEMA:
            conn.execute(text(stmt.format(**fmt)))
    engine.dispose()


def _el(name: str, value: object) -> str:
    return f"<{name}>{value}</{name}>"


def xml(body: str) -> Response:
    return Response(content=(DECL + body).encode(), headers={"Content-Type": CONTENT_TYPE})


def ok(report_id: object, file_id: str | None = None, md5: str | None = None) -> Response:
    parts = ["<reportResponse>", _el("responseCode", 0), _el("responseDescription", "Success"),
             _el("reportId", report_id)]
    if file_id is not None:
        parts.append(_el("fileId", file_id))
    if md5 is not None:
        parts.append(_el("hash", md5))
    parts.append("</reportResponse>")
    return xml("".join(parts))


def fail(description: str) -> Response:
    return xml(f"<reportResponse>{_el('responseCode', 4000)}{_el('responseDescription', description)}"
               "</reportResponse>")


def create_app(url: str) -> FastAPI:
    engine = make_engine(url)
    app = FastAPI(docs_url=None, openapi_url=None, redoc_url=None)

    def insert(sql: str, **params: object) -> Any:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return result.scalar() if result.returns_rows else None

    @app.post("/ispws/submit")
    async def submit(request: Request) -> Response:
        body = await request.body()
        root = etree.fromstring(body, _PARSER)
        rid = await run_in_threadpool(
            insert, "INSERT INTO bl_report (root, body, state) VALUES (:root, :body, 'open') RETURNING id",
            root=root.tag, body=body)
        return ok(rid)

    @app.post("/ispws/upload")
    async def upload(request: Request) -> Response:
        form = await request.form()
        rid, upload = form.get("id"), form.get("file")
        if not isinstance(rid, str) or not rid.isdigit() or not isinstance(upload, UploadFile):
            return fail("id and file expected")
        data = await upload.read()
        await form.close()
        md5 = hashlib.md5(data).hexdigest()
        fid = "a" + secrets.token_hex(16)[1:]
        await run_in_threadpool(
            insert, "INSERT INTO bl_file (file_id, report_id, size, md5) VALUES (:fid, :rid, :size, :md5)",
            fid=fid, rid=int(rid), size=len(data), md5=md5)
        return ok(rid, fid, md5)

    @app.post("/ispws/fileinfo")
    async def fileinfo(request: Request) -> Response:
        body = await request.body()
        root = etree.fromstring(body, _PARSER)
        rid, fid = root.findtext("reportId"), root.findtext("fileId")
        if not rid or not rid.isdigit() or not fid:
            return fail("reportId and fileId expected")
        await run_in_threadpool(
            insert, "INSERT INTO bl_fileinfo (report_id, file_id, body) VALUES (:rid, :fid, :body)",
            rid=int(rid), fid=fid, body=body)
        return ok(rid, fid)

    def do_finish(rid: int) -> list[str]:
        with engine.begin() as conn:
            conn.execute(text("UPDATE bl_report SET state = 'finished', finished_at = CURRENT_TIMESTAMP "
                              "WHERE id = :rid"), {"rid": rid})
            rows = conn.execute(text("SELECT file_id FROM bl_file WHERE report_id = :rid ORDER BY id"),
                                {"rid": rid})
            return [r[0] for r in rows]

    @app.post("/ispws/finish")
    async def finish(request: Request) -> Response:
        form = await request.form()
        rid = form.get("id")
        if not isinstance(rid, str) or not rid.isdigit():
            return fail("id expected")
        files = await run_in_threadpool(do_finish, int(rid))
        listed = "".join(_el("fileId", f) for f in files)
        return xml(f"<reportDoneResponse>{_el('responseCode', 0)}{_el('reportId', rid)}"
                   f"{f'<files>{listed}</files>' if files else '<files/>'}</reportDoneResponse>")

    return app


def app_factory() -> FastAPI:
    return create_app(os.environ["BASELINE_DATABASE_URL"])
