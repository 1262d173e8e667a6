"""Outcome statistics from the store: what came of referrals, with coverage, intervals and bounds.

The question these figures answer is "how many of the reports (or referrals) in scope led to
an arrest?" (or a charge, a conviction, a child identified). Feedback from law enforcement
is voluntary, so for most referrals the answer is *unknown* — never "no". Every row therefore
carries, besides the confirmed count:

- ``coverage``: the share whose feedback settles the question, with a Wilson interval;
- ``bounds``: the assumption-free (Manski) bounds ``[A, A + (E - F)]``;
- ``rateAmongFeedback``: the rate among those whose feedback settles it (Wilson);
- ``estimate``: the total under "missing at random within strata" (agency x priority x
  incident type, post-stratified), with a 95 % interval from a two-stage cluster bootstrap
  that resamples agencies — withheld below the coverage threshold or with fewer than 30
  with feedback;
- ``sensitivity``: the total if those without feedback led to the outcome at delta times
  the rate among those with it, and the delta at which the stated conclusion flips;
- ``delay``: Kaplan-Meier curves and medians of the days to first feedback and to arrest.

docs/statistics.md states each formula and assumption in plain words. The core
(:func:`compute`) is a plain function of the rows :func:`load` reads, so the calibration
test can run it on populations generated in memory.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.orm import Session, sessionmaker

#: What a row can be broken down by (``--by``); "year" serves questions asked per year.
GROUPINGS = ("agency", "platform", "incident-type", "priority", "state", "country", "month", "year")
UNITS = ("report", "referral")
#: The outcome a statistic counts. ``arrests`` is the default and the headline.
MEASURES = ("arrests", "charges", "convictions", "children_identified")
#: Fewer with feedback than this and no point estimate is shown (US Census NSCH: n >= 30).
MIN_FEEDBACK = 30
#: Default of the setting ``outcome_coverage_threshold`` (config.Settings).
DEFAULT_COVERAGE_THRESHOLD = 0.5
DELTAS = tuple(round(0.1 * i, 1) for i in range(11))
#: Bootstrap replicates and seed: fixed, so the same records always give the same interval.
BOOTSTRAP_REPLICATES = 500
BOOTSTRAP_SEED = 20231231
CONFIDENCE = 0.95

UNIT_WORDS = {"report": ("report", "reports"), "referral": ("referral", "referrals")}
MEASURE_EVENT_WORDS = {
    "arrests": "an arrest", "charges": "a charge", "convictions": "a conviction",
    "children_identified": "a child identified",
}


# --- the query ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Scope:
    """Which referrals a statistic reads and how it counts them.

    Referral filters (the period, escalation, agency) pick referrals; report filters
    (platform, state, country, incident type, priority) pick the reports they belong to.
    With ``unit="report"`` the picked referrals of one report form one unit.
    """

    start: date
    end: date  # inclusive
    escalated_only: bool = False
    by: str | None = None
    unit: str = "report"
    measure: str = "arrests"
    agency_kind: str | None = None
    agency: str | None = None
    platform: str | None = None
    state: str | None = None
    country: str | None = None
    incident_type: str | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        if self.by is not None and self.by not in GROUPINGS:
            raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
        if self.unit not in UNITS:
            raise ValueError("unit must be report or referral")
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}")

    def params(self) -> dict[str, str]:
        """The query parameters of ``GET /api/v1/stats/outcomes`` that ask for this scope."""
        p: dict[str, str] = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        if self.escalated_only:
            p["escalatedOnly"] = "true"
        if self.by:
            p["by"] = self.by
        p["unit"] = self.unit
        if self.measure != "arrests":
            p["measure"] = self.measure
        for key, value in (("agencyKind", self.agency_kind), ("agency", self.agency),
                           ("platform", self.platform), ("state", self.state), ("country", self.country),
                           ("incidentType", self.incident_type), ("priority", self.priority)):
            if value is not None:
                p[key] = str(value)
        return p


# --- the rows it reads ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RefRow:
    """A referral in scope with what the statistics group and stratify by."""

    id: int
    report_id: int
    agency: str
    agency_kind: str
    made_available_at: datetime
    escalated: bool
    escalated_at: datetime | None
    platform: str | None
    incident_type: str | None
    priority: int | None
    state: str | None
    country: str | None

    @property
    def start(self) -> date:
        return self.made_available_at.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class Event:
    """An outcome event as stored (tipline.store.tables_people.Outcome)."""

    id: int
    referral_id: int
    code: str
    kind: str  # record | amend | withdraw
    supersedes_id: int | None
    occurred_on: date
    persons: int | None = None
    result: str | None = None
    children: int | None = None
    arrest_type: str | None = None
    nibrs_code: str | None = None
    reason: str | None = None
    recorded_at: datetime | None = None


@dataclass(slots=True)
class Unit:
    """One counted report or referral and what its feedback says."""

    key: int
    agency: str  # the cluster the bootstrap resamples; a report's first referral's agency
    stratum: tuple[str, str, str]  # agency x priority x incident type
    groups: dict[str, str | None]
    start: date
    settled: bool  # the feedback settles the question (the outcome, or a closing without it)
    yes: bool  # the outcome asked about is on record
    arrest: bool
    persons: int
    any_event: bool
    first_event: date | None
    first_arrest: date | None
    #: What the weighting models feedback on (tipline.stats.weighting.COVARIATES).
    covariates: tuple[str, ...] = ()


def effective(events: Iterable[Event]) -> list[Event]:
    """The events that stand: a withdrawal counts for nothing and removes what it names; an
    amendment replaces what it names (an amendment of an amendment replaces that one)."""
    evs = list(events)
    superseded = {e.supersedes_id for e in evs if e.supersedes_id is not None}
    return [e for e in evs if e.kind != "withdraw" and e.id not in superseded]


def _is_yes(e: Event, measure: str) -> bool:
    if measure == "arrests":
        return e.code == "ARREST"
    if measure == "charges":
        return e.code == "CHARGED"
    if measure == "convictions":
        return e.code == "DISPOSITION" and e.result == "convicted"
    return e.code == "CHILD_IDENTIFIED"


@dataclass(slots=True)
class _RefStatus:
    yes: bool
    closed: bool  # the latest standing event is a terminal closing (and not reopened since)
    handed_over: bool  # the latest standing event is a transfer: another referral carries on
    arrest: bool
    persons: int
    first_event: date | None
    first_arrest: date | None


def _terminal_codes() -> frozenset[str]:
    from tipline.kinds.outcomes import registry

    return frozenset(registry().terminal)


def referral_status(events: Sequence[Event], measure: str, terminal: frozenset[str]) -> _RefStatus:
    evs = sorted(effective(events), key=lambda e: (e.occurred_on, e.id))
    arrests = [e for e in evs if e.code == "ARREST"]
    last = evs[-1].code if evs else None
    return _RefStatus(
        yes=any(_is_yes(e, measure) for e in evs),
        closed=last in terminal,
        handed_over=last == "TRANSFERRED",
        arrest=bool(arrests),
        # ARREST requires persons; an arrest recorded without a count still counts one person.
        persons=sum((e.persons if e.persons is not None else 1) for e in arrests),
        first_event=evs[0].occurred_on if evs else None,
        first_arrest=arrests[0].occurred_on if arrests else None,
    )


def _group_values(r: RefRow) -> dict[str, str | None]:
    return {
        "agency": r.agency, "platform": r.platform, "incident-type": r.incident_type,
        "priority": None if r.priority is None else str(r.priority), "state": r.state, "country": r.country,
        "month": r.start.strftime("%Y-%m"), "year": str(r.start.year),
    }


def covariates_of(r: RefRow) -> tuple[str, str, str, str]:
    """Priority, agency kind, incident type, whether a location is known (the columnar path
    computes the same strings in SQL: tipline.stats.columnar)."""
    return (str(r.priority), r.agency_kind, str(r.incident_type),
            "yes" if (r.country is not None or r.state is not None) else "no")


def make_units(refs: Sequence[RefRow], events: Sequence[Event], unit: str, measure: str) -> list[Unit]:
    terminal = _terminal_codes()
    by_ref: dict[int, list[Event]] = defaultdict(list)
    for e in events:
        by_ref[e.referral_id].append(e)
    status = {r.id: referral_status(by_ref.get(r.id, []), measure, terminal) for r in refs}
    grouped: dict[int, list[RefRow]] = defaultdict(list)
    for r in refs:
        grouped[r.report_id if unit == "report" else r.id].append(r)
    units: list[Unit] = []
    for key, rs in grouped.items():
        rs.sort(key=lambda r: (r.made_available_at, r.id))
        first = rs[0]
        sts = [status[r.id] for r in rs]
        yes = any(s.yes for s in sts)
        # A report is settled "no" only when every referral still carrying it is closed: a
        # referral handed over to another agency leaves the question to that agency's referral.
        carrying = [s for s in sts if not s.handed_over] if len(sts) > 1 else sts
        settled = yes or (bool(carrying) and all(s.closed for s in carrying))
        firsts = [s.first_event for s in sts if s.first_event is not None]
        arrests = [s.first_arrest for s in sts if s.first_arrest is not None]
        units.append(Unit(
            key=key, agency=first.agency,
            stratum=(first.agency, str(first.priority), str(first.incident_type)),
            groups=_group_values(first), start=first.start, settled=settled, yes=yes,
            arrest=any(s.arrest for s in sts), persons=sum(s.persons for s in sts),
            any_event=bool(firsts), first_event=min(firsts) if firsts else None,
            first_arrest=min(arrests) if arrests else None,
            covariates=covariates_of(first),
        ))
    units.sort(key=lambda u: u.key)
    return units


# --- the statistics -------------------------------------------------------------------------

def _z(confidence: float = CONFIDENCE) -> float:
    """The two-sided normal critical value (1.959963984540054 at 95 %), from the standard
    library: a Wilson interval then needs neither scipy nor statsmodels at start-up."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson(successes: int, n: int) -> dict[str, float | None]:
    """A proportion with its 95 % Wilson interval; all null when there is nothing to divide.

    The closed form statsmodels' ``proportion_confint(method="wilson")`` computes (and clips to
    [0, 1]), in plain floats: a read command answering with a few intervals should not import
    scipy for them (a second or more at start-up). :func:`wilson_statsmodels` is the reference
    the tests hold it to."""
    if n <= 0:
        return {"value": None, "low": None, "high": None}
    z = _z()
    q = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (q + z2 / (2 * n)) / denom
    dist = z * math.sqrt(q * (1.0 - q) / n + z2 / (4.0 * n * n)) / denom
    return {"value": q, "low": min(1.0, max(0.0, center - dist)), "high": min(1.0, max(0.0, center + dist))}


