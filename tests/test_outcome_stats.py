"""Outcome statistics: counting from the store on both backends, the snapshot and its 409,
answers from the records whose citations return their figures, the CLI, and each statistic
against a plain reference implementation."""

from __future__ import annotations

import math
import random
from datetime import date
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from outcome_rows import Records
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.stats.outcomes import (
    Event,
    Scope,
    Unit,
    cluster_bootstrap,
    effective,
    kaplan_meier,
    outcome_stats,
    post_stratified,
    wilson,
)

Y23 = (date(2023, 1, 1), date(2023, 12, 31))


def _world(rt: Runtime) -> dict[str, int]:
    """Eight reports with every kind of feedback, in 2023, and one in 2024."""
    r = Records(rt)
    ids: dict[str, int] = {}

    def one(name: str, agency: str = "TX-ICAC", *, escalated: bool = False, on: date = date(2023, 3, 1),
            priority: int = 2) -> int:
        rep = r.report(priority=priority, received=on)
        ids[name] = r.refer(rep, agency, on, escalated=escalated)
        ids[name + ":report"] = rep
        return ids[name]

    r.outcome(one("arrest", escalated=True, priority=1), "ARREST", date(2023, 4, 1), persons=2)
    r.outcome(one("closed"), "CLOSED_NOT_ACTIONABLE", date(2023, 5, 1))
    r.outcome(one("ack", escalated=True, priority=1), "ACKNOWLEDGED", date(2023, 3, 2))
    one("silent", "FBI")
    # An arrest recorded and then amended into a closing: the closing stands, no arrest.
    first = r.outcome(one("amended", "FBI"), "ARREST", date(2023, 6, 1))
    r.outcome(ids["amended"], "CLOSED_NOT_PURSUED", date(2023, 6, 2), kind="amend", supersedes=first,
              reason="evidential")
    # An arrest withdrawn: nothing stands, so the referral is unknown again.
    wrong = r.outcome(one("withdrawn", "FBI"), "ARREST", date(2023, 7, 1))
    r.outcome(ids["withdrawn"], "ARREST", date(2023, 7, 1), kind="withdraw", supersedes=wrong)
    # A closing reopened by later work: open again, unknown.
    r.outcome(one("reopened"), "CLOSED_NOT_ACTIONABLE", date(2023, 8, 1))
    r.outcome(ids["reopened"], "FORENSIC_EXAM", date(2023, 9, 1))
    # One report referred to two agencies: the FBI closed it, the task force arrested.
    both = one("two-a", "FBI", escalated=True, priority=1)
    r.outcome(both, "CLOSED_NOT_ACTIONABLE", date(2023, 4, 10))
    second = r.refer(ids["two-a:report"], "TX-ICAC", date(2023, 3, 5), escalated=True)
    ids["two-b"] = second
    r.outcome(second, "ARREST", date(2023, 5, 10), persons=1)
    one("next-year", on=date(2024, 2, 1))
    return ids


def test_counts_from_the_store(runtime: Runtime) -> None:
    _world(runtime)
    data = outcome_stats(runtime.sessions, Scope(*Y23))
    t = data["total"]
    # Reports: arrest, closed, ack, silent, amended, withdrawn, reopened, two (8 in 2023).
    assert t["referrals"] == 8
    assert t["withArrest"] == 2 and t["withOutcome"] == 2  # "arrest" and the two-agency report
    assert t["personsArrested"] == 3
    assert t["withFeedback"] == 4  # arrest, closed, amended (closed), two-agency (arrest)
    assert t["withAnyEvent"] == 6  # + ack, reopened; the withdrawn one has nothing standing
    assert t["bounds"] == {"low": 2, "high": 6, "lowRate": 2 / 8, "highRate": 6 / 8}
    assert t["coverage"]["value"] == 0.5
    # Four with feedback: no estimate, and no number standing in for it.
    assert t["estimate"]["value"] is None and t["estimate"]["withheld"]
    assert all(p["total"] is None for p in t["sensitivity"])
    assert any("withheld" in w for w in t["warnings"])

    per_ref = outcome_stats(runtime.sessions, Scope(*Y23, unit="referral"))["total"]
    assert per_ref["referrals"] == 9 and per_ref["withArrest"] == 2 and per_ref["withFeedback"] == 5

    esc = outcome_stats(runtime.sessions, Scope(*Y23, escalated_only=True))["total"]
    assert (esc["referrals"], esc["withArrest"], esc["withFeedback"]) == (3, 2, 2)

    by = outcome_stats(runtime.sessions, Scope(*Y23, by="agency", unit="referral"))
    rows = {r["key"]: r for r in by["rows"]}
    assert set(rows) == {"FBI", "TX-ICAC"}
    assert rows["FBI"]["referrals"] == 4 and rows["FBI"]["withArrest"] == 0
    assert rows["TX-ICAC"]["referrals"] == 5 and rows["TX-ICAC"]["withArrest"] == 2
    assert sum(r["referrals"] for r in by["rows"]) == by["total"]["referrals"]


