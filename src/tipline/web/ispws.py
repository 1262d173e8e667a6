"""The CyberTipline Reporting API ("ISPWS"), wire-compatible with NCMEC's server.

Rules (CYBERTIPLINE_API.md sections 1 and 3): HTTP 401 only for bad credentials, HTTP 200
with a response code for every application outcome, one-line namespace-free XML, a
non-empty responseDescription, reportId echoed on errors, and ``/finish`` always answering
``reportDoneResponse``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tipline.cybertip import xml as cxml
from tipline.cybertip.codes import DESCRIPTIONS, CybertipError, ResponseCode
from tipline.cybertip.responses import CONTENT_TYPE, report_done_response, report_response
from tipline.intake.credentials import Principal
from tipline.intake.errors import IntakeError, Reason
from tipline.runtime import Runtime
from tipline.store.blobs import BlobTooLarge, BlobWriter
from tipline.web.basic_auth import parse_basic
from tipline.web.forms import BadForm, BodyTooLarge, SingleFileUpload, read_capped, stream_form
from tipline.web.routing import allowed_methods

log = logging.getLogger("tipline.ispws")
R = ResponseCode
REALM = 'Basic realm="ESP Web Services"'
_REPORT_ID_IN_XML = re.compile(rb"<reportId>\s*([0-9]{1,18})\s*</reportId>")
PREFIX = "/ispws"
# The calls, also answered at the root for integrations configured with a bare host.
CALLS = ("status", "submit", "upload", "fileinfo", "finish", "retract")

#: The response code for each reason an intake use case refuses (CYBERTIPLINE_API.md's
#: state machine: 5001/5002 unknown, 5101/5102 wrong state, 4100 rules).
CODE_FOR_REASON: dict[Reason, ResponseCode] = {
    Reason.REPORT_NOT_FOUND: R.REPORT_NOT_FOUND,
    Reason.FILE_NOT_FOUND: R.FILE_NOT_FOUND,
    Reason.REPORT_RETRACTED: R.REPORT_RETRACTED,
    Reason.REPORT_FINISHED: R.REPORT_FINISHED,
    Reason.CHANGED_CONCURRENTLY: R.UPDATE_FAILED,
    Reason.STORAGE_CHANGED: R.UPLOAD_FAILED,
    Reason.RULES_VIOLATED: R.VALIDATION_FAILED,
    Reason.IDEMPOTENCY_KEY_REUSED: R.INVALID_REQUEST,
}


def cybertip_error(err: IntakeError) -> CybertipError:
    """The ISPWS answer to an intake refusal: its code, the message as the detail."""
    return CybertipError(CODE_FOR_REASON[err.reason], err.message)


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=None,
                    headers={"Content-Type": CONTENT_TYPE})


def unauthorized() -> Response:
    resp = xml_response(report_response(R.AUTHENTICATION_REQUIRED), 401)
    resp.headers["WWW-Authenticate"] = REALM
    return resp


class Authenticate:
    """Basic auth for ISPWS calls, with one database check in flight per credential.

    The fast path runs on the event loop: no thread hop, no database, for a credential
    accepted within ``TIPLINE_AUTH_RECHECK_SECONDS``. When that memo lapses, every request
    of the same platform in flight at that moment would miss together (32 clients: 32
    lookups and thread hops at once, every 2 s, in each worker); instead the first one
    checks and the others wait for its answer. A credential is still checked against the
    database as often as before, never less.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # Keyed by the credential as sent; an entry lives only while its check runs.
        self._checking: dict[tuple[str, str], asyncio.Future[Principal | None]] = {}

    async def __call__(self, request: Request) -> Principal | None:
        creds = parse_basic(request.headers.get("authorization", ""))
        if creds is None:
            return None
        hit = self.rt.auth.recent_basic(*creds)
        if hit is not None:
            return hit
        running = self._checking.get(creds)
        if running is not None:
            # shield: a waiter whose client went away must not cancel the check for the others.
            return await asyncio.shield(running)
        fut: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        # Retrieved here so that a failed check nobody else waited for is not logged twice.
        fut.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        self._checking[creds] = fut
        try:
            principal = await run_in_threadpool(self.rt.auth.basic, *creds)
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("credential check cancelled"))
            raise
        finally:
            self._checking.pop(creds, None)
        fut.set_result(principal)
        return principal


def parse_report_id(raw: str | None) -> int | None:
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


