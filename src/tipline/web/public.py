"""The public report form: ``/report`` (submit) and ``/report/receipt`` (add information later).

Plain server-rendered HTML that works with JavaScript switched off and without an account.
A submission is read with the streaming multipart parser, so uploaded files go straight into
encrypting blob writers and their plaintext never touches the disk. Nothing is stored
unless every field is valid: the writers are committed only after validation, and an
invalid submission aborts them all and shows the form again with the person's values and
a message next to each field.

A valid submission becomes a CyberTipline ``Report`` (the same model every other intake
path produces), is checked by a round trip through the XML format, and is filed under the
public reporter. What the form asks and accepts, and the receipt codes, are the form's
rules in ``tipline.intake.public_form`` and ``tipline.intake.receipts``; this module is the
HTTP side: pages, the file stream and what a person is told. The person gets a receipt
code, shown once; only its SHA-256 is stored. With the code they can later add information
(``/report/receipt``).

What the ``web`` document of a report holds: the submitted text fields exactly as received
(JSON, keyed by form field name) plus each file's name, detected type and size. The parsed
report, in CyberTipline field names, is in ``reports.document`` like every other report.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from tipline import __version__
from tipline.intake.errors import IntakeError, Reason
from tipline.intake.places import country_choices, country_name, emergency_numbers, time_zones
from tipline.intake.public_form import (
    ADDENDUM_FIELDS,
    EXTENSION_KIND,
    INCIDENT_CHOICES,
    KIND_WORDS,
    MAX_FILES,
    MAX_LINES,
    MAX_TEXT,
    REPORT_FIELDS,
    checked_report,
    clean_text,
    sniff,
    validate_addendum,
    validate_report_form,
    web_document,
)
from tipline.intake.receipts import new_receipt_code, normalise_receipt_code, receipt_hash
from tipline.intake.service import clean_file_name
from tipline.model.report import Report
from tipline.runtime import Runtime
from tipline.store.blobs import BlobStore, BlobWriter
from tipline.web.forms import BadForm, BodyTooLarge, Part, stream_form
from tipline.web.render import env

log = logging.getLogger("tipline.public")

STATIC_DIR = Path(__file__).with_name("static")


# --- limits of the stream (the form's own limits are in tipline.intake.public_form) ---

# Once the files are over the size limit we keep reading (and discarding) the body up to
# this much more, so the browser gets the form back with a message instead of a reset
# connection; beyond it we stop reading.
DRAIN_EXTRA = 64 * 1024 * 1024
# Each multipart text field is capped by the parser; far above any field's own limit.
FIELD_BYTES = 64 * 1024
SNIFF_BYTES = 8192

# The places the form asks about: field prefix -> who is there (for messages).
PLACES: dict[str, str] = {"person": "the person responsible", "child": "the child",
                          "reporter": "you"}
# The element each field's error links to (a radio group links to its first option).
_ANCHOR = {"incident": f"incident-{INCIDENT_CHOICES[0].key}"}


def human_size(n: int) -> str:
    """Bytes as people say them: 8 GB, 25 MB, 300 KB."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            value = n / size
            shown = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
            return f"{shown} {unit}"
    return f"{n} bytes"


# --- uploads ----------------------------------------------------------------------------


@dataclass
class Upload:
    """One file part of a submission while it streams in."""

    part: Part
    name: str | None
    writer: BlobWriter | None = None
    head: bytearray = field(default_factory=bytearray)
    size: int = 0
    kind: str | None = None
    media_type: str | None = None
    sniffed: bool = False
    problem: str | None = None  # why it is refused; set at most once

    @property
    def label(self) -> str:
        return f"“{self.name}”" if self.name else "A file"