def test_an_empty_scope_is_unknown_not_zero(runtime: Runtime) -> None:
    t = outcome_stats(runtime.sessions, Scope(date(2020, 1, 1), date(2020, 12, 31)))["total"]
    assert t["referrals"] == 0
    assert t["coverage"]["value"] is None and t["rateAmongFeedback"]["value"] is None
    assert t["bounds"]["lowRate"] is None and t["estimate"]["value"] is None
    assert t["delay"]["toFirstFeedback"]["median"] is None


def test_snapshot_names_the_records_and_a_changed_record_answers_409(runtime: Runtime, client: TestClient) -> None:
    ids = _world(runtime)
    params = {"from": "2023-01-01", "to": "2023-12-31"}
    first = client.get("/api/v1/stats/outcomes", params=params)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["snapshot"] and body["codeListVersion"] and body["softwareVersion"]
    again = client.get(body["citation"])
    assert again.status_code == 200 and again.json()["total"] == body["total"]
    Records(runtime).outcome(ids["silent"], "ARREST", date(2023, 10, 1))
    changed = client.get(body["citation"])
    assert changed.status_code == 409
    assert changed.headers["content-type"].startswith("application/problem+json")
    problem = changed.json()
    assert problem["type"].endswith("records-changed") and problem["currentSnapshot"] != body["snapshot"]
    now = client.get("/api/v1/stats/outcomes", params=params).json()
    assert now["total"]["withArrest"] == body["total"]["withArrest"] + 1


def test_bad_parameters_are_problems(client: TestClient) -> None:
    for params in ({"from": "2023-13-01", "to": "2023-12-31"}, {"from": "2023-01-01", "to": "2023-12-31", "by": "x"},
                   {"to": "2023-12-31"}):
        res = client.get("/api/v1/stats/outcomes", params=params)
        assert res.status_code == 400, res.text
        assert res.headers["content-type"].startswith("application/problem+json")
    empty = client.get("/api/v1/stats/outcomes", params={"from": "2024-01-01", "to": "2023-01-01"})
    assert empty.status_code == 200 and "empty" in empty.json()["total"]["warnings"][0]


def _pointer(doc: object, pointer: str) -> object:
    for part in pointer.strip("/").split("/"):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]  # type: ignore[index]
    return doc


@pytest.mark.parametrize("question", [
    "How many CyberTipline escalations to law enforcement resulted in arrests in 2023?",
    "How many CyberTipline reports resulted in arrests per state in 2023?",
    "How many persons were arrested after CyberTipline referrals in 2023?",
    "How many CyberTipline reports were there in 2023?",
    "How many priority 1 reports received any feedback in 2023?",
])
def test_every_records_citation_returns_its_figure(runtime: Runtime, client: TestClient, question: str) -> None:
    _world(runtime)
    res = client.get("/api/v1/answer", params={"q": question})
    assert res.status_code == 200, res.text
    answer = res.json()
    assert answer["source"] == "records" and "tipline's records" in answer["warnings"][0]
    assert answer["figures"]
    for fig in answer["figures"]:
        link = urlsplit(fig["citation"])
        assert link.path == "/api/v1/stats/outcomes" and "snapshot=" in link.query
        got = client.get(f"{link.path}?{link.query}")
        assert got.status_code == 200, got.text
        assert _pointer(got.json(), link.fragment) == fig["value"], fig
    published = client.get("/api/v1/answer", params={"q": question, "source": "published"}).json()
    assert published["source"] == "published"


