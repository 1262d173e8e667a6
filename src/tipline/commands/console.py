"""``tipline console``: upkeep of the analyst console's queue."""

from __future__ import annotations

import click

from tipline.commands.context import Ctx, pass_ctx


@click.group("console")
def command() -> None:
    """The analyst console's queue (its read model, queue_entries).

    The queue reads one narrow row per assessed report, kept by the pipeline and the
    console in the same transaction as each change. These commands rebuild and check it.
    """


@command.command("rebuild-queue")
@pass_ctx
def rebuild_queue(c: Ctx) -> None:
    """Rewrite the queue's read model from the base tables.

    Assessments, analysts' overrides, jurisdictions, hash-bank matches and claims. One
    transaction; the pipeline and the console wait for it. Needed only after rows were
    written around the services (a restore, a bulk load); `tipline init` on an existing
    store does it when it adds the table.
    """
    from tipline.console import queue_model
    from tipline.store.db import transaction

    with c.database() as sessions, transaction(sessions) as s:
        n = queue_model.rebuild(s)
    click.echo(f"queue rebuilt: {n} reports")


@command.command("check-queue")
@pass_ctx
def check_queue(c: Ctx) -> None:
    """Compare the queue's read model with the base tables.

    Exits 1, naming the first reports that differ, when a row is missing, extra or
    holds another value; `tipline console rebuild-queue` repairs it.
    """
    from tipline.console import queue_model

    with c.database() as sessions, sessions() as s:
        n, first = queue_model.differences(s)
    if n:
        raise click.ClickException(f"{n} reports differ from the base tables, first: "
                                   f"{', '.join(map(str, first))}; run `tipline console rebuild-queue`")
    click.echo("queue read model agrees with the base tables")
