"""Every route of the app × every role (signed in through the real form, and with a bearer
token on the JSON API) × a foreign agency and a foreign platform, with the expected answer.

The routes are taken from the app's own route table: a new route fails
:func:`test_every_route_is_placed` until it gets a row in :data:`MATRIX`, and a row whose
route is gone fails it too. A row says who may use the route:

- :class:`Open` — people's sign-in changes nothing here (public pages, ISPWS, the platform
  API with its own credentials, operator endpoints): every role answers exactly as a caller
  who is not signed in, so a staff session or token never opens a platform's door.
- :class:`SignedIn` — any role; not signed in: pages go to ``/login``, the API answers 401.
- :class:`Needs` — roles with the capability get ``ok``; every other role gets 404 (never 403:
  a page outside one's role is answered as one that does not exist), not signed in as above.
- :class:`Exact` — a table of answers for routes of the sign-in machinery itself.

Scope is the foreign-agency and foreign-platform columns: two officers of different
agencies and two platform staff of different platforms are asked every route. A route that
names an object of one agency or platform (a referral, a report) adds its expected answers
per principal in its own row, so the foreign column answers 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from people_helpers import make_user, session_csrf, sign_in, user_token
from tipline.kinds.roles import ROLES, Capability, may
from tipline.runtime import Runtime

#: Who asks: the name of the column, role, and agency/platform. Officer and platform come
#: twice: the second is the foreign agency / platform.
PRINCIPALS: dict[str, tuple[str, dict[str, str]]] = {
    "analyst": ("analyst", {}),
    "supervisor": ("supervisor", {}),
    "officer": ("officer", {"agency": "ICAC-TX-OAG"}),
    "officer-foreign": ("officer", {"agency": "FBI"}),
    "platform": ("platform", {"platform": "Acme Social"}),
    "platform-foreign": ("platform", {"platform": "Globex Chat"}),
    "auditor": ("auditor", {}),
    "admin": ("admin", {}),
}
ANON = "anonymous"


@dataclass(frozen=True)
class Open:
    """Sign-in changes nothing: every principal gets the anonymous caller's answer."""


@dataclass(frozen=True)
class SignedIn:
    ok: int = 200


@dataclass(frozen=True)
class Needs:
    capability: Capability
    ok: int = 200


@dataclass(frozen=True)
class Exact:
    #: principal column (or ``anonymous``, or ``*`` for every other) → status.
    answers: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlatformReads:
    """The platforms' report routes: platform credentials as before (a session changes
    nothing); a platform user's token may read its platform's reports (``ok``: what it gets
    for report 1, which it does not have; None: a write, refused); every other user token is
    refused (403): people do not file reports."""

    ok: int | None = 200


Rule = Open | SignedIn | Needs | Exact | PlatformReads

