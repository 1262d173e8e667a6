"""The supervisors' settings pages (``/supervise/…``): hash banks, routing rules and the
agency directory, each with where it came from; banks are enabled, disabled and imported,
and the directory is replaced, through the same functions as ``tipline bank …`` and
``tipline agency import``.

Access is the service's (:mod:`tipline.console.settings`): a caller without
``config.manage``, an unknown bank and an id that is not a number all answer the same 404.
Every change carries a reason and the session's CSRF token, and is one audit row written in
the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from tipline.console import settings as svc
from tipline.console.service import NotFound, Refused
from tipline.people.principal import Principal
from tipline.pipeline import banks as bank_store
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web.auth import current_principal, require_csrf
from tipline.web.signin import audit, not_found, path_id, staff_page

T = TypeVar("T")
Who = Annotated[Principal, Depends(current_principal)]
#: The longest text field these forms read.
MAX_FIELD = 4000

NOTICES = {
    "enabled": "The bank is enabled: files are matched against it again (re-run the matches stage for old reports: "
               "tipline pipeline rerun --stage matches).",
    "disabled": "The bank is disabled: it is no longer matched. Its entries are kept; re-run the matches stage to "
                "drop its existing matches (tipline pipeline rerun --stage matches).",
    "imported": "Imported.",
    "directory": "The directory was replaced. Re-run routing to apply it: tipline pipeline rerun --stage route.",
}




class _Form:
    """A submitted form's text fields and at most one file, with the limits applied."""

    def __init__(self, fields: dict[str, str], file: tuple[str, bytes] | None) -> None:
        self.fields = fields
        self.file = file

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