def wilson_statsmodels(successes: int, n: int) -> dict[str, float | None]:
    """The reference :func:`wilson` must agree with: statsmodels' own Wilson interval."""
    if n <= 0:
        return {"value": None, "low": None, "high": None}
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1 - CONFIDENCE, method="wilson")
    return {"value": successes / n, "low": float(low), "high": float(high)}


#: The strata from finest to coarsest: a unit without feedback takes the rate of the finest
#: cell in which someone reported back (agency x priority x type, then agency x priority,
#: agency, priority x type, and everyone).
_LEVELS: tuple[Callable[[tuple[str, str, str]], tuple[str, ...]], ...] = (
    lambda s: s, lambda s: (s[0], s[1]), lambda s: (s[0],), lambda s: (s[1], s[2]), lambda s: (),
)


@dataclass(slots=True)
class _Cells:
    """The units of one row summed per finest stratum (cell): everything the estimate and the
    bootstrap need, since all units of a cell share their rate at every level."""

    k: np.ndarray  # with feedback that settles the question
    a: np.ndarray  # with the outcome (all of them have feedback)
    u: np.ndarray  # without feedback
    level_cells: list[np.ndarray]  # per level, the index of each finest cell's cell at that level
    n_level_cells: list[int]
    cluster: np.ndarray  # the agency of each finest cell
    n_clusters: int


