"""``/api/v1/referrals``: the law-enforcement inbox for agencies' scripts and case systems.

A user bearer token (``tlu_…``, ``tipline user token``) calls with its officer's scope; a
signed-in browser session may call too, and then must echo its CSRF token in
``X-CSRF-Token`` on every POST. Access is the service's (``tipline.referrals.service``):
a foreign referral answers 404 exactly as a missing one. Errors are problem documents with
the conventions of ``tipline.web.api_v1``; nothing answers 500.
"""

# No ``from __future__ import annotations``: FastAPI reads the signatures at runtime.
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tipline.people.principal import Principal
from tipline.referrals import export as exports
from tipline.referrals import service as svc
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web.api_v1 import PREFIX, PROBLEM_MEDIA_TYPE, ApiProblem, ProblemRoute, _problems
from tipline.web.auth import CsrfRejected, optional_principal, require_csrf
from tipline.web.signin import client_address, request_id

SECURITY: list[dict[str, list[str]]] = [{"userToken": []}]
SECURITY_SCHEMES = {"userToken": {
    "type": "http", "scheme": "bearer", "bearerFormat": "tlu_<id>_<secret>",
    "description": "A user's token, issued with `tipline user token USERNAME`; it acts with that "
                   "officer's scope (their agency's referrals only)."}}
MAX_LIMIT = 500


# --- documents --------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferralOut(_Out):
    """A referral as the inbox lists it."""

    referralId: int
    reportId: int
    agency: str = Field(description="The agency's directory code.")
    escalated: bool
    madeAvailableAt: str = Field(description="When the report was made available to the agency (UTC).")
    escalatedAt: str | None
    acknowledgedAt: str | None = Field(description="null until the agency acknowledges it.")
    deadline: str = Field(description="Acknowledge by (UTC): made available + the priority's deadline.")
    overdue: bool
    priority: int | None
    incidentType: str | None
    platform: str | None
    assignedTo: str | None = Field(description="Username of the officer who holds it.")
    transferredTo: str | None = Field(description="The agency it was transferred to, if any.")
    transferredFrom: str | None = Field(description="The agency it was transferred from, if any.")
    rule: str
    reason: str


class InboxCounts(_Out):
    total: int
    escalated: int
    unacknowledged: int
    overdue: int


class ReferralList(_Out):
    referrals: list[ReferralOut]
    counts: InboxCounts = Field(description="Counts of the whole filtered inbox, not only this page.")
    nextOffset: int | None = Field(description="`offset` of the next page; null on the last.")


class ReferralDocument(_Out):
    """A referral in full: the export schema `tipline.referral/1` (docs/law-enforcement.md)."""

    model_config = ConfigDict(extra="allow")
    schema_: str = Field(alias="schema")
    referral: dict[str, Any]
    report: dict[str, Any]
    files: list[dict[str, Any]]
    relatedReports: list[dict[str, Any]]
    legalProcess: list[dict[str, Any]]
    events: list[dict[str, Any]]


class Acknowledgement(_Out):
    referralId: int
    acknowledgedAt: str
    changed: bool = Field(description="false when it was acknowledged already (nothing changed).")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str = Field(min_length=1, max_length=60, description="Username of an officer of your agency.")


class Assigned(_Out):
    referralId: int
    assignedTo: str


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agency: str = Field(min_length=1, max_length=60, description="Directory code of the other agency.")
    reason: str = Field(min_length=1, max_length=svc.MAX_REASON)


class Transferred(_Out):
    referralId: int
    newReferralId: int = Field(description="The other agency's referral of its own.")
    agency: str


class LegalProcessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["search_warrant", "court_order", "subpoena", "consent"]
    reference: str = Field(min_length=1, max_length=svc.MAX_REFERENCE, description="Docket or warrant number.")
    issuedOn: date = Field(description="YYYY-MM-DD; not in the future.")


class LegalProcessOut(_Out):
    referralId: int
    kind: str
    reference: str
    issuedOn: str
    recordedAt: str | None
    recordedBy: str | None


# --- plumbing ---------------------------------------------------------------------------------


def _responses(ok: dict[int | str, Any], *statuses: int) -> dict[int | str, Any]:
    out: dict[int | str, Any] = {**ok, **_problems(*statuses)}
    for s in statuses:
        out[s] = {**out[s], "description": _REASONS.get(s, out[s]["description"])}
    return out


_REASONS = {404: "No such referral or file for your agency (a foreign one answers the same)",
            400: "Bad parameter (e.g. an id that is not a number)",
            422: "The body breaks a rule (see errors)"}
