"""``tipline outcome``: law-enforcement outcomes from the operator's console (import, list, add, overdue)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.commands.output import cut, table


def _actor() -> str:
    # The operator at the server's console: named in the audit trail by their OS account.
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _agency_id(session: Any, code: str) -> int:
    from sqlalchemy import select

    from tipline.store.tables import Agency

    found = session.execute(select(Agency.id).where(Agency.code == code)).scalar_one_or_none()
    if found is None:
        raise click.ClickException(f"no agency with code {code!r} (tipline agency list)")
    return int(found)


@click.group("outcome")
def command() -> None:
    """Outcomes of referrals: import a CSV file, list, add, overdue.

    The codes and the CSV columns are in docs/outcomes.md.
    """


@command.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agency", "agency_code", required=True, metavar="CODE", help="The agency the outcomes are from.")
@pass_ctx
def import_cmd(c: Ctx, file: Path, agency_code: str) -> None:
    """Import outcomes from a CSV file for one agency.

    All rows or none: a file with a bad row changes nothing, and each bad row is named by its
    line. Columns: referralId, code, occurredOn (required), persons, children, arrestType,
    result, nibrsCode, reason, note. The same file again changes nothing.
    """
    from tipline.outcomes.csv_import import ImportFailed, import_outcomes
    from tipline.store.db import transaction

    size = file.stat().st_size
    limit = c.settings.max_document_bytes
    if size > limit:  # checked before reading a huge file into memory
        raise click.ClickException(f"{file}: the file is {size:,} bytes; at most {limit:,} are accepted "
                                   "(TIPLINE_MAX_DOCUMENT_BYTES): split it")
    data = file.read_bytes()
    with c.database() as sessions:
        try:
            with transaction(sessions) as s:
                res = import_outcomes(s, None, data, agency_id=_agency_id(s, agency_code), file_name=file.name,
                                      via="csv", max_bytes=limit, actor_name=_actor())
        except ImportFailed as exc:
            raise click.ClickException(f"{file}: nothing imported:\n{exc}") from None
    if res.replay:
        click.echo(f"{file}: already imported (import {res.import_id}, {res.rows} row(s)); nothing changed")
        return
    click.echo(f"{file}: imported {res.rows} row(s) for {agency_code} (import {res.import_id}): "
               f"{res.created} new, {res.already_recorded} already recorded")


@command.command("list")
@click.option("--referral", "referral_id", type=int, required=True, help="The referral's id.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(c: Ctx, referral_id: int, as_json: bool) -> None:
    """List a referral's outcomes.

    Its timeline, each event with its standing (effective, superseded, withdrawn, reopened).
    """
    from tipline.outcomes import NotFound, list_outcomes

    with c.database() as sessions, sessions() as s:
        try:
            views = list_outcomes(s, None, referral_id)
        except NotFound as exc:
            raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps([v.as_json() for v in views], indent=2))
        return
    if not views:
        click.echo(f"referral {referral_id}: no outcome recorded (unknown, not \"no arrest\")")
        return
    rows = []
    for v in views:
        details = " ".join(f"{k}={cut(val, 60)}" for k, val in v.details.items() if val is not None)
        rows.append([v.id, v.occurred_on.isoformat(), v.code, v.kind, v.state, v.via, details])
    for line in table(["id", "occurred", "code", "kind", "state", "via", "details"], rows, right=[0]):
        click.echo(line)


@command.command("add")
@click.option("--referral", "referral_id", type=int, required=True, help="The referral's id.")
@click.option("--code", default=None, help="An outcome code (docs/outcomes.md); for amend/reopen/withdraw "
              "the code of the event changed.")
@click.option("--on", "occurred_on", default=None, metavar="YYYY-MM-DD", help="When it happened.")
@click.option("--kind", type=click.Choice(["record", "amend", "withdraw", "reopen"]), default="record",
              show_default=True)
@click.option("--supersedes", type=int, default=None, help="For amend/withdraw: the outcome id changed.")
@click.option("--detail", "details", multiple=True, metavar="KEY=VALUE",
              help="A detail such as persons=1, arrestType=T, reason=evidential or note=TEXT; repeatable.")
@pass_ctx
def add_cmd(c: Ctx, referral_id: int, code: str | None, occurred_on: str | None, kind: str,
            supersedes: int | None, details: tuple[str, ...]) -> None:
    """Record one outcome on a referral.

    As the operator at the console: the audit trail names your OS account.
    """
    from tipline.kinds.outcomes import DETAIL_KEYS
    from tipline.outcomes import OutcomeError, record_outcome
    from tipline.store.db import transaction

    payload: dict[str, Any] = {"kind": kind}
    for k, v in (("code", code), ("occurredOn", occurred_on), ("supersedes", supersedes)):
        if v is not None:
            payload[k] = v
    for d in details:
        key, sep, value = d.partition("=")
        if not sep or key not in DETAIL_KEYS:
            raise click.BadParameter(f"{d!r}: give KEY=VALUE with KEY one of {', '.join(DETAIL_KEYS)}",
                                     param_hint="--detail")
        payload[key] = int(value) if key in ("persons", "children") and value.isdigit() else value
    with c.database() as sessions:
        try:
            with transaction(sessions) as s:
                rec = record_outcome(s, None, referral_id, payload, via="cli", actor_name=_actor())
        except OutcomeError as exc:
            where = f"{exc.field}: " if exc.field else ""
            raise click.ClickException(f"refused: {where}{exc.message}") from None
    o = rec.outcome
    click.echo(f"outcome {o.id} on referral {o.referral_id}: {o.code} ({o.kind}) on {o.occurred_on.isoformat()}")


@command.command("overdue")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="Days without an outcome (default TIPLINE_OUTCOME_REMINDER_DAYS).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def overdue_cmd(c: Ctx, days: int | None, as_json: bool) -> None:
    """List referrals with no outcome after the reminder time.

    Per agency, oldest first; an acknowledgement alone is not an outcome.
    """
    from sqlalchemy import select

    from tipline.outcomes import overdue_outcomes
    from tipline.store.tables import Agency

    days = c.settings.outcome_reminder_days if days is None else days
    with c.database() as sessions, sessions() as s:
        found = overdue_outcomes(s, datetime.now(UTC), days=days)
        codes: dict[int, str] = {a: c for a, c in s.execute(select(Agency.id, Agency.code))}
    if as_json:
        click.echo(json.dumps({codes.get(a, str(a)): refs for a, refs in found.items()}, indent=2))
        return
    if not found:
        click.echo(f"no referral without an outcome after {days} days")
        return
    rows = [[codes.get(a, a), len(refs), " ".join(map(str, refs[:20])) + (" …" if len(refs) > 20 else "")]
            for a, refs in found.items()]
    for line in table(["agency", "referrals", "ids"], rows, right=[1]):
        click.echo(line)