def test_an_unknown_is_never_printed_as_zero(runtime: Runtime, settings: Settings) -> None:
    from tipline.cli import main

    _world(runtime)
    out = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "stats", "outcomes", "--from",
                                    "2023-01-01", "--to", "2023-12-31", "--by", "agency"],
                             env={"TIPLINE_DATABASE_URL": settings.database_url})
    assert out.exit_code == 0, out.output
    assert "withheld" in out.output and "2–6" in out.output and "snapshot s" in out.output
    ans = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "answer",
                                    "How many CyberTipline reports resulted in arrests in 2023?"],
                             env={"TIPLINE_DATABASE_URL": settings.database_url})
    assert ans.exit_code == 0, ans.output
    assert "Answered from tipline's records" in ans.output and "between 2 [" in ans.output


# --- each statistic against a plain reference ----------------------------------------------

def _wilson_by_hand(x: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("x", "n"), [(0, 10), (3, 10), (10, 10), (57, 400), (1, 1)])
def test_wilson_agrees_with_the_formula(x: int, n: int) -> None:
    w = wilson(x, n)
    low, high = _wilson_by_hand(x, n)
    assert w["value"] == x / n
    assert w["low"] == pytest.approx(low, abs=1e-12) and w["high"] == pytest.approx(high, abs=1e-12)
    assert wilson(0, 0) == {"value": None, "low": None, "high": None}


def _units(rng: random.Random, n: int, agencies: int = 6) -> list[Unit]:
    out = []
    for i in range(n):
        g, pr, kind = rng.randrange(agencies), rng.choice("123"), rng.choice("ab")
        settled = rng.random() < 0.7
        yes = settled and rng.random() < 0.1 * (1 + int(pr == "1"))
        out.append(Unit(i, f"g{g}", (f"g{g}", pr, kind), {}, date(2023, 1, 1), settled, yes, yes, int(yes),
                        settled, None, None))
    return out


def _brute_force_post_stratified(units: list[Unit]) -> float:
    """sum over strata of N_h * a_h / k_h, each stratum on its own (all have feedback here)."""
    strata: dict[tuple[str, str, str], list[Unit]] = {}
    for u in units:
        strata.setdefault(u.stratum, []).append(u)
    total = 0.0
    for members in strata.values():
        k = sum(u.settled for u in members)
        a = sum(u.yes for u in members)
        total += len(members) * a / k
    return total


def test_post_stratified_estimate_is_the_stratified_sum() -> None:
    rng = random.Random(7)
    units = _units(rng, 3000)
    total, borrowed = post_stratified(units)
    assert borrowed == 0
    assert total == pytest.approx(_brute_force_post_stratified(units), rel=1e-12)


def test_a_stratum_without_feedback_borrows_a_coarser_rate() -> None:
    units = [Unit(i, "g", ("g", "1", "a"), {}, date(2023, 1, 1), True, i < 2, i < 2, 0, True, None, None)
             for i in range(10)]
    units += [Unit(10 + i, "g", ("g", "1", "b"), {}, date(2023, 1, 1), False, False, False, 0, False, None, None)
              for i in range(5)]
    total, borrowed = post_stratified(units)
    assert borrowed == 5 and total == pytest.approx(2 + 5 * 0.2)


def _product_limit(times: list[float], events: list[bool]) -> list[tuple[float, float]]:
    s, out = 1.0, []
    for t in sorted({t for t, e in zip(times, events, strict=True) if e}):
        at_risk = sum(1 for x in times if x >= t)
        died = sum(1 for x, e in zip(times, events, strict=True) if e and x == t)
        s *= 1 - died / at_risk
        out.append((t, s))
    return out


def test_kaplan_meier_agrees_with_a_hand_written_product_limit() -> None:
    rng = random.Random(3)
    times = [float(rng.randint(0, 120)) for _ in range(300)]
    events = [rng.random() < 0.6 for _ in times]
    km = kaplan_meier(times, events)
    ref = _product_limit(times, events)
    assert [(c["days"], c["survival"]) for c in km["curve"]] == [
        (int(t), pytest.approx(s, abs=1e-12)) for t, s in ref]
    median = next(t for t, s in ref if s <= 0.5)
    assert km["median"] == median
    none = kaplan_meier([5.0, 9.0], [False, False])
    assert none["median"] is None and none["events"] == 0