class Uploads:
    """Streams each file part into its own encrypting writer; nothing is committed here.

    Limits (number of files, total size, type) are applied as the bytes arrive: a refused
    file's writer is aborted at once and its remaining bytes are discarded.
    """

    def __init__(self, blobs: BlobStore, limit: int, max_files: int = MAX_FILES) -> None:
        self.blobs = blobs
        self.limit = limit
        self.max_files = max_files
        self.items: list[Upload] = []
        self.total = 0

    @property
    def chosen(self) -> list[Upload]:
        """The parts that carry a file (a browser sends one empty part when none was chosen)."""
        return [u for u in self.items if u.part.filename or u.size]

    def on_file(self, part: Part) -> Callable[[bytes], None]:
        """The ``stream_form`` hook: a sink for one file part."""
        up = Upload(part, clean_file_name(part.filename))
        self.items.append(up)
        if part.name != "files":
            up.problem = "This form takes files only in the “Files” field."
        elif part.filename and len([u for u in self.items if u.part.filename]) > self.max_files:
            up.problem = f"You can attach at most {self.max_files} files."

        def sink(data: bytes) -> None:
            self._write(up, data)

        return sink

    def _refuse(self, up: Upload, problem: str) -> None:
        if up.problem is None:
            up.problem = problem
        if up.writer is not None:
            up.writer.abort()
            up.writer = None

    def _write(self, up: Upload, data: bytes) -> None:
        if not data:
            return
        up.size += len(data)
        self.total += len(data)
        if self.total > self.limit + DRAIN_EXTRA:
            raise BodyTooLarge(self.limit)
        if self.total > self.limit:
            self._refuse(up, f"{up.label} is too large: files can be at most "
                             f"{human_size(self.limit)} together.")
        if up.problem is not None:
            if up.writer is not None:
                self._refuse(up, up.problem)
            return  # discard: a refused file is never stored
        if len(up.head) < SNIFF_BYTES:
            up.head += data[: SNIFF_BYTES - len(up.head)]
            if len(up.head) >= SNIFF_BYTES:
                self._sniff(up, complete=False)
                if up.problem is not None:
                    return
        if up.writer is None:
            up.writer = self.blobs.writer(self.limit)
        up.writer.write(data)

    def _sniff(self, up: Upload, *, complete: bool) -> None:
        up.sniffed = True
        found = sniff(bytes(up.head), complete)
        if found is None:
            self._refuse(up, f"{up.label} is not a picture, video, PDF or text file. "
                             "Only these kinds of files can be sent.")
            return
        up.kind, up.media_type = found
        ext = (up.name or "").rsplit(".", 1)[-1].lower() if "." in (up.name or "") else ""
        promised = EXTENSION_KIND.get(ext)
        if promised is not None and promised != up.kind:
            self._refuse(up, f"{up.label} is named like {KIND_WORDS[promised]}, but its "
                             f"content is not {KIND_WORDS[promised]}. Please check the file.")

    def complete(self, ended: list[Part]) -> bool:
        """Whether every file part that began also ended (``ended``: the parser's parts)."""
        done = {id(p) for p in ended}
        return all(id(up.part) in done for up in self.items)

    def finish(self) -> list[str]:
        """Classify what is left after the body ended; the problems, one per refused file."""
        problems: list[str] = []
        for up in self.chosen:
            if up.problem is None and up.size == 0:
                self._refuse(up, f"{up.label} is empty.")
            if up.problem is None and not up.sniffed:
                self._sniff(up, complete=True)
            if up.problem is not None and up.problem not in problems:
                problems.append(up.problem)
        return problems

    def abort_all(self) -> None:
        """Drop every uncommitted writer (their temporary ciphertext is deleted)."""
        for up in self.items:
            if up.writer is not None:
                up.writer.abort()



# --- pages ------------------------------------------------------------------------------

# No scripts at all; styles only from our own stylesheet; never framed.
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    context.setdefault("errors", {})
    # Every page says what to do in an emergency: for the chosen country once there is one.
    context.setdefault("emergency", emergency_numbers().advice(None))
    html = env.get_template(f"public/{template}").render(
        root=root, css=f"{root}/static/tipline.css?v={__version__}", **context
    )
    # Pages can carry what the person typed (and the receipt page the code): never cache.
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


