"""``tipline agency``: the agency directory (import from a CSV file, list)."""

from __future__ import annotations

import json
from typing import Any

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.commands.output import cut, table
from tipline.kinds.agencies import KIND_NAMES  # a leaf module: costs the CLI's start-up nothing


@click.group("agency")
def command() -> None:
    """The agency directory: import and list agencies.

    ICAC task forces, federal agencies, international liaisons and local agencies.
    """


@command.command("import")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def agency_import(c: Ctx, file: str | None) -> None:
    """Replace the directory with FILE (CSV). Idempotent.

    Without FILE: the bundled directory. Agencies missing from FILE are deactivated, never
    deleted (referrals point at them).
    """
    from pathlib import Path

    from tipline.commands.user import cli_actor
    from tipline.console.settings import DIRECTORY_OBJECT, directory_detail
    from tipline.people.audit import record
    from tipline.pipeline.directory import AGENCIES_FILE, DirectoryError, import_agencies, read_agency_file
    from tipline.store.db import transaction

    try:
        rows = read_agency_file(file)
    except DirectoryError as exc:
        raise click.ClickException(str(exc)) from exc
    source = Path(file) if file else AGENCIES_FILE
    with c.opened() as rt, transaction(rt.sessions) as s:
        res = import_agencies(s, rows)
        # The directory's provenance: which file (name and SHA-256), by whom, what it changed.
        record(s, action="directory.import", actor_name=cli_actor(), object_kind=DIRECTORY_OBJECT,
               detail=directory_detail(res, rows=len(rows), source=source.name, data=source.read_bytes(),
                                       reason=None))
    click.echo(f"imported {len(rows)} agencies from {file or AGENCIES_FILE}: {len(res.added)} added, "
               f"{len(res.updated)} updated, {res.unchanged} unchanged, {len(res.deactivated)} deactivated")
    for code in res.deactivated:
        click.echo(f"  deactivated {code}")
    click.echo("re-run routing to apply it: tipline pipeline rerun --stage route")


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--kind", type=click.Choice(KIND_NAMES), help="Only agencies of this kind.")
@click.option("--all", "show_all", is_flag=True, help="Include deactivated agencies.")
@pass_ctx
def agency_list(c: Ctx, as_json: bool, kind: str | None, show_all: bool) -> None:
    """List the agencies in the directory."""
    from sqlalchemy import func, select

    from tipline.store.tables import Agency

    with c.database() as sessions, sessions() as s:
        q = select(Agency).order_by(Agency.kind, Agency.country, Agency.us_state, Agency.code)
        if kind:
            q = q.where(Agency.kind == kind)
        if not show_all:
            q = q.where(Agency.active.is_(True))
        agencies = s.execute(q).scalars().all()
        # An empty answer means "import the directory" only when the directory is empty.
        total = of_kind = 0
        if not agencies:
            total = s.execute(select(func.count()).select_from(Agency)).scalar_one()
            of_kind = s.execute(select(func.count()).select_from(Agency).where(Agency.kind == kind)).scalar_one()
    rows: list[dict[str, Any]] = [
        {"code": a.code, "name": a.name, "kind": a.kind, "country": a.country, "usState": a.us_state,
         "area": a.area, "notes": a.notes, "active": a.active}
        for a in agencies
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        if not total:
            click.echo("no agencies: load the bundled directory with `tipline agency import`")
        elif kind and not of_kind:
            click.echo(f"the directory has no {kind} agencies ({total} agencies of other kinds)")
        else:  # there are some, all inactive
            click.echo(f"no active {kind + ' ' if kind else ''}agencies ({of_kind if kind else total} inactive: "
                       "--all lists them)")
        return
    lines = table(["CODE", "KIND", "WHERE", "NAME"],
                  [[r["code"], r["kind"], r["usState"] or r["country"] or "-",
                    cut(r["name"]) + (" (lead)" if (r["area"] or {}).get("lead") else "")
                    + ("" if r["active"] else " [inactive]")] for r in rows])
    for line in lines:
        click.echo(line)
    click.echo(f"{len(rows)} agencies")
