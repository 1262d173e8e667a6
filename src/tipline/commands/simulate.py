"""``tipline simulate``: generate a synthetic CyberTipline year and file it into tipline."""

from __future__ import annotations

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
                  generate_only: bool = False) -> dict[str, Any]:
    """Generate the year, file it into the instance (unless ``generate_only``), write the ground
    truth to ``out``; returns the summary written beside it."""
    from tqdm import tqdm

    from tipline.sim.generate import SimReport, YearGenerator
    from tipline.sim.measure import Tally
    from tipline.sim.write import DirectWriter, IspwsWriter, TruthWriter, register_platforms
    from tipline.store.setup import do_init

    gen = YearGenerator(year, scale, seed, files=files_mode)  # type: ignore[arg-type]
    out = out or settings.data_dir / "sim" / f"{year}-s{seed}"
    truth = TruthWriter(out, gen.n_memes)
    tally = Tally()
    bar = tqdm(total=len(gen), unit="report", desc=f"simulate {year}", smoothing=0.1, mininterval=0.5)

    def done(r: SimReport, report_id: int | None) -> None:
        truth.add(r, report_id)
        tally.add(r)
        bar.update(1)

    started = time.monotonic()
    if generate_only:
        for r in gen:
            done(r, None)
    else:
        for line in do_init(settings):
            click.echo(line, err=True)
        from tipline.runtime import Runtime

        rt = Runtime.open(settings)
        try:
            accounts = register_platforms(rt, gen.platforms_used())
            writer: Any = IspwsWriter(rt, accounts, url) if via == "ispws" else DirectWriter(rt, accounts)
            writer.write(gen, done)
        finally:
            rt.close()
    bar.close()
    elapsed = time.monotonic() - started
    summary = {"year": year, "scale": scale, "seed": seed, "via": None if generate_only else via,
               "files": files_mode, "reports": len(gen), "seconds": round(elapsed, 2),
               "reports_per_second": round(len(gen) / elapsed, 1) if elapsed else None,
               "measured": tally.summary(), "notes": gen.t.notes,
               "attribution": "IP geolocation networks: DB-IP City Lite (https://db-ip.com), CC BY 4.0; "
                              "NCMEC figures transcribed by apparebit/diaphanous (Apache-2.0)"}
    truth.close(summary)
    click.echo(f"{len(gen):,} reports in {elapsed:.1f} s ({summary['reports_per_second']} reports/s); "
               f"ground truth in {out}")
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
@pass_ctx
def command(c: Ctx, year: str, scale: float, seed: int, via: str, files_mode: str, out: Path | None,
            url: str | None, generate_only: bool) -> None:
    """Generate a synthetic year of reports and file it.

    The year is calibrated to NCMEC's published figures. Ground truth (true incidents,
    locations, imminent danger and more) goes to --out as CSV,
    apart from anything the system sees. IP geolocation data: DB-IP City Lite (db-ip.com),
    CC BY 4.0.
    """
    simulate_year(c.settings, int(year), scale, seed=seed, via=via, files_mode=files_mode, out=out, url=url,
                  generate_only=generate_only)
