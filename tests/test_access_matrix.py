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

Scope is asked with real objects (:class:`World`): a finished report of the home platform
with a file it viewed, referred to the home agency; a report of the foreign platform
referred to the foreign agency; an incident, a hash bank, an account with a token. Every
object parameter of a route is filled with the object it names (:data:`PARAMS`), so a row's
``ok`` is what the caller in scope gets for a real object, and the two foreign columns (an
officer of another agency, staff of another platform) must get 404 for it, exactly as
:func:`test_object_routes_answer_missing_and_malformed_ids_as_not_found` shows every caller
in scope gets for an id that names nothing. The mirror test asks the foreign objects: there
the columns swap. Rows that change what later rows see are asked in the order of
:data:`LATE`; every other change a row makes leaves the objects readable (a claim, an
acknowledgement, an empty label) or is refused for a missing field after the scope check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from starlette.routing import Mount

import inbox_seed
from helpers import person, report_doc, store_report
from people_helpers import make_user, session_csrf, sign_in, user_token
from tipline.kinds.roles import ROLES, Capability, may
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Agency, HashBank, IncidentReport, Referral

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
    #: The capability (or any one of several) that opens the route.
    capability: Capability | tuple[Capability, ...]
    #: What a role with the capability gets, for the row's object when it names one.
    ok: int = 200
    #: Principal column → its answer, where it is neither ``ok`` nor 404 (say why in the row).
    answers: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Exact:
    #: principal column (or ``anonymous``, or ``*`` for every other) → status.
    answers: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlatformReads:
    """The platforms' report routes: platform credentials as before (a session changes
    nothing); a platform user's token may read its platform's reports (``ok``: what it gets
    for the home platform's report, the foreign platform's token 404; None: a write, refused);
    every other user token is refused (403): people do not file reports."""

    ok: int | None = 200


@dataclass(frozen=True)
class ApiWrite:
    """A write of the referral API. A signed-in browser must send the session's X-CSRF-Token
    (none is sent here: 403 for every role; not signed in: 401). A bearer token needs no
    CSRF token: as :class:`Needs` (``ok`` for the referral's own officer, 404 for the
    foreign one and for roles without the capability, ``answers`` where a role differs).
    ``body`` is sent as JSON: valid in form, refused by the service after the scope check
    where it breaks a rule (an unknown colleague or agency, a date in the future), so that
    nothing changes and the answer still shows the object was in scope."""

    capability: Capability
    ok: int
    body: dict[str, object] | None = None
    answers: dict[str, int] = field(default_factory=dict)


Rule = Open | SignedIn | Needs | Exact | PlatformReads | ApiWrite

