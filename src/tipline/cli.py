"""The ``tipline`` operator command."""

from __future__ import annotations

import json
import os
import secrets
import sys
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import select

from tipline.config import Settings
from tipline.intake.credentials import hash_password, new_token
from tipline.runtime import Runtime
from tipline.store.blobs import generate_key_file
from tipline.store.db import transaction, upgrade
from tipline.store.tables import Credential, Reporter


class Ctx:
    def __init__(self, data_dir: str | None) -> None:
        self.settings = Settings.from_env(data_dir)

    def runtime(self) -> Runtime:
        return Runtime.open(self.settings)


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", envvar="TIPLINE_DATA_DIR", type=click.Path(file_okay=False),
              help="Data directory (database, encrypted files, key). Env: TIPLINE_DATA_DIR.")
@click.version_option(package_name="tipline")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None) -> None:
    """tipline: a CyberTipline-compatible clearinghouse for reports of child sexual exploitation."""
    ctx.obj = Ctx(data_dir)


def do_init(settings: Settings) -> list[str]:
    """Create the data directory and key, and migrate the database. Safe to run again."""
    done: list[str] = []
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if generate_key_file(settings.effective_key_file):
        done.append(f"created blob encryption key {settings.effective_key_file} "
                    "(back it up apart from the data: without it no file can be read)")
    else:
        done.append(f"kept existing key {settings.effective_key_file}")
    settings.blob_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    upgrade(settings.effective_database_url)
    done.append(f"database ready: {_redact(settings.effective_database_url)}")
    return done


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


@main.command()
@pass_ctx
def init(c: Ctx) -> None:
    """Create the data directory, the blob encryption key and the database schema."""
    for line in do_init(c.settings):
        click.echo(line)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int, help="Worker processes (env TIPLINE_WORKERS).")
@pass_ctx
def serve(c: Ctx, host: str, port: int, workers: int | None) -> None:
    """Run the HTTP service: ISPWS at /ispws, JSON API at /api/v1, public form at /report."""
    import uvicorn

    upgrade(c.settings.effective_database_url)
    c.runtime().close()  # fail early and clearly if the key is missing
    # Worker processes read their settings from the environment.
    os.environ["TIPLINE_DATA_DIR"] = str(c.settings.data_dir)
    click.echo(f"tipline serving on http://{host}:{port}  (data: {c.settings.data_dir})")
    uvicorn.run("tipline.web.app:app_factory", factory=True, host=host, port=port,
                workers=workers or c.settings.workers, log_level="info", access_log=False)


# -- ESP credentials ---------------------------------------------------------------------


@main.group()
def esp() -> None:
    """Manage reporting platforms (ESPs) and their credentials."""


