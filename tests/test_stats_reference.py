"""The plain-float Wilson interval and the Kaplan-Meier curve from counts (what the outcome
statistics use, so that a read command needs neither scipy nor statsmodels) agree with the
libraries they replace: statsmodels' ``proportion_confint`` and ``SurvfuncRight``, kept in
tipline.stats.outcomes as the references."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tipline.stats.outcomes import kaplan_meier, kaplan_meier_statsmodels, wilson, wilson_statsmodels


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**8), st.integers(min_value=0, max_value=10**8))
def test_wilson_agrees_with_statsmodels(x: int, extra: int) -> None:
    n = x + extra
    got, want = wilson(x, n), wilson_statsmodels(x, n)
    if n == 0:
        assert got == want == {"value": None, "low": None, "high": None}
        return
    assert got["value"] == want["value"]
    assert got["low"] == pytest.approx(want["low"], abs=1e-12)
    assert got["high"] == pytest.approx(want["high"], abs=1e-12)
    lo, val, hi = got["low"], got["value"], got["high"]
    assert lo is not None and val is not None and hi is not None
    assert 0.0 <= lo <= val + 1e-12 and val <= hi + 1e-12 and hi <= 1.0


def _same_curve(got: dict[str, object], want: dict[str, object]) -> None:
    assert {k: got[k] for k in ("units", "events", "censored", "median")} == \
        {k: want[k] for k in ("units", "events", "censored", "median")}
    g, w = got["curve"], want["curve"]
    assert isinstance(g, list) and isinstance(w, list) and len(g) == len(w)
    for a, b in zip(g, w, strict=True):
        assert a["days"] == b["days"] and a["atRisk"] == b["atRisk"]
        assert a["survival"] == pytest.approx(b["survival"], abs=1e-12)


counted = st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.booleans(),
                             st.integers(min_value=1, max_value=5000)), min_size=0, max_size=80)


@settings(max_examples=300, deadline=None)
@given(counted)
def test_kaplan_meier_from_counts_agrees_with_statsmodels(rows: list[tuple[int, bool, int]]) -> None:
    args = ([float(d) for d, _, _ in rows], [o for _, o, _ in rows], [n for _, _, n in rows])
    _same_curve(kaplan_meier(*args), kaplan_meier_statsmodels(*args))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=60), st.booleans()), max_size=200))
def test_kaplan_meier_per_unit_agrees_with_statsmodels(rows: list[tuple[int, bool]]) -> None:
    times, events = [float(t) for t, _ in rows], [e for _, e in rows]
    _same_curve(kaplan_meier(times, events), kaplan_meier_statsmodels(times, events))


def test_a_curve_that_reaches_zero_and_a_median_at_exactly_one_half() -> None:
    # Everyone left at risk has the event on day 3: the curve drops to 0 (statsmodels clamps).
    rows = ([1.0, 2.0, 3.0, 3.0], [True, False, True, True], None)
    _same_curve(kaplan_meier(*rows), kaplan_meier_statsmodels(*rows))
    assert kaplan_meier(*rows)["curve"][-1]["survival"] == 0.0
    # Survival exactly 1/2 is not below it: the median is the next event time.
    half = ([1.0, 2.0, 5.0, 6.0], [True, True, True, True], None)
    assert kaplan_meier(*half)["median"] == kaplan_meier_statsmodels(*half)["median"] == 5.0


_stratum = st.tuples(st.sampled_from(["ag1", "ag2", "ag3"]), st.sampled_from(["1", "2", "3"]),
                     st.sampled_from(["a", "b"]))


@settings(max_examples=60, deadline=None)
@given(cells=st.dictionaries(_stratum, st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 9)),
                             min_size=1, max_size=18),
       replicates=st.integers(1, 7), smooth=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_in_place_cell_rates_equal_the_plain_form(cells: dict[tuple[str, str, str], tuple[int, int, int]],
                                                   replicates: int, smooth: float, seed: int) -> None:
    """The bootstrap's inner loop (in place, the finest level taken as is) gives exactly the
    rates and levels of the plain form, for replicates drawn as the bootstrap draws them."""
    import numpy as np

    from tipline.stats.outcomes import _cell_rates, _cell_rates_plain, _cells_from

    c = _cells_from([(s, k, min(a, k), u) for s, (k, a, u) in cells.items()])
    rng = np.random.default_rng(seed)
    num = rng.poisson(1.0, size=(replicates, c.k.shape[0])) * (c.k > 0)
    den = num + rng.poisson(1.0, size=num.shape)
    for args in ((c.a[None, :], c.k[None, :]), (num.astype(float), den.astype(float))):
        fast, plain = _cell_rates(c, *args, smooth=smooth), _cell_rates_plain(c, *args, smooth=smooth)
        np.testing.assert_array_equal(fast[0], plain[0])
        np.testing.assert_array_equal(fast[1], plain[1])