_FORBIDDEN: dict[int | str, Any] = {403: {"description": "A browser session without its CSRF token (X-CSRF-Token)",
                    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}}


def _caller(request: Request) -> Principal:
    principal = optional_principal(request)
    if principal is None:
        raise ApiProblem(401, "authentication-required", "Authentication required",
                         "send a user token: Authorization: Bearer tlu_…", headers={
                             "WWW-Authenticate": 'Bearer realm="tipline"'})
    return principal


async def _csrf(request: Request) -> None:
    _caller(request)
    try:
        await require_csrf(request)
    except CsrfRejected:
        raise ApiProblem(403, "csrf", "Forbidden", "a browser session must send its CSRF token in X-CSRF-Token") \
            from None


Caller = Annotated[Principal, Depends(_caller)]
ReferralIdPath = Annotated[int, Path(alias="referralId", ge=1, le=svc.MAX_ID, description="The referral's id.")]
FileIdPath = Annotated[str, Path(alias="fileId", min_length=1, max_length=32, pattern="^[A-Za-z0-9]+$")]


def _where(request: Request) -> svc.Where:
    return svc.Where(client_address(request), request_id(request))


def _not_found(exc: svc.NotFound) -> ApiProblem:
    return ApiProblem(404, "not-found", "Not found", exc.message)


