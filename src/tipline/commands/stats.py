"""``tipline stats``: pipeline progress and report quality figures."""

from __future__ import annotations

import json

import click

from tipline.commands.context import Ctx, pass_ctx


@click.group("stats")
def command() -> None:
    """Statistics: pipeline progress, triage, report quality.

    Pipeline progress, triage outcomes and per-platform report quality.
    """


@command.command("pipeline")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stats_pipeline(c: Ctx, as_json: bool) -> None:
    """Pipeline progress: per stage, disposition, priority.

    Per stage: done / failed / pending; per disposition and priority; escalations.
    """
    from tipline.pipeline.view import pipeline_stats

    with c.opened() as rt:
        data = pipeline_stats(rt)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"finished reports: {data['finishedReports']}")
    click.echo("")
    click.echo(f"{'STAGE':<16} {'VERSION':>7} {'DONE':>10} {'FAILED':>8} {'PENDING':>10}")
    for st in data["stages"]:
        click.echo(f"{st['stage']:<16} {st['version']:>7} {st['done']:>10} {st['failed']:>8} {st['pending']:>10}")
    if not data["stages"]:
        click.echo("(no stages registered)")
    click.echo("")
    d = data["disposition"]
    click.echo("disposition:")
    for k, v in d.items():
        click.echo(f"  {k:<18} {v:>10}")
    click.echo(f"  {'not yet assessed':<18} {data['notYetAssessed']:>10}")
    click.echo("priority (of assessed reports):")
    for k, v in data["priority"].items():
        click.echo(f"  {k:<18} {v:>10}")
    click.echo(f"  {'not yet assessed':<18} {data['notYetAssessed']:>10}")
    click.echo(f"escalated (priority 1): {data['escalated']}"
               + (f"  — {data['notYetAssessed']} report(s) not yet assessed" if data["notYetAssessed"] else ""))


@command.command("quality")
@click.option("--by", type=click.Choice(["day", "month", "quarter", "year"]), default="month", show_default=True,
              help="Period to group by (the report's finish time, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stats_quality(c: Ctx, by: str, as_json: bool) -> None:
    """Report quality per platform over time.

    Mean score, referral share and what is missing most, per platform and period.
    """
    from tipline.pipeline.view import platform_quality

    with c.opened() as rt:
        rows = platform_quality(rt, by=by)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no finished reports")
        return
    click.echo(f"{'PLATFORM':<28} {'PERIOD':<8} {'REPORTS':>8} {'ASSESSED':>8} {'QUALITY':>7} {'REFERRAL':>8}  "
               "MOST OFTEN MISSING")
    for r in rows:
        q = "-" if r["meanQuality"] is None else f"{r['meanQuality']:.2f}"
        ref = "-" if r["referralShare"] is None else f"{100 * r['referralShare']:.0f}%"
        top = sorted(r["missing"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        miss = ", ".join(f"{k} {100 * v / r['assessed']:.0f}%" for k, v in top) if r["assessed"] else ""
        click.echo(f"{r['platform'][:28]:<28} {r['period']:<8} {r['reports']:>8} {r['assessed']:>8} {q:>7} "
                   f"{ref:>8}  {miss}")
    click.echo("('-': nothing assessed yet in that period — not a zero)")
