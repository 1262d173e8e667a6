"""The analyst console (``/console``): the queue, the report page, files (blurred by default),
labels, decisions, claims, and the supervisors' workload page.

Access is the service's (:mod:`tipline.console.service`): a caller without the capability,
an unknown id, an id that is not a number and a file the platform did not view all answer
the same 404. Every page that shows report content is ``no-store``; every read of report
content (the report page, an unblurred file) and every write is one audit row, written in
the same transaction as the action. Every form carries the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from tipline.console import service as svc
from tipline.kinds.roles import Capability, may
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables_people import AuditEvent
from tipline.web import thumbs
from tipline.web.auth import current_principal, require_csrf
from tipline.web.render import COMMON_HEADERS
from tipline.web.signin import audit, not_found, path_id, staff_page

T = TypeVar("T")

#: How long an unblur lets its analyst fetch the clear rendering of that one file.
UNBLUR_MINUTES = 10
#: The longest form field the console reads (reasons are capped lower by the service).
MAX_FIELD = 4000

#: Messages shown after a successful action (the address carries only the key).
NOTICES = {
    "claimed": "You hold this report now.",
    "released": "You released this report.",
    "reassigned": "The report was reassigned.",
    "priority": "Priority changed; the pipeline's stays beside it.",
    "disposition": "Disposition changed; the pipeline's stays beside it.",
    "escalate": "Escalated: every agency the report was made available to sees it first.",
    "close": "Closed as informational.",
    "route": "Made available to the agency you chose.",
    "labelled": "Label saved.",
}

Who = Annotated[Principal, Depends(current_principal)]




def _file_id(raw: str) -> str:
    if len(raw) != 32 or any(c not in "0123456789abcdef" for c in raw):
        raise not_found()
    return raw


def _image(body: bytes) -> Response:
    return Response(body, media_type="image/jpeg", headers={**COMMON_HEADERS, "Cache-Control": "no-store",
                                                            "Content-Security-Policy": "default-src 'none'"})


def _bool(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get(value or "")


def _parse_filter(request: Request) -> tuple[svc.QueueFilter, list[str]]:
    """The queue's filters from the address; a value that is not one of the choices is
    ignored, and the page says so."""
    p = request.query_params
    ignored: list[str] = []

    def text(name: str, limit: int = 100) -> str | None:
        v = p.get(name)
        if v is None or v == "":
            return None
        if len(v) > limit:
            ignored.append(name)
            return None
        return v

    def number(name: str, allowed: tuple[int, ...] | None = None) -> int | None:
        v = text(name)
        if v is None:
            return None
        if not v.isdigit() or len(v) > 9 or (allowed is not None and int(v) not in allowed):
            ignored.append(name)
            return None
        return int(v)

    def choice(name: str, allowed: tuple[str, ...]) -> str | None:
        v = text(name)
        if v is not None and v not in allowed:
            ignored.append(name)
            return None
        return v

    raw_country = p.get("country") or None
    country: str | None = None
    if raw_country == "unknown":
        country = ""  # the reports whose jurisdiction is unknown
    elif raw_country is not None:
        if len(raw_country) == 2 and raw_country.isalpha():
            country = raw_country.upper()
        else:
            ignored.append("country")
    state = text("state")
    if state is not None and (len(state) != 2 or not state.isalpha()):
        ignored.append("state")
        state = None
    f = svc.QueueFilter(
        priority=number("priority", svc.PRIORITIES), disposition=choice("disposition", svc.DISPOSITIONS),
        incident_type=text("incident_type", 200), platform=number("platform"),
        country=country,
        state=state.upper() if state else None,
        escalated=_bool(choice("escalated", ("yes", "no"))), bank_match=_bool(choice("bank_match", ("yes", "no"))),
        claim=choice("claim", ("unclaimed", "mine")),
        status=choice("status", ("open", "closed", "all")) or "open")
    return f, ignored


def _key(raw: str) -> tuple[int, int] | None:
    """A queue position ``priority,report id`` from a next / previous link, or None if malformed."""
    p, _, rid = raw.partition(",")
    if not (p.isdigit() and rid.isdigit() and len(p) < 3 and len(rid) < 19):
        return None
    return int(p), int(rid)


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    pictures = thumbs.Pictures(rt.blobs)

    async def run(fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    def read(fn: Callable[[Session], T]) -> Callable[[], T]:
        def go() -> T:
            with rt.sessions() as s:
                return fn(s)
        return go

    def write(fn: Callable[[Session], T]) -> Callable[[], T]:
        def go() -> T:
            with transaction(rt.sessions) as s:
                result = fn(s)
            # Once committed: the queue's cached counts may be stale now.
            svc.counts_changed()
            return result
        return go

    def back(report_id: int, notice: str | None = None, anchor: str = "", **extra: Any) -> RedirectResponse:
        query = urlencode({**({"done": notice} if notice else {}), **extra})
        return RedirectResponse(f"/console/reports/{report_id}{'?' + query if query else ''}{anchor}",
                                status_code=303)

    async def form(request: Request) -> dict[str, str]:
        data = await request.form()
        out: dict[str, str] = {}
        for k, v in data.multi_items():
            if isinstance(v, str):
                if len(v) > MAX_FIELD:
                    raise svc.Refused(f"The field {k!r} is too long.")
                out[k] = v
        return out

    async def report_page(request: Request, principal: Principal, report_id: int, *, status: int = 200,
                          error: str | None = None, clear: str | None = None) -> Response:
        def load(s: Session) -> dict[str, Any]:
            view = svc.report_view(s, principal, report_id)
            agencies = svc.agencies(s, principal) if may(principal.role, Capability.REPORT_TRIAGE) else []
            shown = [f.id for f in view["files"] if f.shown]
            audit(request, s, "report.view", "report", report_id,
                  {"files_shown_blurred": shown,
                   "files_gated": [f.id for f in view["files"] if not f.shown]}, principal=principal)
            s.expunge_all()
            return {**view, "agencies": agencies}

        try:
            view = await run(write(load))
        except svc.NotFound:
            raise not_found() from None
        done = request.query_params.get("done")
        notice = NOTICES.get(done or "")
        if done == "labelled":
            n, inc = request.query_params.get("copies", "0"), request.query_params.get("incidents", "")
            if n.isdigit() and int(n) > 0:
                where = f"in incident {inc}" if inc and all(p.isdigit() for p in inc.split(",")) else "in this report"
                notice = f"Label saved; also applied to {int(n)} cop{'y' if int(n) == 1 else 'ies'} {where}."
        return staff_page(request, "console/report.html", status=status, view=view, notice=notice, error=error,
                          clear=clear, classifications=svc.CLASSIFICATIONS, age_ranges=svc.AGE_RANGES,
                          may_supervise=may(principal.role, Capability.QUEUE_SUPERVISE),
                          may_triage=may(principal.role, Capability.REPORT_TRIAGE),
                          me=principal.user_id)

    @api.get("/console")
    async def queue_page(request: Request, principal: Who) -> Response:
        f, ignored = _parse_filter(request)
        raw_page = request.query_params.get("page", "1")
        page = int(raw_page) if raw_page.isdigit() and len(raw_page) < 7 else 1
        # The next / previous links carry the (priority, report id) key of the row they
        # continue from: the page is then read from that key on, not by counting rows.
        keys: dict[str, tuple[int, int] | None] = {}
        for name in ("after", "before"):
            raw = request.query_params.get(name)
            keys[name] = _key(raw) if raw is not None else None
            if raw is not None and keys[name] is None:
                ignored.append(name)
        try:
            result = await run(read(lambda s: svc.queue(s, principal, f, page=page, after=keys["after"],
                                                        before=None if keys["after"] else keys["before"])))
        except svc.NotFound:
            raise not_found() from None
        query = f.as_query()

        def link(**change: Any) -> str:
            q = {**query, **{k: str(v) for k, v in change.items() if v is not None}}
            for k, v in change.items():
                if v is None:
                    q.pop(k, None)
            return "/console" + ("?" + urlencode(q) if q else "")

        return staff_page(request, "console/queue.html", result=result, filt=f, query=query, ignored=ignored,
                          link=link, facet_titles=FACET_TITLES, now=datetime.now(UTC))

    @api.get("/console/reports/{report_id}")
    async def report(request: Request, report_id: str, principal: Who) -> Response:
        clear = request.query_params.get("clear")
        return await report_page(request, principal, path_id(report_id),
                                 clear=clear if clear and len(clear) == 32 else None)

    async def act(request: Request, principal: Principal, report_id: int,
                  do: Callable[[Session, dict[str, str]], tuple[str, dict[str, Any]]], notice: str,
                  anchor: str = "") -> Response:
        try:
            data = await form(request)
        except svc.Refused as exc:
            return await report_page(request, principal, report_id, status=400, error=str(exc))

        def go(s: Session) -> str:
            action, detail = do(s, data)
            audit(request, s, action, "report", report_id, detail, principal=principal)
            return notice

        try:
            note = await run(write(go))
        except svc.NotFound:
            raise not_found() from None
        except svc.Refused as exc:
            return await report_page(request, principal, report_id, status=409, error=str(exc))
        return back(report_id, note, anchor)

    @api.post("/console/reports/{report_id}/claim", dependencies=[Depends(require_csrf)])
    async def claim(request: Request, report_id: str, principal: Who) -> Response:
        rid = path_id(report_id)

        def do(s: Session, data: dict[str, str]) -> tuple[str, dict[str, Any]]:
            c = svc.claim(s, principal, rid, minutes=rt.settings.claim_minutes)
            return "report.claim", {"until": c.expires_at.isoformat() if c.expires_at else None}

        return await act(request, principal, rid, do, "claimed")

    @api.post("/console/reports/{report_id}/release", dependencies=[Depends(require_csrf)])
    async def release(request: Request, report_id: str, principal: Who) -> Response:
        rid = path_id(report_id)

        def do(s: Session, data: dict[str, str]) -> tuple[str, dict[str, Any]]:
            svc.release(s, principal, rid)
            return "report.release", {}

        return await act(request, principal, rid, do, "released")

    @api.post("/console/reports/{report_id}/reassign", dependencies=[Depends(require_csrf)])
    async def reassign(request: Request, report_id: str, principal: Who) -> Response:
        rid = path_id(report_id)

        def do(s: Session, data: dict[str, str]) -> tuple[str, dict[str, Any]]:
            c = svc.reassign(s, principal, rid, data.get("username", ""), minutes=rt.settings.claim_minutes)
            return "report.reassign", {"to": c.holder}

        if request.query_params.get("from") == "workload":
            try:
                data = await form(request)

                def go(s: Session) -> None:
                    do_result = do(s, data)
                    audit(request, s, do_result[0], "report", rid, do_result[1], principal=principal)

                await run(write(go))
            except svc.NotFound:
                raise not_found() from None
            except svc.Refused as exc:
                return await workload_page(request, principal, status=409, error=str(exc))
            return RedirectResponse("/console/workload?done=reassigned", status_code=303)
        return await act(request, principal, rid, do, "reassigned")

    @api.post("/console/reports/{report_id}/decide", dependencies=[Depends(require_csrf)])
    async def decide(request: Request, report_id: str, principal: Who) -> Response:
        rid = path_id(report_id)
        holder: dict[str, str] = {}

        def do(s: Session, data: dict[str, str]) -> tuple[str, dict[str, Any]]:
            action = data.get("action", "")
            holder["action"] = action
            d = svc.decide(s, principal, rid, action, reason=data.get("reason"),
                           priority=int(data["priority"]) if data.get("priority", "").isdigit() else None,
                           disposition=data.get("disposition") or None, agency=data.get("agency") or None)
            return f"report.{d.action}", d.detail

        try:
            data_action = (await form(request)).get("action", "")
        except svc.Refused:
            data_action = ""
        return await act(request, principal, rid, do, data_action if data_action in NOTICES else "priority",
                         "#decide")

    @api.post("/console/incidents/{incident_id}/decide", dependencies=[Depends(require_csrf)])
    async def decide_incident(request: Request, incident_id: str, principal: Who) -> Response:
        iid = path_id(incident_id)
        try:
            data = await form(request)
        except svc.Refused:
            data = {}
        back_to = data.get("from", "")
        rid = int(back_to) if back_to.isdigit() and len(back_to) < 18 else None
        action = data.get("action", "")

        def go(s: Session) -> int:
            done = svc.decide_incident(
                s, principal, iid, action, reason=data.get("reason"),
                priority=int(data["priority"]) if data.get("priority", "").isdigit() else None,
                disposition=data.get("disposition") or None, agency=data.get("agency") or None)
            for d in done:
                audit(request, s, f"report.{d.action}", "report", d.report_id, {**d.detail, "incident": iid},
                      principal=principal)
            return len(done)

        try:
            await run(write(go))
        except svc.NotFound:
            raise not_found() from None
        except svc.Refused as exc:
            if rid is None:
                # Sent without the report it came from (not by our form): say why on the
                # incident's first report rather than a 404 that reads as "no such incident".
                members = await run(read(lambda s: svc.incident_members(s, principal, iid)))
                if not members:
                    raise not_found() from None
                rid = members[0]
            return await report_page(request, principal, rid, status=409, error=str(exc))
        if rid is None:
            return RedirectResponse("/console", status_code=303)
        return back(rid, action if action in NOTICES else None, "#decide")

    @api.post("/console/files/{file_id}/label", dependencies=[Depends(require_csrf)])
    async def label(request: Request, file_id: str, principal: Who) -> Response:
        fid = _file_id(file_id)
        try:
            data = await form(request)
        except svc.Refused:
            data = {}
        given = svc.LabelInput(
            classification=data.get("classification") or None, age_range=data.get("age_range") or None,
            apparent_minor=data.get("apparent_minor") == "1", generative_ai=data.get("generative_ai") == "1",
            self_generated=data.get("self_generated") == "1", known_series=data.get("known_series") or None)

        def go(s: Session) -> svc.Labelled:
            done = svc.label_file(s, principal, fid, given)
            audit(request, s, "file.label", "file", fid,
                  {"report": done.report_id, "classification": given.classification, "age_range": given.age_range,
                   "apparent_minor": given.apparent_minor, "generative_ai": given.generative_ai,
                   "self_generated": given.self_generated, "known_series": given.known_series,
                   "copies": done.copies}, principal=principal)
            return done

        try:
            done = await run(write(go))
        except svc.NotFound:
            raise not_found() from None
        except svc.Refused as exc:
            rid = await run(read(lambda s: _report_of_file(s, fid)))
            if rid is None:
                raise not_found() from None
            return await report_page(request, principal, rid, status=409, error=str(exc))
        return back(done.report_id, "labelled", f"#file-{fid}", copies=str(len(done.copies)),
                    incidents=",".join(str(i) for i in done.incidents))

    @api.post("/console/files/{file_id}/unblur", dependencies=[Depends(require_csrf)])
    async def unblur(request: Request, file_id: str, principal: Who) -> Response:
        fid = _file_id(file_id)

        def go(s: Session) -> int:
            held = svc.file_content(s, principal, fid)
            audit(request, s, "file.unblur", "file", fid, {"report": held.report_id}, principal=principal)
            return held.report_id

        try:
            rid = await run(write(go))
        except svc.NotFound:
            raise not_found() from None
        return back(rid, None, f"#file-{fid}", clear=fid)

    @api.get("/console/files/{file_id}/thumb.jpg")
    async def thumbnail(file_id: str, principal: Who) -> Response:
        fid = _file_id(file_id)

        def go() -> bytes:
            with rt.sessions() as s:
                held = svc.file_content(s, principal, fid)
            return pictures.blurred(held.sha256, rt.blobs.open_held(held.stored_name, held.inline))

        try:
            return _image(await run(go))
        except (svc.NotFound, thumbs.NoPicture):
            raise not_found() from None

    @api.get("/console/files/{file_id}/clear.jpg")
    async def clear_image(request: Request, file_id: str, principal: Who) -> Response:
        """The unblurred rendering: only after this analyst unblurred this file (audited),
        for a few minutes; each fetch is audited as a read of the file."""
        fid = _file_id(file_id)

        def go() -> bytes:
            since = datetime.now(UTC) - timedelta(minutes=UNBLUR_MINUTES)
            with transaction(rt.sessions) as s:
                held = svc.file_content(s, principal, fid)
                granted = s.execute(select(AuditEvent.seq).where(
                    AuditEvent.object_kind == "file", AuditEvent.object_id == fid,
                    AuditEvent.action == "file.unblur", AuditEvent.actor_user_id == principal.user_id,
                    AuditEvent.at >= since).limit(1)).first()
                if granted is None:
                    raise svc.NotFound()
                audit(request, s, "file.view", "file", fid, {"report": held.report_id, "rendering": "clear"},
                      principal=principal)
            return pictures.clear(held.sha256, rt.blobs.open_held(held.stored_name, held.inline))

        try:
            return _image(await run(go))
        except (svc.NotFound, thumbs.NoPicture):
            raise not_found() from None

    async def workload_page(request: Request, principal: Principal, *, status: int = 200,
                            error: str | None = None) -> Response:
        try:
            data = await run(read(lambda s: svc.workload(s, principal)))
        except svc.NotFound:
            raise not_found() from None
        notice = NOTICES.get(request.query_params.get("done") or "")
        return staff_page(request, "console/workload.html", status=status, work=data, error=error, notice=notice)

    @api.get("/console/workload")
    async def workload(request: Request, principal: Who) -> Response:
        return await workload_page(request, principal)

    return api


def _report_of_file(s: Session, file_id: str) -> int | None:
    from tipline.store.tables import File

    f = s.get(File, file_id)
    return f.report_id if f else None


FACET_TITLES = {
    "priority": "Priority", "disposition": "Disposition", "escalated": "Escalated", "bank_match": "Hash-bank match",
    "claim": "Claim", "incident_type": "Incident type", "platform": "Platform", "country": "Country",
    "state": "US state",
}


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
