"""The administrator's accounts pages (``/admin/users…``): list, add, disable and enable,
unlock, set a new (generated) password, reset the one-time-code secret, issue and revoke API
tokens — the use cases of
``tipline user …`` (:mod:`tipline.people.admin`), which decides who may.

A caller without ``accounts.manage``, an unknown account and an id that is not a number all
answer the same 404. Every change carries a reason and the session's CSRF token and is one
audit row (the command line's action names) in the same transaction. A generated password,
a TOTP provisioning URI and a token are shown once, on the answer to the form that made
them, never stored in the clear and never put in an address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from tipline.people import admin as svc
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web.auth import current_principal, require_csrf
from tipline.web.signin import audit, not_found, path_id, staff_page

T = TypeVar("T")
Who = Annotated[Principal, Depends(current_principal)]
MAX_FIELD = 4000

NOTICES = {
    "disabled": "The account is disabled: its sessions ended and its tokens were revoked.",
    "enabled": "The account is enabled again. Its old tokens stay revoked: issue new ones.",
    "revoked": "The token was revoked: it no longer authenticates.",
    "unlocked": "The account is unlocked: the person may sign in again now.",
}


async def _fields(request: Request) -> dict[str, str]:
    data = await request.form()
    out: dict[str, str] = {}
    for k, v in data.multi_items():
        if isinstance(v, str):
            if len(v) > MAX_FIELD:
                raise svc.Refused(f"The field {k!r} is too long.")
            out[k] = v
    return out


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
        except svc.NotFound:
            raise not_found() from None

    async def write(fn: Callable[[Session], T]) -> T:
        def go() -> T:
            with transaction(rt.sessions) as s:
                return fn(s)
        return await anyio.to_thread.run_sync(go)

    async def users_page(request: Request, principal: Principal, *, status: int = 200, error: str | None = None,
                         values: dict[str, str] | None = None) -> Response:
        def load(s: Session) -> tuple[list[tuple[int, object]], svc.Choices]:
            return list(svc.list_users(s, principal)), svc.choices(s, principal)

        users, choices = await read(load)
        return staff_page(request, "admin/users.html", status=status, users=users, choices=choices, error=error,
                          values=values or {})

    async def user_page(request: Request, principal: Principal, user_id: int, *, status: int = 200,
                        error: str | None = None) -> Response:
        page = await read(lambda s: svc.account(s, principal, user_id))
        return staff_page(request, "admin/user.html", status=status, page=page, error=error,
                          notice=NOTICES.get(request.query_params.get("done") or ""))

    def secret_page(request: Request, **context: Any) -> Response:
        # The answer itself carries the secret: never cached, never in an address.
        shown: dict[str, Any] = {"password": None, "totp_uri": None, "totp_secret": None, "token": None,
                                    "token_id": None, **context}
        return staff_page(request, "admin/secret.html", **shown)

    @api.get("/admin/users")
    async def users(request: Request, principal: Who) -> Response:
        return await users_page(request, principal)

    @api.post("/admin/users", dependencies=[Depends(require_csrf)])
    async def add(request: Request, principal: Who) -> Response:
        await read(lambda s: svc.choices(s, principal))  # access first
        try:
            f = await _fields(request)
        except svc.Refused as exc:
            return await users_page(request, principal, status=400, error=str(exc))

        def go(s: Session) -> svc.Added:
            done = svc.add_user(s, principal, f.get("username", ""), f.get("role", ""), password=f.get("password"),
                                agency=f.get("agency"), platform=f.get("platform"), email=f.get("email"),
                                display_name=f.get("name"), reason=f.get("reason"))
            audit(request, s, "user_add", "user", done.user_id, done.detail, principal=principal)
            return done

        try:
            done = await write(go)
        except svc.NotFound:
            raise not_found() from None
        except svc.Refused as exc:
            kept = {k: v for k, v in f.items() if k != "password"}  # a password is never echoed
            return await users_page(request, principal, status=400, error=str(exc), values=kept)
        return secret_page(request, what="added", username=done.username, user_id=done.user_id,
                           password=done.password, totp_uri=done.totp_uri, totp_secret=done.totp_secret)

    @api.get("/admin/users/{user_id}")
    async def user(request: Request, user_id: str, principal: Who) -> Response:
        return await user_page(request, principal, path_id(user_id))

    async def change(request: Request, principal: Principal, uid: int,
                     do: Callable[[Session, dict[str, str]], Response | str]) -> Response:
        """Run one change of account ``uid``; its result is a page (a secret shown once) or
        the key of the notice the account page shows after the redirect."""
        await read(lambda s: svc.account(s, principal, uid))  # access (and existence) first
        try:
            f = await _fields(request)
        except svc.Refused as exc:
            return await user_page(request, principal, uid, status=400, error=str(exc))
        try:
            result = await write(lambda s: do(s, f))
        except svc.NotFound:
            raise not_found() from None
        except svc.Refused as exc:
            return await user_page(request, principal, uid, status=409, error=str(exc))
        if isinstance(result, str):
            return RedirectResponse(f"/admin/users/{uid}?done={result}", status_code=303)
        return result

    @api.post("/admin/users/{user_id}/disable", dependencies=[Depends(require_csrf)])
    async def disable(request: Request, user_id: str, principal: Who) -> Response:
        uid = path_id(user_id)

        def do(s: Session, f: dict[str, str]) -> str:
            detail = svc.set_disabled(s, principal, uid, True, f.get("reason"))
            audit(request, s, "user_disable", "user", uid, detail, principal=principal)
            return "disabled"

        return await change(request, principal, uid, do)

    @api.post("/admin/users/{user_id}/enable", dependencies=[Depends(require_csrf)])
    async def enable(request: Request, user_id: str, principal: Who) -> Response:
        uid = path_id(user_id)

        def do(s: Session, f: dict[str, str]) -> str:
            detail = svc.set_disabled(s, principal, uid, False, f.get("reason"))
            audit(request, s, "user_enable", "user", uid, detail, principal=principal)
            return "enabled"

        return await change(request, principal, uid, do)

    @api.post("/admin/users/{user_id}/unlock", dependencies=[Depends(require_csrf)])
    async def unlock(request: Request, user_id: str, principal: Who) -> Response:
        uid = path_id(user_id)

        def do(s: Session, f: dict[str, str]) -> str:
            detail = svc.unlock(s, principal, uid, f.get("reason"))
            audit(request, s, "user_unlock", "user", uid, detail, principal=principal)
            return "unlocked"

        return await change(request, principal, uid, do)

    @api.post("/admin/users/{user_id}/password", dependencies=[Depends(require_csrf)])
    async def password(request: Request, user_id: str, principal: Who) -> Response:
        uid = path_id(user_id)

        def do(s: Session, f: dict[str, str]) -> Response:
            new = svc.new_password(s, principal, uid, f.get("reason"))
            audit(request, s, "user_password", "user", uid, new.detail, principal=principal)
            return secret_page(request, what="password", username=new.username, user_id=uid,
                               password=new.password)

        return await change(request, principal, uid, do)

    @api.post("/admin/users/{user_id}/reset-totp", dependencies=[Depends(require_csrf)])
    async def reset_totp(request: Request, user_id: str, principal: Who) -> Response:
        uid = path_id(user_id)

        def do(s: Session, f: dict[str, str]) -> Response:
            new = svc.reset_totp(s, principal, uid, f.get("reason"))
            audit(request, s, "user_reset_totp", "user", uid, new.detail, principal=principal)
            return secret_page(request, what="totp", username=new.username, user_id=uid, totp_uri=new.uri,
                               totp_secret=new.secret)

        return await change(request, principal, uid, do)

    @api.post("/admin/users/{user_id}/tokens", dependencies=[Depends(require_csrf)])
    async def issue_token(request: Request, user_id: str, principal: Who) -> Response:
        uid = path_id(user_id)

        def do(s: Session, f: dict[str, str]) -> Response:
            new = svc.issue_token(s, principal, uid, f.get("label"), f.get("reason"))
            audit(request, s, "token_issue", "user", uid, new.detail, principal=principal)
            return secret_page(request, what="token", username=new.username, user_id=uid, token=new.token,
                               token_id=new.token_id)

        return await change(request, principal, uid, do)

    @api.post("/admin/users/{user_id}/tokens/{token_id}/revoke", dependencies=[Depends(require_csrf)])
    async def revoke_token(request: Request, user_id: str, token_id: str, principal: Who) -> Response:
        uid = path_id(user_id)

        def do(s: Session, f: dict[str, str]) -> str:
            detail = svc.revoke_token(s, principal, uid, token_id, f.get("reason"))
            audit(request, s, "token_revoke", "user", uid, detail, principal=principal)
            return "revoked"

        return await change(request, principal, uid, do)

    return api


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
