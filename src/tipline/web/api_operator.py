"""``GET /api/v1/operator/reports/{reportId}``: any report, for the service's own staff.

The platform routes of ``/api/v1`` show a platform its own reports; this one shows an
operator any report as ``tipline report show --json`` does: the stored report and files,
what the public added with a receipt code (``addenda``) and the enrichment (assessment,
jurisdiction, referrals). It takes only operator tokens (``tipline operator token``); a
platform's credentials are refused here, and an operator token is refused on the platform
routes. Errors are the same problem documents as the rest of ``/api/v1``.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signature at runtime.
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool

from tipline.intake.errors import IntakeError, Reason
from tipline.intake.operators import OPERATOR_TOKEN_PREFIX, Operator, verify_operator_token
from tipline.runtime import Runtime
from tipline.web.api_v1 import PREFIX, ProblemRoute, ReportIdPath, ReportRead, _problems, _unauthorized

log = logging.getLogger("tipline.api.operator")

OPERATOR_SECURITY: list[dict[str, list[str]]] = [{"operatorAuth": []}]
OPERATOR_SCHEME = {
    "type": "http", "scheme": "bearer", "bearerFormat": "tpo_<id>_<secret>",
    "description": "An operator token issued on the server with `tipline operator token --label WHO`.",
}


class Addendum(BaseModel):
    """Information the public reporter added later with their receipt code."""

    model_config = ConfigDict(extra="forbid")
    receivedAt: str
    information: str | None = Field(description="The text added, if any.")
    added: dict[str, str] = Field(description="The other fields of the addendum page, as received "
                                              "(user names, profile links, places, child's age).")
    contentType: str | None = Field(None, description="Only for an addendum not written by the web form.")


class OperatorReportRead(ReportRead):
    """A report as operators see it (the same document as `tipline report show --json`)."""

    state: str  # type: ignore[assignment]  # operators see expired tombstones too
    addenda: list[Addendum]
    enrichment: dict[str, Any] = Field(description="What the pipeline found: stages, matches, links, incidents, "
                                                   "locations, jurisdiction, agencies, assessment.")


def operator_report(rt: Runtime, report_id: int) -> dict[str, Any] | None:
    """The operator's view of one report, or None when there is no such report."""
    from tipline.pipeline.view import enrichment_view

    view = rt.intake.view_unchecked(report_id)
    if view is None:
        return None
    data = view.as_json()
    data["addenda"] = rt.intake.addenda_unchecked(report_id)
    data["enrichment"] = enrichment_view(rt, report_id)
    return data


def operator_auth(rt: Runtime) -> Callable[[Request], Awaitable[Operator]]:
    """A dependency: the operator from an ``Authorization: Bearer tpo_...`` header."""

    async def operator(request: Request) -> Operator:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("send an operator token: Authorization: Bearer tpo_...")
        found = None
        if token.startswith(OPERATOR_TOKEN_PREFIX):
            found = await run_in_threadpool(verify_operator_token, rt.sessions, token)
        if found is None:
            raise _unauthorized("the operator token was not accepted (platform credentials do not open "
                                "operator routes)")
        return found

    return operator


def router(rt: Runtime) -> APIRouter:
    """The operator routes over one runtime."""
    api = APIRouter(prefix=f"{PREFIX}/operator", route_class=ProblemRoute, tags=["operators"])
    Op = Annotated[Operator, Depends(operator_auth(rt))]

    @api.get(
        "/reports/{reportId}",
        summary="Read any report, with what the public added and its enrichment (operators)",
        responses={200: {"description": "The report, its files, addenda and enrichment",
                         "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/OperatorReportRead"}}}},
                   **_problems(400, 404)},
        openapi_extra={"security": OPERATOR_SECURITY},
    )
    async def read_report(op: Op, report_id: ReportIdPath) -> Response:
        data = await run_in_threadpool(operator_report, rt, report_id)
        if data is None:
            raise IntakeError(Reason.REPORT_NOT_FOUND, field="reportId")
        log.info("operator token %s (%s) read report %d", op.token_id, op.label, report_id)
        return JSONResponse(data)

    return api


def install(app: FastAPI, rt: Runtime) -> None:
    """Add the operator routes, their security scheme and response schema to the app."""
    app.include_router(router(rt))
    previous = app.openapi

    def openapi() -> dict[str, Any]:
        schema = previous()
        components = schema.setdefault("components", {})
        if "operatorAuth" not in components.get("securitySchemes", {}):
            _, top = models_json_schema([(OperatorReportRead, "validation")],
                                        ref_template="#/components/schemas/{model}")
            for name, definition in top.get("$defs", {}).items():
                components.setdefault("schemas", {}).setdefault(name, definition)
            components.setdefault("securitySchemes", {})["operatorAuth"] = OPERATOR_SCHEME
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
