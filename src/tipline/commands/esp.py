"""``tipline esp``: reporting platforms and their credentials (passwords and API tokens)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.commands.output import cut, table


@click.group("esp")
def command() -> None:
    """Manage reporting platforms (ESPs) and their credentials."""


@contextmanager
def _operator_errors() -> Iterator[None]:
    """A refused change is a one-line message and exit status 1, not a traceback."""
    from tipline.intake.credentials import CredentialError

    try:
        yield
    except CredentialError as exc:
        raise click.ClickException(str(exc)) from None


def _new_password(password: str | None, generate: bool) -> tuple[str, bool]:
    """The password given, generated, or prompted for; and whether it must be shown."""
    if password is not None and generate:
        raise click.UsageError("give --password or --generate, not both")
    if generate:
        return secrets.token_urlsafe(18), True
    if password is None:
        password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return password, False


@command.command("add")
@click.argument("name")
@click.option("--username", "-u", required=True, help="HTTP Basic username for ISPWS / JSON API.")
@click.option("--password", "-p", help="Password (prompted for when omitted).")
@click.option("--generate", is_flag=True, help="Generate a random password and print it once.")
@pass_ctx
def esp_add(c: Ctx, name: str, username: str, password: str | None, generate: bool) -> None:
    """Register platform NAME with a Basic-auth credential."""
    from tipline.intake.credentials import add_esp

    password, show = _new_password(password, generate)
    with _operator_errors(), c.opened() as rt:
        add_esp(rt, name, username, password)
    click.echo(f"added platform {name!r} with username {username!r}")
    if show:
        _show_once("password", password)


def _show_once(what: str, secret: str) -> None:
    click.echo(secret)
    click.echo(f"Store this {what} now: it is not shown again.", err=True)


@command.command("password")
@click.argument("username")
@click.option("--password", "-p", help="The new password (prompted for when omitted).")
@click.option("--generate", is_flag=True, help="Generate a random password and print it once.")
@pass_ctx
def esp_password(c: Ctx, username: str, password: str | None, generate: bool) -> None:
    """Set a new password for USERNAME; the old one stops working."""
    from tipline.intake.credentials import set_password

    password, show = _new_password(password, generate)
    with _operator_errors(), c.opened() as rt:
        set_password(rt, username, password)
    click.echo(f"new password set for {username!r}; the old one no longer authenticates "
               f"(other running processes: within {c.settings.auth_recheck_seconds:g} s)")
    if show:
        _show_once("password", password)


@command.command("token")
@click.argument("name")
@click.option("--label", help="What the token is for (shown in `esp tokens`).")
@pass_ctx
def esp_token(c: Ctx, name: str, label: str | None) -> None:
    """Issue a JSON API token for platform NAME (shown once)."""
    from tipline.intake.credentials import issue_token

    with _operator_errors(), c.opened() as rt:
        token, token_id = issue_token(rt, name, label)
    click.echo(token)
    click.echo(f"Store this token now: it is not shown again. Its id is {token_id} "
               f"(revoke: tipline esp revoke-token {_quote(name)} {token_id}).", err=True)


def _quote(name: str) -> str:
    import shlex

    return shlex.quote(name)


@command.command("tokens")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def esp_tokens(c: Ctx, name: str, as_json: bool) -> None:
    """List the API tokens of platform NAME.

    Each with its id, label, when it was issued and when revoked.
    """
    rows = [p for p in _platforms(c) if p["name"] == name]
    if not rows:
        raise click.ClickException(f"no platform named {name!r}")
    tokens = [cr for cr in rows[0]["credentials"] if cr["kind"] == "bearer"]
    if as_json:
        click.echo(json.dumps(tokens, indent=2))
        return
    if not tokens:
        click.echo(f"platform {name!r} has no API tokens: issue one with `tipline esp token {_quote(name)}`")
        return
    _echo_table(["TOKEN ID", "ISSUED (UTC)", "REVOKED (UTC)", "LABEL"],
                [[t["id"], _when(t["created"]), _when(t["disabled"]) or "-", cut(t["label"] or "-", 60)]
                 for t in tokens])


def _when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else ""


def _echo_table(header: list[str], rows: list[list[Any]]) -> None:
    for line in table(header, rows):
        click.echo(line)


def _platforms(c: Ctx) -> list[dict[str, Any]]:
    from tipline.intake.credentials import list_platforms

    with c.database() as sessions:
        return list_platforms(sessions)


@command.command("revoke-token")
@click.argument("name")
@click.argument("token_id")
@pass_ctx
def esp_revoke_token(c: Ctx, name: str, token_id: str) -> None:
    """Revoke one API token of platform NAME, named by its id."""
    from tipline.intake.credentials import revoke_token

    with _operator_errors(), c.opened() as rt:
        when = revoke_token(rt, name, token_id)
    click.echo(f"token {token_id} of {name!r} revoked at {when.isoformat(timespec='seconds')}; "
               "it no longer authenticates")


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def esp_list(c: Ctx, as_json: bool) -> None:
    """List platforms and their credentials."""
    rows = _platforms(c)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no platforms yet: add one with `tipline esp add NAME --username U`")
        return

    def creds(r: dict[str, Any], kind: str) -> str:
        return ", ".join(cr["id"] + (" (revoked)" if kind == "bearer" else " (disabled)") * bool(cr["disabled"])
                         for cr in r["credentials"] if cr["kind"] == kind) or "-"

    _echo_table(["PLATFORM", "STATE", "USERNAMES", "API TOKENS (IDS)"],
                [[cut(r["name"], 40), "enabled" if r["enabled"] else "DISABLED", creds(r, "basic"),
                  creds(r, "bearer")] for r in rows])


def _toggle(c: Ctx, name: str, enabled: bool) -> bool:
    from tipline.intake.credentials import set_platform_enabled

    with _operator_errors(), c.opened() as rt:
        return set_platform_enabled(rt, name, enabled)


@command.command("disable")
@click.argument("name")
@pass_ctx
def esp_disable(c: Ctx, name: str) -> None:
    """Disable platform NAME: all its credentials stop working."""
    changed = _toggle(c, name, False)
    click.echo(f"disabled platform {name!r}" + ("" if changed else " (it already was)"))


@command.command("enable")
@click.argument("name")
@pass_ctx
def esp_enable(c: Ctx, name: str) -> None:
    """Enable platform NAME again: its credentials work as before."""
    changed = _toggle(c, name, True)
    click.echo(f"enabled platform {name!r}" + ("" if changed else " (it already was)"))
