"""``tipline operator``: tokens for the service's own staff to read reports over the JSON API."""

from __future__ import annotations

import json

import click

from tipline.commands.context import Ctx, pass_ctx


@click.group("operator")
def command() -> None:
    """Staff tokens that read any report over the JSON API."""


@command.command("token")
@click.option("--label", required=True, help="Who holds the token (shown in `operator list`).")
@pass_ctx
def operator_token(c: Ctx, label: str) -> None:
    """Issue an operator token (shown once; it reads every report)."""
    from tipline.intake.operators import OperatorTokenError, issue_operator_token

    rt = c.runtime()
    try:
        token, token_id = issue_operator_token(rt.sessions, label)
    except OperatorTokenError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(token)
    click.echo(f"Operator token {token_id} for {label!r}. Store it now: it is not shown again.", err=True)


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def operator_list(c: Ctx, as_json: bool) -> None:
    """List operator tokens (id, holder, issued, revoked)."""
    from tipline.intake.operators import list_operator_tokens

    rows = list_operator_tokens(c.runtime().sessions)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no operator tokens yet: issue one with `tipline operator token --label WHO`")
        return
    click.echo(f"{'ID':<14} {'STATE':<8} {'ISSUED':<26} LABEL")
    for r in rows:
        click.echo(f"{r['id']:<14} {'revoked' if r['revoked'] else 'active':<8} {r['issued']:<26} {r['label']}")


@command.command("revoke")
@click.argument("token_id")
@pass_ctx
def operator_revoke(c: Ctx, token_id: str) -> None:
    """Revoke one operator token by its id (it stops at once)."""
    from tipline.intake.operators import OperatorTokenError, revoke_operator_token

    try:
        revoke_operator_token(c.runtime().sessions, token_id)
    except OperatorTokenError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked operator token {token_id}")
