"""``tipline simulate``: generate a synthetic CyberTipline year and file it into tipline."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from tipline.commands.context import Ctx, LazyChoice, pass_ctx
from tipline.config import Settings


def _years() -> list[str]:
    from tipline.sim.calibration import YEARS

    return [str(y) for y in YEARS]


def simulate_year(settings: Settings, year: int, scale: float, *, seed: int = 1, via: str = "direct",
                  files_mode: str = "hashes", out: Path | None = None, url: str | None = None,
                  generate_only: bool = False, outcomes: bool = True,
                  outcome_profile: Path | None = None, workers: int = 1) -> dict[str, Any]:
    """Generate the year, file it into the instance (unless ``generate_only``), write the ground
    truth to ``out``; returns the summary written beside it.

    Stored reports get their simulated receipt times. With ``outcomes`` the reports are then
    enriched and routed, their referrals get simulated made-available times, and what the
    simulated agencies report enters the store (tipline.sim.outcomes); the truth of every
    referral goes to ``out/outcomes.csv``.

    ``via="direct"`` files through Intake's bulk use case, ``workers`` processes making the
    reports; each report carries an idempotency key of (year, scale, seed, sequence number), so
    running again over the same store, or after a run cut short, stores nothing twice.
    """
    from tqdm import tqdm

    from tipline.sim.generate import SimReport, YearGenerator
    from tipline.sim.measure import Tally
    from tipline.sim.outcomes import load_profile, receipt_times
    from tipline.sim.write import DirectWriter, IspwsWriter, TruthWriter, register_platforms
    from tipline.store.setup import do_init

    try:
        profile = load_profile(outcome_profile)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    gen = YearGenerator(year, scale, seed, files=files_mode)  # type: ignore[arg-type]
    out = out or settings.data_dir / "sim" / f"{year}-s{seed}"
    truth = TruthWriter(out, gen.n_memes)
    tally = Tally()
    if not generate_only:
        # Before the progress bar, so the set-up lines do not break into it.
        for line in do_init(settings):
            click.echo(line, err=True)
    # The progress bar is the load's progress: it moves as each batch commits.
    bar = tqdm(total=len(gen), unit="report", desc=f"simulate {year}", smoothing=0.1, mininterval=0.5)

    stored: dict[int, dict[str, Any]] = {}

    def done(r: SimReport, report_id: int | None) -> None:
        truth.add(r, report_id)
        if report_id is not None:
            stored[report_id] = r.truth
        tally.add(r)
        bar.update(1)

    started = time.monotonic()
    outcome_summary: dict[str, Any] | None = None
    if generate_only:
        for r in gen:
            done(r, None)
    else:
        from tipline.runtime import Runtime

        rt = Runtime.open(settings)
        try:
            accounts = register_platforms(rt, gen.platforms_used(), credentials=via == "ispws")
            # The direct writer stores each report with its simulated receipt time; over ISPWS
            # the times are stamped after the load.
            writer: Any = (IspwsWriter(rt, accounts, url) if via == "ispws" else
                           DirectWriter(rt, accounts, key_prefix=f"sim-{year}-x{scale:g}-s{seed}", workers=workers,
                                        batch=_batch_size(len(gen)), received=receipt_times(profile, seed, year)))
            writer.write(gen, done)
            bar.close()
            replayed: set[int] = getattr(writer, "replayed_ids", set())
            if replayed:
                # Their times and outcomes came with the run that stored them: drawing them again
                # would record every agency's feedback twice.
                click.echo(f"{len(replayed):,} of the reports were already stored (an earlier run); "
                           "they were not stored again", err=True)
                stored = {rid: t for rid, t in stored.items() if rid not in replayed}
            # The filing rate is the writers' own; enrichment and outcomes are reported apart.
            elapsed = time.monotonic() - started
            outcome_summary = _times_and_outcomes(rt, stored, profile, seed, year, out, outcomes,
                                                  stamped=via == "direct")
        finally:
            rt.close()
    bar.close()
    if generate_only:
        elapsed = time.monotonic() - started
    summary = {"year": year, "scale": scale, "seed": seed, "via": None if generate_only else via,
               "files": files_mode, "reports": len(gen), "seconds": round(elapsed, 2),
               "reports_per_second": round(len(gen) / elapsed, 1) if elapsed else None,
               "measured": tally.summary(), "notes": gen.t.notes,
               "outcomes": None if generate_only else outcome_summary,
               "attribution": "IP geolocation networks: DB-IP City Lite (https://db-ip.com), CC BY 4.0; "
                              "NCMEC figures transcribed by apparebit/diaphanous (Apache-2.0)"}
    truth.close(summary)
    click.echo(f"{len(gen):,} reports in {elapsed:.1f} s ({summary['reports_per_second']} reports/s); "
               f"ground truth in {out}")
    return summary


def _times_and_outcomes(rt: Any, stored: dict[int, dict[str, Any]], profile: Any, seed: int, year: int, out: Path,
                        outcomes: bool, stamped: bool = False) -> dict[str, Any] | None:
    """Simulated times for the stored reports (unless the writer ``stamped`` them as it stored
    them); with ``outcomes``, routing and agencies' feedback."""
    from tipline.commands.pipeline import run_pipeline
    from tipline.sim.outcomes import simulate_outcomes, stamp_referral_times, stamp_report_times

    if not stamped:
        stamp_report_times(rt, stored, profile, seed, year)
    if not outcomes:
        return None
    click.echo("enriching and routing the simulated reports (outcomes need referrals) ...", err=True)
    failed = run_pipeline(rt, report_ids=sorted(stored))
    if failed:
        click.echo(f"{failed} report(s) failed enrichment: they have no referrals and no outcomes", err=True)
    stamp_referral_times(rt, stored, profile, seed)
    tally = simulate_outcomes(rt, stored, profile, seed, out)
    summary = tally.summary(profile)
    click.echo(f"outcomes: {summary['referrals']:,} referrals, {summary['true_arrest_reports']:,} reports truly led "
               f"to an arrest; agencies reported on {summary['referrals_with_feedback']:,} referrals "
               f"({summary['events_reported']:,} events)", err=True)
    return summary


