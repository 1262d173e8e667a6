"""The JSON API under ``/api/v1``: the CyberTipline report model as JSON, for platforms.

The same use cases as ISPWS (``tipline.intake.service.Intake``), the same credentials (HTTP
Basic) or an operator-issued bearer token, and the same validation: every JSON document is
validated by the pydantic model, then written as CyberTipline XML and read back with the
ISPWS reader, so business rules and normalisations cannot drift between the protocols.

Errors are RFC 9457 problem documents (``application/problem+json``) carrying the ISPWS
response code where one applies. Nothing here answers 500: an unexpected failure is a 503
with the request id, and the detail goes to the log.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime,
# and the ``Caller`` dependency they name is local to ``router()``.
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tipline.cybertip import schema as wire
from tipline.cybertip.codes import DESCRIPTIONS, CybertipError, ResponseCode
from tipline.cybertip.xml import (
    Parsed,
    file_details_to_xml,
    parse_file_details,
    parse_report,
    report_to_xml,
)
from tipline.intake.credentials import TOKEN_PREFIX, Principal
from tipline.intake.errors import IntakeError, Reason
from tipline.kinds.reports import ReporterStateName
from tipline.model.report import FileDetails, Int64, Report
from tipline.runtime import Runtime
from tipline.store.blobs import BlobTooLarge, BlobWriter, StoredBlob
from tipline.web.basic_auth import parse_basic
from tipline.web.forms import BadForm, BodyTooLarge, SingleFileUpload, read_capped, stream_form
from tipline.web.platform_api import ReportQuality, list_answer, report_answer
from tipline.web.routing import allowed_methods

log = logging.getLogger("tipline.api")
R = ResponseCode

PREFIX = "/api/v1"
PROBLEM_MEDIA_TYPE = "application/problem+json"
CHALLENGE = 'Basic realm="tipline", Bearer'
PROBLEM_BASE = "urn:tipline:problem:"
MAX_REPORT_ID = 2**63 - 1  # xs:long; larger ids cannot exist and would overflow the driver

# The HTTP status for each ISPWS response code. 1xxx are server-side conditions worth a
# retry (503, never 500); 5101/5102 conflict with the report's state.
STATUS_FOR_CODE: dict[ResponseCode, int] = {
    R.SERVER_ERROR: 503,
    R.SAVE_FAILED: 503,
    R.UPLOAD_FAILED: 503,
    R.FILE_UPLOAD_FAILED: 503,
    R.RESOURCE_NOT_FOUND: 404,
    R.UPDATE_FAILED: 409,
    R.AUTHENTICATION_REQUIRED: 401,
    R.NOT_AUTHORISED: 403,
    R.NO_SUBMIT_AUTHORISATION: 403,
    R.NO_UPDATE_AUTHORISATION: 403,
    R.INVALID_REQUEST: 400,
    R.VALIDATION_FAILED: 422,
    R.MALFORMED_XML: 400,
    R.MALFORMED_FILE: 400,
    R.REPORT_NOT_FOUND: 404,
    R.FILE_NOT_FOUND: 404,
    R.REPORT_RETRACTED: 409,
    R.REPORT_FINISHED: 409,
}
RETRY_AFTER_SECONDS = 2


# --- response models (for the OpenAPI document and the tests; handlers emit plain JSON) ---


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemError(_Out):
    """One validation problem: where it is and what is wrong."""

    location: Literal["body", "fileDetails", "path", "query", "header"]
    path: str = Field(description="JSONPath into the location, e.g. `$.incidentSummary`.")
    message: str
    type: str | None = None


class Problem(_Out):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str = Field(description="A URN naming the kind of problem (see docs/api.md).")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(None, description="The request path.")
    code: int | None = Field(None, description="The ISPWS response code, where one applies.")
    requestId: str | None = Field(None, description="Also in the Request-ID header.")
    errors: list[ProblemError] | None = None
    fileId: str | None = Field(None, description="A file that was stored before a step failed.")


class ReportCreated(_Out):
    reportId: int
    created: bool = Field(description="False on an Idempotency-Key replay.")
    normalisations: list[str] = Field(description="Unambiguous variants that were normalised.")


def _without_ids(schema: dict[str, Any]) -> None:
    # The ids come from the URL. A body may repeat them (clients converted from ISPWS do),
    # but one that differs is refused, and a schema cannot say "equal to the path": so the
    # document leaves them out, and everything it allows is accepted.
    for name in ("reportId", "fileId"):
        schema.get("properties", {}).pop(name, None)
    schema["required"] = [r for r in schema.get("required", []) if r not in ("reportId", "fileId")]
    if not schema["required"]:
        del schema["required"]


class FileDetailsInput(FileDetails):
    """FileDetails as this API takes them: reportId and fileId come from the URL.

    Leave them out (a body repeating the URL's values is accepted too).
    """

    model_config = ConfigDict(json_schema_extra=_without_ids)

    reportId: Int64 | None = None  # type: ignore[assignment]
    fileId: str | None = None  # type: ignore[assignment]


class FileUploaded(_Out):
    reportId: int
    fileId: str = Field(description="32 lowercase hex characters, new for every upload.")
    md5: str
    sha1: str
    sha256: str
    size: int
    fileDetails: FileDetails | None = None


class FileDetailsStored(_Out):
    reportId: int
    fileId: str
    fileDetails: FileDetails
    normalisations: list[str]


class ReportFinished(_Out):
    reportId: int
    state: Literal["finished"]
    files: list[str] = Field(description="The report's fileIds in upload order.")


class ReportRetracted(_Out):
    reportId: int
    state: Literal["retracted"]


class FileRead(_Out):
    fileId: str
    fileName: str | None
    mediaType: str | None
    size: int
    md5: str
    sha1: str
    sha256: str
    uploadedAt: str
    fileDetails: FileDetails | None


class ReportRead(_Out):
    reportId: int
    reporter: str
    source: str
    state: ReporterStateName
    openedAt: str
    lastChangeAt: str
    expiresAt: str | None
    finishedAt: str | None
    retractedAt: str | None
    incidentType: str | None
    incidentDateTime: str | None
    escalation: str | None
    normalisations: list[Any]
    report: Report | None = Field(description="The report as stored (validated, normalised).")
    files: list[FileRead]
    quality: ReportQuality | None = Field(description="The quality items; null until assessed.")


class ReportSummary(_Out):
    reportId: int
    reporter: str
    source: str
    state: ReporterStateName
    openedAt: str
    finishedAt: str | None
    incidentType: str | None
    files: int


class ReportList(_Out):
    reports: list[ReportSummary]
    nextCursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page.")


# Characters XML 1.0 cannot carry, as a JSON Schema pattern (ECMA-262 code units, so the
# astral planes, sent as surrogate pairs, stay allowed). The report goes over XML, so a
# string holding one of these is refused (422); the schema says so instead of promising it.
XML_TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*$"

# RFC 3339 admits offsets to +-23:59 and seconds 60; xs:dateTime and Python stop at +-14:00
# and 59, and years at 0001-9999.
XML_DATETIME_PATTERN = (
    "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-[0-9]{2}-[0-9]{2}"
    "[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)?$"
)


class XmlTextJsonSchema(GenerateJsonSchema):
    """JSON Schema for models that travel as CyberTipline XML: every free-text string
    carries ``XML_TEXT_PATTERN`` (a field with its own pattern keeps it)."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        out = super().str_schema(schema)
        out.setdefault("pattern", XML_TEXT_PATTERN)
        return out

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        out = super().datetime_schema(schema)
        out["pattern"] = XML_DATETIME_PATTERN
        return out

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        out = super().model_schema(schema)
        # FileDetailsInput has FileDetails' choices: look the model up along its bases.
        choices = next((_CHOICES[c] for c in schema["cls"].__mro__ if c in _CHOICES), None)
        if choices and "properties" in out:
            for choice in choices:
                _express_choice(out, choice.names, required=not choice.emptiable)
        return out


# The XML choices of the wire format (exactly one of, or at most one of), by model: the
# models check them in a validator, which JSON Schema does not see, so they are added here.
_CHOICES: dict[type[BaseModel], list[wire.Choice]] = {
    t.model: [p for p in t.particles if isinstance(p, wire.Choice)] for t in wire.complex_types()
}


def _express_choice(out: dict[str, Any], names: tuple[str, ...], *, required: bool) -> None:
    props: dict[str, Any] = out["properties"]
    for name in names:
        # null means "absent" to the server; the document offers only the object, so that
        # "present" is what it means by a property being there.
        prop = props[name]
        options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:
            props[name] = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **options[0]}
    if required and set(props) == set(names):
        out["minProperties"] = out["maxProperties"] = 1
    elif required:
        out["oneOf"] = [{"required": [n]} for n in names]
    else:
        out.setdefault("allOf", []).extend(
            {"not": {"required": [a, b]}} for i, a in enumerate(names) for b in names[i + 1:])


