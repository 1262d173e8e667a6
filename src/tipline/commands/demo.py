"""``tipline demo``: a demo instance with sample and simulated reports, enriched, then served."""

from __future__ import annotations

import sys

import click

from tipline.commands.context import Ctx, pass_ctx

#: Scale of the simulated 2023 year the demo loads: about 360 reports.
DEMO_SIM_SCALE = 0.00001


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Set up and load demo data, then exit.")
@click.option("--sim-scale", default=DEMO_SIM_SCALE, show_default=True, type=float,
              help="Scale of the simulated 2023 year loaded with stand-in images (0: none).")
@pass_ctx
def command(c: Ctx, host: str, port: int, no_serve: bool, sim_scale: float) -> None:
    """Set up a demo instance with sample reports and serve it.

    A demo platform, sample reports and a small simulated year with generated stand-in
    images, all enriched; then the HTTP service.
    """
    from tipline.commands.pipeline import run_pipeline
    from tipline.commands.serve import serve_http
    from tipline.commands.simulate import simulate_year
    from tipline.demo import demo_credentials, load_demo
    from tipline.store.setup import do_init

    for line in do_init(c.settings):
        click.echo(line)
    with c.opened() as rt:
        first_time = not rt.intake.list_reports_unchecked(limit=1)
        username, password = demo_credentials(rt)
        load_demo(rt)
    if first_time and sim_scale > 0:
        click.echo(f"loading a simulated 2023 year at scale {sim_scale} with generated stand-in images ...")
        simulate_year(c.settings, 2023, sim_scale, seed=1, via="direct", files_mode="images")
    with c.opened() as rt:
        if first_time and sim_scale > 0:
            click.echo("enriching every report (hashes, matches, links, bundles, location, triage, routing) ...")
            run_pipeline(rt)
        created = len(rt.intake.list_reports_unchecked(limit=100_000))
    base = f"http://{host}:{port}"
    click.echo("")
    click.echo("=" * 72)
    click.echo(f"  tipline demo — data in {c.settings.data_dir}")
    click.echo(f"  {created} report(s) loaded and enriched: `tipline report list`, `tipline stats pipeline`")
    # The ISPWS account is the platform's machine credential (HTTP Basic on /ispws), apart
    # from the people below who sign in to pages: the same name, two different passwords.
    click.echo(f"  ISPWS base URL : {base}/ispws     (point an existing CyberTipline client here)")
    click.echo(f"  ISPWS username : {username}     (the platform's machine account: HTTP Basic, not /login)")
    click.echo(f"  ISPWS password : {password}")
    click.echo(f"  try            : curl -u {username}:{password} {base}/ispws/status")
    click.echo(f"  JSON API docs  : {base}/api/v1/docs")
    click.echo(f"  public form    : {base}/report")
    _people(c, base)
    click.echo("=" * 72)
    sys.stdout.flush()
    if not no_serve:
        serve_http(c.settings, host, port, workers=1)


def _people(c: Ctx, base: str) -> None:
    """Print how to sign in as the demo account of every role (made or refreshed now)."""
    from tipline.people.demo import demo_people

    with c.opened() as rt:
        people = demo_people(rt)
    click.echo(f"  people sign in : {base}/login   (one-time code: any authenticator app with the")
    click.echo("                   secret below, or `oathtool --totp -b SECRET`; platform staff need none)")
    click.echo(f"    {'USERNAME':<16} {'PASSWORD':<18} TOTP SECRET (AGENCY OR PLATFORM)")
    for p in people:
        of = f" ({p.of})" if p.of else ""
        click.echo(f"    {p.username:<16} {p.password:<18} {p.totp_secret or '-'}{of}")
