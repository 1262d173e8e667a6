"""Outcome feedback on the JSON API, for agencies' case systems (docs/outcomes.md).

- ``POST /api/v1/referrals/{referralId}/outcomes``: record an event (``{"code": …,
  "occurredOn": "YYYY-MM-DD", …details}``; ``kind``/``supersedes`` to amend, withdraw or
  reopen), idempotent under ``Idempotency-Key``: 201 on create, 200 with the first event on a
  replay, 409 when the key was used for another request.
- ``GET /api/v1/referrals/{referralId}/outcomes``: the timeline, each event with its standing.
- ``GET /api/v1/outcome-codes``: the registry (codes, details, allowed values, version), public.

The caller is the signed-in user (a user's bearer token, or a session with its CSRF token)
that the sign-in middleware left in the request scope; the service
(``tipline.outcomes.service``) decides what they may see. Its protocol-neutral errors become
problem documents here: Invalid 422, NotFound 404 (a foreign referral exactly like a missing
one), Forbidden 403, Conflict 409.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool

from tipline.kinds.outcomes import DETAIL_KEYS, registry
from tipline.outcomes import service
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web.api_v1 import (
    PREFIX,
    ApiProblem,
    ProblemRoute,
    _invalid_json,
    _problems,
    _too_large,
    _unauthorized,
    json_path,
)
from tipline.web.auth import CsrfRejected, optional_principal, require_csrf
from tipline.web.forms import BodyTooLarge, read_capped

#: Referral ids are 32-bit integers in the store.
MAX_REFERRAL_ID = 2**31 - 1
USER_SECURITY: list[dict[str, list[str]]] = [{"userAuth": []}]
USER_SCHEME = {
    "type": "http", "scheme": "bearer", "bearerFormat": "tlu_<id>_<secret>",
    "description": "A user's bearer token (`tipline user token USERNAME`); an officer's token sees only "
                   "referrals made available to their agency.",
}

ReferralIdPath = Annotated[int, Path(alias="referralId", ge=1, le=MAX_REFERRAL_ID,
                                     description="The referral's id (GET /api/v1/referrals).")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _enum(key: str) -> Any:
    return Literal[tuple(registry().values[key])]


def _input_model() -> type[BaseModel]:
    """OutcomeInput, with the registry's codes and values as enums (one registry, never a copy)."""
    reg = registry()
    count: Any = Annotated[int | None, Field(ge=1, le=service.MAX_COUNT)]
    # Built at import from the registry, so the field types are values, not annotations.
    spec: dict[str, Any] = {
        "code": (Literal[tuple(reg.codes)] | None, Field(None, description="Required for kind `record`.")),
        "occurredOn": (str | None, Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                                         description="The calendar date it happened (YYYY-MM-DD).")),
        "kind": (Literal["record", "amend", "withdraw", "reopen"] | None,
                 Field(None, description="Default `record`.")),
        "supersedes": (int | None, Field(None, ge=1, le=MAX_REFERRAL_ID,
                                         description="The outcome an amend or withdraw changes "
                                                     "(a reopen: the closing; optional).")),
        "persons": (count, Field(None, description="Persons (arrested, charged, identified).")),
        "children": (count, Field(None, description="Children identified (CHILD_IDENTIFIED).")),
        "arrestType": (_enum("arrestType") | None, None),
        "result": (_enum("result") | None, None),
        "nibrsCode": (_enum("nibrsCode") | None, None),
        "reason": (_enum("reason") | None, None),
        "note": (str | None, Field(None, max_length=service.MAX_NOTE)),
    }
    config = ConfigDict(extra="forbid", json_schema_extra={
        "description": "An outcome event. Which details a code takes (and needs) is in "
                       "`GET /api/v1/outcome-codes`; a detail a code does not take, a missing one, "
                       "or a date in the future or before the referral was made available is a 422."})
    model: type[BaseModel] = create_model("OutcomeInput", __config__=config, **spec)
    return model


OutcomeInput = _input_model()


