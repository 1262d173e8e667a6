"""``tipline transparency YEAR``: the year's transparency report from the records."""

from __future__ import annotations

from pathlib import Path

import click

from tipline.commands.context import Ctx, pass_ctx


@click.command("transparency")
@click.argument("year", type=click.IntRange(1990, 2999))
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json"]), default="json", show_default=True,
              help="json to standard output (or DIR/report.json); csv files with datapackage.json; html with charts.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to write to (required for csv and html).")
@pass_ctx
def command(c: Ctx, year: int, fmt: str, out: Path | None) -> None:
    """The YEAR's tables: reports, referrals and their outcomes.

    Reports by platform, country, US state and incident type; outcomes of referred and
    escalated reports, by priority, month and agency, with coverage, bounds and the
    estimate. Each table names its snapshot, query and versions (docs/statistics.md).
    """
    from tipline.stats.transparency import build, to_json, write_csv, write_html

    if fmt in ("csv", "html") and out is None:
        raise click.UsageError(f"--format {fmt} writes several files: give --out DIR")
    with c.database() as sessions:
        report = build(sessions, year, coverage_threshold=c.settings.outcome_coverage_threshold)
    if fmt == "json":
        text = to_json(report)
        if out is None:
            click.echo(text)
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(text + "\n", encoding="utf-8")
        click.echo(str(out / "report.json"))
        return
    assert out is not None
    written = write_csv(report, out) if fmt == "csv" else write_html(report, out)
    for p in written:
        click.echo(str(p))
