"""``tipline stats``: pipeline progress and report quality figures."""

from __future__ import annotations

import json
from pathlib import Path

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


@command.command("export")
@click.option("--year", type=click.IntRange(1998, 2100), required=True, help="Calendar year (UTC) of receipt.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to write into (made if missing); default: <data dir>/columnar/YEAR.")
@pass_ctx
def stats_export(c: Ctx, year: int, out: Path | None) -> None:
    """Export a year's facts to Parquet for fast statistics.

    Writes the facts the transparency tables and the outcome statistics read (reports, files,
    incident memberships, referrals, outcome events) as Parquet files with a manifest naming
    the records' snapshot; `tipline transparency YEAR --columnar` then computes the report
    from them with DuckDB (docs/statistics.md, "Transparency at full scale"). Re-run it to
    bring the export in step with the store.
    """
    from tipline.stats import columnar

    target = out or columnar.default_dir(c.settings.data_dir, year)
    with c.database() as sessions:
        manifest = columnar.export(sessions, year, target)
    rows = manifest["rows"]
    click.echo(f"exported {year} to {target}: snapshot {manifest['snapshot']}, "
               + ", ".join(f"{n:,} {name}" for name, n in rows.items()))


_GROUPINGS = ("agency", "platform", "incident-type", "priority", "state", "country", "month", "year")


@command.command("outcomes")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day (UTC) a referral was made available; default: the first on record.")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day, inclusive; default: the last on record.")
@click.option("--escalated-only", is_flag=True, help="Only escalated referrals (period by escalation time).")
@click.option("--by", type=click.Choice(_GROUPINGS), default=None, help="One row per group, besides the total.")
@click.option("--unit", type=click.Choice(["report", "referral"]), default="report", show_default=True,
              help="Count reports (any referral with the outcome) or referrals.")
@click.option("--measure", type=click.Choice(["arrests", "charges", "convictions", "children_identified"]),
              default="arrests", show_default=True, help="The outcome counted.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the API's document).")
@pass_ctx
def stats_outcomes(c: Ctx, start: object, end: object, escalated_only: bool, by: str | None, unit: str,
                   measure: str, as_json: bool) -> None:
    """What came of referrals: counts, coverage, bounds.

    For each row: referrals (E), with feedback that settles the question (F), with the
    outcome (A, confirmed), persons arrested, coverage F/E with a Wilson interval, the
    assumption-free bounds [A, A + E - F], and the estimate under missing at random within
    strata — withheld below the coverage threshold or with fewer than 30 with feedback.
    Unknowns print as "—", never 0 (docs/statistics.md).
    """
    from datetime import datetime

    from tipline.stats.outcomes import Scope, outcome_stats, record_span

    with c.database() as sessions:
        first, last = record_span(sessions)
        lo = start.date() if isinstance(start, datetime) else first
        hi = end.date() if isinstance(end, datetime) else last
        if lo is None or hi is None:
            if as_json:
                click.echo(json.dumps({"total": None, "rows": None,
                                       "warnings": ["No referrals on record: there is nothing to count."]}))
            else:
                click.echo("no referrals on record: there is nothing to count (unknown, not zero)")
            return
        scope = Scope(lo, hi, escalated_only, by, unit, measure)
        data = outcome_stats(sessions, scope, coverage_threshold=c.settings.outcome_coverage_threshold)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(outcome_table(data))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def outcome_table(data: dict[str, object]) -> str:
    """The statistics as a readable table: unknowns as "—", never 0."""
    from typing import Any

    d: dict[str, Any] = data
    unit = d["unit"]
    q = d["query"]
    lines = [f"{d['measure']} after {unit}s made available {q['from']} to {q['to']}"
             + (" (escalated only)" if q.get("escalatedOnly") else ""),
             f"snapshot {d['snapshot']} · codes {d['codeListVersion']} · tipline {d['softwareVersion']}", ""]
    head = (f"{'GROUP':<22} {'E':>7} {'F':>7} {'COVERAGE (95% CI)':>24} {'A':>6} {'PERSONS':>7} "
            f"{'RATE|FB':>8} {'ESTIMATE (95% CI)':>24} {'BOUNDS':>15}")
    lines.append(head)
    rows = [("total", d["total"])] + [(r["key"] if r["key"] is not None else "unknown", r)
                                      for r in (d["rows"] or [])]
    for name, r in rows:
        cov = r["coverage"]
        cov_s = f"{_pct(cov['value'])} ({_pct(cov['low'])}–{_pct(cov['high'])})" if cov["value"] is not None else "—"
        est = r["estimate"]
        est_s = (f"{_num(est['value'])} ({_num(est['low'])}–{_num(est['high'])})" if est["value"] is not None
                 else "withheld" if est["withheld"] else "—")
        bounds = f"{r['bounds']['low']:,}–{r['bounds']['high']:,}"
        lines.append(f"{str(name)[:22]:<22} {r['referrals']:>7,} {r['withFeedback']:>7,} {cov_s:>24} "
                     f"{r['withOutcome']:>6,} {r['personsArrested']:>7,} {_pct(r['rateAmongFeedback']['value']):>8} "
                     f"{est_s:>24} {bounds:>15}")
    t = d["total"]
    fb, ar = t["delay"]["toFirstFeedback"], t["delay"]["toArrest"]
    lines += ["", f"median days to first feedback: {_num(fb['median'])}; to arrest: {_num(ar['median'])} "
                  f"(Kaplan–Meier, censored at {d['censoredAt']})"]
    if t["tipping"]["conclusion"]:
        lines.append(f"conclusion: {t['tipping']['conclusion']}; it flips below δ = {t['tipping']['delta']:.2f} "
                     "(the rate among those without feedback as a share of the rate among those with it)")
    for w in t["warnings"]:
        lines.append(f"note: {w}")
    lines.append("('—': unknown, not zero. A = confirmed; bounds = [A, A + E − F]; docs/statistics.md)")
    return "\n".join(lines)