def test_bootstrap_spread_agrees_with_the_analytic_variance() -> None:
    """One stratum, one agency: the total's predictive variance is (N-k) p (1-p) N / k."""
    rng = random.Random(11)
    n, k, a = 2000, 1200, 120
    units = [Unit(i, "g", ("g", "1", "a"), {}, date(2023, 1, 1), i < k, i < a, i < a, 0, i < k, None, None)
             for i in range(n)]
    reps = cluster_bootstrap(units, replicates=2000, seed=rng.randrange(2**32))
    p = a / k
    sd = math.sqrt((n - k) * p * (1 - p) * n / k)
    assert float(reps.std()) == pytest.approx(sd, rel=0.08)
    assert float(reps.mean()) == pytest.approx(a + (n - k) * p, rel=0.01)


def test_an_amendment_replaces_and_a_withdrawal_removes() -> None:
    d = date(2023, 1, 1)
    evs = [Event(1, 9, "ARREST", "record", None, d), Event(2, 9, "CHARGED", "amend", 1, d),
           Event(3, 9, "CHARGED", "amend", 2, d), Event(4, 9, "ACKNOWLEDGED", "record", None, d),
           Event(5, 9, "ACKNOWLEDGED", "withdraw", 4, d)]
    assert [e.id for e in effective(evs)] == [3]


def test_the_answer_page_answers_from_records(runtime: Runtime, client: TestClient) -> None:
    _world(runtime)
    q = "How many CyberTipline reports resulted in arrests in 2023?"
    page = client.get("/answer", params={"q": q})
    assert page.status_code == 200
    assert "Answered from tipline&#39;s records" in page.text or "Answered from tipline's records" in page.text
    assert "/api/v1/stats/outcomes?" in page.text and "snapshot=" in page.text
    published = client.get("/answer", params={"q": q, "source": "published"})
    assert "NCMEC" in published.text and "/api/v1/stats/published?" in published.text


def _large_world(rt: Runtime) -> None:
    """60 reports, three agencies, feedback on 48 of them: enough for an estimate."""
    r = Records(rt)
    rng = random.Random(5)
    for i in range(60):
        rep = r.report(priority=1 + i % 3, received=date(2023, 1 + i % 12, 3))
        ref = r.refer(rep, ("A", "B", "C")[i % 3], date(2023, 1 + i % 12, 3), escalated=i % 2 == 0)
        if i % 5 == 4:
            continue  # no feedback
        if rng.random() < 0.3:
            r.outcome(ref, "ARREST", date(2023, 1 + i % 12, 20), persons=1 + i % 2)
        else:
            r.outcome(ref, "CLOSED_NOT_ACTIONABLE", date(2023, 1 + i % 12, 25))


def test_with_enough_feedback_the_estimate_is_shown_and_cited(runtime: Runtime, client: TestClient) -> None:
    _large_world(runtime)
    t = outcome_stats(runtime.sessions, Scope(*Y23))["total"]
    assert (t["referrals"], t["withFeedback"]) == (60, 48)
    est = t["estimate"]
    assert est["withheld"] is None
    assert t["bounds"]["low"] <= est["low"] <= est["value"] <= est["high"] <= t["bounds"]["high"]
    totals = [p["total"] for p in t["sensitivity"]]
    assert totals[0] == t["withArrest"] and totals[-1] == pytest.approx(est["value"])
    assert totals == sorted(totals)
    if t["tipping"]["delta"] is not None:
        assert 0 <= t["tipping"]["delta"] <= 1 and t["tipping"]["conclusion"].startswith("at least")
    fb = t["delay"]["toFirstFeedback"]
    assert fb["events"] == 48 and fb["median"] is not None and fb["curve"][-1]["survival"] < 0.5
    answer = client.get("/api/v1/answer", params={
        "q": "How many CyberTipline reports resulted in arrests in 2023?", "source": "records"}).json()
    names = [f["name"] for f in answer["figures"]]
    assert any(n.startswith("estimate") for n in names)
    for fig in answer["figures"]:
        link = urlsplit(fig["citation"])
        assert _pointer(client.get(f"{link.path}?{link.query}").json(), link.fragment) == fig["value"]
