"""The law-enforcement inbox (``/le``): an officer's referrals, one referral in full, its
files (blurred thumbnails, the gate of files the platform did not view), the actions
(acknowledge, assign, transfer, legal process, outcomes) as plain forms, and the exports.

Access is the service's (``tipline.referrals.service``): a foreign or missing referral is
the same 404 page. Every page that shows report content is ``no-store`` (``staff_page``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from tipline.kinds.roles import Capability, may
from tipline.people.principal import Principal
from tipline.referrals import export as exports
from tipline.referrals import service as svc
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web import thumbs
from tipline.web.auth import current_principal, require_csrf
from tipline.web.render import render
from tipline.web.signin import client_address, request_id, staff_page

T = TypeVar("T")
Me = Annotated[Principal, Depends(current_principal)]
#: The most referrals one inbox page lists (the CSV export has them all).
PAGE_SIZE = 50
#: The most referrals a bulk CSV export holds.
EXPORT_LIMIT = 100_000
#: The longest value a form field may carry before the form is refused.
MAX_FIELD = 4000
#: The inbox's pictures: a small blurred thumbnail in the file table, a larger clear preview.
INBOX_THUMB_SIDE = 160
INBOX_PREVIEW_SIDE = 640
DONE = {"acknowledged": "Acknowledged.", "assigned": "Assigned.", "transferred": "Transferred.",
        "legal-process": "Legal process recorded: files the platform did not view are now open to your agency.",
        "already": "This referral was acknowledged already.", "outcome": "Outcome recorded."}


def _where(request: Request) -> svc.Where:
    return svc.Where(client_address(request), request_id(request))


def _not_found(request: Request) -> Response:
    return render(request, "not_found.html", status=404, cache="no-store")


def _tri(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((value or "").strip().lower())


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value.strip()), time(0), UTC)
    except ValueError:
        return None


def _filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    return {"escalated": _tri(q.get("escalated")), "acknowledged": _tri(q.get("acknowledged")),
            "overdue": _tri(q.get("overdue")), "since": _since(q.get("since"))}


def _filter_query(request: Request) -> str:
    keep = {k: v for k, v in request.query_params.items() if k in ("escalated", "acknowledged", "overdue", "since")
            and v}
    return urllib.parse.urlencode(keep)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.items():
        if isinstance(value, str):
            if len(value) > MAX_FIELD:
                raise svc.Invalid(f"the field {key!r} is too long (at most {MAX_FIELD} characters)", key)
            out[key] = value
    return out


def outcome_form_context() -> dict[str, Any] | None:
    """The outcome form's choices from the code registry, when the outcomes service is installed."""
    if svc.outcomes_service() is None:
        return None
    from tipline.kinds.outcomes import registry

    reg = registry()
    return {"codes": [(c.code, c.title) for c in reg.codes.values() if c.code != "ACKNOWLEDGED"],
            "titles": {c.code: c.title for c in reg.codes.values()},
            "values": reg.values, "version": reg.version}


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    pictures = thumbs.Pictures(rt.blobs)

    async def read(fn: Callable[[Any], T]) -> T:
        def run() -> T:
            with transaction(rt.sessions) as s:
                return fn(s)
        return await anyio.to_thread.run_sync(run)

    @api.get("/le")
    async def inbox(request: Request, principal: Me) -> Response:
        f = _filters(request)
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        page = min(page, 10_000)
        now = datetime.now(UTC)
        try:
            box = await read(lambda s: svc.list_referrals(s, rt.settings, principal, limit=PAGE_SIZE,
                                                          offset=(page - 1) * PAGE_SIZE, now=now, **f))
        except svc.NotFound:
            return _not_found(request)
        pages = max(1, -(-box.total // PAGE_SIZE))
        return staff_page(request, "le/inbox.html", scope_name=box.agency_code, box=box, now=now, page=page,
                          pages=pages, filters=f, query=_filter_query(request),
                          since=request.query_params.get("since", ""))

    @api.get("/le/outcomes/import")
    async def import_form(request: Request, principal: Me) -> Response:
        if not may(principal.role, Capability.REFERRAL_ACT) or principal.agency_id is None:
            return _not_found(request)
        return staff_page(request, "le/import.html", result=None, errors=[], more=0, file_name=None)

    @api.post("/le/outcomes/import", dependencies=[Depends(require_csrf)])
    async def import_file(request: Request, principal: Me) -> Response:
        """A CSV file of outcomes for the officer's own agency: all or nothing (docs/outcomes.md)."""
        from starlette.datastructures import UploadFile

        from tipline.outcomes.csv_import import ImportFailed, import_outcomes

        if not may(principal.role, Capability.REFERRAL_ACT) or principal.agency_id is None:
            return _not_found(request)
        limit = rt.settings.max_document_bytes
        form = await request.form(max_part_size=limit + 1)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return staff_page(request, "le/import.html", status=400, result=None, more=0, file_name=None,
                              errors=["Choose a CSV file to import."])
        data = await upload.read(limit + 1)
        if len(data) > limit:
            return staff_page(request, "le/import.html", status=413, result=None, more=0, file_name=None,
                              errors=[f"The file is over {limit:,} bytes; split it and import each part."])
        name = upload.filename

        def run() -> Any:
            with transaction(rt.sessions) as s:
                return import_outcomes(s, principal, data, file_name=name[:255], via="csv", max_bytes=limit,
                                       address=client_address(request), request_id=request_id(request))

        try:
            result = await anyio.to_thread.run_sync(run)
        except ImportFailed as exc:
            return staff_page(request, "le/import.html", status=422, result=None,
                              errors=[str(e) for e in exc.errors], more=exc.more, file_name=name)
        return staff_page(request, "le/import.html", result=result, errors=[], more=0, file_name=name)

    @api.get("/le/export.csv")
    async def inbox_export(request: Request, principal: Me) -> Response:
        f = _filters(request)
        now = datetime.now(UTC)
        try:
            box = await read(lambda s: svc.list_referrals(s, rt.settings, principal, limit=EXPORT_LIMIT, now=now,
                                                          where=_where(request), audit_action="referral.export_inbox",
                                                          **f))
        except svc.NotFound:
            return _not_found(request)
        return Response(exports.inbox_csv(box, now), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="inbox-{box.agency_code}-{now:%Y%m%d}.csv"',
            "Cache-Control": "no-store"})

    async def detail_page(request: Request, principal: Principal, rid: int, *, status: int = 200,
                          error: str | None = None, error_form: str | None = None,
                          values: dict[str, str] | None = None) -> Response:
        outcomes = svc.outcomes_service()

        def load(s: Any) -> tuple[svc.ReferralDetail, list[Any]]:
            d = svc.get_referral(s, rt.settings, principal, rid, where=_where(request))
            timeline = outcomes.list_outcomes(s, principal, rid) if outcomes is not None else []
            return d, timeline

        try:
            d, timeline = await read(load)
        except svc.NotFound:
            return _not_found(request)
        unblur = request.query_params.get("unblur")
        agencies: list[tuple[str, str]] = await read(_agency_choices)
        return staff_page(request, "le/referral.html", status=status, scope_name=d.summary.agency_code, d=d,
                          now=datetime.now(UTC), unblur=unblur, done=DONE.get(request.query_params.get("done", "")),
                          error=error, error_form=error_form, values=values or {}, kinds=svc.LEGAL_PROCESS_KINDS,
                          agencies=[a for a in agencies if a[0] != d.summary.agency_code],
                          outcome_form=outcome_form_context(), timeline=timeline,
                          today=datetime.now(UTC).date().isoformat())

    @api.get("/le/referrals/{referral_id}")
    async def referral_page(request: Request, principal: Me, referral_id: str) -> Response:
        rid = svc.parse_id(referral_id)
        if rid is None:
            return _not_found(request)
        return await detail_page(request, principal, rid)

    def file_route(kind: str) -> Callable[..., Any]:
        async def handler(request: Request, principal: Me, referral_id: str, file_id: str) -> Response:
            rid = svc.parse_id(referral_id)
            if rid is None:
                return _not_found(request)
            action = {"download": "referral.file_download", "thumb": "referral.thumbnail",
                      "preview": "referral.file_unblur"}[kind]
            try:
                content = await read(lambda s: svc.file_content(s, rt.blobs, principal, rid, file_id,
                                                                where=_where(request), action=action))
            except svc.Gated as exc:
                return staff_page(request, "le/gated.html", status=404, message=exc.message, referral_id=rid)
            except svc.NotFound:
                return _not_found(request)
            if kind == "download":
                name = (content.file_name or content.file_id).replace('"', "")
                return Response(content.data, media_type="application/octet-stream", headers={
                    "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}",
                    "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
            def picture() -> bytes:
                if kind == "thumb":
                    return pictures.blurred(content.sha256, content.data, side=INBOX_THUMB_SIDE)
                return pictures.clear(content.sha256, content.data, side=INBOX_PREVIEW_SIDE)

            try:
                img = await anyio.to_thread.run_sync(picture)
            except thumbs.NoPicture:
                return _not_found(request)
            return Response(img, media_type=thumbs.MEDIA_TYPE, headers={"Cache-Control": "no-store"})
        return handler

    api.add_api_route("/le/referrals/{referral_id}/files/{file_id}", file_route("download"), methods=["GET"])
    api.add_api_route("/le/referrals/{referral_id}/files/{file_id}/thumb", file_route("thumb"), methods=["GET"])
    api.add_api_route("/le/referrals/{referral_id}/files/{file_id}/preview", file_route("preview"), methods=["GET"])

    @api.get("/le/referrals/{referral_id}/export")
    async def referral_export(request: Request, principal: Me, referral_id: str, format: str = "pdf") -> Response:
        rid = svc.parse_id(referral_id)
        if rid is None or format not in exports.MEDIA_TYPES:
            return _not_found(request)
        body, media = await export_body(rt, principal, rid, format, _where(request))
        if body is None:
            return _not_found(request)
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="referral-{rid}.{format}"', "Cache-Control": "no-store"})

    def action(path: str, run: Callable[[Any, Principal, int, dict[str, str], svc.Where], str], form_name: str) -> None:
        async def handler(request: Request, principal: Me, referral_id: str) -> Response:
            rid = svc.parse_id(referral_id)
            if rid is None:
                return _not_found(request)
            values: dict[str, str] = {}
            try:
                values = await _form(request)
                done = await read(lambda s: run(s, principal, rid, values, _where(request)))
            except svc.Invalid as exc:
                return await detail_page(request, principal, rid, status=400, error=exc.message,
                                         error_form=form_name, values=values)
            except svc.NotFound:
                return _not_found(request)
            except OutcomeRefused as exc:
                return await detail_page(request, principal, rid, status=400, error=str(exc),
                                         error_form=form_name, values=values)
            return RedirectResponse(f"{request.scope.get('root_path', '')}/le/referrals/{rid}?done={done}#{form_name}",
                                    status_code=303)
        api.add_api_route(path, handler, methods=["POST"], dependencies=[Depends(require_csrf)])

    def do_ack(s: Any, p: Principal, rid: int, v: dict[str, str], w: svc.Where) -> str:
        return "acknowledged" if svc.acknowledge(s, p, rid, via="page", where=w).changed else "already"

    def do_assign(s: Any, p: Principal, rid: int, v: dict[str, str], w: svc.Where) -> str:
        svc.assign(s, p, rid, v.get("assignee", ""), where=w)
        return "assigned"

    def do_transfer(s: Any, p: Principal, rid: int, v: dict[str, str], w: svc.Where) -> str:
        svc.transfer(s, p, rid, v.get("agency", ""), v.get("reason", ""), where=w)
        return "transferred"

    def do_legal(s: Any, p: Principal, rid: int, v: dict[str, str], w: svc.Where) -> str:
        svc.record_legal_process(s, p, rid, v.get("kind", ""), v.get("reference", ""), v.get("issuedOn", ""),
                                 where=w)
        return "legal-process"

    def do_outcome(s: Any, p: Principal, rid: int, v: dict[str, str], w: svc.Where) -> str:
        outcomes = svc.outcomes_service()
        if outcomes is None:
            raise svc.NotFound("outcomes are not installed")
        payload: dict[str, Any] = {"code": v.get("code", ""), "occurredOn": v.get("occurredOn", "")}
        for key in ("persons", "children"):
            if v.get(key, "").strip():
                try:
                    payload[key] = int(v[key])
                except ValueError:
                    raise svc.Invalid(f"{key} is a whole number", key) from None
        for key in ("arrestType", "result", "nibrsCode", "reason", "note"):
            if v.get(key, "").strip():
                payload[key] = v[key].strip()
        try:
            outcomes.record_outcome(s, p, rid, payload, via="page", address=w.address, request_id=w.request_id)
        except outcomes.NotFound:
            raise svc.NotFound("no such referral") from None
        except outcomes.OutcomeError as exc:
            raise OutcomeRefused(exc.message) from None
        return "outcome"

    action("/le/referrals/{referral_id}/acknowledge", do_ack, "acknowledge")
    action("/le/referrals/{referral_id}/assign", do_assign, "assign")
    action("/le/referrals/{referral_id}/transfer", do_transfer, "transfer")
    action("/le/referrals/{referral_id}/legal-process", do_legal, "legal-process")
    if svc.outcomes_service() is not None:
        action("/le/referrals/{referral_id}/outcomes", do_outcome, "outcomes")

    def _agency_choices(s: Any) -> list[tuple[str, str]]:
        from sqlalchemy import select

        from tipline.store.tables import Agency

        return [(a.code, a.name) for a in s.scalars(select(Agency).where(Agency.active.is_(True))
                                                    .order_by(Agency.kind, Agency.code))]

    return api


class OutcomeRefused(Exception):
    """The outcomes service refused the event (its message is shown on the form)."""


async def export_body(rt: Runtime, principal: Principal, rid: int, fmt: str,
                      where: svc.Where) -> tuple[bytes | None, str]:
    """The referral exported as ``fmt`` (json | csv | pdf), audited; None when not found."""
    def run() -> bytes | None:
        with transaction(rt.sessions) as s:
            try:
                return exports.export_referral(s, rt.settings, principal, rid, fmt, where=where)
            except svc.NotFound:
                return None

    return await anyio.to_thread.run_sync(run), exports.MEDIA_TYPES[fmt]


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