def _summary(errors: Mapping[str, str], order: tuple[str, ...]) -> list[tuple[str, str]]:
    """(anchor id, message) in page order for the error summary."""
    ranked = sorted(errors, key=lambda k: order.index(k) if k in order else len(order))
    return [(_ANCHOR.get(k, k), errors[k]) for k in ranked]


def emergency_country(values: Mapping[str, str]) -> str | None:
    """The country whose emergency number to show: the child's, else the reporter's."""
    for name in ("child_country", "reporter_country"):
        code = clean_text(values.get(name, "")).upper()
        if country_name(code) is not None:
            return code
    return None


def _form_context(rt: Runtime, values: Mapping[str, str], errors: Mapping[str, str],
                  token: str, files_dropped: bool = False) -> dict[str, Any]:
    return {
        "choices": INCIDENT_CHOICES,
        "countries": country_choices(),
        "zones": time_zones(),
        "places": PLACES,
        "emergency": emergency_numbers().advice(emergency_country(values)),
        "values": {k: values.get(k, "") for k in REPORT_FIELDS},
        "errors": dict(errors),
        "summary": _summary(errors, REPORT_FIELDS),
        "token": token,
        "max_files": MAX_FILES,
        "max_text": MAX_TEXT,
        "max_lines": MAX_LINES,
        "size_limit": human_size(rt.settings.max_upload_bytes),
        "files_dropped": files_dropped,
        # The latest date that is not in the future somewhere on Earth (UTC+14).
        "today": (datetime.now(UTC) + timedelta(hours=14)).date().isoformat(),
    }


def privacy_context(rt: Runtime) -> dict[str, Any]:
    """What the privacy notice states that depends on this installation's settings."""
    return {
        "operator_name": rt.settings.operator_name,
        "operator_contact": rt.settings.operator_contact,
        # Public reports are finished at once; this bounds a part left by a crash mid-way.
        "unfinished_hours": max(1, round(max(rt.settings.open_ttl_seconds,
                                             rt.settings.idle_ttl_seconds) / 3600)),
    }


def _addendum_context(values: Mapping[str, str], errors: Mapping[str, str]) -> dict[str, Any]:
    return {
        "values": {k: values.get(k, "") for k in ADDENDUM_FIELDS},
        "errors": dict(errors),
        "summary": _summary(errors, ADDENDUM_FIELDS),
        "max_text": MAX_TEXT,
        "max_lines": MAX_LINES,
        "countries": country_choices(),
        "places": PLACES,
        "emergency": emergency_numbers().advice(emergency_country(values)),
    }


_NOT_SAVED = (
    "Your report could not be saved",
    "Something went wrong on our side and your report was not filed. Please try again in a "
    "few minutes.",
)


@dataclass(frozen=True)
class Told:
    """What a person is told when intake refuses: a page of its own, or the form again.

    ``again`` True shows the form again with ``message`` at the field the page names (the
    description, or the added information); ``{what}`` in it is "report" or "information".
    """

    status: int
    title: str
    message: str
    again: bool = False


# What the form tells a person for each reason intake refuses. A public report is opened,
# filled and finished in one request under the public reporter, so a reason about the
# report's state or a lost race means something went wrong on our side: "not saved".
TOLD_FOR_REASON: dict[Reason, Told] = {
    Reason.IDEMPOTENCY_KEY_REUSED: Told(
        409, "Please start a new report",
        "This form was already used to send a report. Nothing new was stored. Open the report "
        "form again to send another report."),
    Reason.RULES_VIOLATED: Told(
        422, "Part of this could not be accepted",
        "Part of this {what} could not be accepted. Please check what you entered.", again=True),
    Reason.REPORT_NOT_FOUND: Told(503, *_NOT_SAVED),
    Reason.FILE_NOT_FOUND: Told(503, *_NOT_SAVED),
    Reason.REPORT_RETRACTED: Told(503, *_NOT_SAVED),
    Reason.REPORT_FINISHED: Told(503, *_NOT_SAVED),
    Reason.CHANGED_CONCURRENTLY: Told(503, *_NOT_SAVED),
    Reason.STORAGE_CHANGED: Told(503, *_NOT_SAVED),
}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _form_token(raw: str | None) -> str:
    # A random token per form view, used as the idempotency key: resubmitting the same
    # form (reload after sending) files the report once. A bad or missing one gets a new one.
    return raw if raw is not None and _TOKEN.match(raw) else secrets.token_urlsafe(16)



