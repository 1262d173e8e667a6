"""``tipline audit``: check the hash-chained audit trail and read it at the command line."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, TextIO

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.commands.output import cut, table


@click.group("audit")
def command() -> None:
    """The audit trail: verify its chain, list and export its rows."""


def _anchor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    seq, sep, digest = value.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise click.BadParameter("SEQ:HASH as `tipline audit verify` printed it (a row number, a colon, "
                                 "64 hex digits)")
    return int(seq), digest


@command.command("verify")
@click.option("--anchor", metavar="SEQ:HASH", callback=_anchor,
              help="A row noted from an earlier run: it must still be there with that hash "
                   "(finds rows deleted from the end).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def audit_verify(c: Ctx, anchor: tuple[int, str] | None, as_json: bool) -> None:
    """Check the chain of the audit trail.

    Every row's hash and its link to the row before it.

    Exits 0 on an intact trail; exits 1 naming the first bad row when a row was edited,
    deleted, inserted or moved, when an --anchor row is gone or changed, or when the
    database no longer refuses changes to the trail.
    """
    from tipline.people import audit, trail

    with c.database() as sessions, sessions() as s:
        verdict = audit.verify(s)
        last = trail.head(s)
        anchor_issue = trail.anchor_problem(s, *anchor) if anchor else None
        guard = trail.guard_problems(s)
    problems = [f"row {verdict.first_break.seq}: {verdict.first_break.problem}"] if verdict.first_break else []
    if anchor_issue:
        problems.append(anchor_issue)
    problems += guard
    if as_json:
        click.echo(json.dumps({"intact": not problems, "rows": verdict.rows,
                               "firstBadRow": verdict.first_break.seq if verdict.first_break else None,
                               "problems": problems,
                               "head": {"seq": last[0], "hash": last[1]} if last else None}, indent=2))
    elif problems:
        for p in problems:
            click.echo(f"BROKEN: {p}", err=True)
    else:
        click.echo(f"intact: {verdict.rows} row(s), each following the one before it")
        if last:
            click.echo(f"head: {last[0]}:{last[1]}")
            click.echo(f"Keep the head line apart from the database: `tipline audit verify --anchor "
                       f"{last[0]}:{last[1]}` later also finds rows deleted from the end.", err=True)
    if problems:
        sys.exit(1)


def _filters(f: Any) -> Any:
    for opt in reversed([
        click.option("--actor", default="", help="Username of who acted (cli:NAME for an operator, system)."),
        click.option("--action", default="", help="What was done (sign_in, token_issue, audit_export and so on)."),
        click.option("--object-kind", default="", help="Kind of object (report, referral, file, user)."),
        click.option("--object-id", default="", help="The object's id."),
        click.option("--since", default="", help="From this UTC date or date and time (2026-12-03T14:30)."),
        click.option("--until", default="", help="Until this UTC date (inclusive) or date and time."),
    ]):
        f = opt(f)
    return f


def _query(values: dict[str, str]) -> Any:
    from tipline.people.trail import parse_query

    q, problems = parse_query(values)
    if problems.errors:
        raise click.UsageError(" ".join(problems.errors.values()))
    return q


@command.command("list")
@_filters
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="Newest rows shown.")
@pass_ctx
def audit_list(c: Ctx, limit: int, **values: str) -> None:
    """Show the newest rows, filtered."""
    from sqlalchemy import select

    from tipline.people.trail import _filtered
    from tipline.store.tables_people import AuditEvent

    q = _query(values)
    with c.database() as sessions, sessions() as s:
        rows = list(s.scalars(_filtered(q, select(AuditEvent)).order_by(AuditEvent.seq.desc()).limit(limit)))
    if not rows:
        click.echo("no audit rows match")
        return
    for line in table(["SEQ", "AT (UTC)", "ACTOR", "ROLE", "ACTION", "OBJECT", "ADDRESS"],
                      [[r.seq, r.at.strftime("%Y-%m-%d %H:%M:%S"), cut(r.actor, 40), r.role or "-", r.action,
                        f"{r.object_kind}:{r.object_id}" if r.object_kind else "-", r.address or "-"]
                       for r in rows], right=[0]):
        click.echo(line)


@command.command("export")
@_filters
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write (default: stdout).")
@pass_ctx
def audit_export(c: Ctx, fmt: str, output: str | None, **values: str) -> None:
    """Export the matching rows with their hashes.

    Oldest first, as CSV or JSON lines.
    """
    from tipline.people.trail import csv_lines, operator_rows, row_json

    q = _query(values)
    with contextlib.ExitStack() as stack:
        out: TextIO = (stack.enter_context(open(output, "w", encoding="utf-8", newline=""))
                       if output else sys.stdout)
        n = 0
        sessions = stack.enter_context(c.database())
        s = stack.enter_context(sessions())
        rows = operator_rows(s, q)
        if fmt == "csv":
            for line in csv_lines(rows):
                out.write(line)
                n += 1
            n -= 1  # the header
        else:
            for row in rows:
                out.write(json.dumps(row_json(row), sort_keys=True, ensure_ascii=False) + "\n")
                n += 1
    if output:
        click.echo(f"wrote {n} row(s) to {output}", err=True)
