"""Sign-in: passwords, one-time codes, lock-out, sessions, tokens, CSRF, the audit rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from people_helpers import PASSWORD, login_csrf, make_user, sign_in, user_token
from tipline.people import accounts, audit
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables_people import AuditEvent, SignInAttempt, User, WebSession


def _post_login(client: TestClient, username: str, password: str, code: str) -> object:
    csrf = login_csrf(client)
    return client.post("/login", data={"username": username, "password": password, "code": code,
                                       "csrf_token": csrf}, follow_redirects=False)


def test_login_page_has_the_labelled_fields(client: TestClient) -> None:
    resp = client.get("/login")
    assert resp.status_code == 200
    for label in ("Username", "Password", "One-time code"):
        assert f">{label}</label>" in resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def test_analyst_signs_in_with_a_code_and_lands_on_the_console(runtime: Runtime, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    csrf = login_csrf(client)
    resp = client.post("/login", data={"username": "ana", "password": PASSWORD, "code": ana.code(),
                                       "csrf_token": csrf}, follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/console"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    me = client.get("/api/v1/me").json()
    assert me == {"username": "ana", "role": "analyst", "agency": None, "platform": None, "viaToken": False}


def test_wrong_password_wrong_code_reused_code(runtime: Runtime, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    resp = _post_login(client, "ana", "not the password", ana.code())
    assert resp.status_code == 401 and "Wrong username, password or one-time code" in resp.text  # type: ignore[attr-defined]
    resp = _post_login(client, "ana", PASSWORD, "000000" if ana.code() != "000000" else "111111")
    assert resp.status_code == 401  # type: ignore[attr-defined]
    resp = _post_login(client, "nobody", PASSWORD, "123456")
    assert resp.status_code == 401 and "Wrong username" in resp.text  # type: ignore[attr-defined]
    code = ana.code()
    assert _post_login(client, "ana", PASSWORD, code).status_code == 303  # type: ignore[attr-defined]
    client.cookies.clear()
    resp = _post_login(client, "ana", PASSWORD, code)
    assert resp.status_code == 401 and "already used" in resp.text  # type: ignore[attr-defined]


def test_five_failures_lock_the_account_for_fifteen_minutes(runtime: Runtime, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    for _ in range(5):
        assert _post_login(client, "ana", "wrong password!", ana.code()).status_code == 401  # type: ignore[attr-defined]
    resp = _post_login(client, "ana", PASSWORD, ana.code())
    assert resp.status_code == 423 and "locked" in resp.text  # type: ignore[attr-defined]
    with transaction(runtime.sessions) as s:
        user = s.get(User, ana.user_id)
        assert user is not None and user.locked_until is not None
        left = user.locked_until - datetime.now(UTC)
        assert timedelta(minutes=14) < left <= timedelta(minutes=15)
        # Time passes: the lock ends by itself.
        user.locked_until = datetime.now(UTC) - timedelta(seconds=1)
    assert _post_login(client, "ana", PASSWORD, ana.code()).status_code == 303  # type: ignore[attr-defined]


def test_rate_limit_per_address(runtime: Runtime, client: TestClient) -> None:
    make_user(runtime, "ana", "analyst")
    limit = runtime.settings.sign_in_rate_per_address
    with transaction(runtime.sessions) as s:
        now = datetime.now(UTC)
        s.add_all([SignInAttempt(username=f"u{i}", address="testclient", at=now, ok=False, failure="unknown")
                   for i in range(limit)])
    resp = _post_login(client, "ana", PASSWORD, "123456")
    assert resp.status_code == 429 and "Too many sign-in attempts" in resp.text  # type: ignore[attr-defined]


def test_platform_staff_sign_in_without_a_code(runtime: Runtime, client: TestClient) -> None:
    pat = make_user(runtime, "pat", "platform", platform="Acme Social")
    assert pat.totp_secret is None
    sign_in(client, pat, code="")
    assert client.get("/api/v1/me").json()["platform"] == "Acme Social"


def test_officer_belongs_to_one_agency(runtime: Runtime, client: TestClient) -> None:
    off = make_user(runtime, "olive", "officer", agency="ICAC-TX-OAG")
    sign_in(client, off)
    assert client.get("/api/v1/me").json()["agency"] == "ICAC-TX-OAG"


def test_bearer_token_revocation_and_platform_tokens_are_not_users(runtime: Runtime, client: TestClient,
                                                                   esps: object) -> None:
    ana = make_user(runtime, "ana", "analyst")
    token = user_token(runtime, ana)
    h = {"Authorization": f"Bearer {token}"}
    fresh = TestClient(client.app)
    assert fresh.get("/api/v1/me", headers=h).json()["viaToken"] is True
    with transaction(runtime.sessions) as s:
        user = s.get(User, ana.user_id)
        assert user is not None and accounts.revoke_token(s, user, token)
    resp = fresh.get("/api/v1/me", headers=h)
    assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    assert fresh.get("/api/v1/me", headers={"Authorization": "Bearer tlu_nonsense"}).status_code == 401
    assert fresh.get("/api/v1/me", headers={"Authorization": "Bearer tlu_" + "a" * 16 + "_x"}).status_code == 401


def test_sign_out_needs_the_csrf_token_and_everywhere_ends_every_session(runtime: Runtime,
                                                                         client: TestClient) -> None:
    pat = make_user(runtime, "pat", "platform", platform="Acme Social")
    other = TestClient(client.app)
    sign_in(client, pat, code="")
    sign_in(other, pat, code="")
    # No token: refused, nothing changed.
    resp = client.post("/logout", follow_redirects=False)
    assert resp.status_code == 403 and "expired" in resp.text
    assert client.get("/api/v1/me").status_code == 200
    with transaction(runtime.sessions) as s:
        cookie = client.cookies.get("tipline_session")
        assert cookie
        csrf = s.scalar(select(WebSession.csrf_token).where(WebSession.id == accounts._sha256(cookie)))
    resp = client.post("/logout", data={"csrf_token": csrf, "everywhere": "1"}, follow_redirects=False)
    assert resp.status_code == 303
    assert client.get("/api/v1/me").status_code == 401
    assert other.get("/api/v1/me").status_code == 401


def test_idle_session_ends(runtime: Runtime, client: TestClient) -> None:
    pat = make_user(runtime, "pat", "platform", platform="Acme Social")
    sign_in(client, pat, code="")
    with transaction(runtime.sessions) as s:
        s.execute(update(WebSession).values(
            last_seen_at=datetime.now(UTC) - timedelta(minutes=runtime.settings.session_idle_minutes + 1)))
    assert client.get("/api/v1/me").status_code == 401
    page = client.get("/api/v1/me")
    assert page.status_code == 401


def test_login_form_without_its_token_and_open_redirects(runtime: Runtime, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    resp = client.post("/login", data={"username": "ana", "password": PASSWORD, "code": ana.code()},
                       follow_redirects=False)
    assert resp.status_code == 400 and "expired" in resp.text
    csrf = login_csrf(client)
    resp = client.post("/login", data={"username": "ana", "password": PASSWORD, "code": ana.code(),
                                       "csrf_token": csrf, "next": "//evil.example/x"}, follow_redirects=False)
    assert resp.headers["location"] == "/console"


def test_oversized_and_empty_forms_are_clear_errors(client: TestClient) -> None:
    csrf = login_csrf(client)
    resp = client.post("/login", data={"username": "a" * 5000, "password": "x", "code": "",
                                       "csrf_token": csrf})
    assert resp.status_code == 400 and "too large" in resp.text
    resp = client.post("/login", data={"username": "", "password": "", "code": "", "csrf_token": csrf})
    assert resp.status_code == 400 and "Enter your username and password" in resp.text


def test_sign_ins_are_audited_and_the_chain_verifies(runtime: Runtime, client: TestClient) -> None:
    pat = make_user(runtime, "pat", "platform", platform="Acme Social")
    sign_in(client, pat, code="")
    csrf = session_csrf_of(runtime, client)
    client.post("/logout", data={"csrf_token": csrf})
    with runtime.sessions() as s:
        actions = s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
        assert actions == ["sign_in", "sign_out"]
        assert audit.verify(s).intact
        assert s.scalar(select(func.count()).select_from(SignInAttempt).where(SignInAttempt.ok)) == 1


def session_csrf_of(runtime: Runtime, client: TestClient) -> str:
    cookie = client.cookies.get("tipline_session")
    assert cookie
    with runtime.sessions() as s:
        csrf = s.scalar(select(WebSession.csrf_token).where(WebSession.id == accounts._sha256(cookie)))
    assert csrf
    return csrf


def test_pages_redirect_to_sign_in(client: TestClient) -> None:
    # Any route that needs a person: the API answers 401, pages go to /login?next=…
    resp = client.get("/api/v1/me")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")


