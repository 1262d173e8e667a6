"""The administrator's accounts pages on both backends: list, add (role, agency, platform),
disable and enable, reset the one-time code, issue and revoke a token — through the same
functions as `tipline user …`, each with a reason, CSRF and the CLI's audit action; the
one-time secrets shown once and working; 404 for every other role and unknown ids."""

from __future__ import annotations

import re

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from people_helpers import PASSWORD, TestUser, login_csrf, make_user, session_csrf, sign_in
from tipline.people.audit import verify
from tipline.pipeline.stages.route import ensure_directory
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables_people import AuditEvent, User, UserToken


def audit_actions(rt: Runtime) -> list[tuple[str, str, str | None]]:
    with rt.sessions() as s:
        return [(e.action, e.actor, (e.detail or {}).get("reason"))
                for e in s.scalars(select(AuditEvent).where(AuditEvent.object_kind == "user",
                                                            AuditEvent.action != "sign_in")
                                   .order_by(AuditEvent.seq))]


def user_id(rt: Runtime, username: str) -> int:
    with rt.sessions() as s:
        return int(s.execute(select(User.id).where(User.username == username)).scalar_one())


def admin_client(runtime: Runtime, client: TestClient) -> tuple[TestClient, str]:
    with transaction(runtime.sessions) as s:
        ensure_directory(s)
    sign_in(client, make_user(runtime, "ada", "admin"))
    return client, session_csrf(client, "/admin/users")


def test_add_an_officer_shows_the_totp_once_and_it_signs_in(runtime: Runtime, client: TestClient) -> None:
    adm, csrf = admin_client(runtime, client)
    page = adm.get("/admin/users")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "ada" in page.text and "ICAC-TX-OAG" in page.text  # the agency choices
    form = {"username": "olga", "role": "officer", "agency": "ICAC-TX-OAG", "platform": "Acme Social",
            "password": PASSWORD, "email": "olga@example.test", "csrf_token": csrf}
    assert adm.post("/admin/users", data=form).status_code == 400  # no reason
    assert adm.post("/admin/users", data={**form, "reason": "r", "agency": ""}).status_code == 400  # no agency
    short = adm.post("/admin/users", data={**form, "reason": "r", "password": "short"})
    assert short.status_code == 400 and "8" in short.text and "short" not in short.text.split("<main", 1)[1]
    assert adm.post("/admin/users", data={k: v for k, v in form.items() if k != "csrf_token"}).status_code == 403
    done = adm.post("/admin/users", data={**form, "reason": "joined the Texas task force"})
    assert done.status_code == 200 and done.headers["cache-control"] == "no-store"
    uri = re.search(r"(otpauth://totp/[^<\s]+)", done.text)
    assert uri and "shown once" in done.text
    secret = pyotp.parse_uri(uri.group(1).replace("&amp;", "&")).secret
    with runtime.sessions() as s:
        olga = s.execute(select(User).where(User.username == "olga")).scalar_one()
        assert olga.role == "officer" and olga.agency_id is not None and olga.reporter_id is None  # platform ignored
        assert olga.totp_secret == secret
    # The account works: sign in with the password and a code from the secret shown.
    with TestClient(adm.app, raise_server_exceptions=False) as other:
        sign_in(other, TestUser("olga", "officer", PASSWORD, olga.id, secret))
    assert audit_actions(runtime) == [("user_add", "ada", "joined the Texas task force")]
    # The secret is not on any later page.
    assert secret not in adm.get(f"/admin/users/{olga.id}").text and secret not in adm.get("/admin/users").text
    dup = adm.post("/admin/users", data={**form, "reason": "again"})
    assert dup.status_code == 400 and "exists" in dup.text


def test_platform_staff_and_generated_password(runtime: Runtime, client: TestClient) -> None:
    adm, csrf = admin_client(runtime, client)
    done = adm.post("/admin/users", data={"username": "pia", "role": "platform", "platform": "Acme Social",
                                          "agency": "FBI", "reason": "Acme's trust and safety", "csrf_token": csrf})
    assert done.status_code == 200 and "otpauth://" not in done.text  # platform staff sign in without a code
    password = re.search(r"<dt>Password</dt><dd><code>([^<]+)</code>", done.text)
    assert password
    with TestClient(adm.app, raise_server_exceptions=False) as other:
        sign_in(other, TestUser("pia", "platform", password.group(1), user_id(runtime, "pia"), None))
        assert other.get("/platform").status_code == 200