def _invalid(exc: svc.Invalid) -> ApiProblem:
    errors = [{"location": "body", "path": f"$.{exc.field}" if exc.field else "$", "message": exc.message}]
    return ApiProblem(422, "invalid", "The request breaks a rule", exc.message, errors=errors)


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(prefix=PREFIX + "/referrals", route_class=ProblemRoute, tags=["referrals"])

    async def call(fn: Any) -> Any:
        def run() -> Any:
            with transaction(rt.sessions) as s:
                return fn(s)
        try:
            return await anyio.to_thread.run_sync(run)
        except svc.Invalid as exc:
            raise _invalid(exc) from None
        except svc.NotFound as exc:
            raise _not_found(exc) from None

    @api.get("", summary="List your agency's referrals",
             description="Escalated first, then by acknowledgement deadline. Filters combine.",
             responses=_responses({200: {"model": ReferralList, "description": "A page of the inbox"}}, 400),
             openapi_extra={"security": SECURITY})
    async def list_referrals(
        request: Request, principal: Caller,
        escalated: Annotated[bool | None, Query(description="Only escalated (true) or not (false).")] = None,
        acknowledged: Annotated[bool | None, Query(description="Only acknowledged (true) or not (false).")] = None,
        since: Annotated[datetime | None, Query(description="Made available at or after (ISO 8601).")] = None,
        overdue: Annotated[bool | None, Query(description="Only past their deadline unacknowledged.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        offset: Annotated[int, Query(ge=0, le=10**7)] = 0,
    ) -> Response:
        now = datetime.now(UTC)
        when = None if since is None else (since if since.tzinfo else since.replace(tzinfo=UTC))
        box = await call(lambda s: svc.list_referrals(
            s, rt.settings, principal, escalated=escalated, acknowledged=acknowledged, since=when,
            overdue=overdue, limit=limit, offset=offset, now=now, where=_where(request),
            audit_action="referral.list"))
        nxt = offset + limit if offset + limit < box.total else None
        return JSONResponse({"referrals": [r.as_json(now) for r in box.referrals],
                             "counts": {"total": box.total, "escalated": box.escalated,
                                        "unacknowledged": box.unacknowledged, "overdue": box.overdue},
                             "nextOffset": nxt})

    @api.get("/{referralId}", summary="Read one referral in full",
             description="The export document `tipline.referral/1`: fields, files with hashes and matches, "
                         "the incident's other reports made available to your agency, events. Audited.",
             responses=_responses({200: {"model": ReferralDocument, "description": "The referral"}}, 400, 404),
             openapi_extra={"security": SECURITY})
    async def get_referral(request: Request, principal: Caller, referral_id: ReferralIdPath) -> Response:
        body, _ = await _export(rt, principal, referral_id, "json", _where(request), "referral.read")
        return Response(body, media_type="application/json")

    @api.post("/{referralId}/acknowledge", summary="Acknowledge a referral (idempotent)",
              responses=_responses({200: {"model": Acknowledgement, "description": "Acknowledged"}}, 400, 404)
              | _FORBIDDEN,
              dependencies=[Depends(_csrf)], openapi_extra={"security": SECURITY})
    async def acknowledge(request: Request, principal: Caller, referral_id: ReferralIdPath) -> Response:
        done = await call(lambda s: svc.acknowledge(s, principal, referral_id, via="api", where=_where(request)))
        return JSONResponse({"referralId": referral_id, "acknowledgedAt": svc.iso(done.acknowledged_at),
                             "changed": done.changed})

    @api.post("/{referralId}/assign", summary="Assign a referral to a colleague of your agency",
              responses=_responses({200: {"model": Assigned, "description": "Assigned"}}, 400, 404, 422)
              | _FORBIDDEN,
              dependencies=[Depends(_csrf)], openapi_extra={"security": SECURITY})
    async def assign(request: Request, principal: Caller, referral_id: ReferralIdPath,
                     body: Annotated[AssignIn, Body()]) -> Response:
        name = await call(lambda s: svc.assign(s, principal, referral_id, body.assignee, where=_where(request)))
        return JSONResponse({"referralId": referral_id, "assignedTo": name})

    @api.post("/{referralId}/transfer", summary="Transfer a referral to another agency",
              description="The other agency gets a referral of its own; this one stays, marked transferred.",
              responses=_responses({200: {"model": Transferred, "description": "Transferred"}}, 400, 404, 422)
              | _FORBIDDEN,
              dependencies=[Depends(_csrf)], openapi_extra={"security": SECURITY})
    async def transfer(request: Request, principal: Caller, referral_id: ReferralIdPath,
                       body: Annotated[TransferIn, Body()]) -> Response:
        new = await call(lambda s: svc.transfer(s, principal, referral_id, body.agency, body.reason,
                                                where=_where(request)))
        return JSONResponse({"referralId": referral_id, "newReferralId": new, "agency": body.agency.strip().upper()})

    @api.post("/{referralId}/legal-process", summary="Record legal process on a referral",
              description="Opens the files the platform did not view to your agency's officers.",
              status_code=201,
              responses=_responses({201: {"model": LegalProcessOut, "description": "Recorded"}}, 400, 404, 422)
              | _FORBIDDEN,
              dependencies=[Depends(_csrf)], openapi_extra={"security": SECURITY})
    async def legal_process(request: Request, principal: Caller, referral_id: ReferralIdPath,
                            body: Annotated[LegalProcessIn, Body()]) -> Response:
        lp = await call(lambda s: svc.record_legal_process(s, principal, referral_id, body.kind, body.reference,
                                                           body.issuedOn, where=_where(request)))
        return JSONResponse({"referralId": referral_id, **lp.as_json()}, status_code=201)

    @api.get("/{referralId}/export", summary="Export a referral as JSON, CSV or PDF",
             description="JSON in the schema `tipline.referral/1`; CSV (section, field, value); a printable PDF. "
                         "Audited.",
             responses=_responses({200: {"description": "The export", "content": {
                 "application/json": {"schema": {"type": "object"}},
                 "text/csv": {"schema": {"type": "string"}},
                 "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}}, 400, 404),
             openapi_extra={"security": SECURITY})
    async def export(request: Request, principal: Caller, referral_id: ReferralIdPath,
                     format: Annotated[Literal["json", "csv", "pdf"], Query()] = "json") -> Response:
        body, media = await _export(rt, principal, referral_id, format, _where(request), f"referral.export_{format}")
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="referral-{referral_id}.{format}"'})

    @api.get("/{referralId}/files/{fileId}", summary="Download a file of a referral",
             description="The bytes, only when the platform viewed the file or your agency recorded legal "
                         "process on this referral; otherwise 404 saying why. Audited.",
             responses=_responses({200: {"description": "The file's bytes", "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}, 400, 404),
             openapi_extra={"security": SECURITY})
    async def file(request: Request, principal: Caller, referral_id: ReferralIdPath,
                   file_id: FileIdPath) -> Response:
        content = await call(lambda s: svc.file_content(s, rt.blobs, principal, referral_id, file_id,
                                                        where=_where(request)))
        return Response(content.data, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{content.file_id}"',
            "Digest": f"sha-256={content.sha256}"})

    return api


async def _export(rt: Runtime, principal: Principal, rid: int, fmt: str, where: svc.Where,
                  action: str) -> tuple[bytes, str]:
    def run() -> bytes:
        with transaction(rt.sessions) as s:
            return exports.export_referral(s, rt.settings, principal, rid, fmt, where=where, action=action)

    try:
        return await anyio.to_thread.run_sync(run), exports.MEDIA_TYPES[fmt]
    except svc.NotFound as exc:
        raise _not_found(exc) from None


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
