"""Sign-in for people: the middleware that turns a session cookie or a user's bearer token
into a :class:`~tipline.people.Principal`, the ``/login`` and sign-out pages, and the
answers to a missing sign-in (pages redirect to ``/login``; the API answers 401) and to a
missing CSRF token.

The middleware only looks at requests that carry our cookie or a ``tlu_`` token, so ISPWS
and platform API traffic (``tpl_`` tokens, Basic auth) pays nothing for it.
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import UTC
from http.cookies import SimpleCookie
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from tipline.kinds.roles import ROLES, Capability, may
from tipline.people import accounts
from tipline.people.audit import record
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web.auth import (
    CSRF_FIELD,
    CSRF_SCOPE_KEY,
    SCOPE_KEY,
    CsrfRejected,
    SignInRequired,
    csrf_token,
    current_principal,
    optional_principal,
    require_csrf,
)
from tipline.web.render import STAFF_CSP, render

COOKIE = "tipline_session"
#: A random value the login form echoes (double submit): a foreign page cannot sign a
#: visitor into an account of its choosing.
LOGIN_COOKIE = "tipline_login"
#: Where the middleware leaves the session's id (SHA-256 of the cookie), for sign-out.
SESSION_SCOPE_KEY = "tipline.session_cookie"
#: The longest username, password or code the sign-in form reads (anything longer is refused
#: before it reaches argon2).
MAX_FIELD = 256
MAX_PASSWORD = 1024


def client_address(scope: Scope | Request) -> str | None:
    raw = scope.scope if isinstance(scope, Request) else scope
    client = raw.get("client")
    return str(client[0]) if client else None


def request_id(request: Request) -> str | None:
    rid = request.scope.get("request_id")
    return str(rid) if rid else None


def audit(request: Request, session: Any, action: str, object_kind: str | None = None,
          object_id: str | int | None = None, detail: dict[str, Any] | None = None,
          principal: Principal | None = None) -> None:
    """One audit row for this request, in ``session``'s transaction."""
    record(session, action=action, actor=principal or optional_principal(request),
           object_kind=object_kind, object_id=object_id, address=client_address(request),
           request_id=request_id(request), detail=detail)


