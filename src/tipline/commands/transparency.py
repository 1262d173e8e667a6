"""``tipline transparency``: the year's transparency report, written to files."""

from __future__ import annotations

from pathlib import Path

import click

from tipline.commands.context import Ctx, pass_ctx


@click.command("transparency")
@click.argument("year", type=click.IntRange(1998, 2100))
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json", "pdf"]), default="html",
              show_default=True, help="html: a page with its charts (SVG, PNG); csv: one RFC 4180 file per "
              "table and a Frictionless datapackage.json; json: one document; pdf: printable.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory to write into (made if missing).")
@pass_ctx
def command(c: Ctx, year: int, fmt: str, out: Path) -> None:
    """The YEAR's transparency report: NCMEC's tables and outcomes.

    NCMEC's tables computed from tipline's records, and the outcome tables.

    Reports received in YEAR (UTC), incidents after bundling, files by type, reports by
    platform, country, US state and incident type, recipients by kind, escalations, by month;
    each beside NCMEC's published figure where one exists. The report names its data snapshot
    (kept under the data directory, so `/transparency/YEAR?snapshot=ID` shows it again).
    """
    from tipline.stats import transparency as tr

    with c.database() as sessions:
        report = tr.build(sessions, year)
    tr.keep(report, c.settings.data_dir)
    files = tr.write(report, out, fmt)
    click.echo(f"transparency report {year}: snapshot {report.snapshot}, "
               f"{report.records['reports']:,} reports read")
    for f in files:
        click.echo(f"  wrote {f}")
    if report.records["reports"] == 0:
        click.echo(f"note: no finished report was received in {year}; every count is 0 because there "
                   "are no reports, and every published comparison stands alone.", err=True)