#: (method, route path as declared) → who may use it. Path parameters are filled with 1.
MATRIX: dict[tuple[str, str], Rule] = {
    # Site pages, the public form, the published answers: for everyone alike.
    ("GET", "/"): Open(), ("GET", "/api/v1/docs"): Open(), ("GET", "/api/v1/openapi.json"): Open(),
    ("GET", "/favicon.ico"): Open(), ("GET", "/static/{path}"): Open(), ("GET", "/privacy"): Open(),
    ("GET", "/report"): Open(), ("POST", "/report"): Open(),
    ("GET", "/report/receipt"): Open(), ("POST", "/report/receipt"): Open(),
    ("GET", "/answer"): Open(), ("GET", "/api/v1/answer"): Open(), ("GET", "/api/v1/stats/published"): Open(),
    # Statistics from the records: aggregates only, for everyone (tipline.stats).
    ("GET", "/api/v1/stats/outcomes"): Open(), ("GET", "/api/v1/stats/transparency/{year}"): Open(),
    ("GET", "/transparency/{year}"): Open(), ("GET", "/transparency/{year}.pdf"): Open(),
    ("GET", "/transparency/{year}/charts/{name}"): Open(), ("GET", "/transparency/{year}/datapackage.json"): Open(),
    ("GET", "/transparency/{year}/{table}.csv"): Open(),
    # Operators: their own endpoints and credentials.
    ("GET", "/healthz"): Open(), ("GET", "/readyz"): Open(), ("GET", "/metrics"): Open(),
    ("GET", "/api/v1/operator/reports/{reportId}"): Open(),
    # Platforms' ISPWS and JSON API: platform credentials (Basic, tpl_), never a person's.
    **{(m, f"{base}/{op}"): Open() for base in ("/ispws", "") for m, op in (
        ("GET", "xsd"), ("GET", "status"), ("POST", "submit"), ("POST", "upload"), ("POST", "fileinfo"),
        ("POST", "finish"), ("POST", "retract"))},
    ("POST", "/api/v1/reports"): PlatformReads(ok=None), ("GET", "/api/v1/reports"): PlatformReads(),
    ("GET", "/api/v1/reports/{reportId}"): PlatformReads(ok=404),
    ("POST", "/api/v1/reports/{reportId}/files"): PlatformReads(ok=None),
    ("PUT", "/api/v1/reports/{reportId}/files/{fileId}/details"): PlatformReads(ok=None),
    ("POST", "/api/v1/reports/{reportId}/finish"): PlatformReads(ok=None),
    ("POST", "/api/v1/reports/{reportId}/retract"): PlatformReads(ok=None),
    # Sign-in itself.
    ("GET", "/login"): Exact({ANON: 200, "*": 303}),  # signed in: on to one's home page
    ("POST", "/login"): Exact({ANON: 400, "*": 400}),  # no form: "your form had expired"
    ("POST", "/logout"): Exact({ANON: 403, "*": 303}),
    ("GET", "/account"): SignedIn(),
    ("GET", "/api/v1/me"): SignedIn(),
    # The audit trail.
    ("GET", "/audit"): Needs(Capability.AUDIT_READ),
    ("GET", "/audit/export"): Needs(Capability.AUDIT_READ),
    ("POST", "/audit/verify"): Needs(Capability.AUDIT_READ),
    # Outcome codes: the registry, public (agencies' case systems read it to build forms).
    ("GET", "/api/v1/outcome-codes"): Open(),
    # The law-enforcement inbox and its API. Lists answer officers; an object route asked for
    # referral 1, which no agency has, answers 404 to everyone signed in (the scope test
    # below asks real referrals of one agency as the other).
    ("GET", "/le"): Needs(Capability.REFERRAL_READ_OWN), ("GET", "/le/export.csv"): Needs(Capability.REFERRAL_READ_OWN),
    ("GET", "/api/v1/referrals"): Needs(Capability.REFERRAL_READ_OWN),
    # The officer's CSV upload of outcomes (sent without a file here: 400 "choose a file").
    ("GET", "/le/outcomes/import"): Needs(Capability.REFERRAL_ACT),
    ("POST", "/le/outcomes/import"): Needs(Capability.REFERRAL_ACT, ok=400),
    **{("GET", p): Needs(Capability.REFERRAL_READ_OWN, ok=404) for p in (
        "/le/referrals/{referral_id}", "/le/referrals/{referral_id}/export",
        "/le/referrals/{referral_id}/files/{file_id}", "/le/referrals/{referral_id}/files/{file_id}/preview",
        "/le/referrals/{referral_id}/files/{file_id}/thumb", "/api/v1/referrals/{referralId}",
        "/api/v1/referrals/{referralId}/export", "/api/v1/referrals/{referralId}/files/{fileId}",
        "/api/v1/referrals/{referralId}/outcomes")},
    **{("POST", p): Needs(Capability.REFERRAL_ACT, ok=404) for p in (
        "/le/referrals/{referral_id}/acknowledge", "/le/referrals/{referral_id}/assign",
        "/le/referrals/{referral_id}/legal-process", "/le/referrals/{referral_id}/outcomes",
        "/le/referrals/{referral_id}/transfer")},
    # API writes from a signed-in browser need the session's X-CSRF-Token (none is sent here:
    # 403 for every role); tokens are asked with real referrals in the inbox and outcome tests.
    **{("POST", p): Exact({ANON: 401, "*": 403}) for p in (
        "/api/v1/referrals/{referralId}/acknowledge", "/api/v1/referrals/{referralId}/assign",
        "/api/v1/referrals/{referralId}/legal-process", "/api/v1/referrals/{referralId}/outcomes",
        "/api/v1/referrals/{referralId}/transfer")},
    # The analyst console: the queue for analysts and supervisors; an object route asked for
    # report, file or incident 1, which do not exist, answers 404 to everyone signed in.
    ("GET", "/console"): Needs(Capability.REPORT_READ),
    ("GET", "/console/workload"): Needs(Capability.QUEUE_SUPERVISE),
    **{("GET", p): Needs(Capability.REPORT_READ, ok=404) for p in (
        "/console/reports/{report_id}", "/console/files/{file_id}/thumb.jpg", "/console/files/{file_id}/clear.jpg")},
    **{("POST", p): Needs(Capability.REPORT_TRIAGE, ok=404) for p in (
        "/console/reports/{report_id}/claim", "/console/reports/{report_id}/release",
        "/console/reports/{report_id}/decide", "/console/incidents/{incident_id}/decide",
        "/console/files/{file_id}/label", "/console/files/{file_id}/unblur")},
    ("POST", "/console/reports/{report_id}/reassign"): Needs(Capability.QUEUE_SUPERVISE, ok=404),
    # Supervisors' settings: hash banks, routing rules, the agency directory. Bank 1 does not
    # exist (404); an import sent without a file answers 400 "choose a file".
    **{("GET", p): Needs(Capability.CONFIG_MANAGE) for p in (
        "/supervise/banks", "/supervise/routing", "/supervise/agencies")},
    ("GET", "/supervise/banks/{bank_id}"): Needs(Capability.CONFIG_MANAGE, ok=404),
    ("POST", "/supervise/banks/{bank_id}/enabled"): Needs(Capability.CONFIG_MANAGE, ok=404),
    ("POST", "/supervise/banks/import"): Needs(Capability.CONFIG_MANAGE, ok=400),
    ("POST", "/supervise/agencies/import"): Needs(Capability.CONFIG_MANAGE, ok=400),
    # Administrators' accounts pages. Account 1 exists (the matrix's first user); a change
    # sent without a reason is refused (409), an add without one too (400).
    ("GET", "/admin/users"): Needs(Capability.ACCOUNTS_MANAGE),
    ("POST", "/admin/users"): Needs(Capability.ACCOUNTS_MANAGE, ok=400),
    ("GET", "/admin/users/{user_id}"): Needs(Capability.ACCOUNTS_MANAGE),
    **{("POST", p): Needs(Capability.ACCOUNTS_MANAGE, ok=409) for p in (
        "/admin/users/{user_id}/disable", "/admin/users/{user_id}/enable", "/admin/users/{user_id}/reset-totp",
        "/admin/users/{user_id}/unlock", "/admin/users/{user_id}/password",
        "/admin/users/{user_id}/tokens", "/admin/users/{user_id}/tokens/{token_id}/revoke")},
    # The platform's view of its own reports.
    ("GET", "/platform"): Needs(Capability.PLATFORM_READ_OWN),
    ("GET", "/platform/export.csv"): Needs(Capability.PLATFORM_READ_OWN),
    ("GET", "/platform/reports/{report_id}"): Needs(Capability.PLATFORM_READ_OWN, ok=404),
}

