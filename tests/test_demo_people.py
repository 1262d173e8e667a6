"""The demo's accounts: one person of every role, each able to sign in with what the demo
prints; a second run gives new passwords and keeps the one-time-code secrets."""

from __future__ import annotations

import re

import pyotp
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from people_helpers import login_csrf
from tipline.cli import main
from tipline.config import Settings
from tipline.demo import demo_credentials
from tipline.kinds.roles import ROLES
from tipline.people import audit
from tipline.people.demo import demo_people
from tipline.runtime import Runtime
from tipline.store.tables_people import AuditEvent
from tipline.web.app import create_app


def _login(client: TestClient, username: str, password: str, code: str) -> str | None:
    csrf = login_csrf(client)
    resp = client.post("/login", data={"username": username, "password": password, "code": code,
                                       "csrf_token": csrf}, follow_redirects=False)
    return resp.headers.get("location") if resp.status_code == 303 else None


def test_every_role_signs_in_with_what_the_demo_prints(runtime: Runtime) -> None:
    demo_credentials(runtime)  # the demo platform its staff account belongs to
    people = demo_people(runtime)
    assert sorted(p.role for p in people) == sorted(ROLES)
    app = create_app(runtime=runtime)
    for p in people:
        with TestClient(app) as client:
            code = pyotp.TOTP(p.totp_secret).now() if p.totp_secret else ""
            assert _login(client, p.username, p.password, code) == ROLES[p.role].home, p
            me = client.get("/api/v1/me").json()
            assert me["role"] == p.role
            if p.role == "officer":
                assert me["agency"] == p.of
            if p.role == "platform":
                assert me["platform"] == "Demo Platform" and p.totp_secret is None


def test_a_second_run_refreshes_passwords_and_keeps_secrets(runtime: Runtime) -> None:
    demo_credentials(runtime)
    first = {p.username: p for p in demo_people(runtime)}
    second = {p.username: p for p in demo_people(runtime)}
    assert first.keys() == second.keys()
    for name, p in second.items():
        assert p.password != first[name].password and p.totp_secret == first[name].totp_secret
    with TestClient(create_app(runtime=runtime)) as client:
        old = first["demo-platform"]
        assert _login(client, old.username, old.password, "") is None
        assert _login(client, old.username, second["demo-platform"].password, "") == "/platform"
    with runtime.sessions() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.actor == "demo")).all()
        assert actions.count("user_add") == len(ROLES) and actions.count("user_password") == len(ROLES)
        assert audit.verify(s).intact


def test_tipline_demo_prints_the_accounts(settings: Settings) -> None:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, ["demo", "--no-serve", "--sim-scale", "0"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(
        r"^\s+(demo-[a-z]+)\s+(\S+)\s+(\S+)", result.output, re.M)}
    assert set(lines) == {f"demo-{r}" for r in ROLES}, result.output
    password, secret = lines["demo-auditor"]
    rt = Runtime.open(settings)
    try:
        with TestClient(create_app(runtime=rt)) as client:
            assert _login(client, "demo-auditor", password, pyotp.TOTP(secret).now()) == "/audit"
            assert "user_add" in client.get("/audit").text
    finally:
        rt.close()