@esp.command("add")
@click.argument("name")
@click.option("--username", "-u", required=True, help="HTTP Basic username for ISPWS / JSON API.")
@click.option("--password", "-p", help="Password (prompted for when omitted).")
@pass_ctx
def esp_add(c: Ctx, name: str, username: str, password: str | None) -> None:
    """Register platform NAME with a Basic-auth credential."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    assert password is not None
    if len(password) < 8:
        raise click.UsageError("the password must be at least 8 characters")
    add_esp(c.runtime(), name, username, password)
    click.echo(f"added platform {name!r} with username {username!r}")


def add_esp(rt: Runtime, name: str, username: str, password: str) -> int:
    now = datetime.now(UTC)
    with transaction(rt.sessions) as s:
        if s.execute(select(Credential).where(Credential.lookup == username)).first():
            raise click.ClickException(f"username {username!r} is already taken")
        rep = s.execute(select(Reporter).where(Reporter.name == name)).scalar_one_or_none()
        if rep is None:
            rep = Reporter(name=name, kind="esp", enabled=True, created_at=now)
            s.add(rep)
            s.flush()
        s.add(Credential(reporter_id=rep.id, kind="basic", lookup=username,
                         secret_hash=hash_password(password), created_at=now))
        return rep.id


@esp.command("token")
@click.argument("name")
@click.option("--label", help="What the token is for (shown in `esp list`).")
@pass_ctx
def esp_token(c: Ctx, name: str, label: str | None) -> None:
    """Issue a JSON API bearer token for platform NAME (shown once)."""
    rt = c.runtime()
    token, lookup, digest = new_token()
    with transaction(rt.sessions) as s:
        rep = s.execute(select(Reporter).where(Reporter.name == name)).scalar_one_or_none()
        if rep is None:
            raise click.ClickException(f"no platform named {name!r}")
        s.add(Credential(reporter_id=rep.id, kind="bearer", lookup=lookup, secret_hash=digest,
                         label=label, created_at=datetime.now(UTC)))
    click.echo(token)
    click.echo("Store this token now: it is not shown again.", err=True)


@esp.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def esp_list(c: Ctx, as_json: bool) -> None:
    """List platforms and their credentials."""
    rt = c.runtime()
    with rt.sessions() as s:
        rows: list[dict[str, Any]] = []
        for rep in s.execute(select(Reporter).where(Reporter.kind == "esp").order_by(Reporter.name)).scalars():
            rows.append({
                "name": rep.name, "enabled": rep.enabled, "created": rep.created_at.isoformat(),
                "credentials": [
                    {"kind": cr.kind, "id": cr.lookup, "label": cr.label,
                     "disabled": cr.disabled_at.isoformat() if cr.disabled_at else None}
                    for cr in rep.credentials
                ],
            })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no platforms yet: add one with `tipline esp add NAME --username U`")
    for r in rows:
        state = "enabled" if r["enabled"] else "DISABLED"
        creds = ", ".join(
            f"{cr['kind']}:{cr['id']}" + (" (disabled)" if cr["disabled"] else "")
            for cr in r["credentials"]
        )
        click.echo(f"{r['name']:<30} {state:<9} {creds}")


@esp.command("disable")
@click.argument("name")
@pass_ctx
def esp_disable(c: Ctx, name: str) -> None:
    """Disable platform NAME: all its credentials stop working at once."""
    rt = c.runtime()
    with transaction(rt.sessions) as s:
        rep = s.execute(select(Reporter).where(Reporter.name == name)).scalar_one_or_none()
        if rep is None:
            raise click.ClickException(f"no platform named {name!r}")
        rep.enabled = False
    click.echo(f"disabled platform {name!r}")


# -- reports -----------------------------------------------------------------------------


@main.group()
def report() -> None:
    """Inspect reports."""


@report.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--state", type=click.Choice(["open", "finished", "retracted", "expired"]))
@pass_ctx
def report_list(c: Ctx, as_json: bool, limit: int, state: str | None) -> None:
    """List the newest reports."""
    rows = c.runtime().intake.list_reports(limit=limit, state=state)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no reports")
        return
    click.echo(f"{'ID':>10}  {'STATE':<9} {'SOURCE':<6} {'FILES':>5}  {'OPENED (UTC)':<19}  REPORTER / INCIDENT")
    for r in rows:
        opened = r["openedAt"][:19].replace("T", " ")
        click.echo(f"{r['reportId']:>10}  {r['state']:<9} {r['source']:<6} {r['files']:>5}  "
                   f"{opened:<19}  {r['reporter']} / {r['incidentType'] or '-'}")


@report.command("show")
@click.argument("report_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def report_show(c: Ctx, report_id: int, as_json: bool) -> None:
    """Show one report: state, parsed fields, and its files with their hashes."""
    from tipline.pipeline.view import enrichment_view, render_addenda, render_enrichment

    rt = c.runtime()
    view = rt.intake.view(report_id)
    if view is None:
        raise click.ClickException(f"no report {report_id}")
    data = view.as_json()
    data["addenda"] = rt.intake.addenda(report_id)  # what the public added with a receipt code
    enrichment = enrichment_view(rt, report_id)
    if as_json:
        data["enrichment"] = enrichment
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"Report {view.id}  [{view.state}]  from {view.reporter} via {view.source}")
    for label, key in [("opened", "openedAt"), ("finished", "finishedAt"),
                       ("retracted", "retractedAt"), ("expires", "expiresAt")]:
        if data[key]:
            click.echo(f"  {label:<10} {data[key]}")
    click.echo(f"  incident   {view.incident_type or '-'} at {data['incidentDateTime'] or 'unknown time'}")
    if view.escalation:
        click.echo(f"  ESCALATED  {view.escalation}")
    for n in view.normalisations:
        click.echo(f"  normalised {n}")
    click.echo(f"\nFiles ({len(view.files)}):")
    for f in view.files:
        click.echo(f"  {f.id}  {f.size:>10} B  {f.file_name or '(no name)'}  {f.media_type or ''}")
        click.echo(f"      md5 {f.md5}  sha1 {f.sha1}")
        click.echo(f"      sha256 {f.sha256}")
        if f.details:
            _tree(f.details, indent=6, out=click.echo)
    for line in render_addenda(data["addenda"]):
        click.echo(line)
    click.echo("")
    for line in render_enrichment(enrichment):
        click.echo(line)
    if view.document:
        click.echo("\nReport contents:")
        _tree(view.document, indent=2, out=click.echo)


def _tree(value: Any, indent: int, out: Any, name: str | None = None) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        if name is not None:
            out(f"{pad}{name}:")
            indent += 2
        for k, v in value.items():
            _tree(v, indent, out, k)
    elif isinstance(value, list):
        for i, v in enumerate(value, 1):
            _tree(v, indent, out, f"{name}[{i}]")
    else:
        shown = "yes" if value is True else "no" if value is False else value
        out(f"{pad}{name}: {shown}")


@report.command("purge-expired")
@pass_ctx
def report_purge(c: Ctx) -> None:
    """Purge unfinished reports past max(opened + 24 h, last change + 1 h) now."""
    n = c.runtime().intake.purge_expired()
    click.echo(f"purged {n} expired unfinished report(s)")


# -- demo ---------------------------------------------------------------------------------


DEMO_SIM_SCALE = 0.00001  # about 360 reports of a 2023-like year


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Set up and load demo data, then exit.")
@click.option("--sim-scale", default=DEMO_SIM_SCALE, show_default=True, type=float,
              help="Scale of the simulated 2023 year loaded with stand-in images (0: none).")
@pass_ctx
def demo(c: Ctx, host: str, port: int, no_serve: bool, sim_scale: float) -> None:
    """Set up a demo instance: a demo platform, sample reports and a small simulated year with
    generated stand-in images, all enriched; then serve it."""
    from tipline.demo import load_demo

    for line in do_init(c.settings):
        click.echo(line)
    rt = c.runtime()
    ctx = click.get_current_context()
    first_time = not rt.intake.list_reports(limit=1)
    username, password = "demo-platform", secrets.token_urlsafe(12)
    with rt.sessions() as s:
        exists = s.execute(select(Credential).where(Credential.lookup == username)).first()
    if exists:
        with transaction(rt.sessions) as s:
            cred = s.execute(select(Credential).where(Credential.lookup == username)).scalar_one()
            cred.secret_hash = hash_password(password)
    else:
        add_esp(rt, "Demo Platform", username, password)
    created = load_demo(rt)
    if first_time and sim_scale > 0:
        from tipline.commands.pipeline import run_cmd
        from tipline.commands.simulate import command as simulate_cmd

        click.echo(f"loading a simulated 2023 year at scale {sim_scale} with generated stand-in images ...")
        ctx.invoke(simulate_cmd, year="2023", scale=sim_scale, seed=1, via="direct", files_mode="images",
                   out=None, url=None, generate_only=False)
        click.echo("enriching every report (hashes, matches, links, bundles, location, triage, routing) ...")
        ctx.invoke(run_cmd, since=None, stage_names=(), limit=None, concurrency=None)
    created = len(rt.intake.list_reports(limit=100_000))
    base = f"http://{host}:{port}"
    click.echo("")
    click.echo("=" * 72)
    click.echo(f"  tipline demo — data in {c.settings.data_dir}")
    click.echo(f"  {created} report(s) loaded and enriched: `tipline report list`, `tipline stats pipeline`")
    click.echo(f"  ISPWS base URL : {base}/ispws     (point an existing CyberTipline client here)")
    click.echo(f"  username       : {username}")
    click.echo(f"  password       : {password}")
    click.echo(f"  try            : curl -u {username}:{password} {base}/ispws/status")
    click.echo(f"  JSON API docs  : {base}/api/v1/docs")
    click.echo(f"  public form    : {base}/report")
    click.echo("=" * 72)
    sys.stdout.flush()
    rt.close()
    if not no_serve:
        ctx.invoke(serve, host=host, port=port, workers=1)


def _add_command_modules() -> None:
    import importlib
    import pkgutil

    from tipline import commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        cmd = getattr(module, "command", None)
        if isinstance(cmd, click.Command):
            main.add_command(cmd)


_add_command_modules()


def cli_reference() -> str:
    """Markdown reference of every command and option, generated from the commands themselves."""
    lines = ["# `tipline` command reference", "",
             "Generated by `tipline cli-reference > docs/cli.md`; a test fails when it is stale.", ""]

    def walk(cmd: click.Command, path: list[str]) -> None:
        if cmd.hidden:
            return
        ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=88, max_content_width=88,
                            help_option_names=["-h", "--help"])
        lines.extend([f"## `{' '.join(path)}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""])
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                walk(cmd.commands[name], [*path, name])

    walk(main, ["tipline"])
    return "\n".join(lines)


@main.command("cli-reference", hidden=True)
def cli_reference_cmd() -> None:
    """Print the Markdown command reference (docs/cli.md)."""
    click.echo(cli_reference(), nl=False)


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy: command modules import tipline.cli.
    from tipline.cli import main as _main

    _main()
