"""Helpers for tests of people and their work: accounts, sign-in, tokens.

Every test that needs a signed-in person goes through the real sign-in (password and a real
TOTP code) or a real bearer token, never a principal injected into the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from fastapi.testclient import TestClient

from tipline.people import accounts
from tipline.pipeline.stages.route import ensure_directory
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables_people import User

PASSWORD = "correct horse battery"


@dataclass
class TestUser:
    username: str
    role: str
    password: str
    user_id: int
    totp_secret: str | None

    def code(self, at: datetime | None = None) -> str:
        assert self.totp_secret, f"{self.role} signs in without a code"
        return pyotp.TOTP(self.totp_secret).at(at or datetime.now(UTC))

    def next_code(self) -> str:
        """A code of the next time step (the current one may already have been used)."""
        return pyotp.TOTP(self.totp_secret or "").at(datetime.now(UTC) + timedelta(seconds=30))


def make_user(rt: Runtime, username: str, role: str, *, agency: str | None = None,
              platform: str | None = None, password: str = PASSWORD, email: str | None = None) -> TestUser:
    with transaction(rt.sessions) as s:
        if agency:
            ensure_directory(s)
        new = accounts.create_user(s, username, role, password, agency=agency, platform=platform,
                                   email=email)
        return TestUser(username, role, password, new.user.id, new.totp_secret)


def user_token(rt: Runtime, user: TestUser, label: str | None = None) -> str:
    with transaction(rt.sessions) as s:
        row = s.get(User, user.user_id)
        assert row is not None
        token, _ = accounts.issue_token(s, row, label)
        return token


def login_csrf(client: TestClient) -> str:
    """GET /login and return the login form's double-submit token."""
    resp = client.get("/login")
    assert resp.status_code == 200, resp.text
    token = client.cookies.get("tipline_login")
    assert token
    return token


def sign_in(client: TestClient, user: TestUser, *, code: str | None = None) -> None:
    """Sign ``client`` in through the real form; the session cookie stays in its jar."""
    csrf = login_csrf(client)
    resp = client.post("/login", data={
        "username": user.username, "password": user.password,
        "code": code if code is not None else (user.code() if user.totp_secret else ""),
        "csrf_token": csrf}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    assert client.cookies.get("tipline_session")


def session_csrf(client: TestClient, page: str) -> str:
    """The CSRF token a staff page embeds in its forms."""
    import re

    resp = client.get(page)
    assert resp.status_code == 200, resp.text
    m = re.search(r'name="csrf_token" value="([^"]+)"', resp.text)
    assert m, "no CSRF field on " + page
    return m.group(1)