#: (method, route path as declared) → who may use it. Object parameters (:data:`PARAMS`) are
#: filled with the :class:`World`'s objects of the home agency and platform, the others with 1.
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
    ("GET", "/api/v1/reports/{reportId}"): PlatformReads(),
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
    # The law-enforcement inbox and its API. Lists answer officers; an object route is asked
    # for the home agency's referral (and the file its platform viewed): its officer gets it,
    # the foreign agency's officer 404.
    ("GET", "/le"): Needs(Capability.REFERRAL_READ_OWN), ("GET", "/le/export.csv"): Needs(Capability.REFERRAL_READ_OWN),
    ("GET", "/api/v1/referrals"): Needs(Capability.REFERRAL_READ_OWN),
    # The officer's CSV upload of outcomes (sent without a file here: 400 "choose a file").
    ("GET", "/le/outcomes/import"): Needs(Capability.REFERRAL_ACT),
    ("POST", "/le/outcomes/import"): Needs(Capability.REFERRAL_ACT, ok=400),
    **{("GET", p): Needs(Capability.REFERRAL_READ_OWN) for p in (
        "/le/referrals/{referral_id}", "/le/referrals/{referral_id}/export",
        "/le/referrals/{referral_id}/files/{file_id}", "/le/referrals/{referral_id}/files/{file_id}/preview",
        "/le/referrals/{referral_id}/files/{file_id}/thumb", "/api/v1/referrals/{referralId}",
        "/api/v1/referrals/{referralId}/export", "/api/v1/referrals/{referralId}/files/{fileId}")},
    # A referral's outcome timeline: its agency's officers, and the hotline's analysts and
    # supervisors, who see every report (tipline.outcomes.service).
    ("GET", "/api/v1/referrals/{referralId}/outcomes"): Needs((Capability.REFERRAL_READ_OWN, Capability.REPORT_READ)),
    # Acknowledging is idempotent (done, back to the referral); the others, sent without
    # their fields, are refused with the form's message (400) after the scope check.
    ("POST", "/le/referrals/{referral_id}/acknowledge"): Needs(Capability.REFERRAL_ACT, ok=303),
    **{("POST", p): Needs(Capability.REFERRAL_ACT, ok=400) for p in (
        "/le/referrals/{referral_id}/assign", "/le/referrals/{referral_id}/legal-process",
        "/le/referrals/{referral_id}/outcomes", "/le/referrals/{referral_id}/transfer")},
    # The referral API's writes (ApiWrite): acknowledging is idempotent; the others are
    # refused by the service, after the scope check, for what the body asks. Analysts and
    # supervisors, who see every referral, are told they may not record outcomes (403).
    ("POST", "/api/v1/referrals/{referralId}/acknowledge"): ApiWrite(Capability.REFERRAL_ACT, 200),
    ("POST", "/api/v1/referrals/{referralId}/assign"): ApiWrite(Capability.REFERRAL_ACT, 422,
                                                                  {"assignee": "nobody-here"}),
    ("POST", "/api/v1/referrals/{referralId}/transfer"): ApiWrite(Capability.REFERRAL_ACT, 422,
                                                                    {"agency": "NO-SUCH", "reason": "matrix"}),
    ("POST", "/api/v1/referrals/{referralId}/legal-process"): ApiWrite(
        Capability.REFERRAL_ACT, 422, {"kind": "consent", "reference": "R-1", "issuedOn": "2999-01-01"}),
    ("POST", "/api/v1/referrals/{referralId}/outcomes"): ApiWrite(
        Capability.REFERRAL_ACT, 422, {}, answers={"analyst": 403, "supervisor": 403}),
    # The analyst console: the queue for analysts and supervisors, and every report (the
    # hotline's scope is all reports): the home platform's report, its viewed file, its incident.
    ("GET", "/console"): Needs(Capability.REPORT_READ),
    ("GET", "/console/workload"): Needs(Capability.QUEUE_SUPERVISE),
    **{("GET", p): Needs(Capability.REPORT_READ) for p in (
        "/console/reports/{report_id}", "/console/files/{file_id}/thumb.jpg")},
    # The clear rendering only after this person unblurred the file (asked after the unblur
    # row, see LATE; each unblur answers with the report page).
    ("GET", "/console/files/{file_id}/clear.jpg"): Needs(Capability.REPORT_READ),
    ("POST", "/console/files/{file_id}/unblur"): Needs(Capability.REPORT_TRIAGE, ok=303),
    # Claim and release: the analyst (asked first) claims, so the supervisor is told who holds
    # it (409); the analyst releases it, so there is nothing for the supervisor to release.
    ("POST", "/console/reports/{report_id}/claim"): Needs(Capability.REPORT_TRIAGE, ok=303,
                                                          answers={"supervisor": 409}),
    ("POST", "/console/reports/{report_id}/release"): Needs(Capability.REPORT_TRIAGE, ok=303,
                                                            answers={"supervisor": 409}),
    # A decision without its action, a reassignment without a name: refused, nothing changed.
    **{("POST", p): Needs(Capability.REPORT_TRIAGE, ok=409) for p in (
        "/console/reports/{report_id}/decide", "/console/incidents/{incident_id}/decide")},
    ("POST", "/console/reports/{report_id}/reassign"): Needs(Capability.QUEUE_SUPERVISE, ok=409),
    # A label form sent empty saves an empty label (every field of a label is optional).
    ("POST", "/console/files/{file_id}/label"): Needs(Capability.REPORT_TRIAGE, ok=303),
    # Supervisors' settings: hash banks, routing rules, the agency directory. A bank change
    # without a reason is refused (409); an import sent without a file answers 400 "choose a file".
    **{("GET", p): Needs(Capability.CONFIG_MANAGE) for p in (
        "/supervise/banks", "/supervise/routing", "/supervise/agencies")},
    ("GET", "/supervise/banks/{bank_id}"): Needs(Capability.CONFIG_MANAGE),
    ("POST", "/supervise/banks/{bank_id}/enabled"): Needs(Capability.CONFIG_MANAGE, ok=409),
    ("POST", "/supervise/banks/import"): Needs(Capability.CONFIG_MANAGE, ok=400),
    ("POST", "/supervise/agencies/import"): Needs(Capability.CONFIG_MANAGE, ok=400),
    # Administrators' accounts pages, asked for an analyst's account and its token; a change
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
    ("GET", "/platform/reports/{report_id}"): Needs(Capability.PLATFORM_READ_OWN),
}

