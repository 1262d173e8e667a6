"""``tipline user``: the accounts of people who sign in (analysts, supervisors, officers,
platform staff, auditors, administrators), their one-time-code devices and their API tokens.

Every change is one row of the audit trail, written in the same transaction as the change,
with the operating-system user who ran the command as its actor (``cli:<name>``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.commands.output import cut, table
from tipline.kinds.roles import ROLE_NAMES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tipline.store.tables_people import User


@click.group("user")
def command() -> None:
    """Accounts of people who sign in, and their tokens."""


def cli_actor() -> str:
    """How the audit trail names an operator at the command line."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "cli"


@contextmanager
def _change(c: Ctx) -> Iterator[Session]:
    """A writing transaction whose refusals are one-line messages (exit 1), not tracebacks."""
    from tipline.people.accounts import AccountError
    from tipline.store.db import transaction

    with c.database() as sessions:
        try:
            with transaction(sessions) as s:
                yield s
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None


def _audit(s: Session, action: str, user: User, detail: dict[str, Any] | None = None) -> None:
    from tipline.people.audit import record

    record(s, action=action, actor_name=cli_actor(), object_kind="user", object_id=user.id,
           detail={"username": user.username, **(detail or {})})


def _new_password(password: str | None, generate: bool) -> tuple[str, bool]:
    """The password given, generated, or prompted for; and whether it must be shown."""
    if password is not None and generate:
        raise click.UsageError("give --password or --generate, not both")
    if generate:
        return secrets.token_urlsafe(15), True
    if password is None:
        password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return password, False


def _show_totp(uri: str) -> None:
    click.echo(uri)
    click.echo("Add this to the person's authenticator app now (as a QR code or by its secret): "
               "it is not shown again. Sign-in asks for its one-time code.", err=True)


@command.command("add")
@click.argument("username")
@click.option("--role", "-r", required=True, type=click.Choice(ROLE_NAMES), help="What the person does.")
@click.option("--agency", metavar="CODE", help="An officer's agency (directory code, `tipline agency list`).")
@click.option("--platform", metavar="NAME", help="Platform staff's registered platform (`tipline esp list`).")
@click.option("--password", "-p", help="The password, at least 8 characters (prompted for when omitted).")
@click.option("--generate", is_flag=True, help="Generate a random password and print it once.")
@click.option("--email", help="Where reminders reach the person (officers).")
@click.option("--name", "display_name", help="The person's name, as pages show it.")
@pass_ctx
def user_add(c: Ctx, username: str, role: str, agency: str | None, platform: str | None,
             password: str | None, generate: bool, email: str | None, display_name: str | None) -> None:
    """Add an account for USERNAME.

    Every role but platform signs in with a one-time code: the TOTP provisioning URI
    (an otpauth:// address) is printed once.
    """
    from tipline.people.accounts import check_password_rules, create_user

    password, show = _new_password(password, generate)
    try:
        check_password_rules(password)  # before the database is opened, so nothing is written
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with _change(c) as s:
        if agency:
            from tipline.pipeline.stages.route import ensure_directory

            ensure_directory(s)  # a fresh instance: the bundled directory, as routing would load it
        new = create_user(s, username, role, password, agency=agency, platform=platform, email=email,
                          display_name=display_name)
        _audit(s, "user_add", new.user, {"role": role, "agency": agency, "platform": platform})
    where = f" of {agency}" if agency else f" of {platform!r}" if platform else ""
    click.echo(f"added {role} {new.user.username!r}{where}")
    if show:
        click.echo(password)
        click.echo("Store this password now: it is not shown again.", err=True)
    if new.totp_uri:
        _show_totp(new.totp_uri)


