"""``tipline report``: list and inspect reports; purge expired unfinished ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.commands.output import cut, table

#: Report states, as stored (``open → finished | retracted | expired``).
from tipline.kinds.reports import STATE_NAMES as STATES


@click.group("report")
def command() -> None:
    """Inspect reports."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--state", type=click.Choice(STATES))
@pass_ctx
def report_list(c: Ctx, as_json: bool, limit: int, state: str | None) -> None:
    """List the newest reports."""
    with c.opened() as rt:
        rows = rt.intake.list_reports_unchecked(limit=limit, state=state)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no reports")
        return
    for line in table(["ID", "STATE", "SOURCE", "FILES", "OPENED (UTC)", "REPORTER / INCIDENT"],
                      [[r["reportId"], r["state"], r["source"], r["files"], r["openedAt"][:19].replace("T", " "),
                        cut(f"{r['reporter']} / {r['incidentType'] or '-'}", 100)] for r in rows],
                      right=(0, 3)):
        click.echo(line)


@command.command("show")
@click.argument("report_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (every value whole).")
@pass_ctx
def report_show(c: Ctx, report_id: int, as_json: bool) -> None:
    """Show one report: state, fields, files and their hashes.

    In text output a value longer than 200 characters is cut, with its full length stated;
    --json prints every value whole.
    """
    from tipline.pipeline.view import enrichment_view, render_addenda, render_enrichment

    with c.opened() as rt:
        view = rt.intake.view_unchecked(report_id)
        if view is None:
            raise click.ClickException(f"no report {report_id}")
        data = view.as_json()
        data["addenda"] = rt.intake.addenda_unchecked(report_id)  # what the public added with a receipt code
        enrichment = enrichment_view(rt, report_id)
    if as_json:
        data["enrichment"] = enrichment
        click.echo(json.dumps(data, indent=2, default=str))
        return
    out = click.echo
    out(f"Report {view.id}  [{view.state}]  from {cut(view.reporter)} via {view.source}")
    for label, key in [("opened", "openedAt"), ("finished", "finishedAt"),
                       ("retracted", "retractedAt"), ("expires", "expiresAt")]:
        if data[key]:
            out(f"  {label:<10} {data[key]}")
    out(f"  incident   {cut(view.incident_type or '-')} at {data['incidentDateTime'] or 'unknown time'}")
    if view.escalation:
        out(f"  ESCALATED  {cut(view.escalation)}")
    for n in view.normalisations:
        out(f"  normalised {cut(n)}")
    out(f"\nFiles ({len(view.files)}):")
    for f in view.files:
        out(f"  {f.id}  {f.size:>10} B  {cut(f.file_name or '(no name)')}  {cut(f.media_type or '')}")
        out(f"      md5 {f.md5}  sha1 {f.sha1}")
        out(f"      sha256 {f.sha256}")
        if f.details:
            _tree(f.details, indent=6, out=out)
    for line in render_addenda(data["addenda"]):
        out(cut(line, 300))
    out("")
    for line in render_enrichment(enrichment):
        out(cut(line, 300))
    if view.document:
        out("\nReport contents:")
        _tree(view.document, indent=2, out=out)


def _tree(value: Any, indent: int, out: Callable[[str], Any], name: str | None = None) -> None:
    """A parsed document as indented ``name: value`` lines, each value cut to a readable length."""
    pad = " " * indent
    if isinstance(value, dict):
        if name is not None:
            out(f"{pad}{cut(name)}:")
            indent += 2
        for k, v in value.items():
            _tree(v, indent, out, k)
    elif isinstance(value, list):
        for i, v in enumerate(value, 1):
            _tree(v, indent, out, f"{name}[{i}]")
    else:
        shown = "yes" if value is True else "no" if value is False else value
        out(f"{pad}{cut(name)}: {cut(shown)}")


@command.command("purge-expired")
@pass_ctx
def report_purge(c: Ctx) -> None:
    """Purge unfinished reports past their expiry now.

    An unfinished report expires at max(opened + 24 h, last change + 1 h).
    """
    with c.opened() as rt:
        n = rt.intake.purge_expired()
    click.echo(f"purged {n} expired unfinished report(s)")
