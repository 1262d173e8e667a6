"""Measuring a generated stream against the published targets it is calibrated to.

Each check states its tolerance: the larger of a relative band around the published value
and five binomial standard errors at the simulated sample size (so small years are not
held to precision they cannot have). docs/simulation.md lists them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tipline.sim.calibration import YearTargets
from tipline.sim.generate import SimReport


@dataclass
class Tally:
    """Counts over a stream of ``SimReport`` (what the calibration is checked on)."""

    reports: int = 0
    files: int = 0
    incidents: int = 0
    escalated: int = 0
    sextortion: int = 0
    gai: int = 0
    batched: int = 0
    platform: Counter[str] = field(default_factory=Counter)
    incident_type: Counter[str] = field(default_factory=Counter)
    location: Counter[str] = field(default_factory=Counter)  # us_state | us_country | abroad | none
    country: Counter[str] = field(default_factory=Counter)  # abroad reports
    us_state: Counter[str] = field(default_factory=Counter)  # US reports with a state

    def add(self, r: SimReport) -> None:
        t = r.truth
        self.reports += 1
        self.files += int(t["n_files"])
        self.incidents += int(t["incidents_counted"])
        self.escalated += bool(t["escalated"])
        self.sextortion += bool(t["sextortion"])
        self.gai += bool(t["generative_ai"])
        self.batched += bool(t["batched"])
        self.platform[r.platform] += 1
        self.incident_type[t["incident_type"]] += 1
        loc = t["location_visible"]
        self.location[loc] += 1
        if loc == "abroad":
            self.country[t["true_country"]] += 1
        elif loc == "us_state":
            self.us_state[t["true_us_state"]] += 1

    def summary(self) -> dict[str, Any]:
        n = max(self.reports, 1)
        return {
            "reports": self.reports, "files_per_report": round(self.files / n, 4),
            "incidents_per_report": round(self.incidents / n, 4), "escalated_share": round(self.escalated / n, 6),
            "sextortion": self.sextortion, "generative_ai": self.gai, "batched_reports": self.batched,
            "location": {k: round(v / n, 5) for k, v in sorted(self.location.items())},
            "top_platforms": {k: round(v / n, 5) for k, v in self.platform.most_common(8)},
            "top_countries_abroad": {k: round(v / max(sum(self.country.values()), 1), 5)
                                     for k, v in self.country.most_common(8)},
        }


@dataclass(frozen=True)
class Check:
    metric: str
    measured: float
    target: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return abs(self.measured - self.target) <= self.tolerance

    def __str__(self) -> str:
        mark = "ok " if self.ok else "BAD"
        return f"{mark} {self.metric:<58} {self.measured:10.5f} vs {self.target:10.5f} (±{self.tolerance:.5f})"


def _share_check(metric: str, count: int, n: int, target: float, rel: float) -> Check:
    sigma = math.sqrt(max(target * (1 - target), 1e-12) / max(n, 1))
    return Check(metric, count / max(n, 1), target, max(rel * target, 5 * sigma))


def calibration_checks(t: Tally, y: YearTargets, *, min_share: float = 0.005) -> list[Check]:
    """Every calibration check of a tallied stream against year ``y``'s targets."""
    n = t.reports
    checks: list[Check] = []
    for p in y.platforms:
        if p.share >= min_share:
            checks.append(_share_check(f"platform share: {p.name}", t.platform[p.name], n, p.share, 0.05))
    for k, target in y.user_location.items():
        got = {"us": t.location["us_state"] + t.location["us_country"], "abroad": t.location["abroad"],
               "unknown": t.location["none"]}[k]
        sigma = math.sqrt(target * (1 - target) / max(n, 1))
        checks.append(Check(f"user location: {k}", got / n, target, max(0.005, 5 * sigma)))
    us = t.location["us_state"] + t.location["us_country"]
    checks.append(_share_check("US reports without a state", t.location["us_country"], us, y.p_us_no_state, 0.10))
    for typ, p in zip(y.incident_types, y.incident_probs, strict=True):
        if p >= 0.0001:
            checks.append(_share_check(f"incident type: {typ}", t.incident_type[typ], n, float(p), 0.10))
    abroad = sum(t.country.values())
    order = sorted(zip(y.countries, y.country_probs, strict=True), key=lambda kv: -kv[1])
    for cc, p in order[:20]:
        checks.append(_share_check(f"country share of abroad: {cc}", t.country[cc], abroad, float(p), 0.10))
    with_state = sum(t.us_state.values())
    sorder = sorted(zip(y.us_states, y.us_state_probs, strict=True), key=lambda kv: -kv[1])
    for st, p in sorder[:10]:
        checks.append(_share_check(f"US state share: {st}", t.us_state[st], with_state, float(p), 0.15))
    checks.append(Check("files per report", t.files / n, y.files_per_report, 0.03 * y.files_per_report))
    checks.append(_share_check("escalated share", t.escalated, n, y.escalation_rate, 0.15))
    if y.incidents_per_report is not None:
        checks.append(Check("incidents per report (bundling)", t.incidents / n, y.incidents_per_report, 0.03))
    return checks
