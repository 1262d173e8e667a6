"""A simulated year matches NCMEC's published shares within the stated tolerances.

Calibration is checked on the generated stream: the same ``YearGenerator`` output that both
write paths store (tests/test_sim_paths.py shows they store it faithfully), so storing
362,000 reports is not needed to know what they are. The default run uses small years; the
scale-0.01 year of the issue (about 362,000 reports) is marked slow.
"""

from __future__ import annotations

import time

import maxminddb
import pytest

from tipline.sim.calibration import load_year
from tipline.sim.generate import YearGenerator
from tipline.sim.measure import Tally, calibration_checks
from tipline.sim.networks import US_STATE_CODES, default_mmdb


def tally(year: int, scale: float, seed: int = 2023, truth_only: bool = False) -> tuple[Tally, YearGenerator]:
    gen = YearGenerator(year, scale, seed, truth_only=truth_only)
    t = Tally()
    for r in gen:
        t.add(r)
    return t, gen


def assert_calibrated(t: Tally, gen: YearGenerator) -> None:
    checks = calibration_checks(t, gen.t)
    bad = [str(c) for c in checks if not c.ok]
    assert not bad, "\n".join(bad)
    assert len(checks) > 50


@pytest.mark.parametrize("year", [2023, 2024])
def test_small_year_matches_published_shares(year: int) -> None:
    t, gen = tally(year, 0.0004)
    assert t.reports == round(load_year(year).reports * 0.0004)
    assert_calibrated(t, gen)
    assert 2.8 <= t.files / t.reports <= 3.1
    if year == 2024:
        assert t.batched > 0 and abs(t.incidents / t.reports - 1.42) < 0.05
    else:
        assert t.batched == 0 and t.incidents == t.reports


@pytest.mark.slow
def test_year_2023_at_scale_001_matches_published_shares() -> None:
    started = time.monotonic()
    t, gen = tally(2023, 0.01, truth_only=True)  # same draws as the full stream, without building models
    assert 361_000 < t.reports < 363_000
    assert_calibrated(t, gen)
    assert 0.0015 <= t.escalated / t.reports <= 0.0018
    print(f"2023 at scale 0.01: {t.reports} reports generated and checked in {time.monotonic() - started:.0f} s")


def test_truth_only_stream_is_the_full_streams_truth() -> None:
    full = [r.truth for r in YearGenerator(2024, 3e-5, 9)]
    light = [r.truth for r in YearGenerator(2024, 3e-5, 9, truth_only=True)]
    # The proxy flag is decided while building IP events, which the truth-only stream skips.
    assert [{**t, "proxy_ip": None} for t in full] == [{**t, "proxy_ip": None} for t in light]


def test_generation_is_deterministic() -> None:
    a = [(r.platform, r.truth, [f.content.sha256 for f in r.files]) for r in YearGenerator(2024, 2e-5, 5)]
    b = [(r.platform, r.truth, [f.content.sha256 for f in r.files]) for r in YearGenerator(2024, 2e-5, 5)]
    assert a == b
    c = [r.truth for r in YearGenerator(2024, 2e-5, 6)]
    assert c != [x[1] for x in a]


def test_reports_carry_exactly_the_location_the_truth_says() -> None:
    """No location means none at all; IPs geolocate (DB-IP City Lite) to the intended place."""
    checked = 0
    with maxminddb.open_database(str(default_mmdb())) as db:
        for r in YearGenerator(2023, 2e-5, 11):
            t = r.truth
            if r.report is None:
                assert t["location_visible"] == "none"  # the public form has no location fields
                continue
            user = r.report.personOrUserReported[0]
            events = [e for e in user.ipCaptureEvent if not e.possibleProxy]
            if t["location_visible"] == "none":
                assert not events and user.estimatedLocation is None
                continue
            if t["location_visible"] == "us_country":
                assert not events and user.estimatedLocation is not None
                assert user.estimatedLocation.countryCode == "US" and user.estimatedLocation.region is None
                continue
            assert events or user.estimatedLocation is not None
            for e in events:
                rec = db.get(e.ipAddress)
                assert isinstance(rec, dict)
                assert rec["country"]["iso_code"] == t["true_country"]  # type: ignore[index]
                if t["true_country"] == "US":
                    name = rec["subdivisions"][0]["names"]["en"]  # type: ignore[index]
                    assert US_STATE_CODES[name] == t["true_us_state"]
                checked += 1
    assert checked > 500