#: Unsafe routes a signed-in browser sends with its CSRF token (so what is tested is access,
#: not the token); without a session there is no token, and the answer is 403.
CSRF_ROUTES = {("POST", "/logout"), ("POST", "/audit/verify"),
               *((m, p) for (m, p) in MATRIX if m == "POST" and p.startswith(("/le/", "/console/", "/supervise/",
                                                                               "/admin/")))}

#: Rows asked after the others, in this order: a row whose answer depends on an earlier
#: row's change (an unblurred file's clear rendering needs the unblur), and sign-out, which
#: ends the session every later row would be asked with.
LATE: dict[tuple[str, str], int] = {
    ("POST", "/console/files/{file_id}/unblur"): 1,
    ("GET", "/console/files/{file_id}/clear.jpg"): 2,
    ("POST", "/logout"): 9,
}

#: Form fields a row sends besides the CSRF token ("{obj}" is the world's object): an
#: incident decision refused without the report it was made from has no page to answer with
#: and answers 404, which would not tell a refusal from a foreign incident.
FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/console/incidents/{incident_id}/decide"): {"from": "{report}"},
}

#: The object columns: every principal of these belongs to another agency or platform than
#: the seeded objects (referral, report, file) of the home agency and platform.
FOREIGN = frozenset({"officer-foreign", "platform-foreign"})
#: The columns of the home agency and platform: the outsiders of the foreign objects.
HOME = frozenset({"officer", "platform"})


#: Path parameters that are not objects of one agency or platform (a year, a file name).
NOT_OBJECTS = {"year", "name", "table", "path"}


@dataclass(frozen=True)
class Param:
    """What fills a path parameter: the :class:`World` object it names, an id that names
    nothing, and one that is not an id at all."""

    obj: str
    missing: str
    malformed: str


#: Path parameters that name an object; every other (``year``, ``name``, ``table``) is 1.
PARAMS: dict[str, Param] = {
    **{n: Param("referral", "999999999", "x1") for n in ("referral_id", "referralId")},
    **{n: Param("report", "999999999", "x1") for n in ("report_id", "reportId")},
    **{n: Param("file", "0" * 32, "x1") for n in ("file_id", "fileId")},
    "incident_id": Param("incident", "999999999", "x1"),
    "bank_id": Param("bank", "999999999", "x1"),
    "user_id": Param("user", "999999999", "x1"),
    "token_id": Param("token", "0" * 16, "x-1"),
}


@dataclass(frozen=True)
class World:
    """Real objects for the object routes: the home agency's referral of a finished report of
    the home platform with a file the platform viewed (and the foreign agency's referral of
    the same report, as the inbox seed makes it); a report of the foreign platform made
    available to the foreign agency; an incident; a hash bank; an account with a token."""

    objects: dict[str, str]
    #: The foreign platform's report and the foreign agency's referral of it.
    foreign_report: int
    foreign_referral: int


@pytest.fixture
def world(runtime: Runtime, client: TestClient) -> World:
    seeded = inbox_seed.seed(runtime, prefix="w-")
    foreign_report = store_report(runtime, report_doc([person("someone")]), reporter="Globex Chat")
    with transaction(runtime.sessions) as s:
        fbi = s.execute(select(Agency.id).where(Agency.code == inbox_seed.OTHER)).scalar_one()
        incident = s.execute(select(IncidentReport.incident_id).where(
            IncidentReport.report_id == seeded.report)).scalar_one()
        bank = s.execute(select(HashBank.id).where(HashBank.name == "w-known-series")).scalar_one()
        ref = Referral(report_id=foreign_report, agency_id=fbi, rule="federal", reason="federal",
                       made_available_at=datetime.now(UTC))
        s.add(ref)
        s.flush()
        foreign_referral = ref.id
    target = make_user(runtime, "w-target", "analyst")
    token = user_token(runtime, target, "matrix")
    lookup = token.removeprefix("tlu_").partition("_")[0]
    return World({"referral": str(seeded.referral), "report": str(seeded.report), "file": seeded.viewed_file,
                  "incident": str(incident), "bank": str(bank), "user": str(target.user_id), "token": lookup},
                 foreign_report, foreign_referral)


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