#: The CyberTipline report schema as NCMEC serves it at ``/ispws/xsd`` (November 2025 snapshot).
XSD_PATH = Path(__file__).parent.parent / "cybertip" / "cyber_tipline.xsd"


def router(rt: Runtime) -> APIRouter:
    api = APIRouter()
    limits = rt.settings
    authenticate = Authenticate(rt)

    async def guarded(
        request: Request,
        handler: Callable[[Principal], Awaitable[Response]],
        on_error: Callable[[CybertipError], Response],
    ) -> Response:
        principal = await authenticate(request)
        if principal is None:
            return unauthorized()
        try:
            return await handler(principal)
        except CybertipError as err:
            return on_error(err)
        except IntakeError as err:
            return on_error(cybertip_error(err))
        except Exception:
            # Never a 500 or a trace on the wire: the client gets a code, the log the detail.
            log.exception("ISPWS %s failed (request %s)", request.url.path,
                          request.scope.get("request_id"))
            return on_error(CybertipError(R.SERVER_ERROR,
                                          f"request {request.scope.get('request_id')} failed; retry"))

    @api.get("/xsd")
    async def xsd() -> Response:
        # The schema integrations validate against and name in xsi:noNamespaceSchemaLocation.
        # Public, as NCMEC serves it: a client that sends Basic auth here gets it all the same.
        return Response(XSD_PATH.read_bytes(), media_type="application/xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    @api.get("/status")
    async def status(request: Request) -> Response:
        async def handle(p: Principal) -> Response:
            ip = request.client.host if request.client else "unknown"
            return xml_response(report_response(
                R.SUCCESS, f"Remote User : {p.username}, Remote Ip : {ip}"))

        return await guarded(request, handle, lambda e: xml_response(report_response(e.code, e.description)))

    @api.post("/submit")
    async def submit(request: Request) -> Response:
        async def handle(p: Principal) -> Response:
            try:
                body = await read_capped(request, limits.max_document_bytes)
            except BodyTooLarge as exc:
                raise CybertipError(R.MALFORMED_XML, str(exc)) from exc
            ctype = request.headers.get("content-type")

            def work() -> int:
                # Parse and store in one thread hop: each hop costs as much as the parse.
                parsed = cxml.parse_report(body)
                return rt.intake.open_report(p.reporter_id, parsed, source="ispws", body=body,
                                             content_type=ctype)[0]

            report_id = await run_in_threadpool(work)
            return xml_response(report_response(R.SUCCESS, report_id=report_id))

        return await guarded(request, handle, lambda e: xml_response(report_response(e.code, e.description)))

    @api.post("/upload")
    async def upload(request: Request) -> Response:
        fields: dict[str, str] = {}

        async def handle(p: Principal) -> Response:
            nonlocal fields
            upload = SingleFileUpload(rt.blobs, limits.max_upload_bytes)

            try:
                try:
                    fields, parts = await stream_form(request, on_file=upload.on_file)
                except BlobTooLarge as exc:
                    raise CybertipError(R.MALFORMED_FILE, str(exc)) from exc
                except (BadForm, BodyTooLarge) as exc:
                    raise CybertipError(R.MALFORMED_FILE, str(exc)) from exc
                report_id = parse_report_id(fields.get("id"))
                if report_id is None:
                    raise CybertipError(R.INVALID_REQUEST, "form field 'id' (the reportId) is missing or not a number")
                if upload.writer is None:
                    raise CybertipError(R.MALFORMED_FILE, "no file part named 'file' in the upload")
                w: BlobWriter = upload.writer
                # One thread hop: the blob is committed, then the file row written.
                stored, file_id = await run_in_threadpool(
                    rt.intake.upload, p.reporter_id, report_id, w, file_name=parts[0].filename,
                    media_type=parts[0].content_type)
                return xml_response(report_response(
                    R.SUCCESS, report_id=report_id, file_id=file_id, md5=stored.md5))
            finally:
                upload.abort()

        def on_error(e: CybertipError) -> Response:
            return xml_response(report_response(
                e.code, e.description, report_id=parse_report_id(fields.get("id"))))

        return await guarded(request, handle, on_error)

    @api.post("/fileinfo")
    async def fileinfo(request: Request) -> Response:
        body = b""

        async def handle(p: Principal) -> Response:
            nonlocal body
            try:
                body = await read_capped(request, limits.max_document_bytes)
            except BodyTooLarge as exc:
                raise CybertipError(R.MALFORMED_XML, str(exc)) from exc
            ctype = request.headers.get("content-type")

            def work() -> tuple[int, str]:
                parsed = cxml.parse_file_details(body)
                return rt.intake.file_info(p.reporter_id, parsed, body=body, content_type=ctype)

            report_id, file_id = await run_in_threadpool(work)
            return xml_response(report_response(R.SUCCESS, report_id=report_id, file_id=file_id))

        def on_error(e: CybertipError) -> Response:
            m = _REPORT_ID_IN_XML.search(body[:65536])
            rid = int(m.group(1)) if m else None
            return xml_response(report_response(e.code, e.description, report_id=rid))

        return await guarded(request, handle, on_error)

    async def id_form(request: Request) -> int:
        try:
            fields, _ = await stream_form(request, on_file=None)
        except (BadForm, BodyTooLarge) as exc:
            raise CybertipError(R.INVALID_REQUEST, str(exc)) from exc
        raw = fields.get("id", request.query_params.get("id"))
        report_id = parse_report_id(raw)
        if report_id is None:
            raise CybertipError(R.INVALID_REQUEST, "form field 'id' (the reportId) is missing or not a number")
        request.scope["tipline.report_id"] = report_id
        return report_id

    @api.post("/finish")
    async def finish(request: Request) -> Response:
        async def handle(p: Principal) -> Response:
            report_id = await id_form(request)
            files = await run_in_threadpool(rt.intake.finish, p.reporter_id, report_id)
            return xml_response(report_done_response(R.SUCCESS, report_id, files))

        def on_error(e: CybertipError) -> Response:
            # reportDoneResponse has no description; the detail goes to the log for support.
            if e.detail:
                log.info("finish rejected (request %s): %s", request.scope.get("request_id"), e.description)
            return xml_response(report_done_response(e.code, request.scope.get("tipline.report_id", 0), []))

        return await guarded(request, handle, on_error)

    @api.post("/retract")
    async def retract(request: Request) -> Response:
        async def handle(p: Principal) -> Response:
            report_id = await id_form(request)
            await run_in_threadpool(rt.intake.retract, p.reporter_id, report_id)
            return xml_response(report_response(R.SUCCESS, report_id=report_id))

        def on_error(e: CybertipError) -> Response:
            return xml_response(report_response(
                e.code, e.description, report_id=request.scope.get("tipline.report_id")))

        return await guarded(request, handle, on_error)

    return api


def is_ispws_path(path: str) -> bool:
    """A path a CyberTipline client may call: anything under /ispws, or a call at the root."""
    return path == PREFIX or path.startswith(PREFIX + "/") or path.strip("/") in CALLS


def routing_error(request: Request, status: int) -> Response:
    """An unknown path (404) or a wrong method (405) under ISPWS, answered in ISPWS XML.

    The HTTP status stays honest (clients that check it see the failure) and the body is a
    ``reportResponse`` a client can parse like any other: 1210 for no such call, 4000 for a
    call made with the wrong method.
    """
    method, path = request.method, request.url.path
    if status == 405:
        allow = allowed_methods(request)
        detail = f"{method} {path}: this call takes {' or '.join(allow) or 'another method'}"
        resp = xml_response(report_response(R.INVALID_REQUEST, f"{DESCRIPTIONS[R.INVALID_REQUEST]} - {detail}"),
                            405)
        resp.headers["Allow"] = ", ".join(allow)
        return resp
    calls = ", ".join(f"/{c}" for c in CALLS)
    return xml_response(report_response(
        R.RESOURCE_NOT_FOUND, f"{DESCRIPTIONS[R.RESOURCE_NOT_FOUND]} - {path}: the calls are {calls}"), 404)


def install_errors(app: FastAPI) -> None:
    """Make routing errors (unknown path, wrong method) on ISPWS paths ISPWS XML.

    They never reach a route, so they are caught where FastAPI answers them; every other
    path keeps whatever handler it had.
    """
    previous = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        if (isinstance(exc, StarletteHTTPException) and exc.status_code in (404, 405)
                and is_ispws_path(request.url.path)):
            return routing_error(request, exc.status_code)
        result = previous(request, exc)
        return await result if isinstance(result, Awaitable) else result

    app.add_exception_handler(StarletteHTTPException, on_http_exception)
