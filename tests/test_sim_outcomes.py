"""Simulated law-enforcement behaviour: the default profile lands inside DOMAIN.md's ranges, the
truth of every referral is written beside the year's ground truth, and only what the simulated
agencies report enters the store, through the outcome service, at simulated times."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tipline.commands.simulate import simulate_year
from tipline.config import Settings
from tipline.kinds.outcomes import registry
from tipline.people.audit import verify
from tipline.runtime import Runtime
from tipline.sim.generate import YearGenerator
from tipline.sim.outcomes import (
    LEAD_ORDER,
    agency_behaviour,
    arrest_probability,
    draw_arrest,
    load_profile,
    priority_of,
    report_rng,
    reported_events,
    true_path,
)
from tipline.store.tables import Referral, Report
from tipline.store.tables_people import AuditEvent, Outcome

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _kind_and_agency(truth: dict[str, Any]) -> tuple[str, str]:
    # What routing does, in short: a US state to its ICAC task force, the US or nowhere to the
    # federal agencies, abroad to that country's liaison.
    visible = truth["location_visible"]
    if visible == "us_state":
        return "icac", f"ICAC-{truth['true_us_state']}"
    if visible == "abroad":
        return "international", f"INTL-{truth['true_country']}"
    return "federal", "FBI"


@pytest.mark.parametrize("year", [2023, 2024])
def test_default_profile_lands_inside_the_expected_ranges(year: int) -> None:
    profile = load_profile()
    made = datetime(year, 6, 1, tzinfo=UTC)
    reports = arrested = feedback = 0
    for r in YearGenerator(year, 0.0003, seed=5, truth_only=True):
        t = r.truth
        rng = report_rng(5, t["sim_seq"])
        a, persons, _ = draw_arrest(t, profile, rng)
        kind, code = _kind_and_agency(t)
        path = true_path(t, profile, rng, lead=True, arrested=a, persons=persons, children=0)
        reports_on, _ = reported_events(path, agency_behaviour(code, kind, profile, 5), profile, rng, made, NOW)
        reports += 1
        arrested += a
        feedback += reports_on
    low, high = profile.range("expect", "arrest_share")
    assert low <= arrested / reports <= high, arrested / reports
    low, high = profile.range("expect", "feedback_share")
    assert low <= feedback / reports <= high, feedback / reports


def test_arrests_follow_the_ground_truth() -> None:
    profile = load_profile()
    base = {"child_in_imminent_danger": False, "incident_type": "x", "sextortion": False, "viral_item": "",
            "generative_ai": False, "location_visible": "us_state", "public": False}
    imminent = {**base, "child_in_imminent_danger": True}
    assert priority_of(imminent) == 1 and priority_of(base) == 3
    assert arrest_probability(imminent, profile) > arrest_probability(base, profile)
    assert arrest_probability({**base, "viral_item": 7}, profile) < arrest_probability(base, profile)
    assert arrest_probability({**base, "location_visible": "none"}, profile) < arrest_probability(base, profile)
    assert arrest_probability({**base, "public": True}, profile) < arrest_probability(base, profile)
    # Read back from the truth CSV, flags are strings: the same answer.
    assert arrest_probability({k: str(v) for k, v in imminent.items()}, profile) == arrest_probability(imminent,
                                                                                                       profile)


def test_every_drawn_path_is_valid_for_the_registry() -> None:
    profile = load_profile()
    reg = registry()
    seen: Counter[str] = Counter()
    for r in YearGenerator(2024, 0.0001, seed=2, truth_only=True):
        rng = report_rng(2, r.truth["sim_seq"])
        for lead in (True, False):
            a, persons, children = draw_arrest(r.truth, profile, rng)
            path = true_path(r.truth, profile, rng, lead=lead, arrested=a and lead, persons=persons,
                             children=children)
            days = [e.day for e in path.events]
            assert days == sorted(days) and days[0] >= 0
            terminal = [e for e in path.events if reg.codes[e.code].terminal]
            assert len(terminal) <= 1 and (not terminal or terminal[0] is path.events[-1])
            assert path.arrested == any(e.code == "ARREST" for e in path.events)
            for e in path.events:
                oc = reg.codes[e.code]
                assert set(oc.required) <= set(e.details) and set(e.details) <= set(oc.details)
                seen[e.code] += 1
    assert {"ACKNOWLEDGED", "ARREST", "CLOSED_NOT_ACTIONABLE", "LINKED_DUPLICATE"} <= set(seen)


def test_feedback_that_is_not_missing_at_random(tmp_path: Path) -> None:
    f = tmp_path / "mnar.toml"
    f.write_text("[feedback]\narrest_report_boost = 3.0\npropensity = { international = [0.1, 0.1] }\n")
    profile = load_profile(f)
    assert profile["feedback"]["arrest_report_boost"] == 3.0
    assert profile["feedback"]["propensity"]["icac"] == [0.15, 0.45]  # untouched keys keep the default
    b = agency_behaviour("INTL-XX", "international", profile, 1)
    assert b.propensity == pytest.approx(0.1)
    truth = {"child_in_imminent_danger": True, "location_visible": "abroad", "public": False}
    path = true_path(truth, profile, random.Random(1), lead=True, arrested=True, persons=1, children=0)
    made = datetime(2023, 1, 1, tzinfo=UTC)
    rate = sum(reported_events(path, b, profile, random.Random(i), made, NOW)[0] for i in range(4000)) / 4000
    assert rate == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("text", ["[feedback]\ncolour = 1\n", "[feedback]\npropensity = { icac = [0.5, 0.2] }\n",
                                  "not toml ["])
def test_bad_profiles_are_refused(tmp_path: Path, text: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match="outcome profile"):
        load_profile(f)


def _truth_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "outcomes.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_simulated_year_with_outcomes(runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "truth"
    started = datetime.now(UTC)
    summary = simulate_year(settings, 2024, 3e-6, seed=3, out=out)
    rows = _truth_rows(out)
    with runtime.sessions() as s:
        reports = s.scalars(select(Report)).all()
        referrals = {r.id: r for r in s.scalars(select(Referral))}
        outcomes = s.scalars(select(Outcome).order_by(Outcome.id)).all()
        audit_actors = {e.actor for e in s.scalars(select(AuditEvent))}
        assert verify(s).intact
    # Reports carry their simulated receipt time, inside the year and after the incident.
    for r in reports:
        assert r.finished_at is not None and r.incident_at is not None
        got = r.finished_at.replace(tzinfo=UTC)
        assert datetime(2024, 1, 1, tzinfo=UTC) <= got < datetime(2025, 1, 1, tzinfo=UTC)
        assert got >= r.incident_at.replace(tzinfo=UTC) and r.opened_at.replace(tzinfo=UTC) == got
    finished = {r.id: r.finished_at.replace(tzinfo=UTC) for r in reports if r.finished_at}
    # Referrals carry simulated made-available (and escalation) times.
    assert referrals
    for ref in referrals.values():
        made = ref.made_available_at.replace(tzinfo=UTC)
        assert finished[ref.report_id] <= made < finished[ref.report_id] + timedelta(days=3)
        assert (ref.escalated_at is not None) == ref.escalated
    # The truth of every referral is written, and only what was reported is stored.
    assert {int(r["referral_id"]) for r in rows} == set(referrals)
    assert {int(r["report_id"]) for r in rows} == {ref.report_id for ref in referrals.values()}
    stored: dict[int, list[str]] = {}
    for o in outcomes:
        stored.setdefault(o.referral_id, []).append(o.code)
    reported = {int(r["referral_id"]): r["reported_events"].split() for r in rows if r["reported_events"]}
    assert stored == reported
    assert all(r["reported"] == "False" for r in rows if int(r["referral_id"]) not in stored)
    for o in outcomes:
        ref = referrals[o.referral_id]
        recorded = o.recorded_at.replace(tzinfo=UTC)
        assert o.via == "sim" and o.user_id is None and o.kind == "record"
        assert ref.made_available_at.date() <= o.occurred_on <= recorded.date()
        assert recorded < started  # simulated, never in the future
        if o.code == "ACKNOWLEDGED":
            assert ref.acknowledged_at is not None
    assert audit_actors <= {"sim"}
    # The lead referral of each arrested report is where the arrest is.
    for r in rows:
        if r["arrested"] == "True":
            lead = [x for x in rows if x["report_id"] == r["report_id"] and x["lead"] == "True"]
            assert len(lead) == 1 and "ARREST@" in lead[0]["path"]
            assert LEAD_ORDER[lead[0]["agency_kind"]] == min(LEAD_ORDER[x["agency_kind"]] for x in rows
                                                             if x["report_id"] == r["report_id"])
    got = summary["outcomes"]
    assert got["referrals"] == len(rows) and got["events_reported"] == len(outcomes)
    assert got["reports_referred"] == len({r["report_id"] for r in rows})
    assert json.loads((out / "summary.json").read_text())["outcomes"] == got


def test_no_outcomes(runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(__import__("tipline.cli", fromlist=["main"]).main,
                                ["simulate", "--year", "2023", "--scale", "0.000001", "--no-outcomes",
                                 "--out", str(tmp_path / "t")], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with runtime.sessions() as s:
        assert s.scalars(select(Outcome)).first() is None and s.scalars(select(Referral)).first() is None
        r = s.scalars(select(Report)).first()
        assert r is not None and r.finished_at is not None and r.finished_at.year == 2023
    assert not (tmp_path / "t" / "outcomes.csv").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[truth]\nnope = 1\n")
    result = CliRunner().invoke(__import__("tipline.cli", fromlist=["main"]).main,
                                ["simulate", "--year", "2023", "--scale", "0.000001", "--outcome-profile", str(bad)],
                                env=env, catch_exceptions=False)
    assert result.exit_code != 0 and "unknown key truth.nope" in result.output
