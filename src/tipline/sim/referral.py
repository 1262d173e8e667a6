"""The referral / informational split of a simulated year, decided by the ``assess`` stage's own code.

NCMEC publishes what share of reports is *actionable* (a referral) — 50.3 % in 2023 and
78.4 % in 2024 (DOMAIN.md B1/B4) — and the simulator is fitted to it. Measuring it through
the whole pipeline costs about 60 ms per report, so this module feeds each generated report
to the assess stage's own functions instead: ``compute_facts`` and ``evaluate`` with the
bundled ``triage.toml`` rules, on exactly the records intake would store (the report tree
and each file's fileDetails, round-tripped through their stored JSON form).

One input differs from a pipeline run: without the ``jurisdiction`` stage the fact
``location_possible`` comes from the report's own location fields (IP capture events,
addresses, platform estimate), where the pipeline asks whether a jurisdiction with a
country was resolved. The simulator only writes IP addresses that geolocate to the intended
place and estimates that name a country, so the two agree; tests/test_sim_referral.py runs
the real pipeline on a sample and checks that every report gets the same disposition.
No other disposition fact reads an upstream stage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tipline.intake.public_form import validate_report_form
from tipline.model.report import FileDetails
from tipline.model.report import Report as ReportModel
from tipline.pipeline.stages.assess import Inputs, Result, Rules, assess_inputs, load_rules
from tipline.sim.calibration import YearTargets
from tipline.sim.generate import SimReport
from tipline.sim.measure import Check
from tipline.sim.write import file_details


def stored_model(r: SimReport, now: datetime | None = None) -> ReportModel:
    """The report tree intake stores for ``r`` (the public form is turned into one as intake does)."""
    if r.public:
        assert r.form is not None
        model = validate_report_form(r.form, now or datetime.now(UTC)).report
        assert model is not None, f"simulated public report {r.seq} does not validate"
    else:
        assert r.report is not None, "a truth-only stream has no reports to assess"
        model = r.report
    # What `gather` reads back: the document as stored (JSON), validated again.
    return ReportModel.model_validate(model.model_dump(mode="json", exclude_defaults=True))


def inputs_of(r: SimReport, now: datetime | None = None) -> Inputs:
    """The assess stage's ``Inputs`` for a generated report, as ``assess.gather`` would build them
    from the stored rows before any upstream stage ran (with the place the jurisdiction stage
    will resolve, which the reason texts name)."""
    model = stored_model(r, now)
    details: list[FileDetails | None] = []
    viewed: list[bool | None] = []
    for f in r.files:
        d = file_details(0, f"sim-{r.seq}-{f.seq}", f)
        details.append(FileDetails.model_validate(d.model_dump(mode="json", exclude_defaults=True)))
        viewed.append(d.fileViewedByEsp)
    when = model.incident_datetime
    # The place the pipeline will resolve (the simulator writes IPs and estimates that land
    # there): reasons name it. Facts still come from the report (no jurisdiction stage ran).
    visible = r.truth.get("location_visible", "none")
    country = r.truth.get("true_country") if visible != "none" else None
    state = r.truth.get("true_us_state") or None if visible == "us_state" else None
    return Inputs(
        report=model,
        incident_at=when if when.tzinfo else when.replace(tzinfo=UTC),
        escalation=model.escalation,
        batched_viral=bool(model.batchedReport and model.batchedReport.reason == "VIRAL_POTENTIAL_MEME"),
        files=details,
        files_viewed=viewed,
        jurisdiction_country=country,
        jurisdiction_state=state,
    )


def assess_report(r: SimReport, rules: Rules | None = None, now: datetime | None = None) -> Result:
    """The assessment the ``assess`` stage gives ``r`` (disposition exact; see the module docstring)."""
    return assess_inputs(inputs_of(r, now), rules or load_rules())


@dataclass
class ReferralTally:
    """Dispositions of a stream of generated reports, with the informational reasons that fired."""

    reports: int = 0
    referral: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # each informational rule that fired
    combos: Counter[tuple[str, ...]] = field(default_factory=Counter)  # the set that fired together
    by_platform: Counter[tuple[str, str]] = field(default_factory=Counter)  # (platform, disposition)

    def add(self, r: SimReport, res: Result) -> None:
        self.reports += 1
        self.by_platform[(r.platform, res.disposition)] += 1
        if res.disposition == "referral":
            self.referral += 1
            return
        fired = tuple(sorted(x["rule"] for x in res.disposition_reasons))
        self.combos[fired] += 1
        self.reasons.update(fired)

    @property
    def referral_share(self) -> float:
        return self.referral / max(self.reports, 1)

    def summary(self) -> dict[str, Any]:
        n = max(self.reports, 1)
        return {
            "reports": self.reports, "referral_share": round(self.referral_share, 4),
            "informational_reasons": {k: round(v / n, 4) for k, v in self.reasons.most_common()},
            "informational_combinations": {"+".join(k): round(v / n, 4) for k, v in self.combos.most_common()},
        }


#: Smallest tolerance of the referral check (absolute share); the sample's own noise may widen it.
REFERRAL_TOLERANCE = 0.02


def referral_check(t: ReferralTally, y: YearTargets) -> Check:
    """The measured referral share against the published one: within the larger of
    ``REFERRAL_TOLERANCE`` and four binomial standard errors at the tallied sample size."""
    if y.referral_share is None:
        raise ValueError(f"no published referral share for {y.year}")
    target = y.referral_share
    sigma = math.sqrt(target * (1 - target) / max(t.reports, 1))
    return Check("referral share (assess stage)", t.referral_share, target, max(REFERRAL_TOLERANCE, 4 * sigma))


def tally_referrals(reports: Iterable[SimReport], rules: Rules | None = None) -> ReferralTally:
    """Assess every report of ``reports`` (a ``YearGenerator`` with full models) and count dispositions."""
    rules = rules or load_rules()
    now = datetime.now(UTC)
    t = ReferralTally()
    for r in reports:
        t.add(r, assess_report(r, rules, now))
    return t


if __name__ == "__main__":  # python -m tipline.sim.referral YEAR SCALE [SEED]
    import json
    import sys

    from tipline.sim.generate import YearGenerator

    year, scale = int(sys.argv[1]), float(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    print(json.dumps(tally_referrals(YearGenerator(year, scale, seed)).summary(), indent=2))
