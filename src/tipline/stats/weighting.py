"""The inverse-propensity-weighted estimate: who reports back, modelled by logistic regression.

The post-stratified estimate (tipline.stats.outcomes) assumes feedback is missing at random
within agency x priority x incident type, and borrows a coarser stratum's rate when a cell has
no feedback. This variant models the probability that feedback settles a unit instead:

    logit P(feedback | x) = b0 + priority + agency kind + incident type + location known

(main effects, fitted by maximum likelihood with statsmodels' binomial GLM on the covariate
patterns, which is the same likelihood as the unit-level fit). The units with feedback then
stand in for those without, each weighted by its odds of *not* reporting, (1 - p) / p: the
estimated rate among units without feedback is

    m = sum_{with feedback} w_i y_i / sum_{with feedback} w_i,    w_i = (1 - p_i) / p_i

and the total is A + (E - F) * m. With a saturated model (every pattern its own cell) this is
exactly the post-stratified total over those cells; with main effects it pools across patterns
and needs no borrowing rule.

Its interval comes from the same two-stage cluster bootstrap as the post-stratified one
(agencies resampled, units Poisson-weighted, the model refitted in every replicate by a
vectorised Newton-Raphson, the unknown outcomes drawn as Binomial(E - F, m*)).

The estimate is withheld, besides the coverage and sample-size rules, when the model cannot
represent the units without feedback: a covariate level in which nobody reported back, a
fitted reporting probability below :data:`MIN_PROPENSITY` (weights would explode), or a fit
that does not converge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: What the model conditions on, in the order of the covariate tuple of a unit.
COVARIATES = ("priority", "agency kind", "incident type", "location known")
#: A fitted reporting probability below this gives weights above 19: the estimate is withheld.
MIN_PROPENSITY = 0.05
ASSUMPTION = ("missing at random given the covariates: whether feedback comes back depends only on "
              "priority, agency kind, incident type and whether a location is known (a logistic model of "
              "those main effects), not on whether an arrest followed")
_RIDGE = 1e-8  # keeps Newton steps finite in a bootstrap replicate that separates a level
_ITERATIONS = 50


@dataclass(slots=True)
class Patterns:
    """Units summed per (agency, covariate pattern): what the weighting and its bootstrap read."""

    k: np.ndarray  # with feedback that settles the question
    a: np.ndarray  # with the outcome (all of them have feedback)
    u: np.ndarray  # without feedback
    pattern: np.ndarray  # index of each cell's covariate pattern (row of ``design``)
    design: np.ndarray  # patterns x columns: intercept + dummies of every level but the first
    names: list[str]  # the design's columns
    levels_without_feedback: list[str]  # "priority=3": a level nobody in it reported on
    cluster: np.ndarray  # the agency of each cell
    n_clusters: int


def patterns(cells: Sequence[tuple[str, tuple[str, ...], int, int, int]]) -> Patterns:
    """Build the design from cells ``(agency, covariates, k, a, u)`` given in a fixed order (the
    bootstrap's draws follow it, so both the store and the columnar path give the same cells
    in the same order: first appearance among units sorted by key)."""
    import numpy as np

    pats: dict[tuple[str, ...], int] = {}
    agencies: dict[str, int] = {}
    pat_idx, clusters, k, a, u = [], [], [], [], []
    for agency, cov, kk, aa, uu in cells:
        pat_idx.append(pats.setdefault(tuple(cov), len(pats)))
        clusters.append(agencies.setdefault(agency, len(agencies)))
        k.append(kk)
        a.append(aa)
        u.append(uu)
    plist = list(pats)
    width = len(plist[0]) if plist else 0
    columns: list[np.ndarray] = [np.ones(len(plist))]
    names = ["intercept"]
    without: list[str] = []
    kk_arr = np.array(k, dtype=float)
    pat_arr = np.array(pat_idx, dtype=np.int64)
    k_per_pattern = np.bincount(pat_arr, weights=kk_arr, minlength=len(plist)) if plist else np.zeros(0)
    for j in range(width):
        # Levels sorted so the reference level (the first) does not depend on the data's order.
        levels = sorted({p[j] for p in plist})
        for level in levels:
            members = np.array([p[j] == level for p in plist])
            if k_per_pattern[members].sum() == 0:
                without.append(f"{COVARIATES[j] if j < len(COVARIATES) else j}={level}")
        for level in levels[1:]:
            columns.append(np.array([1.0 if p[j] == level else 0.0 for p in plist]))
            names.append(f"{COVARIATES[j] if j < len(COVARIATES) else j}={level}")
    design = np.column_stack(columns) if plist else np.zeros((0, 1))
    return Patterns(kk_arr, np.array(a, dtype=float), np.array(u, dtype=float), pat_arr, design, names,
                    without, np.array(clusters, dtype=np.int64), len(agencies))


def _per_pattern(p: Patterns, values: np.ndarray) -> np.ndarray:
    """Sum cell values (replicates x cells) into patterns (replicates x patterns)."""
    import numpy as np

    b = values.shape[0]
    n = p.design.shape[0]
    flat = (np.arange(b)[:, None] * n + p.pattern[None, :]).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=b * n).reshape(b, n)


def fit_statsmodels(design: np.ndarray, responded: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, bool]:
    """Fitted reporting probabilities per pattern (binomial GLM on counts) and whether the fit
    converged; columns the data cannot identify are dropped first (a rank-deficient design)."""
    import warnings

    import numpy as np
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    keep = _identifiable(design[total > 0])
    rows = total > 0
    endog = np.column_stack([responded[rows], total[rows] - responded[rows]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            res = sm.GLM(endog, design[rows][:, keep], family=sm.families.Binomial()).fit()
        except Exception:  # statsmodels raises PerfectSeparationError in some versions
            return np.full(design.shape[0], np.nan), False
    params = np.asarray(res.params, dtype=float)
    eta = np.clip(design[:, keep] @ params, -30, 30)
    converged = bool(getattr(res, "converged", True)) and bool(np.all(np.isfinite(params)))
    return 1.0 / (1.0 + np.exp(-eta)), converged


def _identifiable(design: np.ndarray) -> np.ndarray:
    """The columns to keep: greedily, each that adds rank (a constant dummy in a one-agency row,
    a level seen only together with another, ...)."""
    import numpy as np

    keep: list[int] = []
    for j in range(design.shape[1]):
        trial = keep + [j]
        if np.linalg.matrix_rank(design[:, trial]) == len(trial):
            keep.append(j)
    return np.array(keep, dtype=np.int64)


def fit_newton(design: np.ndarray, responded: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The same binomial maximum likelihood, for many replicates at once (``responded`` and
    ``total`` are replicates x patterns): Newton-Raphson with a vanishing ridge. Returns the
    fitted probabilities per replicate and pattern."""
    import numpy as np

    b = responded.shape[0]
    d = design.shape[1]
    beta = np.zeros((b, d))
    eye = np.eye(d) * _RIDGE
    for _ in range(_ITERATIONS):
        eta = np.clip(beta @ design.T, -30, 30)
        p = 1.0 / (1.0 + np.exp(-eta))
        w = total * p * (1 - p)
        grad = (responded - total * p) @ design - _RIDGE * beta
        hess = np.einsum("bp,pi,pj->bij", w, design, design) + eye
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        beta = beta + step
        if float(np.abs(step).max(initial=0.0)) < 1e-10:
            break
    eta = np.clip(beta @ design.T, -30, 30)
    out: np.ndarray = 1.0 / (1.0 + np.exp(-eta))
    return out