#: Unsafe routes a signed-in browser sends with its CSRF token (so what is tested is access,
#: not the token); without a session there is no token, and the answer is 403.
CSRF_ROUTES = {("POST", "/logout"), ("POST", "/audit/verify"),
               *((m, p) for (m, p) in MATRIX if m == "POST" and p.startswith(("/le/", "/console/", "/supervise/",
                                                                               "/admin/")))}


def _routes(app: object) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for ctx in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        methods = set(ctx.methods or ())
        if isinstance(ctx.original_route, Mount):
            methods = {"GET"}
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette answers HEAD for every GET
        for m in methods:
            found.add((m, str(ctx.path_format)))
    return found


def _url(path: str) -> str:
    if path == "/static/{path}":
        return "/static/tipline.css"
    return re.sub(r"\{[^}]+\}", "1", path)


@dataclass
class Caller:
    client: TestClient
    csrf: str | None
    token: str | None


@pytest.fixture
def callers(runtime: Runtime, client: TestClient) -> Iterator[dict[str, Caller]]:
    out = {ANON: Caller(client, None, None)}
    opened: list[TestClient] = []
    for name, (role, extra) in PRINCIPALS.items():
        user = make_user(runtime, f"m-{name}", role, **extra)
        c = TestClient(client.app, raise_server_exceptions=False)
        opened.append(c)
        sign_in(c, user)
        out[name] = Caller(c, session_csrf(c, "/account"), user_token(runtime, user))
    yield out
    for c in opened:
        c.close()