def _params(path: str) -> list[str]:
    return [n for n in re.findall(r"\{([^}]+)\}", path) if n in PARAMS]


def _url(path: str, world: World | None = None, **given: str) -> str:
    """The route's address: each object parameter filled with the world's object (or what
    ``given`` says), every other with 1."""
    if path == "/static/{path}":
        return "/static/tipline.css"

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in given:
            return given[name]
        if world is not None and name in PARAMS:
            return world.objects[PARAMS[name].obj]
        return "1"

    return re.sub(r"\{([^}]+)\}", fill, path)


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


def _ask(caller: Caller, method: str, path: str, url: str, world: World, *, token: bool = False) -> Response:
    headers = {"Accept": "text/html" if not path.startswith("/api/") else "application/json"}
    client = caller.client
    if token:
        headers["Authorization"] = f"Bearer {caller.token}"
        client = TestClient(client.app, raise_server_exceptions=False)  # no session cookie
    data = {"csrf_token": caller.csrf} if (method, path) in CSRF_ROUTES and caller.csrf and not token else None
    if data is not None and (method, path) in FORMS:
        data |= {k: v.format(**world.objects) for k, v in FORMS[method, path].items()}
    rule = MATRIX.get((method, path))
    if isinstance(rule, ApiWrite) and rule.body is not None:
        return client.request(method, url, json=rule.body, follow_redirects=False, headers=headers)
    return client.request(method, url, data=data, follow_redirects=False, headers=headers)


def _expected(rule: Rule, method: str, path: str, who: str, anon_status: int,
              outsiders: frozenset[str] = FOREIGN) -> int:
    api = path.startswith("/api/")
    not_signed_in = 401 if api else (403 if (method, path) in CSRF_ROUTES else 303)
    if isinstance(rule, Open | PlatformReads):
        return anon_status
    if isinstance(rule, Exact):
        return rule.answers.get(who, rule.answers["*"])
    if who == ANON:
        return not_signed_in
    if isinstance(rule, ApiWrite):
        return 403  # a session without the X-CSRF-Token header
    role = PRINCIPALS[who][0]
    if isinstance(rule, SignedIn):
        return rule.ok
    if who in rule.answers:
        return rule.answers[who]
    caps = rule.capability if isinstance(rule.capability, tuple) else (rule.capability,)
    if not any(may(role, c) for c in caps):
        return 404
    if who in outsiders and _params(path):
        return 404  # the object is another agency's / platform's: outside this caller's scope
    return rule.answers.get(who, rule.ok)


def _token_expected(rule: Rule, path: str, who: str, session_expected: int,
                    outsiders: frozenset[str] = FOREIGN) -> int:
    """What the caller's bearer token gets: its session's answer, but for the platforms' API
    and the referral API's writes (no CSRF token is needed with a bearer token)."""
    if isinstance(rule, ApiWrite):
        return _expected(Needs(rule.capability, rule.ok, rule.answers), "POST", path, who, 401, outsiders)
    if not isinstance(rule, PlatformReads):
        return session_expected
    if PRINCIPALS[who][0] != "platform" or rule.ok is None:
        return 403  # people do not file reports; only platform staff read them
    return 404 if who in outsiders and _params(path) else rule.ok


def _order(item: tuple[tuple[str, str], Rule]) -> tuple[int, tuple[str, str]]:
    return LATE.get(item[0], 0), item[0]


def test_every_route_is_placed(client: TestClient) -> None:
    routes = _routes(client.app)
    unplaced = sorted(routes - MATRIX.keys())
    stale = sorted(MATRIX.keys() - routes)
    assert not unplaced, f"routes without a row in MATRIX (say who may use them): {unplaced}"
    assert not stale, f"MATRIX rows whose route is gone: {stale}"
    # Every role of the registry is asked, and every object parameter is filled with a real object.
    assert {r for r, _ in PRINCIPALS.values()} == set(ROLES)
    assert set(LATE) <= MATRIX.keys() and set(FORMS) <= MATRIX.keys()
    unknown = {n for _, p in routes for n in re.findall(r"\{([^}]+)\}", p)} - PARAMS.keys() - NOT_OBJECTS
    assert not unknown, f"path parameters that name no object of the world (add them to PARAMS): {unknown}"