def test_token_issue_revoke_reset_totp_disable_enable(runtime: Runtime, client: TestClient) -> None:
    adm, csrf = admin_client(runtime, client)
    ana = make_user(runtime, "ana", "analyst")
    base = f"/admin/users/{ana.user_id}"
    assert adm.get(base).status_code == 200
    # A token, shown once; it works on the JSON API.
    assert adm.post(f"{base}/tokens", data={"label": "script", "csrf_token": csrf}).status_code == 409  # no reason
    issued = adm.post(f"{base}/tokens", data={"label": "script", "reason": "nightly export", "csrf_token": csrf})
    token = re.search(r"(tlu_[A-Za-z0-9_\-]+)", issued.text)
    assert issued.status_code == 200 and token
    api = TestClient(adm.app, raise_server_exceptions=False)
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"}).json()["username"] == "ana"
    with runtime.sessions() as s:
        row = s.execute(select(UserToken).where(UserToken.user_id == ana.user_id)).scalar_one()
        assert token.group(1) not in row.secret_hash  # only its hash is kept
    assert token.group(1) not in adm.get(base).text and row.lookup in adm.get(base).text
    revoked = adm.post(f"{base}/tokens/{row.lookup}/revoke", data={"reason": "script retired", "csrf_token": csrf},
                       follow_redirects=False)
    assert revoked.status_code == 303 and revoked.headers["location"].endswith("done=revoked")
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"}).status_code == 401
    assert adm.post(f"{base}/tokens/{row.lookup}/revoke", data={"reason": "again", "csrf_token": csrf}
                    ).status_code == 409
    # A token this account does not have is not found, before the form is looked at.
    assert adm.post(f"{base}/tokens/{'0' * 16}/revoke", data={"csrf_token": csrf}).status_code == 404
    # Reset the one-time code: the new secret is shown once and the old one stops working.
    reset = adm.post(f"{base}/reset-totp", data={"reason": "lost phone", "csrf_token": csrf})
    assert reset.status_code == 200
    secret = re.search(r"Secret, for entering by hand</dt><dd><code>([A-Z2-7]+)</code>", reset.text)
    assert secret and secret.group(1) != ana.totp_secret
    with TestClient(adm.app, raise_server_exceptions=False) as other:
        sign_in(other, TestUser("ana", "analyst", PASSWORD, ana.user_id, secret.group(1)))
    # Disable: sessions end, sign-in is refused; enable again.
    assert adm.post(f"{base}/disable", data={"csrf_token": csrf}).status_code == 409  # no reason
    off = adm.post(f"{base}/disable", data={"reason": "left the hotline", "csrf_token": csrf}, follow_redirects=False)
    assert off.status_code == 303
    with runtime.sessions() as s:
        assert s.get(User, ana.user_id).disabled_at is not None  # type: ignore[union-attr]
    assert "disabled" in adm.get(base).text
    on = adm.post(f"{base}/enable", data={"reason": "came back", "csrf_token": csrf}, follow_redirects=False)
    assert on.status_code == 303
    # An administrator cannot lock themself out.
    me = adm.post(f"/admin/users/{user_id(runtime, 'ada')}/disable", data={"reason": "x", "csrf_token": csrf})
    assert me.status_code == 409 and "your own account" in me.text
    assert audit_actions(runtime) == [
        ("token_issue", "ada", "nightly export"), ("token_revoke", "ada", "script retired"),
        ("user_reset_totp", "ada", "lost phone"), ("user_disable", "ada", "left the hotline"),
        ("user_enable", "ada", "came back")]
    with runtime.sessions() as s:
        assert verify(s).intact
    # Unknown and malformed ids.
    for path in ("/admin/users/99999", "/admin/users/x1"):
        assert adm.get(path).status_code == 404
    assert adm.post("/admin/users/99999/disable", data={"reason": "r", "csrf_token": csrf}).status_code == 404


def test_only_administrators_manage_accounts(runtime: Runtime, client: TestClient) -> None:
    with transaction(runtime.sessions) as s:
        ensure_directory(s)
    target = make_user(runtime, "tess", "analyst")
    for role in ("analyst", "supervisor", "officer", "platform", "auditor"):
        extra = {"agency": "FBI"} if role == "officer" else {"platform": "Acme Social"} if role == "platform" else {}
        with TestClient(client.app, raise_server_exceptions=False) as c:
            sign_in(c, make_user(runtime, f"u-{role}", role, **extra))
            csrf = session_csrf(c, "/account")
            assert c.get("/admin/users").status_code == 404, role
            assert c.get(f"/admin/users/{target.user_id}").status_code == 404, role
            r = c.post(f"/admin/users/{target.user_id}/disable", data={"reason": "r", "csrf_token": csrf})
            assert r.status_code == 404, role
            assert "/admin/users" not in c.get("/account").text, role
    with runtime.sessions() as s:
        assert s.get(User, target.user_id).disabled_at is None  # type: ignore[union-attr]


def _fail_sign_in(client: TestClient, username: str) -> int:
    resp = client.post("/login", data={"username": username, "password": "wrong password!", "code": "000000",
                                       "csrf_token": login_csrf(client)}, follow_redirects=False)
    return resp.status_code