class PeopleMiddleware:
    """Resolves the caller once per request, before any route runs (plain ASGI: no buffering
    of streamed uploads)."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.rt = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            cookie, token = _credentials(scope)
            if cookie or token:
                found = await anyio.to_thread.run_sync(self._resolve, cookie, token)
                if found is not None:
                    principal, csrf = found
                    scope[SCOPE_KEY] = principal
                    scope[CSRF_SCOPE_KEY] = csrf
                    if cookie and principal.token_id is None:
                        scope[SESSION_SCOPE_KEY] = cookie
        await self.app(scope, receive, send)

    def _resolve(self, cookie: str | None, token: str | None) -> tuple[Principal, str] | None:
        # Resolving may touch last_seen_at / last_used_at (at most once a minute), so it runs
        # in a writing transaction only when it has to; reads stay off SQLite's write lock.
        with self.rt.sessions() as s:
            result = self._lookup(s, cookie, token)
            if not s.dirty:
                return result
        with transaction(self.rt.sessions) as s:
            return self._lookup(s, cookie, token)

    def _lookup(self, s: Any, cookie: str | None, token: str | None) -> tuple[Principal, str] | None:
        if token:
            principal = accounts.resolve_token(s, token)
            return (principal, "") if principal else None
        assert cookie is not None
        active = accounts.resolve_session(s, self.rt.settings, cookie)
        return (active.principal, active.csrf) if active else None


def _credentials(scope: Scope) -> tuple[str | None, str | None]:
    cookie = token = None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            scheme, _, rest = text.partition(" ")
            if scheme.lower() == "bearer" and rest.strip().startswith(accounts.TOKEN_PREFIX):
                token = rest.strip()
        elif name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is no sign-in, not an error
                continue
            if COOKIE in jar:
                cookie = jar[COOKIE].value
    return cookie, token


def _safe_next(target: str | None, fallback: str) -> str:
    """Only a path on this site (never //host or a scheme): no open redirect after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    return target


def _secure(request: Request, rt: Runtime) -> bool:
    return bool(rt.settings.secure_cookies) or request.url.scheme == "https"


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str
    capability: Capability


#: The staff pages, in menu order; each person sees those their role may use.
NAV: tuple[NavItem, ...] = (
    NavItem("/console", "Queue", Capability.REPORT_READ),
    NavItem("/console/workload", "Workload", Capability.QUEUE_SUPERVISE),
    NavItem("/supervise/banks", "Hash banks", Capability.CONFIG_MANAGE),
    NavItem("/supervise/routing", "Routing", Capability.CONFIG_MANAGE),
    NavItem("/supervise/agencies", "Agencies", Capability.CONFIG_MANAGE),
    NavItem("/admin/users", "Accounts", Capability.ACCOUNTS_MANAGE),
    NavItem("/le", "Inbox", Capability.REFERRAL_READ_OWN),
    NavItem("/platform", "Our reports", Capability.PLATFORM_READ_OWN),
    NavItem("/audit", "Audit trail", Capability.AUDIT_READ),
    NavItem("/account", "Account", Capability.SIGN_IN),
)


def nav_for(principal: Principal | None, current: str) -> list[dict[str, Any]]:
    if principal is None:
        return []
    mine = [n for n in NAV if may(principal.role, n.capability)]
    # A page below a menu item (one bank, one account) marks that item; of nested items
    # (/console and /console/workload) only the longest that matches.
    under = [n.path for n in mine if current == n.path or current.startswith(n.path + "/")]
    here = max(under, key=len) if under else None
    return [{"path": n.path, "label": n.label, "current": n.path == here} for n in mine]


def not_found() -> HTTPException:
    """What a staff page answers for an object that is missing or outside the caller's scope."""
    return HTTPException(404)


def path_id(raw: str) -> int:
    """A numeric id from the address: anything but a positive number is simply not found."""
    if not raw.isdigit() or len(raw) > 18:
        raise not_found()
    return int(raw)


def staff_page(request: Request, template: str, *, status: int = 200, scope_name: str | None = None,
               **context: Any) -> HTMLResponse:
    """A page for signed-in staff: scripts from this origin only, never cached (it may show
    report content), with the signed-in person, their role's pages and the CSRF token for the
    template's forms. ``scope_name`` names the agency or platform the person works for."""
    principal = optional_principal(request)
    role = ROLES.get(principal.role) if principal else None
    return render(request, template, status=status, csp=STAFF_CSP, cache="no-store",
                  principal=principal, role=role, csrf=csrf_token(request), csrf_field=CSRF_FIELD,
                  nav=nav_for(principal, request.url.path), scope_name=scope_name, **context)


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/login")
    async def login_page(request: Request, next: str = "") -> Response:
        principal = optional_principal(request)
        if principal is not None:
            return RedirectResponse(_safe_next(next, ROLES[principal.role].home), status_code=303)
        return _login_form(request, next=next)

    @api.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()

        def field(name: str, limit: int = MAX_FIELD) -> str | None:
            value = form.get(name, "")
            if not isinstance(value, str) or len(value) > limit:
                return None
            return value

        username, password, code = field("username"), field("password", MAX_PASSWORD), field("code")
        target = field("next") or ""
        expected = request.cookies.get(LOGIN_COOKIE, "")
        given = field(CSRF_FIELD) or ""
        if not expected or not hmac.compare_digest(expected, given):
            return _login_form(request, next=target, status=400, username=username or "",
                               error="Your sign-in form had expired. Enter your details again.")
        if username is None or password is None or code is None:
            return _login_form(request, next=target, status=400,
                               error="The form was too large. Enter your username, password and code.")
        if not username.strip() or not password:
            return _login_form(request, next=target, status=400, username=username,
                               error="Enter your username and password.")
        address = client_address(request)

        def attempt() -> tuple[accounts.SignInResult, accounts.StartedSession | None, str | None]:
            with transaction(rt.sessions) as s:
                result = accounts.sign_in(s, rt.settings, username, password, code, address=address)
                if not result.ok or result.user is None:
                    return result, None, None
                started = accounts.start_session(s, result.user, address=address,
                                                 user_agent=request.headers.get("user-agent"))
                principal = accounts.principal_of(result.user)
                audit(request, s, "sign_in", "user", result.user.id, principal=principal)
                return result, started, ROLES[result.user.role].home

        result, started, home = await anyio.to_thread.run_sync(attempt)
        if started is None or home is None:
            status = _FAIL_STATUS.get(result.failure, 401) if result.failure else 401
            return _login_form(request, next=target, status=status, username=username,
                               error=_failure_message(result))
        response = RedirectResponse(_safe_next(target, home), status_code=303)
        response.set_cookie(COOKIE, started.cookie, httponly=True, samesite="strict", path="/",
                            secure=_secure(request, rt))
        return response

    @api.get("/account")
    async def account(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Response:
        from sqlalchemy import select

        from tipline.store.tables_people import UserToken, WebSession

        def load() -> tuple[list[WebSession], list[UserToken]]:
            with rt.sessions() as s:
                sessions = list(s.scalars(select(WebSession).where(
                    WebSession.user_id == principal.user_id, WebSession.ended_at.is_(None))
                    .order_by(WebSession.last_seen_at.desc())))
                tokens = list(s.scalars(select(UserToken).where(
                    UserToken.user_id == principal.user_id, UserToken.revoked_at.is_(None))
                    .order_by(UserToken.created_at)))
                s.expunge_all()
                return sessions, tokens

        sessions, tokens = await anyio.to_thread.run_sync(load)
        return staff_page(request, "account.html", sessions=sessions, tokens=tokens,
                          current=request.scope.get(SESSION_SCOPE_KEY) and accounts._sha256(
                              str(request.scope.get(SESSION_SCOPE_KEY))))

    @api.post("/logout", dependencies=[Depends(require_csrf)])
    async def logout(request: Request, everywhere: Annotated[str, Form()] = "") -> Response:
        principal = optional_principal(request)
        cookie = request.scope.get(SESSION_SCOPE_KEY)

        def end() -> None:
            with transaction(rt.sessions) as s:
                if principal is not None and everywhere:
                    accounts.end_all_sessions(s, principal.user_id)
                elif isinstance(cookie, str):
                    accounts.end_session(s, cookie)
                if principal is not None:
                    audit(request, s, "sign_out_everywhere" if everywhere else "sign_out", "user",
                          principal.user_id)

        await anyio.to_thread.run_sync(end)
        response = RedirectResponse("/login?signed_out=1", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return api


class Me(BaseModel):
    """Who a user token or session signs in as."""

    model_config = ConfigDict(extra="forbid")
    username: str
    role: str
    agency: str | None = Field(description="The officer's agency (directory code); else null.")
    platform: str | None = Field(description="The platform staff's platform; else null.")
    viaToken: bool = Field(description="true when the call came with a bearer token.")


def me_router() -> APIRouter:
    """``GET /api/v1/me``: who a user token (or session) signs in as; for scripts to check
    their token and its scope before they act."""
    problem = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}
    api = APIRouter(prefix="/api/v1", tags=["people"])

    @api.get("/me", response_model=Me, summary="Who this token signs in as",
             responses={401: {"description": "No valid user token or session", **problem}})
    async def me(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Me:
        from tipline.store.tables import Agency, Reporter

        rt: Runtime = request.app.state.runtime

        def names() -> tuple[str | None, str | None]:
            with rt.sessions() as s:
                agency = s.get(Agency, principal.agency_id) if principal.agency_id else None
                platform = s.get(Reporter, principal.reporter_id) if principal.reporter_id else None
                return (agency.code if agency else None, platform.name if platform else None)

        agency, platform = await anyio.to_thread.run_sync(names)
        return Me(username=principal.username, role=principal.role, agency=agency, platform=platform,
                  viaToken=principal.token_id is not None)

    return api


_FAIL_STATUS = {accounts.SignInFailure.RATE: 429, accounts.SignInFailure.LOCKED: 423}


def _failure_message(result: accounts.SignInResult) -> str:
    if result.failure is accounts.SignInFailure.RATE:
        return "Too many sign-in attempts from your address. Wait 15 minutes and try again."
    if result.locked_until is not None:
        until = result.locked_until.astimezone(UTC).strftime("%H:%M UTC")
        return (f"This account is locked after too many failed sign-ins, until {until}. "
                "Ask an administrator if you need it sooner.")
    if result.failure is accounts.SignInFailure.TOTP_REUSED:
        return "That one-time code was already used. Wait for the next code and try again."
    return "Wrong username, password or one-time code."


def _login_form(request: Request, *, next: str = "", status: int = 200, username: str = "",
                error: str | None = None) -> HTMLResponse:
    signed_out = request.query_params.get("signed_out") == "1" and error is None
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, cache="no-store", next=next,
                      username=username, error=error, signed_out=signed_out, csrf=token,
                      csrf_field=CSRF_FIELD)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=request.url.scheme == "https")
    return response


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
    app.include_router(me_router())

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"type": "https://tipline.example/problems/sign-in-required",
                                 "title": "Sign-in required", "status": 401,
                                 "detail": "Send a user token: Authorization: Bearer tlu_…"},
                                status_code=401, media_type="application/problem+json",
                                headers={"WWW-Authenticate": 'Bearer realm="tipline"'})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?next=" + urllib.parse.quote(target, safe="/"), status_code=303)

    async def on_csrf(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"type": "https://tipline.example/problems/csrf", "title": "Forbidden",
                                 "status": 403, "detail": "missing or wrong CSRF token (X-CSRF-Token)"},
                                status_code=403, media_type="application/problem+json")
        return render(request, "csrf.html", status=403, cache="no-store")

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(CsrfRejected, on_csrf)