class OutcomeRead(_Out):
    """One event of a referral's timeline."""

    outcomeId: int
    referralId: int
    code: str
    kind: Literal["record", "amend", "withdraw", "reopen"]
    supersedes: int | None
    occurredOn: str
    persons: int | None
    children: int | None
    arrestType: str | None
    result: str | None
    nibrsCode: str | None
    reason: str | None
    note: str | None
    via: str
    recordedAt: str
    codesVersion: str
    state: Literal["effective", "superseded", "withdrawn", "reopened", "action"] = Field(
        description="effective: stands now; superseded: replaced by an amendment; withdrawn; reopened: a "
                    "closing a later reopen re-opened; action: a withdraw or reopen event itself.")
    changedBy: int | None = Field(description="The event that amended, withdrew or reopened this one.")


class OutcomeList(_Out):
    referralId: int
    outcomes: list[OutcomeRead]
    open: bool = Field(description="False while a terminal code closes the referral.")
    codesVersion: str


class OutcomeCodeRead(_Out):
    code: str
    title: str
    mapsTo: str
    repeats: bool
    terminal: bool
    stage: str
    details: list[str]
    required: list[str]
    values: dict[str, dict[str, str]] = Field(description="Detail key -> allowed value -> meaning.")


class OutcomeCodes(_Out):
    version: str
    codes: list[OutcomeCodeRead]


def problem_of(err: service.OutcomeError) -> ApiProblem:
    """The problem document for a refusal of the outcome service."""
    if isinstance(err, service.NotFound):
        return ApiProblem(404, "not-found", "Not found", err.message)
    if isinstance(err, service.Forbidden):
        return ApiProblem(403, "forbidden", "Not allowed for this role", err.message)
    where = "header" if err.field == "Idempotency-Key" else "body"
    errors = [{"location": where, "path": json_path([err.field] if err.field else []), "message": err.message}]
    if isinstance(err, service.Conflict):
        slug = "idempotency-key-reused" if where == "header" else "outcome-conflict"
        title = "Idempotency key reused" if where == "header" else "Conflicts with the referral's outcomes"
        return ApiProblem(409, slug, title, err.message, errors=errors)
    return ApiProblem(422, "outcome-invalid", "The outcome was refused", err.message, errors=errors)