def _ask(caller: Caller, method: str, path: str, *, token: bool = False) -> int:
    headers = {"Accept": "text/html" if not path.startswith("/api/") else "application/json"}
    client = caller.client
    if token:
        headers["Authorization"] = f"Bearer {caller.token}"
        client = TestClient(client.app, raise_server_exceptions=False)  # no session cookie
    data = {"csrf_token": caller.csrf} if (method, path) in CSRF_ROUTES and caller.csrf and not token else None
    resp = client.request(method, _url(path), data=data, follow_redirects=False, headers=headers)
    return resp.status_code


def _expected(rule: Rule, method: str, path: str, who: str, anon_status: int) -> int:
    api = path.startswith("/api/")
    not_signed_in = 401 if api else (403 if (method, path) in CSRF_ROUTES else 303)
    if isinstance(rule, Open | PlatformReads):
        return anon_status
    if isinstance(rule, Exact):
        return rule.answers.get(who, rule.answers["*"])
    if who == ANON:
        return not_signed_in
    role = PRINCIPALS[who][0]
    if isinstance(rule, SignedIn):
        return rule.ok
    return rule.ok if may(role, rule.capability) else 404


def test_every_route_is_placed(client: TestClient) -> None:
    routes = _routes(client.app)
    unplaced = sorted(routes - MATRIX.keys())
    stale = sorted(MATRIX.keys() - routes)
    assert not unplaced, f"routes without a row in MATRIX (say who may use them): {unplaced}"
    assert not stale, f"MATRIX rows whose route is gone: {stale}"
    # Every role of the registry is asked.
    assert {r for r, _ in PRINCIPALS.values()} == set(ROLES)


def test_every_route_answers_every_role_as_expected(callers: dict[str, Caller]) -> None:
    wrong: list[str] = []
    # Sign-out last: it ends the session every later row would be asked with.
    for (method, path), rule in sorted(MATRIX.items(), key=lambda kv: (kv[0] == ("POST", "/logout"), kv[0])):
        anon = _ask(callers[ANON], method, path)
        assert anon < 500, (method, path, anon)
        if not isinstance(rule, Open | PlatformReads):
            expected = _expected(rule, method, path, ANON, anon)
            if anon != expected:
                wrong.append(f"{method} {path} as {ANON}: {anon}, expected {expected}")
        for who in PRINCIPALS:
            got = _ask(callers[who], method, path)
            expected = _expected(rule, method, path, who, anon)
            if got != expected:
                wrong.append(f"{method} {path} as {who}: {got}, expected {expected}")
            if path.startswith("/api/") and not isinstance(rule, Exact):
                # A bearer token has the same scope as its user's session.
                got = _ask(callers[who], method, path, token=True)
                if isinstance(rule, PlatformReads):
                    platform = PRINCIPALS[who][0] == "platform"
                    expected = rule.ok if platform and rule.ok is not None else 403
                if got != expected:
                    wrong.append(f"{method} {path} as {who} with a token: {got}, expected {expected}")
    assert wrong == [], "\n".join(wrong)
