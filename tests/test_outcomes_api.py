"""``/api/v1/referrals/{referralId}/outcomes`` and ``/api/v1/outcome-codes`` on both backends:
status codes, problem documents, idempotency, scope (a foreign agency's referral is 404),
and the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from outcome_helpers import World, counts, make_world
from tipline.kinds.outcomes import registry
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.web.auth import SCOPE_KEY

API = "/api/v1"
ARREST = {"code": "ARREST", "occurredOn": "2026-07-02", "persons": 2, "arrestType": "S"}


class FakeSignIn:
    """Stands in for the sign-in middleware: ``X-Test-User: NAME`` puts that principal in scope
    (as a token call, so no CSRF token is needed). Tests of real bearer tokens are below."""

    def __init__(self, app: ASGIApp, principals: dict[str, Principal]) -> None:
        self.app, self.principals = app, principals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for k, v in scope["headers"]:
                if k == b"x-test-user" and v.decode() in self.principals:
                    p = self.principals[v.decode()]
                    scope[SCOPE_KEY] = Principal(p.user_id, p.username, p.role, p.agency_id, p.reporter_id,
                                                 token_id=1)
        await self.app(scope, receive, send)


@pytest.fixture
def world(runtime: Runtime) -> World:
    return make_world(runtime)


@pytest.fixture
def api(runtime: Runtime, world: World) -> Iterator[TestClient]:
    from tipline.web.app import create_app

    app = create_app(runtime=runtime)
    app.add_middleware(FakeSignIn, principals={p.username: p for p in (
        world.officer_a, world.officer_b, world.analyst, world.platform)})
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def as_(who: Principal, **extra: str) -> dict[str, str]:
    return {"X-Test-User": who.username, **extra}


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["type"].startswith("urn:tipline:problem:")
    assert "Traceback" not in r.text
    return body


def test_record_and_list(api: TestClient, world: World, runtime: Runtime) -> None:
    ref = world.refs_a[0]
    r = api.post(f"{API}/referrals/{ref}/outcomes", json=ARREST, headers=as_(world.officer_a))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["code"] == "ARREST" and out["persons"] == 2 and out["arrestType"] == "S" and out["via"] == "api"
    assert out["state"] == "effective" and out["kind"] == "record"
    closing = api.post(f"{API}/referrals/{ref}/outcomes", headers=as_(world.officer_a), json={
        "code": "CLEARED_EXCEPTIONALLY", "occurredOn": "2026-08-01", "nibrsCode": "B"})
    assert closing.status_code == 201
    listed = api.get(f"{API}/referrals/{ref}/outcomes", headers=as_(world.officer_a))
    assert listed.status_code == 200
    doc = listed.json()
    assert [o["code"] for o in doc["outcomes"]] == ["ARREST", "CLEARED_EXCEPTIONALLY"]
    assert doc["open"] is False and doc["codesVersion"] == registry().version
    second = api.post(f"{API}/referrals/{ref}/outcomes", headers=as_(world.officer_a), json={
        "code": "CLOSED_NOT_PURSUED", "occurredOn": "2026-08-02", "reason": "evidential"})
    assert "reopen" in problem(second, 409)["detail"]
    reopened = api.post(f"{API}/referrals/{ref}/outcomes", headers=as_(world.officer_a),
                        json={"kind": "reopen", "occurredOn": "2026-08-03"})
    assert reopened.status_code == 201 and reopened.json()["supersedes"] == closing.json()["outcomeId"]
    assert api.get(f"{API}/referrals/{ref}/outcomes", headers=as_(world.officer_a)).json()["open"] is True
    # Analysts read timelines; they may not record.
    assert api.get(f"{API}/referrals/{ref}/outcomes", headers=as_(world.analyst)).status_code == 200
    problem(api.post(f"{API}/referrals/{ref}/outcomes", json=ARREST, headers=as_(world.analyst)), 403)


def test_a_foreign_agencys_referral_is_404_like_a_missing_one(api: TestClient, world: World,
                                                               runtime: Runtime) -> None:
    before = counts(runtime)
    foreign = problem(api.post(f"{API}/referrals/{world.refs_b[0]}/outcomes", json=ARREST,
                               headers=as_(world.officer_a)), 404)
    missing = problem(api.post(f"{API}/referrals/999999/outcomes", json=ARREST, headers=as_(world.officer_a)), 404)
    assert foreign["title"] == missing["title"] and foreign["type"] == missing["type"]
    problem(api.get(f"{API}/referrals/{world.refs_b[0]}/outcomes", headers=as_(world.officer_a)), 404)
    # Platform staff see no referral at all: answered as missing, never 403.
    problem(api.get(f"{API}/referrals/{world.refs_b[0]}/outcomes", headers=as_(world.platform)), 404)
    assert counts(runtime) == before


@pytest.mark.parametrize(("body", "status", "path"), [
    ({"code": "ARREST", "occurredOn": "2026-07-02", "persons": 2}, 422, "$.arrestType"),
    ({**ARREST, "occurredOn": "2099-01-01"}, 422, "$.occurredOn"),
    ({**ARREST, "code": "MAYBE"}, 422, "$.code"),
    ({**ARREST, "extra": 1}, 422, "$.extra"),
    ([1, 2], 422, "$"),
])
def test_refusals_are_problems_that_name_the_field(api: TestClient, world: World, runtime: Runtime,
                                                   body: Any, status: int, path: str) -> None:
    before = counts(runtime)
    p = problem(api.post(f"{API}/referrals/{world.refs_a[0]}/outcomes", json=body, headers=as_(world.officer_a)),
                status)
    assert p["errors"][0]["path"] == path and p["errors"][0]["location"] == "body"
    assert counts(runtime) == before


def test_bad_requests(api: TestClient, world: World, runtime: Runtime) -> None:
    url = f"{API}/referrals/{world.refs_a[0]}/outcomes"
    before = counts(runtime)
    problem(api.post(url, content=b"{not json", headers=as_(world.officer_a)), 400)
    problem(api.post(url, content=b"\xff\xfe", headers=as_(world.officer_a)), 400)
    problem(api.post(f"{API}/referrals/abc/outcomes", json=ARREST, headers=as_(world.officer_a)), 400)
    problem(api.post(f"{API}/referrals/0/outcomes", json=ARREST, headers=as_(world.officer_a)), 400)
    big = json.dumps({**ARREST, "note": "x" * (runtime.settings.max_document_bytes + 1)}).encode()
    problem(api.post(url, content=big, headers=as_(world.officer_a)), 413)
    # No caller: 401 with a challenge, as everywhere on /api/v1.
    r = api.post(url, json=ARREST)
    problem(r, 401)
    assert "WWW-Authenticate" in r.headers
    problem(api.get(url), 401)
    assert counts(runtime) == before


def test_idempotency_key(api: TestClient, world: World, runtime: Runtime) -> None:
    url = f"{API}/referrals/{world.refs_a[0]}/outcomes"
    ack = {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-02"}
    first = api.post(url, json=ack, headers=as_(world.officer_a, **{"Idempotency-Key": "case-77"}))
    assert first.status_code == 201
    before = counts(runtime)
    # The same body (in another spelling) answers with the first event.
    again = api.post(url, content=json.dumps(ack, indent=2).encode(),
                     headers=as_(world.officer_a, **{"Idempotency-Key": "case-77"}))
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = problem(api.post(url, json=ARREST, headers=as_(world.officer_a, **{"Idempotency-Key": "case-77"})), 409)
    assert other["type"].endswith("idempotency-key-reused") and other["errors"][0]["location"] == "header"
    assert counts(runtime) == before


def test_amend_and_withdraw_over_the_api(api: TestClient, world: World) -> None:
    url = f"{API}/referrals/{world.refs_a[1]}/outcomes"
    first = api.post(url, json=ARREST, headers=as_(world.officer_a)).json()
    amended = api.post(url, json={"kind": "amend", "supersedes": first["outcomeId"], "persons": 3},
                       headers=as_(world.officer_a))
    assert amended.status_code == 201 and amended.json()["persons"] == 3
    stale = api.post(url, json={"kind": "withdraw", "supersedes": first["outcomeId"]}, headers=as_(world.officer_a))
    problem(stale, 409)
    gone = api.post(url, json={"kind": "withdraw", "supersedes": amended.json()["outcomeId"], "note": "mistake"},
                    headers=as_(world.officer_a))
    assert gone.status_code == 201
    states = [(o["outcomeId"], o["state"]) for o in api.get(url, headers=as_(world.officer_a)).json()["outcomes"]]
    assert [s for _, s in states] == ["withdrawn", "withdrawn", "action"]


def test_outcome_codes_are_the_registry(api: TestClient) -> None:
    r = api.get(f"{API}/outcome-codes")
    assert r.status_code == 200
    doc = r.json()
    assert [c["code"] for c in doc["codes"]] == list(registry().codes) and doc["version"] == registry().version
    arrest = next(c for c in doc["codes"] if c["code"] == "ARREST")
    assert set(arrest["values"]["arrestType"]) == {"O", "S", "T"} and set(arrest["required"]) == {"persons",
                                                                                                  "arrestType"}


def test_openapi_declares_the_outcome_operations(api: TestClient) -> None:
    doc = api.get(f"{API}/openapi.json").json()
    post = doc["paths"]["/api/v1/referrals/{referralId}/outcomes"]["post"]
    assert {"200", "201", "401", "403", "404", "409", "413", "422"} <= set(post["responses"])
    assert post["security"] == [{"userAuth": []}]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    schemas = doc["components"]["schemas"]
    props = schemas["OutcomeInput"]["properties"]
    codes = props["code"]["anyOf"][0]["enum"]
    assert codes == list(registry().codes)
    assert "userAuth" in doc["components"]["securitySchemes"]
    assert "HTTPValidationError" not in json.dumps(post)


# --- real credentials: user bearer tokens and sessions (tipline.people.accounts) ------------


def _token(rt: Runtime, username: str) -> str:
    from sqlalchemy import select

    from tipline.people.accounts import issue_token
    from tipline.store.db import transaction
    from tipline.store.tables_people import User

    with transaction(rt.sessions) as s:
        user = s.scalars(select(User).where(User.username == username)).one()
        token, _ = issue_token(s, user, "case system")
    return token


def test_bearer_tokens_of_real_users(client: TestClient, runtime: Runtime, world: World) -> None:
    from sqlalchemy import select

    from tipline.store.tables_people import AuditEvent

    officer = {"Authorization": f"Bearer {_token(runtime, 'officer-a')}"}
    url = f"{API}/referrals/{world.refs_a[0]}/outcomes"
    r = client.post(url, json=ARREST, headers=officer)
    assert r.status_code == 201, r.text
    assert client.get(url, headers=officer).json()["outcomes"][0]["outcomeId"] == r.json()["outcomeId"]
    before = counts(runtime)
    problem(client.post(f"{API}/referrals/{world.refs_b[0]}/outcomes", json=ARREST, headers=officer), 404)
    problem(client.get(f"{API}/referrals/{world.refs_b[0]}/outcomes", headers=officer), 404)
    problem(client.post(url, json=ARREST, headers={"Authorization": "Bearer tlu_0000_wrong"}), 401)
    # A platform's credentials (Basic, as the fuzzer sends) open no outcome route.
    from conftest import ESP_PASS, ESP_USER

    problem(client.post(url, json=ARREST, auth=(ESP_USER, ESP_PASS)), 401)
    analyst = {"Authorization": f"Bearer {_token(runtime, 'analyst-1')}"}
    problem(client.post(url, json=ARREST, headers=analyst), 403)
    assert counts(runtime) == before
    with runtime.sessions() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "outcome.record")).one()
    assert event.actor == "officer-a" and event.token_id is not None and event.request_id


def test_a_session_needs_its_csrf_token(client: TestClient, runtime: Runtime, world: World) -> None:
    from sqlalchemy import select

    from tipline.people.accounts import start_session
    from tipline.store.db import transaction
    from tipline.store.tables_people import User
    from tipline.web.signin import COOKIE

    with transaction(runtime.sessions) as s:
        user = s.scalars(select(User).where(User.username == "officer-a")).one()
        started = start_session(s, user)
    client.cookies.set(COOKIE, started.cookie)
    url = f"{API}/referrals/{world.refs_a[0]}/outcomes"
    before = counts(runtime)
    problem(client.post(url, json=ARREST), 403)
    assert counts(runtime) == before
    assert client.post(url, json=ARREST, headers={"X-CSRF-Token": started.csrf}).status_code == 201
    assert client.get(url).status_code == 200