def router(rt: Runtime) -> APIRouter:
    """The public pages as a router (``install`` adds it and the stylesheet to the app)."""
    pages = APIRouter(include_in_schema=False)

    def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return _page(request, "error.html", status, title=title, message=message)

    @pages.get("/report")
    async def report_form(request: Request) -> HTMLResponse:
        return _page(request, "form.html", **_form_context(rt, {}, {}, _form_token(None)))

    @pages.post("/report")
    async def report_submit(request: Request) -> HTMLResponse:
        limit = rt.settings.max_upload_bytes
        uploads = Uploads(rt.blobs, limit)
        try:
            try:
                fields, parts = await stream_form(request, on_file=uploads.on_file,
                                                  field_limit=FIELD_BYTES)
            except BodyTooLarge:
                return error_page(
                    request, 413, "Your files are too large",
                    f"Files can be at most {human_size(limit)} together. Nothing was sent or "
                    "stored. Please go back and choose fewer or smaller files.")
            except (BadForm, UnicodeDecodeError):
                return error_page(
                    request, 400, "The form could not be read",
                    "Something went wrong while sending the form, so nothing was stored. "
                    "Please go back and try again.")
            if not uploads.complete(parts):
                # A file part that never ended (no closing boundary): possibly cut short.
                return error_page(
                    request, 400, "The form could not be read",
                    "The form arrived incomplete, so nothing was stored. Please go back and "
                    "try again.")
            token = _form_token(fields.get("form_token"))
            file_problems = uploads.finish()
            checked = validate_report_form(fields, datetime.now(UTC))
            errors = dict(checked.errors)
            if file_problems:
                errors["files"] = " ".join(file_problems)
            if errors or checked.report is None:
                # Nothing is stored: the writers are aborted in ``finally``.
                return _page(request, "form.html", 422, **_form_context(
                    rt, fields, errors, token, files_dropped=bool(uploads.chosen)))
            return await _file_report(request, fields, checked.report, uploads, token)
        finally:
            uploads.abort_all()  # after a commit this is a no-op for that writer

    async def _file_report(request: Request, fields: Mapping[str, str], model: Report,
                           uploads: Uploads, token: str) -> HTMLResponse:
        files = uploads.chosen

        def refused(err: IntakeError) -> HTMLResponse:
            told = TOLD_FOR_REASON[err.reason]
            if told.again:
                return _page(request, "form.html", told.status, **_form_context(
                    rt, fields, {"description": told.message.format(what="report")}, token,
                    files_dropped=bool(files)))
            return error_page(request, told.status, told.title, told.message)

        try:
            # The same format rules as every other path: what we store is valid CyberTipline.
            parsed = await run_in_threadpool(checked_report, model)
        except IntakeError as exc:
            log.warning("public form produced an invalid report: %s", exc.message)
            return refused(exc)
        code = new_receipt_code()
        reporter_id = await run_in_threadpool(rt.intake.public_reporter_id)
        body = web_document(fields, files)
        try:
            report_id, created = await run_in_threadpool(
                rt.intake.open_report, reporter_id, parsed, source="web", body=body,
                content_type="application/json", document_kind="web",
                idempotency_key=f"web-form:{token}", receipt_hash=receipt_hash(code))
        except IntakeError as exc:
            # The same form token with different content: a stale form. Nothing was stored.
            return refused(exc)
        except Exception:
            log.exception("public report could not be opened")
            return error_page(request, 503, *_NOT_SAVED)
        if not created:
            # A reload of the "thank you" page re-sent the form: it was filed the first time.
            return _page(request, "already.html")
        try:
            for up in files:
                assert up.writer is not None
                await run_in_threadpool(rt.intake.upload, reporter_id, report_id, up.writer,
                                        file_name=up.name, media_type=up.media_type)
            await run_in_threadpool(rt.intake.finish, reporter_id, report_id)
        except Exception:
            # The report is open but incomplete (a file or the finish failed). Retract it now
            # so that no half-made report stays behind until the expiry purge; the person is
            # told that nothing was filed and gets no receipt code.
            log.exception("public report %d could not be completed; retracting it", report_id)
            try:
                await run_in_threadpool(rt.intake.retract, reporter_id, report_id)
            except Exception:
                log.exception("retracting public report %d failed; it will expire", report_id)
            return error_page(request, 503, *_NOT_SAVED)
        log.info("public report %d filed with %d file(s)", report_id, len(files))
        return _page(request, "receipt.html", code=code, file_count=len(files),
                     emergency=emergency_numbers().advice(emergency_country(fields)))

    @pages.get("/report/receipt")
    async def addendum_form(request: Request) -> HTMLResponse:
        return _page(request, "addendum.html", **_addendum_context({}, {}))

    @pages.post("/report/receipt")
    async def addendum_submit(request: Request) -> HTMLResponse:
        try:
            fields, _ = await stream_form(request, on_file=None, field_limit=FIELD_BYTES)
        except (BadForm, BodyTooLarge, UnicodeDecodeError):
            return error_page(
                request, 400, "The form could not be read",
                "Something went wrong while sending the form, so nothing was stored. "
                "Please go back and try again.")
        entered = fields.get("code", "")
        errors: dict[str, str] = {}
        code = normalise_receipt_code(entered)
        if not entered.strip():
            errors["code"] = "Enter the receipt code you were given when you sent your report."
        elif code is None:
            errors["code"] = ("This is not a receipt code. Receipt codes look like "
                              "TPL-7KQ4-M9XD-2HPR-W3CT.")
        added = validate_addendum(fields, errors)
        report_id: int | None = None
        if not errors and code is not None:
            report_id = await run_in_threadpool(rt.intake.report_id_for_receipt, receipt_hash(code))
            if report_id is None:
                # One message for every code we cannot use, whatever the reason.
                errors["code"] = ("We could not match this receipt code. Check that you typed "
                                  "it exactly as it was shown to you.")
        if errors or report_id is None or added is None:
            return _page(request, "addendum.html", 422,
                         **_addendum_context(fields, errors))
        received = datetime.now(UTC).replace(microsecond=0)
        try:
            await run_in_threadpool(
                rt.intake.add_document_unchecked, report_id, "addendum", added.document(fields),
                "application/json", revise=lambda doc: added.revise(doc, received))
        except IntakeError as exc:
            # E.g. the report with this addendum would not be valid CyberTipline: nothing stored.
            log.warning("addendum to public report %d refused: %s", report_id, exc.message)
            told = TOLD_FOR_REASON[exc.reason]
            if told.again:
                return _page(request, "addendum.html", told.status, **_addendum_context(fields, {
                    "information": told.message.format(what="information")}))
            return error_page(request, told.status, "Your information could not be saved",
                              "Something went wrong on our side and nothing was added. Please "
                              "try again in a few minutes.")
        except Exception:
            log.exception("addendum to public report %d could not be stored", report_id)
            return error_page(request, 503, "Your information could not be saved",
                              "Something went wrong on our side and nothing was added. Please "
                              "try again in a few minutes.")
        log.info("addendum added to public report %d", report_id)
        return _page(request, "addendum_done.html",
                     emergency=emergency_numbers().advice(emergency_country(fields)))

    @pages.get("/privacy")
    async def privacy(request: Request) -> HTMLResponse:
        return _page(request, "privacy.html", **privacy_context(rt))

    return pages


def install(app: FastAPI, rt: Runtime) -> None:
    """Add the public pages and, unless another part already did, the ``/static`` files."""
    if not any(isinstance(r, Mount) and r.path == "/static" for r in app.routes):
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router(rt))