@command.command("list")
@click.option("--role", "-r", type=click.Choice(ROLE_NAMES), help="Only accounts of this role.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def user_list(c: Ctx, role: str | None, as_json: bool) -> None:
    """List accounts.

    Each with its role, agency or platform, state, tokens and last sign-in.
    """
    from tipline.people.roster import list_accounts

    with c.database() as sessions, sessions() as s:
        rows = list_accounts(s, role=role)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no accounts yet: add one with `tipline user add USERNAME --role ROLE`")
        return
    lines = table(["USERNAME", "ROLE", "AGENCY / PLATFORM", "STATE", "TOKENS", "LAST SIGN-IN (UTC)"],
                  [[cut(r.username, 40), r.role, cut(r.agency or r.platform or "-", 40),
                    r.state + (f" until {r.locked_until[11:16]}" if r.locked_until else ""), r.tokens,
                    (r.last_sign_in or "never")[:19].replace("T", " ")] for r in rows], right=[4])
    for line in lines:
        click.echo(line)


def _user(s: Session, username: str) -> User:
    from tipline.people.accounts import require_user

    return require_user(s, username)


@command.command("disable")
@click.argument("username")
@pass_ctx
def user_disable(c: Ctx, username: str) -> None:
    """Disable USERNAME.

    Every session ends, every token is revoked, sign-in is refused.
    """
    from tipline.people.accounts import set_disabled

    with _change(c) as s:
        user = _user(s, username)
        already = user.disabled_at is not None
        if not already:
            set_disabled(s, user, True)
            _audit(s, "user_disable", user)
    click.echo(f"disabled {username!r}" + (" (it already was)" if already else
                                          ": its sessions ended and its tokens were revoked"))


@command.command("enable")
@click.argument("username")
@pass_ctx
def user_enable(c: Ctx, username: str) -> None:
    """Enable USERNAME again.

    Its old tokens stay revoked: issue new ones.
    """
    from tipline.people.accounts import set_disabled

    with _change(c) as s:
        user = _user(s, username)
        changed = user.disabled_at is not None
        if changed:
            set_disabled(s, user, False)
            _audit(s, "user_enable", user)
    click.echo(f"enabled {username!r}" + ("" if changed else " (it already was)"))


@command.command("reset-totp")
@click.argument("username")
@pass_ctx
def user_reset_totp(c: Ctx, username: str) -> None:
    """Give USERNAME a new one-time-code secret.

    For a lost or replaced device:
    the old device's codes stop working and every session ends; the new provisioning URI is
    printed once.
    """
    from tipline.people.accounts import reset_totp

    with _change(c) as s:
        user = _user(s, username)
        uri, _secret = reset_totp(s, user)
        _audit(s, "user_reset_totp", user)
    click.echo(f"new one-time-code secret for {username!r}; its sessions ended", err=True)
    _show_totp(uri)


@command.command("password")
@click.argument("username")
@click.option("--password", "-p", help="The new password (prompted for when omitted).")
@click.option("--generate", is_flag=True, help="Generate a random password and print it once.")
@pass_ctx
def user_password(c: Ctx, username: str, password: str | None, generate: bool) -> None:
    """Set a new password for USERNAME.

    Every session of the account ends.
    """
    from tipline.people.accounts import set_password

    password, show = _new_password(password, generate)
    with _change(c) as s:
        user = _user(s, username)
        set_password(s, user, password)
        _audit(s, "user_password", user)
    click.echo(f"new password set for {username!r}; its sessions ended")
    if show:
        click.echo(password)
        click.echo("Store this password now: it is not shown again.", err=True)


@command.command("unlock")
@click.argument("username")
@pass_ctx
def user_unlock(c: Ctx, username: str) -> None:
    """Unlock USERNAME before its lock-out ends.

    Accounts lock after too many failed sign-ins.
    """
    from tipline.people.accounts import unlock

    with _change(c) as s:
        user = _user(s, username)
        unlock(user)
        _audit(s, "user_unlock", user)
    click.echo(f"unlocked {username!r}")


@command.command("token")
@click.argument("username")
@click.option("--label", help="What the token is for (shown in `user tokens`).")
@pass_ctx
def user_token(c: Ctx, username: str, label: str | None) -> None:
    """Issue a JSON API token for USERNAME.

    Shown once; only its hash is kept.
    The token reads and acts with the same scope as the person's signed-in session.
    """
    from tipline.people.accounts import issue_token

    with _change(c) as s:
        user = _user(s, username)
        token, row = issue_token(s, user, label)
        _audit(s, "token_issue", user, {"token": row.lookup, "label": label})
    click.echo(token)
    click.echo(f"Store this token now: it is not shown again. Its id is {row.lookup} "
               f"(revoke: tipline user revoke-token {username} {row.lookup}).", err=True)


@command.command("tokens")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def user_tokens(c: Ctx, username: str, as_json: bool) -> None:
    """List the API tokens of USERNAME.

    Each with its id, label, when issued, last used and revoked.
    """
    from tipline.people.accounts import AccountError
    from tipline.people.roster import list_tokens

    with c.database() as sessions, sessions() as s:
        try:
            tokens = list_tokens(s, _user(s, username))
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([t.as_json() for t in tokens], indent=2))
        return
    if not tokens:
        click.echo(f"{username!r} has no API tokens: issue one with `tipline user token {username}`")
        return

    def when(iso: str | None) -> str:
        return iso[:19].replace("T", " ") if iso else "-"

    for line in table(["TOKEN ID", "ISSUED (UTC)", "LAST USED (UTC)", "REVOKED (UTC)", "LABEL"],
                      [[t.id, when(t.created), when(t.last_used), when(t.revoked), cut(t.label or "-", 60)]
                       for t in tokens]):
        click.echo(line)


@command.command("revoke-token")
@click.argument("username")
@click.argument("token_id")
@pass_ctx
def user_revoke_token(c: Ctx, username: str, token_id: str) -> None:
    """Revoke one API token of USERNAME.

    TOKEN_ID is the id `user tokens` shows (or the whole token).
    """
    from tipline.people.accounts import revoke_token

    with _change(c) as s:
        user = _user(s, username)
        if not revoke_token(s, user, token_id):
            raise click.ClickException(f"{username!r} has no unrevoked token {token_id!r} "
                                       f"(see `tipline user tokens {username}`)")
        _audit(s, "token_revoke", user, {"token": token_id.removeprefix("tlu_").partition("_")[0]})
    click.echo(f"token {token_id} of {username!r} revoked; it no longer authenticates")