# The request documents: their strings become XML text.
XML_MODELS: tuple[type[BaseModel], ...] = (Report, FileDetails, FileDetailsInput)
SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    Report, FileDetails, FileDetailsInput, Problem, ReportCreated, FileUploaded,
    FileDetailsStored, ReportFinished, ReportRetracted, ReportRead, ReportList,
)
SECURITY_SCHEMES: dict[str, Any] = {
    "basicAuth": {
        "type": "http", "scheme": "basic",
        "description": "The platform's ISPWS username and password.",
    },
    "bearerAuth": {
        "type": "http", "scheme": "bearer", "bearerFormat": "tpl_<id>_<secret>",
        "description": "A token the operator issues with `tipline esp token NAME`.",
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _problems(*statuses: int | str) -> dict[int | str, dict[str, Any]]:
    # "4XX" also keeps FastAPI from documenting its own 422 format, which this API never sends.
    reasons: dict[int | str, str] = {
        400: "Bad request (missing part, bad parameter, not JSON)",
        401: "Missing or wrong credentials",
        404: "No such report or file for this platform",
        409: "Conflict with the report's state, or an Idempotency-Key reused for another body",
        413: "Body or file over the configured limit",
        422: "The document violates the report format or a business rule",
        503: "Temporary failure; retry (see Retry-After)",
        "4XX": "Any other client error, as a problem document",
    }
    return {
        s: {"description": reasons[s], "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}}}
        for s in (401, 503, *statuses, "4XX")
    }


SECURITY: list[dict[str, list[str]]] = [{"basicAuth": []}, {"bearerAuth": []}]


# --- problems -------------------------------------------------------------------------------


class ApiProblem(Exception):
    """An error answered as a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        code: ResponseCode | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.code = code
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        body["instance"] = request.url.path
        if self.code is not None:
            body["code"] = int(self.code)
        rid = request.scope.get("request_id")
        if rid:
            body["requestId"] = rid
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        headers = dict(self.headers)
        if self.status == 401:
            headers.setdefault("WWW-Authenticate", CHALLENGE)
        if self.status == 503:
            headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
        return JSONResponse(body, status_code=self.status, headers=headers,
                            media_type=PROBLEM_MEDIA_TYPE)


def _slug(code: ResponseCode) -> str:
    return code.name.lower().replace("_", "-")


def problem_for(err: CybertipError, *, errors: list[dict[str, Any]] | None = None) -> ApiProblem:
    """The problem document for a format error (the XML reader's), keeping its ISPWS code."""
    status = STATUS_FOR_CODE.get(err.code, 503)
    return ApiProblem(status, _slug(err.code), DESCRIPTIONS[err.code], err.detail or None,
                      code=err.code, errors=errors)


def _as_code(code: ResponseCode) -> tuple[int, str, str, ResponseCode]:
    return STATUS_FOR_CODE[code], _slug(code), DESCRIPTIONS[code], code


#: (HTTP status, problem slug, title, ISPWS code) for each reason an intake use case refuses.
#: The code is the one ISPWS answers with, so a platform sees one number on both protocols.
PROBLEM_FOR_REASON: dict[Reason, tuple[int, str, str, ResponseCode]] = {
    Reason.REPORT_NOT_FOUND: _as_code(R.REPORT_NOT_FOUND),
    Reason.FILE_NOT_FOUND: _as_code(R.FILE_NOT_FOUND),
    Reason.REPORT_RETRACTED: _as_code(R.REPORT_RETRACTED),
    Reason.REPORT_FINISHED: _as_code(R.REPORT_FINISHED),
    Reason.CHANGED_CONCURRENTLY: _as_code(R.UPDATE_FAILED),
    Reason.STORAGE_CHANGED: _as_code(R.UPLOAD_FAILED),
    Reason.RULES_VIOLATED: _as_code(R.VALIDATION_FAILED),
    # Not a malformed request but a conflict with the first one that used the key.
    Reason.IDEMPOTENCY_KEY_REUSED: (409, "idempotency-key-reused", "Idempotency key reused",
                                    R.INVALID_REQUEST),
}


def intake_problem(err: IntakeError) -> ApiProblem:
    """The problem document for an intake refusal (``PROBLEM_FOR_REASON``)."""
    status, slug, title, code = PROBLEM_FOR_REASON[err.reason]
    return ApiProblem(status, slug, title, err.message or None, code=code)


def json_path(loc: Sequence[int | str]) -> str:
    """A JSONPath (``$.a[0].b``) for a pydantic error location."""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += "[" + json.dumps(part) + "]"
    return out


_XML_PATH = re.compile(r"^(/(?:report|fileDetails)(?:/[^\s:]*)?): (.*)$", re.S)


def xml_path_to_json(xml_path: str) -> str:
    """``/report/internetDetails[1]/a/@x`` -> ``$.internetDetails[0].a.x``.

    The XML reader names elements by path with 1-based indexes; the JSON form of the same
    report has the same names (attributes are fields), so the path carries over.
    """
    loc: list[int | str] = []
    for seg in xml_path.strip("/").split("/")[1:]:
        m = re.fullmatch(r"@?([^\[\]]+)(?:\[(\d+)\])?", seg)
        if m is None:
            continue
        loc.append(m.group(1))
        if m.group(2):
            loc.append(int(m.group(2)) - 1)
    return json_path(loc)


def _errors_from_detail(detail: str | None, location: str) -> list[dict[str, Any]] | None:
    """Turn an XML reader's ``/report/...: message`` into a JSON-path error entry."""
    if not detail:
        return None
    m = _XML_PATH.match(detail)
    if m is None:
        return None
    return [{"location": location, "path": xml_path_to_json(m.group(1)), "message": m.group(2)}]


def _invalid_json(detail: str) -> ApiProblem:
    return ApiProblem(400, "invalid-json", "Body is not valid JSON", detail,
                      code=R.INVALID_REQUEST)


def validation_problem(exc: ValidationError, location: str) -> ApiProblem:
    """422 with one entry per pydantic error; 400 when the body is not JSON at all."""
    errs = exc.errors(include_url=False, include_input=False)
    bad_json = [e for e in errs if e["type"] == "json_invalid"]
    if bad_json:
        return _invalid_json(f"{location}: {bad_json[0]['msg']}")
    entries = [
        {"location": location, "path": json_path(e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in errs
    ]
    return ApiProblem(422, _slug(R.VALIDATION_FAILED), DESCRIPTIONS[R.VALIDATION_FAILED],
                      f"{len(entries)} problem(s) in {location}; see errors",
                      code=R.VALIDATION_FAILED, errors=entries)


def request_validation_problem(exc: RequestValidationError) -> ApiProblem:
    """FastAPI's parameter errors (path, query, header) as a 400 problem."""
    entries: list[dict[str, Any]] = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        where = str(loc[0]) if loc else "body"
        if where not in ("path", "query", "header", "body"):
            where = "body"
        entries.append({"location": where, "path": json_path(loc[1:]), "message": str(e.get("msg")),
                        "type": e.get("type")})
    status = 422 if any(x["location"] == "body" for x in entries) else 400
    code = R.VALIDATION_FAILED if status == 422 else R.INVALID_REQUEST
    return ApiProblem(status, _slug(code), DESCRIPTIONS[code],
                      "invalid request parameters; see errors", code=code, errors=entries)


def http_problem(status: int, detail: object, headers: Mapping[str, str] | None) -> ApiProblem:
    """A routing or framework HTTP error (unknown path, wrong method) as a problem."""
    titles = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}
    slug = {404: "not-found", 405: "method-not-allowed", 401: "authentication-required"}
    return ApiProblem(status, slug.get(status, f"http-{status}"),
                      titles.get(status, f"HTTP {status}"), str(detail) if detail else None,
                      headers=dict(headers or {}))


def unexpected(request: Request) -> ApiProblem:
    rid = request.scope.get("request_id")
    return ApiProblem(503, "server-error", "Temporary server error",
                      f"request {rid} failed; retry later, or quote the request id to support",
                      code=R.SERVER_ERROR)


def _is_api(request: Request) -> bool:
    path: str = request.scope.get("path", "")
    return path == PREFIX or path.startswith(PREFIX + "/")


class ProblemRoute(APIRoute):
    """Every outcome of an API route that is not a success becomes a problem document.

    Wrapping the route handler (not a global handler) keeps other routers' protocols intact
    and catches dependency errors (authentication, parameters) too.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except ApiProblem as p:
                return p.response(request)
            except CybertipError as err:
                errors = _errors_from_detail(err.detail, "body")
                return problem_for(err, errors=errors).response(request)
            except IntakeError as err:
                return intake_problem(err).response(request)
            except RequestValidationError as exc:
                return request_validation_problem(exc).response(request)
            except StarletteHTTPException as exc:
                return http_problem(exc.status_code, exc.detail, exc.headers).response(request)
            except Exception:
                # Never a 500 or a trace on the wire: the client gets a request id, the log
                # the detail.
                log.exception("API %s %s failed (request %s)", request.method, request.url.path,
                              request.scope.get("request_id"))
                return unexpected(request).response(request)

        return handler


# --- authentication -------------------------------------------------------------------------


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "authentication-required", DESCRIPTIONS[R.AUTHENTICATION_REQUIRED],
                      detail, code=R.AUTHENTICATION_REQUIRED)


def authenticator(rt: Runtime) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency resolving the calling platform from Basic or Bearer credentials."""

    async def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        found: Principal | None = None
        if scheme == "basic":
            creds = parse_basic(header)
            if creds is not None:
                found = await run_in_threadpool(rt.auth.basic, *creds)
        elif scheme == "bearer":
            token = value.strip()
            if token.startswith(TOKEN_PREFIX):
                found = await run_in_threadpool(rt.auth.bearer, token)
            elif token.startswith("tlu_"):
                # A platform user's token: reads its platform's reports, the same scope.
                from tipline.web.platform_api import person_caller

                found = await person_caller(rt, request)
        else:
            raise _unauthorized("send HTTP Basic credentials or a bearer token")
        if found is None:
            raise _unauthorized("the credentials were not accepted")
        return found

    return principal


# --- validation (the same rules as ISPWS) ---------------------------------------------------


M = TypeVar("M", bound=BaseModel)


def _integral(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _validate_json(model: type[M], body: bytes) -> M:
    """``model.model_validate_json``, taking a number such as ``12.0`` where an integer goes.

    JSON Schema counts 12.0 as an integer, so the OpenAPI document allows it; the models
    are strict (``"12"`` is still refused). Only when strict validation refuses such a
    number is the body read again with integral numbers as integers.
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if not any(e["type"] == "int_type" and isinstance(e.get("input"), float) and e["input"].is_integer()
                   for e in exc.errors()):
            raise
        try:
            again = json.dumps(json.loads(body, parse_float=_integral), allow_nan=False)
        except ValueError:
            raise exc from None
        return model.model_validate_json(again)


def validate_report(body: bytes) -> Parsed[Report]:
    """Validate a JSON report exactly as ``/submit`` validates XML.

    The model is written as CyberTipline XML and read back by the ISPWS reader, so the
    stored report has passed the same format walk, business rules and normalisations.
    """
    try:
        model = _validate_json(Report, body)
    except ValidationError as exc:
        raise validation_problem(exc, "body") from None
    try:
        return parse_report(report_to_xml(model))
    except CybertipError as err:
        if err.code == R.MALFORMED_XML:
            # Our own XML is well-formed, so only the reader's size cap can say this.
            raise ApiProblem(413, "too-large", "Document too large", err.detail,
                             code=R.MALFORMED_XML) from None
        raise problem_for(err, errors=_errors_from_detail(err.detail, "body")) from None


def validate_file_details(
    body: bytes, report_id: int, file_id: str | None, *, location: str = "body"
) -> Parsed[FileDetails]:
    """Validate FileDetails JSON for (report_id, file_id) exactly as ``/fileinfo`` does.

    ``file_id`` None means "not issued yet" (the details came with the upload): a fileId in
    the document is then an error, and a placeholder id stands in for the check.
    """
    try:
        given = _validate_json(FileDetailsInput, body)
    except ValidationError as exc:
        raise validation_problem(exc, location) from None
    mismatches: list[dict[str, Any]] = []
    if given.reportId is not None and given.reportId != report_id:
        mismatches.append({"location": location, "path": "$.reportId", "type": "mismatch",
                           "message": f"reportId {given.reportId} differs from the URL's "
                                      f"{report_id}"})
    if given.fileId is not None and given.fileId != file_id:
        message = (f"fileId {given.fileId!r} differs from the URL's {file_id!r}" if file_id
                   else "the fileId is issued by this upload; leave it out")
        mismatches.append({"location": location, "path": "$.fileId", "type": "mismatch",
                           "message": message})
    if mismatches:
        raise ApiProblem(422, _slug(R.VALIDATION_FAILED), DESCRIPTIONS[R.VALIDATION_FAILED],
                         "reportId and fileId come from the URL", code=R.VALIDATION_FAILED,
                         errors=mismatches)
    data = given.model_dump(mode="json", exclude_unset=True)
    data["reportId"] = report_id
    data["fileId"] = file_id or "a" * 32
    try:
        full = FileDetails.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        raise validation_problem(exc, location) from None
    try:
        return parse_file_details(file_details_to_xml(full))
    except CybertipError as err:
        if err.code == R.MALFORMED_XML:
            raise ApiProblem(413, "too-large", "Document too large", err.detail,
                             code=R.MALFORMED_XML) from None
        raise problem_for(err, errors=_errors_from_detail(err.detail, location)) from None


# --- routes ---------------------------------------------------------------------------------

MAX_PAGE = 1000
# Every value of this pattern is accepted (the OpenAPI document promises no more and no less):
# "c" and a report id in base 36. Clients treat it as opaque all the same.
CURSOR_PATTERN = "^c[0-9a-z]{1,13}$"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def encode_cursor(last_report_id: int) -> str:
    """The cursor after a page whose last report is ``last_report_id``."""
    digits, n = "", last_report_id
    while True:
        n, r = divmod(n, 36)
        digits = _B36[r] + digits
        if n == 0:
            return "c" + digits


def decode_cursor(cursor: str) -> int | None:
    """The id a page continues below. The route's pattern has checked the form; an id past
    the largest possible one is the same as none (the walk starts at the newest, and no
    out-of-range integer reaches the database)."""
    before = int(cursor[1:], 36)
    return before if before <= MAX_REPORT_ID else None


ReportIdPath = Annotated[int, Path(alias="reportId", ge=1, le=MAX_REPORT_ID,
                                   description="The report's id, as returned at creation.")]


def _too_large(exc: Exception) -> ApiProblem:
    return ApiProblem(413, "too-large", "Body too large", str(exc))


def router(rt: Runtime) -> APIRouter:
    """The /api/v1 routes over one runtime."""
    api = APIRouter(prefix=PREFIX, route_class=ProblemRoute, tags=["reports"])
    limits = rt.settings
    Caller = Annotated[Principal, Depends(authenticator(rt))]

    @api.post(
        "/reports",
        status_code=201,
        summary="Open a report",
        description=(
            "Validates the report exactly as ISPWS `/submit` does and opens it. With an "
            "`Idempotency-Key`, a retry with the same key and the same body returns the "
            "first report (200); the same key with a different body is a 409."
        ),
        responses={
            201: _json("ReportCreated", "Report opened; `Location` names it"),
            200: _json("ReportCreated", "Idempotent replay: the report this key already opened"),
            **_problems(400, 409, 413, 422),
        },
        openapi_extra={
            "security": SECURITY,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("Report")}}},
        },
    )
    async def create_report(
        request: Request,
        caller: Caller,
        idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=255,
            description="Client-chosen key; the same key never opens two reports.")] = None,
    ) -> Response:
        try:
            body = await read_capped(request, limits.max_document_bytes)
        except BodyTooLarge as exc:
            raise _too_large(exc) from None
        parsed = await run_in_threadpool(validate_report, body)
        report_id, created = await run_in_threadpool(
            rt.intake.open_report, caller.reporter_id, parsed, source="api", body=body,
            content_type=request.headers.get("content-type"), document_kind="json",
            idempotency_key=idempotency_key,
        )
        headers = {"Location": f"{PREFIX}/reports/{report_id}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(
            {"reportId": report_id, "created": created, "normalisations": parsed.normalisations},
            status_code=201 if created else 200, headers=headers,
        )

    @api.get(
        "/reports",
        summary="List your reports",
        responses={200: _json("ReportList", "The caller's reports, newest first"),
                   **_problems(400)},
        openapi_extra={"security": SECURITY},
    )
    async def list_reports(
        request: Request,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Reports per page.")] = 100,
        state: Annotated[ReporterStateName | None, Query()] = None,
        cursor: Annotated[str | None, Query(
            max_length=64, pattern=CURSOR_PATTERN,
            description="`nextCursor` of the previous page; leave out for the first.")] = None,
    ) -> Response:
        before = None if cursor is None else decode_cursor(cursor)
        # One row more than asked says whether another page follows.
        rows = await run_in_threadpool(rt.intake.list_reports, caller.reporter_id,
                                       limit=limit + 1, state=state, before_id=before)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(page[-1]["reportId"]) if more else None
        await run_in_threadpool(list_answer, rt, request, caller, page)
        return JSONResponse({"reports": page, "nextCursor": next_cursor})

    @api.get(
        "/reports/{reportId}",
        summary="Read back one of your reports",
        responses={200: _json("ReportRead", "The report, its state and its files"),
                   **_problems(400, 404)},
        openapi_extra={"security": SECURITY},
    )
    async def get_report(request: Request, caller: Caller, report_id: ReportIdPath) -> Response:
        view = await run_in_threadpool(rt.intake.view, report_id, caller.reporter_id)
        if view is None:
            raise IntakeError(Reason.REPORT_NOT_FOUND, field="reportId")
        return JSONResponse(await run_in_threadpool(report_answer, rt, request, caller, view))

    @api.post(
        "/reports/{reportId}/files",
        status_code=201,
        summary="Upload a file to an open report",
        description=(
            "`multipart/form-data` with one file part named `file` and, optionally, a text "
            "field `fileDetails` holding FileDetailsInput JSON (no fileId: this upload issues "
            "it). The file is encrypted as it streams in."
        ),
        responses={201: _json("FileUploaded", "File stored"), **_problems(400, 404, 409, 413, 422)},
        openapi_extra={
            "security": SECURITY,
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": {
                    "type": "object", "required": ["file"], "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "fileDetails": {**_ref("FileDetailsInput"),
                                        "description": "FileDetailsInput, as a JSON part"},
                    },
                },
                "encoding": {"fileDetails": {"contentType": "application/json"}},
            }}},
        },
    )
    async def upload_file(request: Request, caller: Caller, report_id: ReportIdPath) -> Response:
        # Checked before streaming a file so that a wrong id costs no storage; the intake
        # checks again, under a lock, when the file is attached.
        await run_in_threadpool(rt.intake.require_open, caller.reporter_id, report_id)
        upload = SingleFileUpload(rt.blobs, limits.max_upload_bytes)

        try:
            try:
                fields, parts = await stream_form(
                    request, on_file=upload.on_file, field_limit=limits.max_document_bytes)
            except (BlobTooLarge, BodyTooLarge) as exc:
                raise _too_large(exc) from None
            except BadForm as exc:
                raise ApiProblem(400, _slug(R.MALFORMED_FILE), DESCRIPTIONS[R.MALFORMED_FILE],
                                 str(exc), code=R.MALFORMED_FILE) from None
            if upload.writer is None:
                hint = (" ('file' arrived as a text field: send it as a file part, with a filename)"
                        if "file" in fields else "")
                raise ApiProblem(400, _slug(R.MALFORMED_FILE), DESCRIPTIONS[R.MALFORMED_FILE],
                                 f"no file part named 'file' in the upload{hint}",
                                 code=R.MALFORMED_FILE)
            raw_details = fields.get("fileDetails")
            details_body = raw_details.encode("utf-8") if raw_details is not None else None
            if details_body is not None:
                # Checked before anything is stored: bad details leave no file behind.
                await run_in_threadpool(validate_file_details, details_body, report_id, None,
                                        location="fileDetails")
            w: BlobWriter = upload.writer
            stored: StoredBlob
            stored, file_id = await run_in_threadpool(
                rt.intake.upload, caller.reporter_id, report_id, w,
                file_name=parts[0].filename, media_type=parts[0].content_type,
            )
        finally:
            upload.abort()
        result: dict[str, Any] = {
            "reportId": report_id, "fileId": file_id, "md5": stored.md5, "sha1": stored.sha1,
            "sha256": stored.sha256, "size": stored.size,
        }
        if details_body is not None:
            try:
                parsed = await run_in_threadpool(validate_file_details, details_body, report_id,
                                                 file_id, location="fileDetails")
                await run_in_threadpool(rt.intake.file_info, caller.reporter_id, parsed,
                                        body=details_body, content_type="application/json")
            except (ApiProblem, IntakeError) as exc:
                # The file is stored; say which one so the details can be sent again with PUT.
                problem = exc if isinstance(exc, ApiProblem) else intake_problem(exc)
                problem.extra["fileId"] = file_id
                raise problem from None
            result["fileDetails"] = parsed.value.model_dump(mode="json", exclude_defaults=True)
        return JSONResponse(result, status_code=201,
                            headers={"Location": f"{PREFIX}/reports/{report_id}"})

    @api.put(
        "/reports/{reportId}/files/{fileId}/details",
        summary="Set the details of an uploaded file",
        description="FileDetailsInput JSON; the latest details win, every body is kept.",
        responses={200: _json("FileDetailsStored", "Details stored"),
                   **_problems(400, 404, 409, 413, 422)},
        openapi_extra={
            "security": SECURITY,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("FileDetailsInput")}}},
        },
    )
    async def put_file_details(
        request: Request,
        caller: Caller,
        report_id: ReportIdPath,
        file_id: Annotated[str, Path(alias="fileId", min_length=1, max_length=64)],
    ) -> Response:
        try:
            body = await read_capped(request, limits.max_document_bytes)
        except BodyTooLarge as exc:
            raise _too_large(exc) from None
        parsed = await run_in_threadpool(validate_file_details, body, report_id, file_id)
        await run_in_threadpool(rt.intake.file_info, caller.reporter_id, parsed, body=body,
                                content_type=request.headers.get("content-type"))
        return JSONResponse({
            "reportId": report_id, "fileId": file_id,
            "fileDetails": parsed.value.model_dump(mode="json", exclude_defaults=True),
            "normalisations": parsed.normalisations,
        })

    @api.post(
        "/reports/{reportId}/finish",
        summary="File the report",
        description="After this nothing can be added and the report cannot be retracted.",
        responses={200: _json("ReportFinished", "Report finished"),
                   **_problems(400, 404, 409, 422)},
        openapi_extra={"security": SECURITY},
    )
    async def finish_report(caller: Caller, report_id: ReportIdPath) -> Response:
        files = await run_in_threadpool(rt.intake.finish, caller.reporter_id, report_id)
        return JSONResponse({"reportId": report_id, "state": "finished", "files": files})

    @api.post(
        "/reports/{reportId}/retract",
        summary="Retract an unfinished report",
        responses={200: _json("ReportRetracted", "Report retracted"), **_problems(400, 404, 409)},
        openapi_extra={"security": SECURITY},
    )
    async def retract_report(caller: Caller, report_id: ReportIdPath) -> Response:
        await run_in_threadpool(rt.intake.retract, caller.reporter_id, report_id)
        return JSONResponse({"reportId": report_id, "state": "retracted"})

    return api


# --- installation ---------------------------------------------------------------------------


def _install_openapi(app: FastAPI) -> None:
    """Add the request/response schemas and the security schemes to the app's OpenAPI.

    The JSON routes read their bodies themselves (capped, before parsing), so FastAPI does
    not see the body models; their schemas are generated here, from the same classes.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            _, top = models_json_schema(
                [(m, "validation") for m in SCHEMA_MODELS],
                ref_template="#/components/schemas/{model}",
            )
            # The report and file models again, with the XML text constraint: these
            # definitions replace the plain ones (read-back reports passed the same check).
            _, xml_top = models_json_schema(
                [(m, "validation") for m in XML_MODELS],
                ref_template="#/components/schemas/{model}", schema_generator=XmlTextJsonSchema,
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(top.get("$defs", {}))
            components["schemas"].update(xml_top.get("$defs", {}))
            components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI, rt: Runtime) -> None:
    """Mount the JSON API on ``app`` and make every /api/v1 error a problem document."""
    app.include_router(router(rt))
    _install_openapi(app)

    # Routing errors (unknown path, wrong method) never reach a route; reformat those for
    # /api/v1 only and hand everything else to whatever handled it before.
    previous_http = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)
    previous_validation = app.exception_handlers.get(
        RequestValidationError, request_validation_exception_handler)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        if _is_api(request) and isinstance(exc, StarletteHTTPException):
            headers = dict(exc.headers or {})
            detail: object = exc.detail
            if exc.status_code == 405:
                allow = allowed_methods(request)
                headers["Allow"] = ", ".join(allow)
                detail = f"{request.method} {request.url.path}: this path takes {', '.join(allow)}"
            return http_problem(exc.status_code, detail, headers).response(request)
        result = previous_http(request, exc)
        return await result if isinstance(result, Awaitable) else result

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        if _is_api(request) and isinstance(exc, RequestValidationError):
            return request_validation_problem(exc).response(request)
        result = previous_validation(request, exc)
        return await result if isinstance(result, Awaitable) else result

    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
