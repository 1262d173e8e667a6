"""``tipline agency``: the agency directory (import from a CSV file, list)."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from tipline.cli import Ctx, pass_ctx
from tipline.pipeline.directory import AGENCIES_FILE, DirectoryError, import_agencies, read_agency_file
from tipline.store.db import transaction
from tipline.store.tables import Agency


@click.group("agency")
def command() -> None:
    """Manage the agency directory (ICAC task forces, federal agencies, international liaisons)."""


@command.command("import")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def agency_import(c: Ctx, file: str | None) -> None:
    """Replace the directory with FILE (CSV; default: the bundled directory). Idempotent.

    Agencies missing from FILE are deactivated, never deleted (referrals point at them).
    """
    try:
        rows = read_agency_file(file)
    except DirectoryError as exc:
        raise click.ClickException(str(exc)) from exc
    rt = c.runtime()
    with transaction(rt.sessions) as s:
        res = import_agencies(s, rows)
    click.echo(f"imported {len(rows)} agencies from {file or AGENCIES_FILE}: {len(res.added)} added, "
               f"{len(res.updated)} updated, {res.unchanged} unchanged, {len(res.deactivated)} deactivated")
    for code in res.deactivated:
        click.echo(f"  deactivated {code}")
    click.echo("re-run routing to apply it: tipline pipeline rerun --stage route")


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--kind", type=click.Choice(["icac", "federal", "international", "local"]))
@click.option("--all", "show_all", is_flag=True, help="Include deactivated agencies.")
@pass_ctx
def agency_list(c: Ctx, as_json: bool, kind: str | None, show_all: bool) -> None:
    """List the agencies in the directory."""
    rt = c.runtime()
    with rt.sessions() as s:
        q = select(Agency).order_by(Agency.kind, Agency.country, Agency.us_state, Agency.code)
        if kind:
            q = q.where(Agency.kind == kind)
        if not show_all:
            q = q.where(Agency.active.is_(True))
        agencies = s.execute(q).scalars().all()
    rows: list[dict[str, Any]] = [
        {"code": a.code, "name": a.name, "kind": a.kind, "country": a.country, "usState": a.us_state,
         "area": a.area, "notes": a.notes, "active": a.active}
        for a in agencies
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no agencies: load the bundled directory with `tipline agency import`")
        return
    for r in rows:
        where = r["usState"] or r["country"] or "-"
        lead = " (lead)" if (r["area"] or {}).get("lead") else ""
        flag = "" if r["active"] else " [inactive]"
        click.echo(f"{r['code']:<14} {r['kind']:<13} {where:<3} {r['name']}{lead}{flag}")
    click.echo(f"{len(rows)} agencies")
