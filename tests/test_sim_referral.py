"""A simulated year, assessed by the ``assess`` stage, has NCMEC's published referral share.

NCMEC's actionable (referral) share is 50.3 % in 2023 and 78.4 % in 2024, after bundling
(DOMAIN.md B1/B4; ``referral_share`` in data/sim/year-targets.json). The simulator's viral
share and 2024 bundling are fitted to it. The share is measured with the assess stage's own
``compute_facts`` and ``evaluate`` on each generated report (``tipline.sim.referral``), and
a sample of reports run through the real pipeline on both database backends gets exactly
the same dispositions and reasons, so the fast measurement cannot drift from the stage.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from sqlalchemy import select

from tipline.pipeline.core import StageContext, run_reports
from tipline.runtime import Runtime
from tipline.sim.calibration import load_year
from tipline.sim.generate import SimReport, YearGenerator
from tipline.sim.referral import ReferralTally, assess_report, referral_check, tally_referrals
from tipline.sim.write import DirectWriter, register_platforms
from tipline.store.tables import Assessment

#: Scale per year: about 7,000 (2023) and 6,000 (2024) reports, a few seconds each.
SCALES = {2023: 0.0002, 2024: 0.0003}


@pytest.mark.parametrize("year", [2023, 2024])
def test_referral_share_matches_published(year: int) -> None:
    t = tally_referrals(YearGenerator(year, SCALES[year], seed=year))
    check = referral_check(t, load_year(year))
    assert check.ok, f"{check}\n{t.summary()}"
    # The tolerance is meaningful: at most 4 points, even at this sample size.
    assert check.tolerance <= 0.04
    # Every informational rule fires somewhere, and the viral/meme rule carries most of them.
    assert set(t.reasons) == {"viral_meme", "no_location", "no_content", "no_reported_user"}
    assert t.reasons.most_common(1)[0][0] == "viral_meme"


def test_referral_check_fails_for_an_unfitted_year() -> None:
    """Without viral reports the 2023 year is ~95 % referral: the check must say so."""
    y = load_year(2023)
    plain = dataclasses.replace(y, platforms=[dataclasses.replace(p, meme_share=0.0) for p in y.platforms])
    t = tally_referrals(YearGenerator(2023, 0.00005, seed=1, targets=plain))
    check = referral_check(t, y)
    assert not check.ok and check.measured > 0.9


def test_referral_check_tolerance() -> None:
    y = load_year(2024)
    t = ReferralTally(reports=10_000, referral=round(10_000 * 0.784))
    c = referral_check(t, y)
    assert c.ok and c.tolerance == pytest.approx(max(0.02, 4 * math.sqrt(0.784 * 0.216 / 10_000)))
    assert not referral_check(ReferralTally(reports=10_000, referral=7_300), y).ok


def _sample(year: int, per_kind: int) -> list[SimReport]:
    """Up to ``per_kind`` reports of each kind, from the start of a small year. A kind is what
    the simulator meant (public, batched, about a viral item, location shown, files) together
    with the outcome the fast path computes, so a fast path that misjudges one kind of report
    still meets reports of that kind."""
    taken: dict[tuple[object, ...], int] = {}
    out: list[SimReport] = []
    for r in YearGenerator(year, 0.0001, seed=3):
        res = assess_report(r)
        t = r.truth
        kind = (t["public"], t["batched"], t["viral_item"] != "", t["location_visible"], t["n_files"] > 0,
                *sorted(x["rule"] for x in res.disposition_reasons))
        if taken.get(kind, 0) < per_kind:
            taken[kind] = taken.get(kind, 0) + 1
            out.append(r)
    return out


def test_fast_assessment_agrees_with_the_pipeline(runtime: Runtime) -> None:
    """Reports stored and enriched by the real pipeline (every stage, jurisdiction included)
    get the disposition and reasons ``tipline.sim.referral`` computes for them."""
    reports = _sample(2024, per_kind=2)
    expected = {r.seq: assess_report(r) for r in reports}
    kinds = {tuple(sorted(x["rule"] for x in e.disposition_reasons)) for e in expected.values()}
    assert {("referral",), ("viral_meme",), ("no_location",)} <= kinds and len(kinds) >= 5
    assert any(r.public for r in reports) and any(r.truth["batched"] for r in reports)

    accounts = register_platforms(runtime, {r.platform: p for r in reports for p in load_year(2024).platforms
                                            if p.name == r.platform}.values())
    rid_of: dict[int, int] = {}
    DirectWriter(runtime, accounts, batch=50).write(reports, lambda r, rid: rid_of.__setitem__(r.seq, rid))
    run_reports(StageContext(runtime), dict.fromkeys(sorted(rid_of.values())))
    with runtime.sessions() as s:
        stored = {a.report_id: a for a in s.execute(select(Assessment)).scalars()}
    for r in reports:
        a, e = stored[rid_of[r.seq]], expected[r.seq]
        assert (a.disposition, a.disposition_reasons) == (e.disposition, e.disposition_reasons), (
            f"simulated report {r.seq} ({r.platform}): pipeline {a.disposition} {a.disposition_reasons}, "
            f"fast path {e.disposition} {e.disposition_reasons}")