def user_auth(*, unsafe: bool) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the signed-in user, 401 without one; a session's unsafe call needs its CSRF token."""

    async def principal(request: Request) -> Principal:
        found = optional_principal(request)
        if found is None:
            raise _unauthorized("send a user's bearer token (Authorization: Bearer …) or sign in")
        if unsafe:
            try:
                await require_csrf(request)
            except CsrfRejected:
                raise ApiProblem(403, "csrf-rejected", "CSRF token missing or wrong",
                                 "a signed-in browser must echo the session's CSRF token") from None
        return found

    return principal


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """api_v1's problem responses, with this API's reasons (and 403, which the platform API lacks)."""
    out = _problems(*(s for s in statuses if s != 403))
    reasons = {403: "The caller's role may not do this", 404: "No such referral for this caller",
               409: "Conflicts with the referral's outcomes, or an Idempotency-Key reused for another body",
               422: "The outcome breaks the code registry or a rule of dates and counts"}
    for s in statuses:
        if s in reasons:
            base = out.get(s, out[401])
            out[s] = {**base, "description": reasons[s]}
    return out


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(prefix=PREFIX, route_class=ProblemRoute, tags=["outcomes"])
    Writer = Annotated[Principal, Depends(user_auth(unsafe=True))]
    Reader = Annotated[Principal, Depends(user_auth(unsafe=False))]

    @api.post(
        "/referrals/{referralId}/outcomes",
        status_code=201,
        summary="Record an outcome on a referral",
        description=(
            "An event on the referral: `code`, `occurredOn` and the code's details; `kind` amend, "
            "withdraw or reopen with `supersedes` to change an earlier event (never edited). With an "
            "`Idempotency-Key`, the same key and body return the first event (200); the same key with "
            "another body is a 409."
        ),
        responses={
            201: _json("OutcomeRead", "Recorded"),
            200: _json("OutcomeRead", "Idempotent replay: the event this key already recorded"),
            **_responses(400, 403, 404, 409, 413, 422),
        },
        openapi_extra={"security": USER_SECURITY, "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/OutcomeInput"}}}}},
    )
    async def post_outcome(
        request: Request,
        caller: Writer,
        referral_id: ReferralIdPath,
        idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=service.MAX_KEY,
            description="Client-chosen key (per agency); the same key never records two events.")] = None,
    ) -> Response:
        try:
            body = await read_capped(request, rt.settings.max_document_bytes)
        except BodyTooLarge as exc:
            raise _too_large(exc) from None
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _invalid_json(f"body: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiProblem(422, "outcome-invalid", "The outcome was refused", "the body must be a JSON object",
                             errors=[{"location": "body", "path": "$", "message": "not an object"}])
        address = request.client.host if request.client else None

        def run() -> service.Recorded:
            with transaction(rt.sessions) as s:
                return service.record_outcome(
                    s, caller, referral_id, payload, via="api", idempotency_key=idempotency_key,
                    address=address, request_id=request.scope.get("request_id"))

        try:
            recorded = await run_in_threadpool(run)
        except service.OutcomeError as err:
            raise problem_of(err) from None
        headers = {"Location": f"{PREFIX}/referrals/{referral_id}/outcomes"}
        if not recorded.created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(recorded.outcome.as_json(), status_code=201 if recorded.created else 200,
                            headers=headers)

    @api.get(
        "/referrals/{referralId}/outcomes",
        summary="List a referral's outcomes (its timeline)",
        responses={200: _json("OutcomeList", "Every event, by date, with its standing"),
                   **_responses(400, 403, 404)},
        openapi_extra={"security": USER_SECURITY},
    )
    async def get_outcomes(caller: Reader, referral_id: ReferralIdPath) -> Response:
        def run() -> list[service.OutcomeView]:
            with rt.sessions() as s:
                return service.list_outcomes(s, caller, referral_id)

        try:
            views = await run_in_threadpool(run)
        except service.OutcomeError as err:
            raise problem_of(err) from None
        terminal = set(registry().terminal)
        closed = any(v.state == "effective" and v.code in terminal and v.kind in ("record", "amend") for v in views)
        return JSONResponse({"referralId": referral_id, "outcomes": [v.as_json() for v in views],
                             "open": not closed, "codesVersion": registry().version})

    @api.get(
        "/outcome-codes",
        summary="The outcome codes, their details and allowed values",
        responses={200: _json("OutcomeCodes", "The registry (public)"), **_problems()},
    )
    async def get_codes() -> Response:
        return JSONResponse(service.codes_json())

    return api


SCHEMA_MODELS: tuple[type[BaseModel], ...] = (OutcomeInput, OutcomeRead, OutcomeList, OutcomeCodes)


def install(app: FastAPI, rt: Runtime) -> None:
    """Add the outcome routes, their schemas and the user security scheme to the app."""
    app.include_router(router(rt))
    previous = app.openapi

    def openapi() -> dict[str, Any]:
        schema = previous()
        components = schema.setdefault("components", {})
        if "OutcomeInput" not in components.get("schemas", {}):
            _, top = models_json_schema([(m, "validation") for m in SCHEMA_MODELS],
                                        ref_template="#/components/schemas/{model}")
            for name, definition in top.get("$defs", {}).items():
                components.setdefault("schemas", {}).setdefault(name, definition)
            components.setdefault("securitySchemes", {}).setdefault("userAuth", USER_SCHEME)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


if not set(DETAIL_KEYS) <= set(OutcomeInput.model_fields):
    # A detail added to the registry must be added to the input model too (imports fail loudly).
    raise RuntimeError("OutcomeInput lacks a detail key of the registry")