def test_every_route_answers_every_role_as_expected(callers: dict[str, Caller], world: World) -> None:
    wrong: list[str] = []
    for (method, path), rule in sorted(MATRIX.items(), key=_order):
        url = _url(path, world)
        anon = _ask(callers[ANON], method, path, url, world).status_code
        assert anon < 500, (method, path, anon)
        if not isinstance(rule, Open | PlatformReads):
            expected = _expected(rule, method, path, ANON, anon)
            if anon != expected:
                wrong.append(f"{method} {url} as {ANON}: {anon}, expected {expected}")
        for who in PRINCIPALS:
            got = _ask(callers[who], method, path, url, world).status_code
            expected = _expected(rule, method, path, who, anon)
            if got != expected:
                wrong.append(f"{method} {url} as {who}: {got}, expected {expected}")
            if path.startswith("/api/") and not isinstance(rule, Exact):
                # A bearer token has the same scope as its user's session.
                got = _ask(callers[who], method, path, url, world, token=True).status_code
                expected = _token_expected(rule, path, who, expected)
                if got != expected:
                    wrong.append(f"{method} {url} as {who} with a token: {got}, expected {expected}")
    assert wrong == [], "\n".join(wrong)


def test_object_routes_answer_missing_and_malformed_ids_as_not_found(callers: dict[str, Caller],
                                                                      world: World) -> None:
    """For every caller in scope of a row's object, an id that names nothing answers 404 —
    what the foreign columns get for the real object — in the caller's protocol (a page, or
    a problem document on the API); one that is not an id answers a page 404, the API 404 or
    its problem document for a request that does not validate (400), never 500."""
    wrong: list[str] = []
    asked: set[tuple[str, str]] = set()
    for (method, path), rule in sorted(MATRIX.items(), key=_order):
        if not _params(path) or isinstance(rule, Open | Exact):
            continue
        for who in PRINCIPALS:
            for token in (False, True) if path.startswith("/api/") else (False,):
                home = _expected(rule, method, path, who, 401)
                if token:
                    home = _token_expected(rule, path, who, home)
                if home in (401, 403, 404):
                    continue  # not in scope of this row's object: asked in the matrix
                asked.add((method, path))
                for name in _params(path):
                    param = PARAMS[name]
                    malformed = {400, 404} if path.startswith("/api/") else {404}
                    for value, allowed in ((param.missing, {404}), (param.malformed, malformed)):
                        url = _url(path, world, **{name: value})
                        resp = _ask(callers[who], method, path, url, world, token=token)
                        kind = resp.headers.get("content-type", "")
                        protocol = "application/problem+json" if path.startswith("/api/") else "text/html"
                        if resp.status_code not in allowed or not kind.startswith(protocol):
                            wrong.append(f"{method} {url} as {who}{' with a token' if token else ''}: "
                                         f"{resp.status_code} {kind}, expected {sorted(allowed)} {protocol}")
    assert len(asked) >= 30, sorted(asked)  # every object route of the inbox, console, settings, accounts
    assert wrong == [], "\n".join(wrong)


def test_foreign_objects_answer_their_own_agency_and_platform(callers: dict[str, Caller], world: World) -> None:
    """The mirror of the matrix: the foreign agency's referral of the foreign platform's
    report answers the foreign columns as the home objects answer the home ones, and the home
    officer and platform 404 (so the matrix's 404s are scope, not a broken route)."""
    mirrored = World({**world.objects, "referral": str(world.foreign_referral), "report": str(world.foreign_report)},
                     world.foreign_report, world.foreign_referral)
    wrong: list[str] = []
    asked = 0
    for (method, path), rule in sorted(MATRIX.items(), key=_order):
        objects = {PARAMS[n].obj for n in _params(path)}
        if method != "GET" or not objects or not objects <= {"referral", "report"}:
            continue
        asked += 1
        url = _url(path, mirrored)
        anon = _ask(callers[ANON], method, path, url, mirrored).status_code
        for who in PRINCIPALS:
            expected = _expected(rule, method, path, who, anon, HOME)
            got = _ask(callers[who], method, path, url, mirrored).status_code
            if got != expected:
                wrong.append(f"{method} {url} as {who}: {got}, expected {expected}")
            if path.startswith("/api/") and not isinstance(rule, Exact):
                expected = _token_expected(rule, path, who, expected, HOME)
                got = _ask(callers[who], method, path, url, mirrored, token=True).status_code
                if got != expected:
                    wrong.append(f"{method} {url} as {who} with a token: {got}, expected {expected}")
    assert asked >= 8  # the inbox, the console's report, the platform's report, their API
    assert wrong == [], "\n".join(wrong)