@dataclass(slots=True)
class RowFacts:
    """Everything the figures of one row are computed from: counts, the units summed per
    stratum and per covariate pattern (in first-appearance order among units sorted by key,
    which fixes the bootstrap's draws), and the delays as (days, observed, units) counts.
    The store path sums :class:`Unit` objects into it (:func:`facts_of`); the columnar path
    (tipline.stats.columnar) sums the same in DuckDB."""

    n: int
    f: int
    a: int
    any_event: int
    arrests: int
    persons: int
    strata: list[tuple[tuple[str, str, str], int, int, int]]  # (stratum, k, a, u)
    patterns: list[tuple[str, tuple[str, ...], int, int, int]]  # (agency, covariates, k, a, u)
    to_feedback: list[tuple[int, bool, int]]
    to_arrest: list[tuple[int, bool, int]]


def _durations(units: Sequence[Unit], censor: date, which: str) -> list[tuple[int, bool, int]]:
    counts: dict[tuple[int, bool], int] = defaultdict(int)
    for u in units:
        when = u.first_event if which == "feedback" else u.first_arrest
        hit = when is not None and when <= censor
        end = when if hit and when is not None else censor
        counts[(max(0, (end - u.start).days), hit)] += 1
    return [(d, o, n) for (d, o), n in sorted(counts.items())]


def facts_of(units: Sequence[Unit], censor: date) -> RowFacts:
    """Sum units into the facts of their row."""
    strata: dict[tuple[str, str, str], list[int]] = {}
    pats: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for unit in sorted(units, key=lambda u: u.key):
        for cell in (strata.setdefault(unit.stratum, [0, 0, 0]),
                     pats.setdefault((unit.agency, unit.covariates), [0, 0, 0])):
            if unit.settled:
                cell[0] += 1
                cell[1] += unit.yes
            else:
                cell[2] += 1
    return RowFacts(
        n=len(units), f=sum(1 for u in units if u.settled), a=sum(1 for u in units if u.yes),
        any_event=sum(1 for u in units if u.any_event), arrests=sum(1 for u in units if u.arrest),
        persons=sum(u.persons for u in units),
        strata=[(st, k, a, u) for st, (k, a, u) in strata.items()],
        patterns=[(ag, cov, k, a, u) for (ag, cov), (k, a, u) in pats.items()],
        to_feedback=_durations(units, censor, "feedback"), to_arrest=_durations(units, censor, "arrest"))


def _cells(units: Sequence[Unit]) -> _Cells:
    return _cells_from(facts_of(units, date.max).strata)


def _cells_from(strata: Sequence[tuple[tuple[str, str, str], int, int, int]]) -> _Cells:
    import numpy as np

    k = [c[1] for c in strata]
    a = [c[2] for c in strata]
    u = [c[3] for c in strata]
    keys = [c[0] for c in strata]
    level_cells, n_level_cells = [], []
    for level in _LEVELS:
        at: dict[tuple[str, ...], int] = {}
        level_cells.append(np.array([at.setdefault(level(st), len(at)) for st in keys], dtype=np.int64))
        n_level_cells.append(len(at))
    agencies: dict[str, int] = {}
    cluster = np.array([agencies.setdefault(st[0], len(agencies)) for st in keys], dtype=np.int64)
    return _Cells(np.array(k, dtype=float), np.array(a, dtype=float), np.array(u, dtype=np.int64),
                  level_cells, n_level_cells, cluster, len(agencies))


