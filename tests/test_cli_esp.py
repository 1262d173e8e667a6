"""Operator basics: enable a platform again, revoke one API token, set a new password.

Each change is checked where it matters: on ISPWS and on /api/v1, against a server that has
its own authenticator, as a running server in another process would.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from tipline.cli import main
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.web.app import create_app

USER, PASSWORD = "acme", "acme-secret-1"


def cli(settings: Settings, *args: str, ok: bool = True, input: str | None = None) -> Result:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    if not ok:
        assert "Traceback" not in result.output and "Error: " in result.output
    return result


@pytest.fixture
def server(settings: Settings) -> Iterator[TestClient]:
    """The HTTP service on the same instance. It re-checks credentials on every request
    (``auth_recheck_seconds=0``): what is asserted is the stored state, not the 2 s memo of
    another process (tests/test_credentials.py covers that)."""
    cli(settings, "esp", "add", "Acme Social", "--username", USER, "--password", PASSWORD)
    cli(settings, "esp", "add", "Globex Chat", "--username", "globex", "--password", "globex-secret-1")
    rt = Runtime.open(dataclasses.replace(settings, auth_recheck_seconds=0))
    with TestClient(create_app(runtime=rt)) as client:
        yield client
    rt.close()


def ispws(client: TestClient, user: str, password: str) -> int:
    return client.get("/ispws/status", auth=(user, password)).status_code


def api_basic(client: TestClient, user: str, password: str) -> int:
    return client.get("/api/v1/reports", auth=(user, password)).status_code


def api_token(client: TestClient, token: str) -> int:
    return client.get("/api/v1/reports", headers={"Authorization": f"Bearer {token}"}).status_code


def test_enable_undoes_disable(settings: Settings, server: TestClient) -> None:
    token = cli(settings, "esp", "token", "Acme Social").stdout.splitlines()[0]
    assert "disabled platform 'Acme Social'" in cli(settings, "esp", "disable", "Acme Social").output
    assert (ispws(server, USER, PASSWORD), api_basic(server, USER, PASSWORD), api_token(server, token)) == (401,) * 3
    assert "DISABLED" in cli(settings, "esp", "list").output
    out = cli(settings, "esp", "enable", "Acme Social").output
    assert out.strip() == "enabled platform 'Acme Social'"
    assert (ispws(server, USER, PASSWORD), api_basic(server, USER, PASSWORD), api_token(server, token)) == (200,) * 3
    assert "(it already was)" in cli(settings, "esp", "enable", "Acme Social").output
    assert json.loads(cli(settings, "esp", "list", "--json").stdout)[0]["enabled"] is True
    assert "no platform named 'Nobody'" in cli(settings, "esp", "enable", "Nobody", ok=False).output


def test_revoke_one_token(settings: Settings, server: TestClient) -> None:
    first = cli(settings, "esp", "token", "Acme Social", "--label", "ci").stdout.splitlines()[0]
    second = cli(settings, "esp", "token", "Acme Social", "--label", "uploader").stdout.splitlines()[0]
    other = cli(settings, "esp", "token", "Globex Chat").stdout.splitlines()[0]
    first_id, second_id, other_id = (t.split("_")[1] for t in (first, second, other))
    assert api_token(server, first) == api_token(server, second) == api_token(server, other) == 200

    listing = cli(settings, "esp", "tokens", "Acme Social").stdout.splitlines()
    assert listing[0].split() == ["TOKEN", "ID", "ISSUED", "(UTC)", "REVOKED", "(UTC)", "LABEL"]
    assert [line.split()[0] for line in listing[1:]] == [first_id, second_id]

    # Another platform's token cannot be revoked in this platform's name.
    out = cli(settings, "esp", "revoke-token", "Acme Social", other_id, ok=False).output
    assert f"has no token {other_id!r}" in out
    assert api_token(server, other) == 200

    out = cli(settings, "esp", "revoke-token", "Acme Social", first_id).output
    assert f"token {first_id} of 'Acme Social' revoked at" in out
    assert api_token(server, first) == 401
    assert api_token(server, second) == api_token(server, other) == 200  # only that one
    assert ispws(server, USER, PASSWORD) == 200  # the password is not a token

    tokens = {t["id"]: t for t in json.loads(cli(settings, "esp", "tokens", "Acme Social", "--json").stdout)}
    assert tokens[first_id]["disabled"] is not None and tokens[second_id]["disabled"] is None
    assert "(revoked)" in cli(settings, "esp", "list").stdout
    # Revoking again keeps the first revocation time; the whole token names it too.
    again = cli(settings, "esp", "revoke-token", "Acme Social", first).output
    assert tokens[first_id]["disabled"][:19] in again.replace(" ", "T")
    assert "no platform named" in cli(settings, "esp", "tokens", "Nobody", ok=False).output


def test_new_password_replaces_the_old(settings: Settings, server: TestClient) -> None:
    assert ispws(server, USER, PASSWORD) == api_basic(server, USER, PASSWORD) == 200
    cli(settings, "esp", "password", USER, "--password", "acme-secret-2")
    assert ispws(server, USER, PASSWORD) == api_basic(server, USER, PASSWORD) == 401
    assert ispws(server, USER, "acme-secret-2") == api_basic(server, USER, "acme-secret-2") == 200
    assert ispws(server, "globex", "globex-secret-1") == 200  # other platforms untouched

    # Prompted for (hidden, asked twice) ...
    cli(settings, "esp", "password", USER, input="acme-secret-3\nacme-secret-3\n")
    assert ispws(server, USER, "acme-secret-2") == 401 and ispws(server, USER, "acme-secret-3") == 200
    # ... or generated and printed once, on stdout, with the warning on stderr.
    res = cli(settings, "esp", "password", USER, "--generate")
    generated = res.stdout.splitlines()[-1]
    assert len(generated) >= 20 and "not shown again" in res.stderr
    assert ispws(server, USER, "acme-secret-3") == 401 and api_basic(server, USER, generated) == 200

    # Refused changes leave the password as it was.
    assert "at least 8 characters" in cli(settings, "esp", "password", USER, "--password", "short", ok=False).output
    assert "not both" in cli(settings, "esp", "password", USER, "--password", "long-enough-1", "--generate",
                             ok=False).output
    assert "no username 'ghost'" in cli(settings, "esp", "password", "ghost", "--password", "long-enough-1",
                                        ok=False).output
    assert ispws(server, USER, generated) == 200


def test_add_with_a_generated_password(settings: Settings, server: TestClient) -> None:
    res = cli(settings, "esp", "add", "Initech", "--username", "initech", "--generate")
    password = res.stdout.splitlines()[-1]
    assert ispws(server, "initech", password) == 200
    out = cli(settings, "esp", "add", "Other", "--username", "initech", "--password", "long-enough-1", ok=False).output
    assert "username 'initech' is already taken" in out
