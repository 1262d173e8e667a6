"""``tipline init``: create the data directory, the blob key and the database schema."""

from __future__ import annotations

import click

from tipline.commands.context import Ctx, pass_ctx


@click.command("init")
@pass_ctx
def command(c: Ctx) -> None:
    """Create the data directory, blob key and database schema.

    Safe to run again: an existing key is kept and the schema is migrated to the current version.
    """
    from tipline.store.setup import do_init

    for line in do_init(c.settings):
        click.echo(line)