def _rates_start(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What both forms of the cell rates start from: each replicate's overall rate (0 where
    nobody reported back), and the rates and levels before any level has filled them."""
    import numpy as np

    tot = den.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = np.where(tot > 0, num.sum(axis=1, keepdims=True) / tot, 0.0)
    return overall, np.full(num.shape, np.nan), np.full(num.shape, -1, dtype=np.int64)


def _cell_rates(c: _Cells, num: np.ndarray, den: np.ndarray, smooth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """For every finest cell (of every replicate: ``num``/``den`` are replicates x cells), the
    outcome rate of the finest level with feedback, and that level (-1: no feedback anywhere).
    ``smooth`` adds that many pseudo-observations at the overall rate to every cell: a cell with
    no outcome on record then does not claim certainty, and is pulled towards the overall rate,
    not towards 1/2.

    This is the inner loop of every bootstrap (replicates x cells x levels), so it works in
    place: the finest level is the cells themselves (no sums to take), a coarser level's sums
    are gathered back with ``take``, and each finer level overwrites with ``copyto``. The values
    are those of the plain form kept in :func:`_cell_rates_plain` (tests hold them equal)."""
    import numpy as np

    b, n = num.shape
    overall, rate, level_used = _rates_start(num, den)
    num_flat, den_flat = num.ravel(), den.ravel()
    # Coarsest first, each finer level overwriting where it has feedback of its own.
    for lv in range(len(_LEVELS) - 1, -1, -1):
        m, idx = c.n_level_cells[lv], c.level_cells[lv]
        if m == n:
            # Cells are numbered in order of first appearance, so as many level cells as
            # cells means each cell is its own (the finest level): its sums are itself.
            lden, lnum = den, num
        else:
            flat = ((np.arange(b) * m)[:, None] + idx[None, :]).ravel()
            lden = np.bincount(flat, weights=den_flat, minlength=b * m).reshape(b, m).take(idx, axis=1)
            lnum = np.bincount(flat, weights=num_flat, minlength=b * m).reshape(b, m).take(idx, axis=1)
        has = lden > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (lnum + smooth * overall) / (lden + smooth)
        np.copyto(rate, r, where=has)
        level_used[has] = lv
    return rate, level_used


def _cell_rates_plain(c: _Cells, num: np.ndarray, den: np.ndarray,
                      smooth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The reference for :func:`_cell_rates`: every level summed with ``bincount`` and
    gathered by fancy indexing, each finer level merged with ``where``."""
    import numpy as np

    b, n = num.shape
    overall, rate, level_used = _rates_start(num, den)
    rows = np.arange(b)[:, None]
    for lv in range(len(_LEVELS) - 1, -1, -1):
        m, idx = c.n_level_cells[lv], c.level_cells[lv]
        flat = (rows * m + idx[None, :]).ravel()
        lden = np.bincount(flat, weights=den.ravel(), minlength=b * m).reshape(b, m)[rows, idx[None, :]]
        lnum = np.bincount(flat, weights=num.ravel(), minlength=b * m).reshape(b, m)[rows, idx[None, :]]
        has = lden > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (lnum + smooth * overall) / (lden + smooth)
        rate = np.where(has, r, rate)
        level_used = np.where(has, lv, level_used)
    return rate, level_used


def post_stratified(units: Sequence[Unit]) -> tuple[float | None, int]:
    """The total under missing at random within strata: A + the sum, over units without
    feedback, of their cell's rate — which is sum over cells of N_h * a_h / k_h. Returns the
    total (None when nobody reported back) and how many units borrowed a coarser cell's rate."""

    if not units:
        return None, 0
    return _post_stratified(_cells(units))


def _post_stratified(c: _Cells) -> tuple[float | None, int]:
    if c.k.shape[0] == 0 or c.k.sum() == 0:
        return None, 0
    rate, level = _cell_rates(c, c.a[None, :], c.k[None, :])
    missing = c.u > 0
    total = float(c.a.sum() + (rate[0][missing] * c.u[missing]).sum())
    return total, int(c.u[missing & (level[0] > 0)].sum())


