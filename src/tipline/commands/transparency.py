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
@click.option("--columnar", is_flag=True, help="Compute from the year's Parquet export with DuckDB (fast at full "
              "scale; made by `tipline stats export --year YEAR`) instead of the store.")
@click.option("--export-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --columnar: the export's directory; default: <data dir>/columnar/YEAR.")
@pass_ctx
def command(c: Ctx, year: int, fmt: str, out: Path, columnar: bool, export_dir: Path | None) -> None:
    """The YEAR's transparency report: NCMEC's tables and outcomes.

    NCMEC's tables computed from tipline's records, and the outcome tables.

    Reports received in YEAR (UTC), incidents after bundling, files by type, reports by
    platform, country, US state and incident type, recipients by kind, escalations, by month;
    each beside NCMEC's published figure where one exists. The report names its data snapshot
    (kept under the data directory, so `/transparency/YEAR?snapshot=ID` shows it again).
    """
    from tipline.stats import transparency as tr

    if columnar:
        from tipline.stats import columnar as col

        directory = export_dir or col.default_dir(c.settings.data_dir, year)
        try:
            manifest = col.read_manifest(directory)
        except ValueError as err:
            raise click.ClickException(f"{err}: run `tipline stats export --year {year}` first") from None
        if int(manifest["year"]) != year:
            raise click.ClickException(f"{directory} holds the export of {manifest['year']}, not {year}")
        report = col.build(directory, coverage_threshold=c.settings.outcome_coverage_threshold)
        click.echo(f"computed from the columnar export of {manifest['exportedAt']} ({directory})")
    else:
        with c.database() as sessions:
            report = tr.build(sessions, year, coverage_threshold=c.settings.outcome_coverage_threshold)
    tr.keep(report, c.settings.data_dir)
    from tipline.web.transparency import standalone_html

    files = tr.write(report, out, fmt, html=standalone_html if fmt == "html" else None)
    click.echo(f"transparency report {year}: snapshot {report.snapshot}, "
               f"{report.records['reports']:,} reports read")
    for f in files:
        click.echo(f"  wrote {f}")
    if report.records["reports"] == 0:
        click.echo(f"note: no finished report was received in {year}; every count is 0 because there "
                   "are no reports, and every published comparison stands alone.", err=True)
