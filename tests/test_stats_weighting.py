"""The inverse-propensity-weighted estimate (tipline.stats.weighting).

- the vectorised Newton fit agrees with statsmodels' binomial GLM;
- with a saturated model the weighted total is the post-stratified total over the same cells;
- calibration on 200 simulated years with known truth, drawn with the simulator's own outcome
  model (tipline.sim.outcomes: arrest probabilities from each report's ground truth, agency
  propensities from the profile): the confirmed count never exceeds the truth, the bounds always
  hold it, and the 95 % interval covers it at about its nominal rate when feedback is missing at
  random given the covariates;
- with the default profile (feedback from 5 to 45 %) the estimate is never shown: it is withheld
  with a reason, never a number, never 0.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from tipline.sim.outcomes import OutcomeProfile, agency_behaviour, draw_arrest, load_profile, priority_of
from tipline.stats import weighting
from tipline.stats.outcomes import Thresholds, Unit, facts_of, post_stratified, row_stats

RUNS = 200
TYPES = ("Online Enticement of Children for Sexual Acts",
         "Child Pornography (possession, manufacture, and distribution)", "Child Sex Trafficking")
#: Where the reported user is (the simulator's location_visible) and who gets the referral.
PLACES = (("us_state", "icac", 0.45), ("us_state", "local", 0.15), ("us_country", "federal", 0.1),
          ("abroad", "international", 0.2), ("none", "international", 0.1))
#: Agencies answer more often on the urgent referrals: missing at random given priority (and
#: the agency), not completely at random, so the plain rate among those with feedback is biased.
PRIORITY_REPORTING = {1: 1.15, 2: 1.0, 3: 0.8}


def _year(rng: random.Random, profile: OutcomeProfile, seed: int) -> tuple[list[Unit], int]:
    """One small simulated year: 10-20 agencies, 300-900 referred reports, each with its truth."""
    agencies = [(f"AG{i}", kind) for i, (_, kind, _) in enumerate(PLACES * 4)][: rng.randint(10, 20)]
    behaviour = {code: agency_behaviour(code, kind, profile, seed) for code, kind in agencies}
    units: list[Unit] = []
    truth_total = 0
    for key in range(rng.randint(300, 900)):
        place, kind, _ = rng.choices(PLACES, weights=[w for *_, w in PLACES])[0]
        code = rng.choice([c for c, k in agencies if k == kind] or [agencies[0][0]])
        kind = dict(agencies)[code]
        truth = {"child_in_imminent_danger": rng.random() < 0.08, "incident_type": rng.choice(TYPES),
                 "sextortion": rng.random() < 0.1, "viral_item": "meme" if rng.random() < 0.1 else "",
                 "generative_ai": rng.random() < 0.05, "location_visible": place, "public": rng.random() < 0.1}
        priority = priority_of(truth)
        arrested, persons, _ = draw_arrest(truth, profile, rng)
        truth_total += arrested
        reported = rng.random() < min(0.98, behaviour[code].propensity * PRIORITY_REPORTING[priority])
        located = "no" if place == "none" else "yes"
        units.append(Unit(
            key=key, agency=code, stratum=(code, str(priority), truth["incident_type"]), groups={},
            start=date(2023, 1, 1), settled=reported, yes=arrested and reported, arrest=arrested and reported,
            persons=persons if arrested and reported else 0, any_event=reported,
            first_event=date(2023, 3, 1) if reported else None, first_arrest=None,
            covariates=(str(priority), kind, truth["incident_type"], located)))
    return units, truth_total


def _profile(tmp_path: Path, propensity: tuple[float, float] | None) -> OutcomeProfile:
    if propensity is None:
        return load_profile()
    lo, hi = propensity
    f = tmp_path / "profile.toml"
    f.write_text("[feedback.propensity]\n" + "".join(f"{k} = [{lo}, {hi}]\n"
                                                       for k in ("icac", "local", "federal", "international")))
    return load_profile(f)


def test_newton_agrees_with_statsmodels() -> None:
    rng = np.random.default_rng(3)
    design = np.column_stack([np.ones(24), rng.integers(0, 2, (24, 4)).astype(float)])
    total = rng.integers(5, 60, 24).astype(float)
    true_p = 1 / (1 + np.exp(-(design @ np.array([0.3, -0.8, 0.5, 0.2, -0.4]))))
    responded = rng.binomial(total.astype(int), true_p).astype(float)
    ref, converged = weighting.fit_statsmodels(design, responded, total)
    fast = weighting.fit_newton(design, responded[None, :], total[None, :])[0]
    assert converged
    assert np.allclose(fast, ref, atol=1e-7)


def test_a_saturated_model_weights_to_the_post_stratified_total() -> None:
    """One covariate whose levels are the strata: the odds weights (1 - p)/p are u/k per cell,
    so the weighted total is A + sum of u * a/k — the post-stratified total."""
    rng = random.Random(7)
    units = []
    for key in range(400):
        st = (f"a{rng.randrange(4)}", str(rng.choice((1, 2, 3))), "t")
        settled = rng.random() < 0.7
        yes = settled and rng.random() < 0.2
        units.append(Unit(key=key, agency=st[0], stratum=st, groups={}, start=date(2023, 1, 1), settled=settled,
                          yes=yes, arrest=yes, persons=int(yes), any_event=settled, first_event=None,
                          first_arrest=None, covariates=("|".join(st),)))
    facts = facts_of(units, date(2023, 12, 31))
    assert all(k > 0 for _, k, _, _ in facts.strata)  # no borrowing: the two must then agree exactly
    est = weighting.weighted_estimate(weighting.patterns(facts.patterns), replicates=50, seed=1, confidence=0.95)
    total, borrowed = post_stratified(units)
    assert borrowed == 0 and total is not None
    assert est["value"] == pytest.approx(total, rel=1e-6)


def test_calibration_on_simulated_years(tmp_path: Path) -> None:
    """Feedback from 55 to 95 % of referrals (a profile laid over the default, as
    ``tipline simulate --outcome-profile`` does): the interval covers the truth at about 95 %."""
    profile = _profile(tmp_path, (0.55, 0.85))
    rng = random.Random(2024)
    covered = shown = 0
    for run in range(RUNS):
        units, truth = _year(rng, profile, seed=run)
        row = row_stats(units, unit="report", measure="arrests", censor=date(2023, 12, 31),
                        thresholds=Thresholds(replicates=300))
        assert row["withOutcome"] <= truth
        assert row["bounds"]["low"] <= truth <= row["bounds"]["high"]
        est = row["estimateWeighted"]
        if est["value"] is None:
            assert est["withheld"]  # never an unknown without a reason, never a 0
            continue
        shown += 1
        assert row["bounds"]["low"] <= est["low"] <= est["value"] <= est["high"] <= row["bounds"]["high"]
        covered += est["low"] <= truth <= est["high"]
    assert shown >= 0.9 * RUNS, f"the weighted estimate was withheld in {RUNS - shown} of {RUNS} years"
    rate = covered / shown
    # About nominal: neither failing to cover nor uselessly wide (a binomial 200 x 0.95 lies in
    # 0.915-0.98 with 99 % probability).
    assert 0.915 <= rate <= 0.99, f"the 95 % interval covered the truth in {covered} of {shown} years"


def test_with_thin_feedback_the_estimate_is_never_shown(tmp_path: Path) -> None:
    """The default profile: agencies report on 5 to 45 % of referrals. Below the 50 % coverage
    threshold both estimates are withheld, with a reason, and the bounds are the answer."""
    profile = _profile(tmp_path, None)
    rng = random.Random(11)
    for run in range(30):
        units, truth = _year(rng, profile, seed=1000 + run)
        row = row_stats(units, unit="report", measure="arrests", censor=date(2023, 12, 31),
                        thresholds=Thresholds(replicates=50))
        assert row["coverage"]["value"] < 0.5
        for key in ("estimate", "estimateWeighted"):
            est = row[key]
            assert est["value"] is None and est["low"] is None and est["high"] is None and est["rate"] is None
            assert "threshold" in est["withheld"]
        assert row["bounds"]["low"] <= truth <= row["bounds"]["high"]


def test_a_level_nobody_reported_on_withholds_the_weighted_estimate() -> None:
    units = []
    for key in range(200):
        kind = "international" if key % 10 == 0 else "icac"
        settled = kind == "icac" and key % 3 != 0
        units.append(Unit(key=key, agency=kind, stratum=(kind, "2", "t"), groups={}, start=date(2023, 1, 1),
                          settled=settled, yes=settled and key % 7 == 0, arrest=False, persons=0,
                          any_event=settled, first_event=None, first_arrest=None,
                          covariates=("2", kind, "t", "yes")))
    row = row_stats(units, unit="report", measure="arrests", censor=date(2023, 12, 31),
                    thresholds=Thresholds(replicates=50))
    assert row["estimate"]["value"] is not None  # post-stratification borrows a coarser rate
    ew = row["estimateWeighted"]
    assert ew["value"] is None and "agency kind=international" in ew["withheld"]
    assert any("weighted estimate is withheld" in w for w in row["warnings"])
