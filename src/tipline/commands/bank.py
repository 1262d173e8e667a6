"""``tipline bank``: import, list, enable and disable hash banks."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tipline.commands.context import Ctx, LazyChoice, pass_ctx


def _formats() -> list[str]:
    from tipline.pipeline.banks import FORMATS

    return sorted(FORMATS)


@click.group("bank")
def command() -> None:
    """Hash banks: named lists of known hashes with labels.

    A bank holds MD5, SHA-1, SHA-256 and PDQ hashes; files that match one are flagged.
    """


@command.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bank", "bank_name", required=True, help="Bank name (created when new).")
@click.option("--format", "fmt", type=LazyChoice(_formats), default="csv", show_default=True,
              help="csv: hash_type,value,label. hma: HMA/ThreatExchange PDQ list layouts.")
# The upper bound (banks.MAX_PDQ_THRESHOLD) is checked by import_bank, which names the option.
@click.option("--pdq-threshold", type=click.IntRange(min=0), default=None,
              help="Largest PDQ Hamming distance that counts as a match for this bank (default 31).")
@click.option("--description", default=None, help="What the bank holds and where it came from.")
@pass_ctx
def bank_import(c: Ctx, file: Path, bank_name: str, fmt: str, pdq_threshold: int | None,
                description: str | None) -> None:
    """Import FILE into a bank. All or nothing; re-importing the same file changes nothing."""
    from sqlalchemy import select

    from tipline.commands.user import cli_actor
    from tipline.console.settings import BANK_OBJECT, import_detail
    from tipline.people.audit import record
    from tipline.pipeline.banks import BankImportError, import_bank
    from tipline.store.db import transaction
    from tipline.store.tables import HashBank

    rt = c.runtime()
    try:
        with transaction(rt.sessions) as s:
            res = import_bank(s, bank_name, file, fmt=fmt, description=description, pdq_threshold=pdq_threshold)
            # The bank's provenance: which file (name and SHA-256), by whom, what it changed.
            bank_id = s.execute(select(HashBank.id).where(HashBank.name == bank_name)).scalar_one()
            record(s, action="bank.import", actor_name=cli_actor(), object_kind=BANK_OBJECT, object_id=bank_id,
                   detail=import_detail(res, source=file.name, data=file.read_bytes(), fmt=fmt, reason=None))
    except BankImportError as exc:
        for err in exc.errors[:50]:
            click.echo(f"{file}: {err}", err=True)
        if len(exc.errors) > 50:
            click.echo(f"... and {len(exc.errors) - 50} more", err=True)
        raise click.ClickException(f"nothing imported: {len(exc.errors)} error(s)") from None
    finally:
        rt.close()
    for note in res.skipped[:10]:
        click.echo(f"skipped {note}", err=True)
    click.echo(f"bank {res.bank!r}: {res.added} added, {res.relabelled} relabelled, {res.unchanged} unchanged"
               + (f", {len(res.skipped)} rows of other signal types skipped" if res.skipped else ""))


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def bank_list(c: Ctx, as_json: bool) -> None:
    """List banks: state, PDQ threshold and entries per hash type."""
    from tipline.pipeline.banks import list_banks

    with c.database() as sessions, sessions() as s:
        rows = list_banks(s)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no hash banks yet: import one with `tipline bank import FILE --bank NAME`")
        return
    click.echo(f"{'BANK':<30} {'STATE':<9} {'PDQ≤':>4} {'ENTRIES':>9}  BY TYPE")
    for r in rows:
        state = "enabled" if r["enabled"] else "DISABLED"
        types = ", ".join(f"{k} {v}" for k, v in sorted(r["entries"].items())) or "-"
        click.echo(f"{r['name']:<30} {state:<9} {r['pdq_threshold']:>4} {r['total']:>9}  {types}")


def _toggle(c: Ctx, name: str, enabled: bool) -> None:
    from sqlalchemy import select

    from tipline.commands.user import cli_actor
    from tipline.console.settings import BANK_OBJECT
    from tipline.people.audit import record
    from tipline.pipeline.banks import set_enabled
    from tipline.store.db import transaction
    from tipline.store.tables import HashBank

    rt = c.runtime()
    try:
        with transaction(rt.sessions) as s:
            set_enabled(s, name, enabled)
            bank_id = s.execute(select(HashBank.id).where(HashBank.name == name)).scalar_one()
            record(s, action="bank.enable" if enabled else "bank.disable", actor_name=cli_actor(),
                   object_kind=BANK_OBJECT, object_id=bank_id, detail={"bank": name, "enabled": enabled})
    except KeyError:
        raise click.ClickException(f"no bank named {name!r}") from None
    finally:
        rt.close()
    click.echo(f"{'enabled' if enabled else 'disabled'} bank {name!r}"
               + ("" if enabled else " (entries kept; re-run `tipline pipeline rerun --stage matches` to drop "
                  "its existing matches)"))


@command.command("disable")
@click.argument("name")
@pass_ctx
def bank_disable(c: Ctx, name: str) -> None:
    """Disable bank NAME: it is no longer matched.

    Its entries are kept; `bank enable` brings it back.
    """
    _toggle(c, name, False)


@command.command("enable")
@click.argument("name")
@pass_ctx
def bank_enable(c: Ctx, name: str) -> None:
    """Enable bank NAME again."""
    _toggle(c, name, True)