def test_unlock_a_locked_account_and_set_a_new_password(runtime: Runtime, client: TestClient) -> None:
    adm, csrf = admin_client(runtime, client)
    ana = make_user(runtime, "ana", "analyst")
    base = f"/admin/users/{ana.user_id}"
    # Not locked: nothing to unlock, and the page offers no unlock button.
    assert "Unlock account" not in adm.get(base).text
    calm = adm.post(f"{base}/unlock", data={"reason": "asked by phone", "csrf_token": csrf})
    assert calm.status_code == 409 and "not locked" in calm.text
    # Five failed sign-ins lock the account: even the right password is refused.
    with TestClient(adm.app, raise_server_exceptions=False) as guesser:
        for _ in range(runtime.settings.sign_in_max_failures):
            assert _fail_sign_in(guesser, "ana") == 401
        r = guesser.post("/login", data={"username": "ana", "password": PASSWORD, "code": ana.code(),
                                         "csrf_token": login_csrf(guesser)}, follow_redirects=False)
        assert r.status_code == 423 and "locked" in r.text  # even the right password, while locked
    with runtime.sessions() as s:
        assert s.get(User, ana.user_id).locked_until is not None  # type: ignore[union-attr]
    page = adm.get(base)
    assert "locked" in page.text and " until " in page.text and "Unlock account" in page.text
    # Without a reason or CSRF token nothing changes.
    assert adm.post(f"{base}/unlock", data={"csrf_token": csrf}).status_code == 409
    assert adm.post(f"{base}/unlock", data={"reason": "r"}).status_code == 403
    with runtime.sessions() as s:
        assert s.get(User, ana.user_id).locked_until is not None  # type: ignore[union-attr]
    done = adm.post(f"{base}/unlock", data={"reason": "she forgot; identity checked by phone", "csrf_token": csrf},
                    follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("done=unlocked")
    assert "is unlocked" in adm.get(done.headers["location"]).text
    with TestClient(adm.app, raise_server_exceptions=False) as other:
        sign_in(other, ana)  # signs in again at once
        assert other.get("/account").status_code == 200
        # A new password: generated, shown once, the old one stops working, sessions end.
        assert adm.post(f"{base}/password", data={"csrf_token": csrf}).status_code == 409  # no reason
        assert adm.post(f"{base}/password", data={"reason": "r"}).status_code == 403  # no CSRF
        assert other.get("/account").status_code == 200  # neither refusal changed anything
        new = adm.post(f"{base}/password", data={"reason": "password seen over her shoulder", "csrf_token": csrf})
        assert new.status_code == 200 and new.headers["cache-control"] == "no-store"
        assert "shown once" in new.text and "New password for ana" in new.text
        found = re.search(r"<dt>Password</dt><dd><code>([^<]+)</code>", new.text)
        assert found and len(found.group(1)) >= 8 and found.group(1) != PASSWORD
        assert other.get("/account", follow_redirects=False).status_code == 303  # its session ended
    assert found.group(1) not in adm.get(base).text  # shown once
    with TestClient(adm.app, raise_server_exceptions=False) as old:
        r = old.post("/login", data={"username": "ana", "password": PASSWORD, "code": ana.next_code(),
                                     "csrf_token": login_csrf(old)}, follow_redirects=False)
        assert r.status_code == 401  # the old password is refused
    with TestClient(adm.app, raise_server_exceptions=False) as fresh:
        sign_in(fresh, TestUser("ana", "analyst", found.group(1), ana.user_id, ana.totp_secret), code=ana.next_code())
        assert fresh.get("/account").status_code == 200
    with runtime.sessions() as s:
        row = s.get(User, ana.user_id)
        assert row is not None and found.group(1) not in row.password_hash
    assert audit_actions(runtime) == [("user_unlock", "ada", "she forgot; identity checked by phone"),
                                      ("user_password", "ada", "password seen over her shoulder")]
    with runtime.sessions() as s:
        assert verify(s).intact
    # Unknown and malformed ids; other roles: 404, and nothing changes.
    for path in ("/admin/users/99999/unlock", "/admin/users/99999/password", "/admin/users/x1/password"):
        assert adm.post(path, data={"reason": "r", "csrf_token": csrf}).status_code == 404
    with TestClient(adm.app, raise_server_exceptions=False) as sup_client:
        sign_in(sup_client, make_user(runtime, "sven", "supervisor"))
        sup_csrf = session_csrf(sup_client, "/account")
        for action in ("unlock", "password"):
            r = sup_client.post(f"{base}/{action}", data={"reason": "r", "csrf_token": sup_csrf})
            assert r.status_code == 404, action
    assert [a for a, _, _ in audit_actions(runtime)] == ["user_unlock", "user_password"]
