"""``tipline user``: accounts from the command line, checked where they matter — on the
sign-in form and the JSON API of a running app — and on the audit trail."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pyotp
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from people_helpers import login_csrf
from tipline.cli import main
from tipline.config import Settings
from tipline.people import audit
from tipline.runtime import Runtime
from tipline.store.tables_people import AuditEvent, User
from tipline.web.app import create_app

PW = "long enough pw"


def cli(settings: Settings, *args: str, ok: bool = True, input: str | None = None) -> Result:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    if not ok:
        assert "Traceback" not in result.output and "Error: " in result.output
    return result


@pytest.fixture
def app(settings: Settings) -> Iterator[tuple[TestClient, Runtime]]:
    cli(settings, "esp", "add", "Acme Social", "--username", "acme", "--password", "acme-secret-1")
    rt = Runtime.open(settings)
    with TestClient(create_app(runtime=rt), raise_server_exceptions=False) as client:
        yield client, rt
    rt.close()


def _uri(result: Result) -> str:
    m = re.search(r"^otpauth://totp/\S+$", result.output, re.M)
    assert m, result.output
    return m.group(0)


def _login(client: TestClient, username: str, password: str, code: str) -> int:
    csrf = login_csrf(client)
    return client.post("/login", data={"username": username, "password": password, "code": code,
                                       "csrf_token": csrf}, follow_redirects=False).status_code


def _counts(rt: Runtime) -> tuple[int, int]:
    with rt.sessions() as s:
        return (s.scalar(select(func.count()).select_from(User)) or 0,
                s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_add_prints_the_provisioning_uri_once_and_sign_in_needs_its_code(
        settings: Settings, app: tuple[TestClient, Runtime]) -> None:
    client, rt = app
    result = cli(settings, "user", "add", "olive", "--role", "officer", "--agency", "ICAC-TX-OAG", "-p", PW)
    uri = _uri(result)
    assert "added officer 'olive' of ICAC-TX-OAG" in result.output
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP) and "olive" in uri and "issuer=tipline" in uri
    assert _login(client, "olive", PW, "") == 401  # the code is required
    assert _login(client, "olive", PW, totp.now()) == 303
    assert client.get("/api/v1/me").json()["agency"] == "ICAC-TX-OAG"
    # Platform staff sign in without a code: no URI is printed.
    result = cli(settings, "user", "add", "pat", "--role", "platform", "--platform", "Acme Social", "-p", PW)
    assert "otpauth://" not in result.output
    assert _login(TestClient(client.app), "pat", PW, "") == 303


def test_password_is_prompted_when_omitted_or_generated(settings: Settings,
                                                        app: tuple[TestClient, Runtime]) -> None:
    client, _ = app
    result = cli(settings, "user", "add", "aud", "--role", "auditor", input=f"{PW}\n{PW}\n")
    totp = pyotp.parse_uri(_uri(result))
    assert _login(client, "aud", PW, totp.now()) == 303
    result = cli(settings, "user", "add", "adm", "--role", "admin", "--generate")
    generated = [line for line in result.output.splitlines() if line and " " not in line
                 and not line.startswith("otpauth")][0]
    assert _login(TestClient(client.app), "adm", generated, pyotp.parse_uri(_uri(result)).now()) == 303


def test_token_is_shown_once_works_with_the_users_scope_and_is_revocable(
        settings: Settings, app: tuple[TestClient, Runtime]) -> None:
    client, rt = app
    cli(settings, "user", "add", "pat", "--role", "platform", "--platform", "Acme Social", "-p", PW)
    result = cli(settings, "user", "token", "pat", "--label", "nightly export")
    token = result.output.splitlines()[0]
    assert token.startswith("tlu_")
    with rt.sessions() as s:
        stored = s.scalars(select(AuditEvent).where(AuditEvent.action == "token_issue")).one()
        # Only the public id is written anywhere; the secret is not.
        # (The secret is url-safe base64 and may itself hold "_": split once after the id.)
        secret = token.removeprefix("tlu_").partition("_")[2]
        assert len(secret) >= 32 and secret not in json.dumps(stored.detail)
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["platform"] == "Acme Social" and me["viaToken"] is True
    listed = json.loads(cli(settings, "user", "tokens", "pat", "--json").output)
    assert [t["label"] for t in listed] == ["nightly export"] and listed[0]["revoked"] is None
    cli(settings, "user", "revoke-token", "pat", listed[0]["id"])
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # Revoking again, or a token of nobody: a message, exit 1.
    cli(settings, "user", "revoke-token", "pat", listed[0]["id"], ok=False)


def test_disable_ends_sessions_and_tokens_enable_lets_sign_in_again(
        settings: Settings, app: tuple[TestClient, Runtime]) -> None:
    client, _ = app
    cli(settings, "user", "add", "pat", "--role", "platform", "--platform", "Acme Social", "-p", PW)
    token = cli(settings, "user", "token", "pat").output.splitlines()[0]
    assert _login(client, "pat", PW, "") == 303
    assert client.get("/api/v1/me").status_code == 200
    cli(settings, "user", "disable", "pat")
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert _login(TestClient(client.app), "pat", PW, "") == 401
    listed = json.loads(cli(settings, "user", "list", "--json").output)
    assert [(u["username"], u["state"], u["activeTokens"]) for u in listed] == [("pat", "disabled", 0)]
    assert "already" in cli(settings, "user", "disable", "pat").output
    cli(settings, "user", "enable", "pat")
    assert _login(TestClient(client.app), "pat", PW, "") == 303
    # The old token stays revoked.
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_reset_totp_retires_the_old_device(settings: Settings, app: tuple[TestClient, Runtime]) -> None:
    client, _ = app
    old = pyotp.parse_uri(_uri(cli(settings, "user", "add", "ana", "--role", "analyst", "-p", PW)))
    new = pyotp.parse_uri(_uri(cli(settings, "user", "reset-totp", "ana")))
    assert old.secret != new.secret  # type: ignore[attr-defined]
    if old.now() != new.now():
        assert _login(client, "ana", PW, old.now()) == 401
    assert _login(TestClient(client.app), "ana", PW, new.now()) == 303
    # Platform staff have no device to reset.
    cli(settings, "user", "add", "pat", "--role", "platform", "--platform", "Acme Social", "-p", PW)
    assert "without a one-time code" in cli(settings, "user", "reset-totp", "pat", ok=False).output


def test_password_and_unlock(settings: Settings, app: tuple[TestClient, Runtime]) -> None:
    client, rt = app
    cli(settings, "user", "add", "pat", "--role", "platform", "--platform", "Acme Social", "-p", PW)
    for _ in range(rt.settings.sign_in_max_failures):
        assert _login(client, "pat", "wrong password", "") == 401
    assert _login(client, "pat", PW, "") == 423
    assert json.loads(cli(settings, "user", "list", "--json").output)[0]["state"] == "locked"
    assert "locked until" in cli(settings, "user", "list").output
    cli(settings, "user", "unlock", "pat")
    assert _login(client, "pat", PW, "") == 303
    cli(settings, "user", "password", "pat", "-p", "another long one")
    assert client.get("/api/v1/me").status_code == 401  # the password change ended the session
    assert _login(client, "pat", "another long one", "") == 303


@pytest.mark.parametrize("args, message", [
    (["--role", "officer"], "exactly one agency"),
    (["--role", "officer", "--agency", "NO-SUCH"], "no agency with code 'NO-SUCH'"),
    (["--role", "analyst", "--agency", "FBI"], "belongs to no agency"),
    (["--role", "platform"], "exactly one platform"),
    (["--role", "platform", "--platform", "Nobody Inc"], "no registered platform"),
    (["--role", "analyst", "-p", "short"], "at least 8 characters"),
    (["--role", "analyst", "--password", "long enough", "--generate"], "not both"),
])
def test_refused_adds_say_why_and_write_nothing(settings: Settings, app: tuple[TestClient, Runtime],
                                                args: list[str], message: str) -> None:
    _, rt = app
    before = _counts(rt)
    extra = [] if any(a in ("-p", "--password") for a in args) else ["-p", PW]
    result = cli(settings, "user", "add", "nia", *args, *extra, ok=False)
    assert message in result.output
    assert _counts(rt) == before


def test_unknown_and_duplicate_users(settings: Settings, app: tuple[TestClient, Runtime]) -> None:
    _, rt = app
    cli(settings, "user", "add", "ana", "--role", "analyst", "-p", PW)
    before = _counts(rt)
    assert "exists" in cli(settings, "user", "add", "ANA", "--role", "auditor", "-p", PW, ok=False).output
    for sub in ("disable", "enable", "reset-totp", "unlock", "token", "tokens"):
        assert "no user named 'bob'" in cli(settings, "user", sub, "bob", ok=False).output
    cli(settings, "user", "add", "bad name", "--role", "analyst", "-p", PW, ok=False)
    assert _counts(rt) == before
    assert "Invalid value for '--role'" in CliRunner().invoke(
        main, ["user", "add", "x", "--role", "wizard"]).output


def test_every_change_is_one_audit_row_by_the_operator(settings: Settings,
                                                       app: tuple[TestClient, Runtime]) -> None:
    _, rt = app
    cli(settings, "user", "add", "ana", "--role", "analyst", "-p", PW)
    token = cli(settings, "user", "token", "ana").output.splitlines()[0]
    cli(settings, "user", "reset-totp", "ana")
    cli(settings, "user", "password", "ana", "-p", "yet another pw")
    cli(settings, "user", "unlock", "ana")
    cli(settings, "user", "revoke-token", "ana", token)
    cli(settings, "user", "disable", "ana")
    cli(settings, "user", "enable", "ana")
    cli(settings, "user", "list")  # reads write nothing
    with rt.sessions() as s:
        rows = s.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert [r.action for r in rows] == ["user_add", "token_issue", "user_reset_totp", "user_password",
                                            "user_unlock", "token_revoke", "user_disable", "user_enable"]
        assert all(r.actor.startswith("cli") and r.object_kind == "user" for r in rows)
        assert all(r.detail and r.detail["username"] == "ana" for r in rows)
        assert audit.verify(s).intact


def test_list_text_output(settings: Settings, app: tuple[TestClient, Runtime]) -> None:
    assert "no accounts yet" in cli(settings, "user", "list").output
    cli(settings, "user", "add", "olive", "--role", "officer", "--agency", "FBI", "-p", PW)
    cli(settings, "user", "add", "ana", "--role", "analyst", "-p", PW)
    out = cli(settings, "user", "list").output.splitlines()
    assert out[0].split()[:2] == ["USERNAME", "ROLE"]
    assert out[1].split()[:4] == ["ana", "analyst", "-", "active"]
    assert out[2].split()[:4] == ["olive", "officer", "FBI", "active"]
    only = json.loads(cli(settings, "user", "list", "--role", "officer", "--json").output)
    assert [u["username"] for u in only] == ["olive"]