async def _read_form(request: Request) -> _Form:
    data = await request.form()
    fields: dict[str, str] = {}
    upload: tuple[str, bytes] | None = None
    for k, v in data.multi_items():
        if isinstance(v, str):
            if len(v) > MAX_FIELD:
                raise Refused(f"The field {k!r} is too long.")
            fields[k] = v
        elif isinstance(v, UploadFile) and v.filename:
            # Read one byte past the limit: enough to know it is too large, never the whole of it.
            body = await v.read(svc.MAX_UPLOAD_BYTES + 1)
            if len(body) > svc.MAX_UPLOAD_BYTES:
                raise Refused(f"The file is larger than {svc.MAX_UPLOAD_BYTES // (1024 * 1024)} MiB.")
            upload = (v.filename[:200], body)
    return _Form(fields, upload)


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    async def read(fn: Callable[[Session], T]) -> T:
        def go() -> T:
            with rt.sessions() as s:
                result = fn(s)
                s.expunge_all()
                return result
        try:
            return await anyio.to_thread.run_sync(go)
        except NotFound:
            raise not_found() from None

    async def write(fn: Callable[[Session], T]) -> T:
        def go() -> T:
            with transaction(rt.sessions) as s:
                return fn(s)
        return await anyio.to_thread.run_sync(go)

    def notice(request: Request) -> str | None:
        return NOTICES.get(request.query_params.get("done") or "")

    # --- hash banks ---------------------------------------------------------------------

    async def banks_page(request: Request, principal: Principal, *, status: int = 200, error: str | None = None,
                         values: dict[str, str] | None = None) -> Response:
        found = await read(lambda s: svc.hash_banks(s, principal))
        return staff_page(request, "supervise/banks.html", status=status, banks=found, error=error,
                          notice=notice(request), formats=sorted(bank_store.FORMATS), values=values or {},
                          default_threshold=bank_store.DEFAULT_PDQ_THRESHOLD,
                          max_threshold=bank_store.MAX_PDQ_THRESHOLD)

    async def bank_page(request: Request, principal: Principal, bank_id: int, *, status: int = 200,
                        error: str | None = None) -> Response:
        found = await read(lambda s: svc.hash_bank(s, principal, bank_id))
        return staff_page(request, "supervise/bank.html", status=status, bank=found, error=error,
                          notice=notice(request))

    @api.get("/supervise/banks")
    async def banks(request: Request, principal: Who) -> Response:
        return await banks_page(request, principal)

    @api.get("/supervise/banks/{bank_id}")
    async def bank(request: Request, bank_id: str, principal: Who) -> Response:
        return await bank_page(request, principal, path_id(bank_id))

    @api.post("/supervise/banks/{bank_id}/enabled", dependencies=[Depends(require_csrf)])
    async def bank_enabled(request: Request, bank_id: str, principal: Who) -> Response:
        bid = path_id(bank_id)
        try:
            form = await _read_form(request)
        except Refused as exc:
            return await bank_page(request, principal, bid, status=400, error=str(exc))
        want = form.get("enabled")
        enabled = {"yes": True, "no": False}.get(want)

        def go(s: Session) -> None:
            if enabled is None:
                raise Refused("Choose whether the bank is enabled.")
            detail = svc.set_bank_enabled(s, principal, bid, enabled, form.get("reason"))
            audit(request, s, "bank.enable" if enabled else "bank.disable", svc.BANK_OBJECT, bid, detail,
                  principal=principal)

        try:
            await write(go)
        except NotFound:
            raise not_found() from None
        except Refused as exc:
            return await bank_page(request, principal, bid, status=409, error=str(exc))
        return RedirectResponse(f"/supervise/banks/{bid}?done={'enabled' if enabled else 'disabled'}",
                                status_code=303)

    @api.post("/supervise/banks/import", dependencies=[Depends(require_csrf)])
    async def bank_import(request: Request, principal: Who) -> Response:
        # Access first: a caller who may not manage banks learns nothing about the form.
        await read(lambda s: svc.hash_banks(s, principal))
        try:
            form = await _read_form(request)
        except Refused as exc:
            return await banks_page(request, principal, status=400, error=str(exc))
        raw_threshold = form.get("pdq_threshold").strip()

        def go(s: Session) -> svc.Imported:
            if form.file is None:
                raise Refused("Choose a bank file to import.")
            if raw_threshold and not raw_threshold.isdigit():
                raise Refused("The PDQ threshold is a whole number of bits.")
            name, data = form.file
            done = svc.import_hash_bank(
                s, principal, form.get("bank"), data, source=name, fmt=form.get("format") or "csv",
                description=form.get("description"), reason=form.get("reason"),
                pdq_threshold=int(raw_threshold) if raw_threshold else None)
            audit(request, s, "bank.import", svc.BANK_OBJECT, done.bank_id, done.detail, principal=principal)
            return done

        try:
            done = await write(go)
        except NotFound:
            raise not_found() from None
        except Refused as exc:
            return await banks_page(request, principal, status=400, error=str(exc), values=form.fields)
        return RedirectResponse(f"/supervise/banks/{done.bank_id}?done=imported", status_code=303)

    # --- routing rules ------------------------------------------------------------------

    @api.get("/supervise/routing")
    async def routing(request: Request, principal: Who) -> Response:
        view = await read(lambda s: svc.routing(s, principal))
        return staff_page(request, "supervise/routing.html", view=view)

    # --- the agency directory -----------------------------------------------------------

    async def agencies_page(request: Request, principal: Principal, *, status: int = 200,
                            error: str | None = None) -> Response:
        def load(s: Session) -> tuple[list[svc.AgencyView], list[svc.Change]]:
            return svc.agencies(s, principal), svc.directory_history(s, principal)

        found, history = await read(load)
        return staff_page(request, "supervise/agencies.html", status=status, agencies=found, history=history,
                          error=error, notice=notice(request))

    @api.get("/supervise/agencies")
    async def agencies(request: Request, principal: Who) -> Response:
        return await agencies_page(request, principal)

    @api.post("/supervise/agencies/import", dependencies=[Depends(require_csrf)])
    async def agencies_import(request: Request, principal: Who) -> Response:
        await read(lambda s: svc.directory_history(s, principal))
        try:
            form = await _read_form(request)
        except Refused as exc:
            return await agencies_page(request, principal, status=400, error=str(exc))

        def go(s: Session) -> dict[str, Any]:
            if form.file is None:
                raise Refused("Choose an agency file (CSV) to import.")
            name, data = form.file
            _, detail = svc.import_directory(s, principal, data, source=name, reason=form.get("reason"))
            audit(request, s, "directory.import", svc.DIRECTORY_OBJECT, None, detail, principal=principal)
            return detail

        try:
            await write(go)
        except NotFound:
            raise not_found() from None
        except Refused as exc:
            return await agencies_page(request, principal, status=400, error=str(exc))
        return RedirectResponse("/supervise/agencies?done=directory", status_code=303)

    return api


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