def cluster_bootstrap(units: Sequence[Unit], replicates: int = BOOTSTRAP_REPLICATES,
                      seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Replicates of the total, from a two-stage bootstrap: agencies resampled with replacement,
    then each drawn agency's units reweighted by Poisson(1) per draw; the rates so re-estimated
    (with one pseudo-observation at the overall rate added to each cell, so that a cell with no
    outcome on record does not claim certainty) impute the units without feedback as Bernoulli
    draws. The replicates thus carry the uncertainty of the rates and of the unknown outcomes
    themselves, for the referrals actually made — a finite population, not a sample.

    Computed per cell, which is exact in distribution: the Poisson weights of a cell's units
    with the outcome sum to Poisson(m * a), those without to Poisson(m * (k - a)), for an
    agency drawn m times; and the Bernoulli draws of a cell's u unknowns sum to Binomial(u, r).
    """
    return _bootstrap(_cells(units), replicates, seed)


def _bootstrap(c: _Cells, replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng(seed)
    confirmed = float(c.a.sum())
    fallback, _ = _cell_rates(c, c.a[None, :], c.k[None, :], smooth=1.0)
    out: list[np.ndarray] = []
    batch = max(1, min(replicates, 2_000_000 // max(1, c.k.shape[0])))
    done = 0
    while done < replicates:
        b = min(batch, replicates - done)
        drawn = rng.multinomial(c.n_clusters, np.full(c.n_clusters, 1.0 / c.n_clusters), size=b)
        m = drawn[:, c.cluster].astype(float)
        num = rng.poisson(m * c.a[None, :]).astype(float)
        den = num + rng.poisson(m * (c.k - c.a)[None, :])
        rate, _ = _cell_rates(c, num, den, smooth=1.0)
        # Nobody reported back in a replicate, at any level: the rate of the data as they are.
        rate = np.where(np.isnan(rate), fallback, rate)
        out.append(confirmed + rng.binomial(c.u[None, :], np.clip(rate, 0.0, 1.0)).sum(axis=1))
        done += b
    return np.concatenate(out).astype(float) if out else np.empty(0)


def kaplan_meier(durations: Sequence[float], observed: Sequence[bool],
                 counts: Sequence[int] | None = None) -> dict[str, Any]:
    """The product-limit curve and its median, in days; ``counts`` (frequency weights) says how
    many units share each (duration, observed) pair.

    Computed from the counts of events and censorings per day, as statsmodels' SurvfuncRight
    computes it (the survival as exp of the summed log(1 - d/n), a value below 1e-16 taken as
    0; the median the first event time at which survival falls below one half): the delays of a
    year come as a few hundred (days, observed, units) counts, and a curve over them needs
    neither numpy nor statsmodels. :func:`kaplan_meier_statsmodels` is the reference the tests
    hold it to."""
    weights = list(counts) if counts is not None else [1] * len(durations)
    n_units = sum(weights)
    n_events = sum(w for o, w in zip(observed, weights, strict=True) if o)
    base: dict[str, Any] = {"units": n_units, "events": n_events, "censored": n_units - n_events}
    if not durations:
        return {**base, "median": None, "curve": []}
    if n_events == 0:
        return {**base, "median": None, "curve": [{"days": 0, "survival": 1.0, "atRisk": n_units}]}
    at: dict[float, list[float]] = {}
    for t, o, w in zip(durations, observed, weights, strict=True):
        cell = at.setdefault(float(t), [0.0, 0.0])
        cell[0] += w
        if o:
            cell[1] += w
    at_risk = float(sum(c[0] for c in at.values()))
    log_s = 0.0
    dead = False
    curve: list[dict[str, Any]] = []
    median: float | None = None
    for t in sorted(at):
        n, d = at_risk, at[t][1]
        at_risk -= at[t][0]
        if d <= 0:
            continue
        step = 1 - d / n
        if step < 1e-16:
            dead = True  # statsmodels: a step to (near) zero makes the curve 0 from there on
        else:
            log_s += math.log(step)
        p = 0.0 if dead else math.exp(log_s)
        curve.append({"days": int(t), "survival": p, "atRisk": int(round(n))})
        if median is None and p < 0.5:
            median = t
    return {**base, "median": median, "curve": curve}


def kaplan_meier_statsmodels(durations: Sequence[float], observed: Sequence[bool],
                             counts: Sequence[int] | None = None) -> dict[str, Any]:
    """The reference :func:`kaplan_meier` must agree with: statsmodels' SurvfuncRight."""
    weights = list(counts) if counts is not None else [1] * len(durations)
    n_units = sum(weights)
    n_events = sum(w for o, w in zip(observed, weights, strict=True) if o)
    base: dict[str, Any] = {"units": n_units, "events": n_events, "censored": n_units - n_events}
    if not durations:
        return {**base, "median": None, "curve": []}
    if n_events == 0:
        return {**base, "median": None, "curve": [{"days": 0, "survival": 1.0, "atRisk": n_units}]}
    import numpy as np
    from statsmodels.duration.survfunc import SurvfuncRight

    sf = SurvfuncRight(np.asarray(durations, dtype=float), np.asarray(observed, dtype=float),
                       freq_weights=None if counts is None else np.asarray(weights, dtype=float))
    median = sf.quantile(0.5)
    curve = [{"days": int(t), "survival": float(p), "atRisk": int(round(float(n)))}
             for t, p, n in zip(sf.surv_times, sf.surv_prob, sf.n_risk, strict=True)]
    return {**base, "median": None if median is None or math.isnan(float(median)) else float(median),
            "curve": curve}


def _delay(durations: Sequence[tuple[int, bool, int]]) -> dict[str, Any]:
    return kaplan_meier([float(d) for d, _, _ in durations], [o for _, o, _ in durations],
                        [n for _, _, n in durations])


@dataclass(slots=True)
class Thresholds:
    coverage: float = DEFAULT_COVERAGE_THRESHOLD
    min_feedback: int = MIN_FEEDBACK
    replicates: int = BOOTSTRAP_REPLICATES


def row_stats(units: Sequence[Unit], *, unit: str, measure: str, censor: date,
              thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Every figure of one row. Unknowns are ``None`` (JSON null), never 0."""
    return row_stats_of(facts_of(units, censor), unit=unit, measure=measure, thresholds=thresholds)


def row_stats_of(facts: RowFacts, *, unit: str, measure: str, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Every figure of one row from its facts (the store and the columnar path share this)."""
    th = thresholds or Thresholds()
    one, many = UNIT_WORDS[unit]
    what = MEASURE_EVENT_WORDS[measure]
    n, f, a = facts.n, facts.f, facts.a
    missing = n - f
    warnings: list[str] = []
    row: dict[str, Any] = {
        "referrals": n, "withFeedback": f, "withAnyEvent": facts.any_event,
        "withOutcome": a, "withArrest": facts.arrests,
        "personsArrested": facts.persons,
        "coverage": wilson(f, n), "rateAmongFeedback": wilson(a, f),
        "bounds": {"low": a, "high": a + missing,
                   "lowRate": a / n if n else None, "highRate": (a + missing) / n if n else None},
    }
    if n == 0:
        warnings.append(f"No {many} in scope: there is nothing to count.")
    elif f == 0:
        warnings.append(f"None of the {n:,} {many} has feedback that settles whether it led to {what}: "
                        f"the number lies between {a:,} and {a + missing:,}, and no rate can be stated.")
    coverage = f / n if n else 0.0
    estimate: dict[str, Any] = {"value": None, "low": None, "high": None, "rate": None, "withheld": None,
                                "assumption": "missing at random within strata (agency x priority x incident type)"}
    withheld = None
    if n and coverage < th.coverage:
        withheld = (f"feedback covers {coverage:.0%} of the {many}, below the {th.coverage:.0%} threshold")
    elif n and f < th.min_feedback:
        withheld = f"only {f} {many if f != 1 else one} with feedback (fewer than {th.min_feedback})"
    # A withheld estimate is neither shown nor used (the sensitivity line is withheld with it):
    # its cells are not built, so a row with thin feedback needs no numpy at all.
    cells = _cells_from(facts.strata) if n and not withheld else None
    total, borrowed = _post_stratified(cells) if cells is not None else (None, 0)
    if n and withheld:
        estimate["withheld"] = withheld
        warnings.append(f"The point estimate is withheld: {withheld}. The bounds are the answer.")
    elif total is not None and cells is not None:
        import numpy as np

        reps = _bootstrap(cells, th.replicates)
        alpha = (1 - CONFIDENCE) / 2
        low, high = (float(x) for x in np.quantile(reps, [alpha, 1 - alpha]))
        # The bounds hold with certainty: an interval never reaches outside them.
        low, high = max(low, float(a)), min(high, float(a + missing))
        estimate.update(value=total, low=low, high=high, rate=total / n)
        if borrowed:
            warnings.append(f"{borrowed:,} {many} without feedback are in strata where nobody reported back; "
                            "they take the rate of a coarser stratum.")
        width = (high - low) / n
        if width > 0.20 or (total > 0 and (high - low) > 1.2 * total):
            warnings.append("The estimate's interval is wide (over 20 points, or over 1.2 times the estimate): "
                            "low reliability.")
    row["estimate"] = estimate
    row["estimateWeighted"] = _weighted(facts, withheld, th)
    ew = row["estimateWeighted"]
    if n and not withheld and ew["withheld"]:
        warnings.append(f"The weighted estimate is withheld: {ew['withheld']}.")
    if estimate["value"] is not None and ew["value"] is not None and (
            ew["low"] > estimate["high"] or ew["high"] < estimate["low"]):
        warnings.append("The two estimates' intervals do not overlap: the answer depends on which assumption "
                        "about the missing feedback holds.")
    row["sensitivity"], row["tipping"] = _sensitivity(a, total, estimate, many, what)
    row["delay"] = {"toFirstFeedback": _delay(facts.to_feedback), "toArrest": _delay(facts.to_arrest)}
    if row["delay"]["toFirstFeedback"]["events"] and row["delay"]["toFirstFeedback"]["median"] is None:
        warnings.append("Fewer than half had any feedback by the end of the period: the median time to feedback "
                        "is not known yet.")
    row["warnings"] = warnings
    return row


def _weighted(facts: RowFacts, withheld: str | None, th: Thresholds) -> dict[str, Any]:
    """The inverse-propensity-weighted estimate (tipline.stats.weighting), under the same
    coverage and sample-size rules as the post-stratified one."""
    from tipline.stats import weighting

    if facts.n == 0 or withheld:
        return {"value": None, "low": None, "high": None, "rate": None, "withheld": withheld,
                "assumption": weighting.ASSUMPTION, "covariates": list(weighting.COVARIATES),
                "smallestPropensity": None}
    return weighting.weighted_estimate(weighting.patterns(facts.patterns), replicates=th.replicates,
                                       seed=BOOTSTRAP_SEED, confidence=CONFIDENCE)


def _sensitivity(a: int, total: float | None, estimate: dict[str, Any], many: str,
                 what: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pattern-mixture sensitivity: those without feedback lead to the outcome at delta times
    the rate of their stratum among those with feedback (delta = 1 is the estimate, delta = 0
    the lower bound). The conclusion tested is the estimate's own: "at least LOW" (the lower end
    of its interval); it flips at delta = (LOW - A) / (estimate - A)."""
    if total is None or estimate.get("withheld"):
        # Withheld estimate, withheld line: delta = 1 would be that very estimate.
        return [{"delta": dlt, "total": None} for dlt in DELTAS], {"conclusion": None, "delta": None}
    imputed = total - a
    rows = [{"delta": dlt, "total": a + dlt * imputed} for dlt in DELTAS]
    low = estimate.get("low")
    if low is None:
        return rows, {"conclusion": None, "delta": None}
    floor = math.floor(low)
    conclusion = f"at least {floor:,} {many} led to {what}"
    if floor <= a or imputed <= 0:
        return rows, {"conclusion": conclusion + " (confirmed: it holds whatever the missing feedback says)",
                      "delta": 0.0}
    return rows, {"conclusion": conclusion, "delta": min(1.0, (floor - a) / imputed)}


def compute(scope: Scope, refs: Sequence[RefRow], events: Sequence[Event], *, as_of: date | None = None,
            thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The statistics of ``scope`` from its rows (pure: no database)."""
    units = make_units(refs, events, scope.unit, scope.measure)
    censor = min(scope.end, as_of) if as_of else scope.end
    rows: list[tuple[str | None, RowFacts]] | None = None
    if scope.by:
        buckets: dict[str | None, list[Unit]] = defaultdict(list)
        for u in units:
            buckets[u.groups[scope.by]].append(u)
        rows = [(k, facts_of(b, censor)) for k, b in buckets.items()]
    return compute_facts(scope, facts_of(units, censor), rows, censor, thresholds)


def compute_facts(scope: Scope, total_facts: RowFacts, rows: Sequence[tuple[str | None, RowFacts]] | None,
                  censor: date, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The statistics of ``scope`` from the facts of its total and of each group."""
    common: dict[str, Any] = {"unit": scope.unit, "measure": scope.measure, "thresholds": thresholds}
    total = row_stats_of(total_facts, **common)
    if scope.start > scope.end:
        total["warnings"].insert(0, "The period is empty: its start is after its end.")
    out: dict[str, Any] = {"total": {"key": None, **total}, "rows": None}
    if scope.by and rows is not None:
        ordered = sorted(rows, key=lambda kv: (kv[0] is None, _sort_key(scope.by, kv[0])))
        out["rows"] = [{"key": k, **row_stats_of(f, **common)} for k, f in ordered]
    out["censoredAt"] = censor.isoformat()
    return out


def _sort_key(by: str | None, k: str | None) -> tuple[int, str]:
    if k is None:
        return (0, "")
    return (int(k), "") if by == "priority" and k.isdigit() else (0, k)


# --- the snapshot -----------------------------------------------------------------------------

def _iso(v: datetime | date | None) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat(timespec="microseconds")
    return v.isoformat()


def snapshot_id(refs: Sequence[RefRow], events: Sequence[Event]) -> str:
    """A content hash of the records read: the referrals in scope (with what they are grouped
    and stratified by) and their outcome events, as sorted canonical JSON rows."""
    h = hashlib.sha256()
    for r in sorted(refs, key=lambda r: r.id):
        row = asdict(r)
        row["made_available_at"] = _iso(r.made_available_at)
        row["escalated_at"] = _iso(r.escalated_at)
        h.update(b"R" + json.dumps(row, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    for e in sorted(events, key=lambda e: e.id):
        row = asdict(e)
        row["occurred_on"] = _iso(e.occurred_on)
        row["recorded_at"] = _iso(e.recorded_at)
        h.update(b"O" + json.dumps(row, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return "s" + h.hexdigest()[:32]


# --- reading the store ------------------------------------------------------------------------

def _scoped(stmt: Any, scope: Scope) -> Any:
    from sqlalchemy import func

    from tipline.store.tables import Agency, Assessment, Jurisdiction, Referral, Report, Reporter

    stmt = (stmt.join(Agency, Agency.id == Referral.agency_id)
            .join(Report, Report.id == Referral.report_id)
            .join(Reporter, Reporter.id == Report.reporter_id)
            .outerjoin(Assessment, Assessment.report_id == Referral.report_id)
            .outerjoin(Jurisdiction, Jurisdiction.report_id == Referral.report_id))
    lo = datetime.combine(scope.start, time(), UTC)
    hi = datetime.combine(scope.end, time.max, UTC)
    when = func.coalesce(Referral.escalated_at, Referral.made_available_at) if scope.escalated_only \
        else Referral.made_available_at
    stmt = stmt.where(when >= lo, when <= hi)
    if scope.escalated_only:
        stmt = stmt.where(Referral.escalated.is_(True))
    for column, value in ((Agency.kind, scope.agency_kind), (Agency.code, scope.agency),
                          (Reporter.name, scope.platform), (Jurisdiction.us_state, scope.state),
                          (Jurisdiction.country, scope.country), (Report.incident_type, scope.incident_type),
                          (Assessment.priority, scope.priority)):
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt


def load(sessions: sessionmaker[Session], scope: Scope) -> tuple[list[RefRow], list[Event], date | None]:
    """The referrals in scope, their outcome events, and the date of the newest record read
    (where delays are censored when the period has not ended)."""
    from sqlalchemy import select

    from tipline.store.tables import Agency, Assessment, Jurisdiction, Referral, Report, Reporter
    from tipline.store.tables_people import Outcome

    if scope.start > scope.end:
        return [], [], None
    ref_stmt = _scoped(select(Referral.id, Referral.report_id, Agency.code, Agency.kind, Referral.made_available_at,
                              Referral.escalated, Referral.escalated_at, Reporter.name, Report.incident_type,
                              Assessment.priority, Jurisdiction.us_state, Jurisdiction.country), scope)
    ev_stmt = _scoped(select(Outcome.id, Outcome.referral_id, Outcome.code, Outcome.kind, Outcome.supersedes_id,
                             Outcome.occurred_on, Outcome.persons, Outcome.result, Outcome.children,
                             Outcome.arrest_type, Outcome.nibrs_code, Outcome.reason, Outcome.recorded_at)
                      .join(Referral, Referral.id == Outcome.referral_id), scope)
    with sessions() as s:
        refs = [RefRow(id=r[0], report_id=r[1], agency=r[2], agency_kind=r[3], made_available_at=r[4],
                       escalated=bool(r[5]), escalated_at=r[6], platform=r[7], incident_type=r[8],
                       priority=r[9], state=r[10], country=r[11]) for r in s.execute(ref_stmt)]
        events = [Event(*row) for row in s.execute(ev_stmt)]
    stamps = [r.made_available_at for r in refs] + [e.recorded_at for e in events if e.recorded_at]
    as_of = max(stamps).astimezone(UTC).date() if stamps else None
    return refs, events, as_of


def _versions() -> dict[str, str]:
    import tipline
    from tipline.kinds.outcomes import registry

    return {"codeListVersion": registry().version, "softwareVersion": tipline.__version__}


class SnapshotChanged(Exception):
    """The records in scope no longer match the snapshot a caller named."""

    def __init__(self, expected: str, current: str) -> None:
        super().__init__(f"snapshot {expected} is gone; the records are now {current}")
        self.expected = expected
        self.current = current


def outcome_stats(sessions: sessionmaker[Session], scope: Scope, *, coverage_threshold: float | None = None,
                  replicates: int = BOOTSTRAP_REPLICATES, expect_snapshot: str | None = None) -> dict[str, Any]:
    """The statistics of ``scope`` from the store, naming the snapshot they were computed from;
    :class:`SnapshotChanged` if ``expect_snapshot`` is given and the records no longer match it
    (checked on the very rows the figures would be computed from)."""
    from urllib.parse import urlencode

    refs, events, as_of = load(sessions, scope)
    snap = snapshot_id(refs, events)
    if expect_snapshot is not None and snap != expect_snapshot:
        raise SnapshotChanged(expect_snapshot, snap)
    th = Thresholds(DEFAULT_COVERAGE_THRESHOLD if coverage_threshold is None else coverage_threshold,
                    MIN_FEEDBACK, replicates)
    body = compute(scope, refs, events, as_of=as_of, thresholds=th)
    return {
        "query": scope.params(), "snapshot": snap, **_versions(),
        "citation": "/api/v1/stats/outcomes?" + urlencode({**scope.params(), "snapshot": snap}),
        "unit": scope.unit, "measure": scope.measure, "by": scope.by,
        "thresholds": {"coverage": th.coverage, "minFeedback": th.min_feedback, "confidence": CONFIDENCE},
        **body,
    }


def whole_scope(scope: Scope) -> Scope:
    """The same scope without a breakdown."""
    return replace(scope, by=None)



def record_span(sessions: sessionmaker[Session]) -> tuple[date | None, date | None]:
    """The first and last day (UTC) a referral on record was made available."""
    from sqlalchemy import func, select

    from tipline.store.tables import Referral

    with sessions() as s:
        lo, hi = s.execute(select(func.min(Referral.made_available_at), func.max(Referral.made_available_at))).one()
    if lo is None or hi is None:
        return None, None
    if lo.tzinfo is None:  # SQLite aggregates bypass the column type: the stored value is UTC
        lo, hi = lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC)
    return lo.astimezone(UTC).date(), hi.astimezone(UTC).date()