def _rate_without_feedback(prob: np.ndarray, k: np.ndarray, a: np.ndarray) -> np.ndarray:
    """sum w a / sum w k per replicate, w = (1 - p) / p per pattern: the weighted rate among the
    units with feedback, standing for those without. NaN where no weight falls on anyone."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(prob > 0, (1 - prob) / prob, 0.0)
        num = (w * a).sum(axis=1)
        den = (w * k).sum(axis=1)
        out: np.ndarray = np.where(den > 0, num / den, np.nan)
    return out


def weighted_estimate(p: Patterns, *, replicates: int, seed: int, confidence: float) -> dict[str, Any]:
    """The weighted total, its interval and the model's diagnostics. ``value`` is None (with
    ``withheld`` saying why) when the model cannot stand for the units without feedback."""
    import numpy as np

    out: dict[str, Any] = {"value": None, "low": None, "high": None, "rate": None, "withheld": None,
                           "assumption": ASSUMPTION, "covariates": list(COVARIATES), "smallestPropensity": None}
    if p.design.shape[0] == 0 or p.k.sum() == 0:
        out["withheld"] = "nobody reported back: there is nothing to weight"
        return out
    confirmed = float(p.a.sum())
    unknown = float(p.u.sum())
    k_pat = _per_pattern(p, p.k[None, :])[0]
    a_pat = _per_pattern(p, p.a[None, :])[0]
    n_pat = k_pat + _per_pattern(p, p.u[None, :])[0]
    if p.levels_without_feedback:
        out["withheld"] = ("nobody in " + ", ".join(p.levels_without_feedback[:3])
                           + " reported back: the weighting cannot stand for them")
        return out
    prob, converged = fit_statsmodels(p.design, k_pat, n_pat)
    seen = n_pat > 0
    smallest = float(prob[seen].min()) if seen.any() else None
    out["smallestPropensity"] = smallest
    if not converged or smallest is None or not np.isfinite(smallest):
        out["withheld"] = "the logistic model of who reports back did not converge"
        return out
    if smallest < MIN_PROPENSITY:
        out["withheld"] = (f"the model gives some units a {smallest:.1%} chance of feedback (below "
                           f"{MIN_PROPENSITY:.0%}): their weights would dominate the estimate")
        return out
    rate = float(_rate_without_feedback(prob[None, :], k_pat[None, :], a_pat[None, :])[0])
    total = confirmed + unknown * rate
    reps = _bootstrap(p, rate, replicates, seed)
    alpha = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(reps, [alpha, 1 - alpha]))
    # The bounds hold with certainty: the interval never reaches outside them.
    low, high = max(low, confirmed), min(high, confirmed + unknown)
    n = float(p.k.sum() + p.u.sum())
    out.update(value=total, low=low, high=high, rate=total / n)
    return out


def _bootstrap(p: Patterns, rate: float, replicates: int, seed: int) -> np.ndarray:
    """Replicates of the weighted total: agencies resampled with replacement, each drawn
    agency's units reweighted by Poisson(1) (summed per cell: exact in distribution), the model
    refitted, and the unknowns drawn as Binomial(E - F, m*). A replicate in which nobody with
    weight reported back takes the data's own rate."""
    import numpy as np

    rng = np.random.default_rng(seed)
    confirmed = float(p.a.sum())
    unknown = int(p.u.sum())
    cells = p.k.shape[0]
    out: list[np.ndarray] = []
    batch = max(1, min(replicates, 200_000 // max(1, cells + p.design.shape[0] * p.design.shape[1])))
    done = 0
    while done < replicates:
        b = min(batch, replicates - done)
        drawn = rng.multinomial(p.n_clusters, np.full(p.n_clusters, 1.0 / p.n_clusters), size=b)
        m = drawn[:, p.cluster].astype(float)
        a_w = rng.poisson(m * p.a[None, :]).astype(float)
        k_w = a_w + rng.poisson(m * (p.k - p.a)[None, :])
        u_w = rng.poisson(m * p.u[None, :]).astype(float)
        k_pat, a_pat = _per_pattern(p, k_w), _per_pattern(p, a_w)
        prob = fit_newton(p.design, k_pat, k_pat + _per_pattern(p, u_w))
        r = _rate_without_feedback(prob, k_pat, a_pat)
        r = np.clip(np.where(np.isnan(r), rate, r), 0.0, 1.0)
        out.append(confirmed + rng.binomial(unknown, r))
        done += b
    return np.concatenate(out).astype(float) if out else np.empty(0)
