"""``tipline bundles``: preview what the grouping rules would do, and the report/incident counts."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.commands.output import cut, table


@click.group("bundles")
def command() -> None:
    """Incidents: bundles of reports about the same thing.

    The same offender, the same content or one batch of a platform.
    """


@command.command("preview")
@click.option("--rules", "rules_file", type=click.Path(exists=True, dir_okay=False),
              help="A bundling TOML file to try (default: the bundled data/bundling.toml).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show", default=20, show_default=True, help="How many moved reports to list.")
@pass_ctx
def preview(c: Ctx, rules_file: str | None, as_json: bool, show: int) -> None:
    """Dry run: what the rules would change. Writes nothing.

    Groups all finished reports by the rules and compares with the incidents stored now.
    """
    from tipline.pipeline.bundling.reference import counts, current_assignments, plan_all
    from tipline.pipeline.bundling.rules import RULES_FILE, load_bundling

    try:
        rules = load_bundling(rules_file)
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"{rules_file or RULES_FILE}: {exc}") from exc
    with c.opened() as rt, rt.sessions() as s:
        plan = plan_all(s, rules)
        now = current_assignments(s)
        totals = counts(s)
    planned_incidents = Counter(rule for rule, _ in set(plan.values()))
    current_incidents = Counter(rule for rule, _ in set(now.values()))
    moved = sorted((rid, now.get(rid, (None, None))[1], key) for rid, (_, key) in plan.items()
                   if now.get(rid, (None, None))[1] != key)
    planned_keys = {k for _, k in plan.values()}
    current_keys = {k for _, k in now.values()}
    result: dict[str, Any] = {
        "rules": str(rules_file or RULES_FILE),
        "reports": len(plan),
        "incidentsAdjustedForBundling": totals["incidents"],
        "planned": {"bundles": len(planned_keys), "byRule": dict(sorted(planned_incidents.items()))},
        "current": {"bundles": len(current_keys), "byRule": dict(sorted(current_incidents.items()))},
        "bundlesCreated": len(planned_keys - current_keys),
        "bundlesRemoved": len(current_keys - planned_keys),
        "reportsMoved": len(moved),
        "moves": [{"report": r, "from": f, "to": t} for r, f, t in moved[:show]],
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"rules: {result['rules']}  (dry run: nothing is written)")
    adjusted = totals["incidents"] if totals["incidents"] is not None else "unknown (bundles stage not run for all)"
    click.echo(f"finished reports: {result['reports']}; incidents adjusted for bundling: {adjusted}")
    click.echo("")
    by_rule = sorted(set(current_incidents) | set(planned_incidents))
    for line in table(["RULE", "BUNDLES NOW", "BY THESE RULES"],
                      [*([r, current_incidents.get(r, 0), planned_incidents.get(r, 0)] for r in by_rule),
                       ["(all)", result["current"]["bundles"], result["planned"]["bundles"]]],
                      right=(1, 2)):
        click.echo(line)
    click.echo("")
    click.echo(f"would create {result['bundlesCreated']}, remove {result['bundlesRemoved']}, "
               f"move {result['reportsMoved']} report(s)")
    if moved:
        click.echo("")
        for line in table(["REPORT", "FROM INCIDENT", "TO INCIDENT"],
                          [[m["report"], cut(m["from"] or "(none)", 80), cut(m["to"], 80)] for m in result["moves"]],
                          right=(0,)):
            click.echo(line)
    if len(moved) > show:
        click.echo(f"and {len(moved) - show} more (--show N lists more)")
    if moved:
        click.echo("apply: put the rules in place, then `tipline pipeline rerun --stage bundles`")
