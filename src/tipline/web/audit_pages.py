"""The auditor's pages: ``/audit`` (the trail, filtered by actor, action, object and time),
``/audit/export`` (the filtered rows as CSV or JSON lines, with their hashes) and
``POST /audit/verify`` (check the chain and the database's append-only guard now).

Who may read is decided by ``tipline.people.trail`` from the caller's role; anyone else gets
the same "page not found" as an address that does not exist. Exports and verifications are
themselves rows of the trail: an auditor's look is on the record too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tipline.people import audit as chain
from tipline.people import trail
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web.auth import current_principal, require_csrf
from tipline.web.signin import audit, staff_page

EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/x-ndjson"}


def _not_found() -> StarletteHTTPException:
    return StarletteHTTPException(404)


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    def page(request: Request, principal: Principal, *, verdict: dict[str, Any] | None = None,
             status: int = 200, extra_errors: dict[str, str] | None = None) -> Response:
        params = dict(request.query_params)
        q, problems = trail.parse_query(params)
        problems.errors.update(extra_errors or {})
        before: int | None = None
        raw_before = params.get("before", "").strip()
        if raw_before:
            if raw_before.isdigit() and len(raw_before) < 19:
                before = int(raw_before)
            else:
                problems.errors["before"] = "Page: the link to older rows was not a row number; showing the newest."

        def load() -> trail.TrailPage:
            with rt.sessions() as s:
                found = trail.search(s, principal, q, before=before)
                s.expunge_all()
                return found

        try:
            found = load()
        except trail.NotVisible:
            raise _not_found() from None
        return staff_page(request, "audit.html", status=400 if problems.errors else status, found=found,
                          query=q, values=params, errors=problems.errors, verdict=verdict,
                          query_string=_qs(q.params()), older_qs=_qs({**q.params(), "before": str(found.older)})
                          if found.older else None)

    @api.get("/audit")
    async def audit_page(request: Request,
                         principal: Annotated[Principal, Depends(current_principal)]) -> Response:
        return await anyio.to_thread.run_sync(lambda: page(request, principal))

    @api.get("/audit/export")
    async def audit_export(request: Request,
                           principal: Annotated[Principal, Depends(current_principal)]) -> Response:
        try:
            trail.require_reader(principal)
        except trail.NotVisible:
            raise _not_found() from None
        fmt = request.query_params.get("format", "csv")
        q, problems = trail.parse_query(dict(request.query_params))
        if fmt not in EXPORT_FORMATS:
            problems.errors["format"] = "Export: the format is csv or json."
        if problems.errors:
            return await anyio.to_thread.run_sync(lambda: page(request, principal, extra_errors=problems.errors))

        def record() -> None:
            with transaction(rt.sessions) as s:
                audit(request, s, "audit_export", "audit_trail", None, {"format": fmt, **q.described()})

        await anyio.to_thread.run_sync(record)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(_export(rt, principal, q, fmt), media_type=EXPORT_FORMATS[fmt], headers={
            "Content-Disposition": f'attachment; filename="tipline-audit-{stamp}.{"csv" if fmt == "csv" else "jsonl"}"',
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @api.post("/audit/verify", dependencies=[Depends(require_csrf)])
    async def audit_verify(request: Request,
                           principal: Annotated[Principal, Depends(current_principal)]) -> Response:
        try:
            trail.require_reader(principal)
        except trail.NotVisible:
            raise _not_found() from None

        def check() -> dict[str, Any]:
            with rt.sessions() as s:
                verdict = chain.verify(s)
                guard = trail.guard_problems(s)
                last = trail.head(s)
            result = {"rows": verdict.rows, "break": verdict.first_break, "guard": guard, "head": last,
                      "intact": verdict.intact and not guard}
            with transaction(rt.sessions) as s:
                audit(request, s, "audit_verify", "audit_trail", None,
                      {"intact": result["intact"], "rows": verdict.rows,
                       "firstBadRow": verdict.first_break.seq if verdict.first_break else None})
            return result

        result = await anyio.to_thread.run_sync(check)
        return await anyio.to_thread.run_sync(lambda: page(request, principal, verdict=result))

    return api


def _qs(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _export(rt: Runtime, principal: Principal, q: trail.AuditQuery, fmt: str) -> Iterator[str]:
    """The export body, read in batches as it is sent (a sync iterator: Starlette runs it in
    a worker thread, so the event loop never waits on the database)."""
    with rt.sessions() as s:
        rows = trail.matching_rows(s, principal, q)
        if fmt == "csv":
            yield from trail.csv_lines(rows)
        else:
            for row in rows:
                yield json.dumps(trail.row_json(row), sort_keys=True, ensure_ascii=False) + "\n"


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