@click.command("simulate")
@click.option("--year", type=LazyChoice(_years), required=True,
              help="Which published year to calibrate to (2024 adds batched viral reports).")
@click.option("--scale", type=float, default=0.0001, show_default=True,
              help="Fraction of the real year's report count (0.01 of 2023 is about 362,000 reports).")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same year.")
@click.option("--via", type=click.Choice(["ispws", "direct"]), default="direct", show_default=True,
              help="ispws: the real HTTP intake (ISPWS + public form); direct: bulk insert, same records.")
@click.option("--files", "files_mode", type=click.Choice(["images", "hashes"]), default="hashes", show_default=True,
              help="images: generated stand-in images (slow, ~PDQ-able); hashes: metadata and synthetic hashes.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the ground truth (default: <data dir>/sim/<year>-s<seed>).")
@click.option("--url", default=None, help="With --via ispws: a running tipline server to send to "
              "(same database as the data dir); default: start one in-process on a free port.")
@click.option("--generate-only", is_flag=True, help="Generate and write the ground truth only; store nothing.")
@click.option("--outcomes/--no-outcomes", default=True, show_default=True,
              help="Enrich and route the reports, then record what simulated agencies report back.")
@click.option("--outcome-profile", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="TOML file over the default law-enforcement profile (tipline/data/sim/outcomes.toml).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --via direct: processes that make the reports while this one stores them "
                   "[default: the number of CPUs].")
@pass_ctx
def command(c: Ctx, year: str, scale: float, seed: int, via: str, files_mode: str, out: Path | None,
            url: str | None, generate_only: bool, outcomes: bool, outcome_profile: Path | None,
            workers: int | None) -> None:
    """Generate a synthetic year of reports and file it.

    The year is calibrated to NCMEC's published figures. Ground truth (true incidents,
    locations, imminent danger and more) goes to --out as CSV,
    apart from anything the system sees. IP geolocation data: DB-IP City Lite (db-ip.com),
    CC BY 4.0.
    """
    simulate_year(c.settings, int(year), scale, seed=seed, via=via, files_mode=files_mode, out=out, url=url,
                  generate_only=generate_only, outcomes=outcomes, outcome_profile=outcome_profile,
                  workers=workers or os.cpu_count() or 1)


def _batch_size(total: int) -> int:
    """Reports per transaction: 1,000 for a year, fewer for a small load so that the progress
    bar (which moves as each batch commits) moves at least twenty times, not once at the end."""
    return max(50, min(1000, -(-total // 20)))
