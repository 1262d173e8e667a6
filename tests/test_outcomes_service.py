"""The outcome service on both backends: validation, scope, the terminal and reopen rules,
amendments and withdrawals as new rows, acknowledgements, idempotency, audit rows, reminders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from outcome_helpers import MADE, NOW, World, counts, make_world
from tipline.outcomes import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    OutcomeError,
    acknowledge,
    effective_outcomes,
    list_outcomes,
    overdue_outcomes,
    record_outcome,
)
from tipline.people.audit import verify
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Referral
from tipline.store.tables_people import AuditEvent, Outcome

ARREST = {"code": "ARREST", "occurredOn": "2026-07-02", "persons": 1, "arrestType": "T"}


@pytest.fixture
def world(runtime: Runtime) -> World:
    return make_world(runtime)


def rec(rt: Runtime, who: Principal | None, ref: int, payload: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("via", "api")
    kw.setdefault("now", NOW)
    with transaction(rt.sessions) as s:
        return record_outcome(s, who, ref, payload, **kw)


def refused(rt: Runtime, exc: type[OutcomeError], who: Principal | None, ref: int, payload: dict[str, Any],
            **kw: Any) -> OutcomeError:
    before = counts(rt)
    with pytest.raises(exc) as info:
        rec(rt, who, ref, payload, **kw)
    assert counts(rt) == before, "a refused outcome changed the store"
    return info.value


def test_record_an_arrest_writes_the_row_and_one_audit_row(runtime: Runtime, world: World) -> None:
    r = rec(runtime, world.officer_a, world.refs_a[0], ARREST)
    assert r.created and r.outcome.state == "effective" and r.outcome.kind == "record"
    j = r.outcome.as_json()
    assert j["code"] == "ARREST" and j["persons"] == 1 and j["arrestType"] == "T" and j["occurredOn"] == "2026-07-02"
    assert j["referralId"] == world.refs_a[0] and j["via"] == "api" and j["codesVersion"]
    with runtime.sessions() as s:
        row = s.get(Outcome, r.outcome.id)
        assert row is not None and row.agency_id == world.agency_a and row.user_id == world.officer_a.user_id
        events = s.scalars(select(AuditEvent)).all()
        assert [(e.action, e.actor, e.object_kind, e.object_id) for e in events] == [
            ("outcome.record", "officer-a", "referral", str(world.refs_a[0]))]
        assert events[0].detail is not None and events[0].detail["outcomeId"] == r.outcome.id
        assert verify(s).intact


@pytest.mark.parametrize(("payload", "field", "words"), [
    ({"code": "NOPE", "occurredOn": "2026-07-02"}, "code", "unknown outcome code"),
    ({"occurredOn": "2026-07-02"}, "code", "required"),
    ({"code": "ARREST", "occurredOn": "2026-07-02", "persons": 1}, "arrestType", "needs arrestType"),
    ({**ARREST, "arrestType": "X"}, "arrestType", "not a arrestType"),
    ({**ARREST, "persons": 0}, "persons", "at least 1"),
    ({**ARREST, "persons": "2"}, "persons", "whole number"),
    ({**ARREST, "persons": True}, "persons", "whole number"),
    ({**ARREST, "persons": 1.5}, "persons", "whole number"),
    ({**ARREST, "nibrsCode": "A"}, "nibrsCode", "takes no nibrsCode"),
    ({**ARREST, "colour": "red"}, "colour", "unknown field"),
    ({**ARREST, "occurredOn": "2026-13-01"}, "occurredOn", "not a calendar date"),
    ({**ARREST, "occurredOn": "02/07/2026"}, "occurredOn", "YYYY-MM-DD"),
    ({**ARREST, "occurredOn": "2026-11-22"}, "occurredOn", "in the future"),
    ({**ARREST, "occurredOn": "2026-05-30"}, "occurredOn", "before referral"),
    ({"code": "ARREST", "persons": 1, "arrestType": "T"}, "occurredOn", "required"),
    ({"code": "CLEARED_EXCEPTIONALLY", "occurredOn": "2026-07-02", "nibrsCode": "F"}, "nibrsCode", "one of A, B"),
    ({"code": "CLOSED_NOT_PURSUED", "occurredOn": "2026-07-02"}, "reason", "needs reason"),
    ({"code": "DISPOSITION", "occurredOn": "2026-07-02", "result": "federal"}, "result", "not a result"),
    ({"code": "ACKNOWLEDGED", "occurredOn": "2026-07-02", "note": "x" * 2001}, "note", "at most"),
    ({**ARREST, "kind": "edit"}, "kind", "not a kind"),
    ({**ARREST, "supersedes": 1}, "supersedes", "supersedes nothing"),
])
def test_invalid_payloads_name_the_field(runtime: Runtime, world: World, payload: dict[str, Any], field: str,
                                         words: str) -> None:
    err = refused(runtime, Invalid, world.officer_a, world.refs_a[0], payload)
    assert err.field == field and words in err.message, (err.field, err.message)


def test_dates_at_the_edges_of_the_time_zones(runtime: Runtime, world: World) -> None:
    # Made available 05:00 UTC on 1 June: still 31 May west of UTC-5; "now" 12:00 UTC on 20 Nov is
    # already 21 Nov east of UTC+12. Both edges are someone's today; a day beyond is refused.
    with transaction(runtime.sessions) as s:
        r = s.get(Referral, world.refs_a[0])
        assert r is not None
        r.made_available_at = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)
    rec(runtime, world.officer_a, world.refs_a[0], {**ARREST, "occurredOn": "2026-05-31"})
    rec(runtime, world.officer_a, world.refs_a[0], {**ARREST, "occurredOn": "2026-11-21"})
    refused(runtime, Invalid, world.officer_a, world.refs_a[0], {**ARREST, "occurredOn": "2026-05-30"})
    refused(runtime, Invalid, world.officer_a, world.refs_a[0], {**ARREST, "occurredOn": "2026-11-22"})


def test_children_on_child_identified(runtime: Runtime, world: World) -> None:
    r = rec(runtime, world.officer_a, world.refs_a[0], {"code": "CHILD_IDENTIFIED", "occurredOn": "2026-07-01",
                                                        "children": 2})
    assert r.outcome.details["children"] == 2 and r.outcome.details["persons"] is None
    refused(runtime, Invalid, world.officer_a, world.refs_a[0], {"code": "ARREST", "occurredOn": "2026-07-01",
                                                                 "persons": 1, "arrestType": "O", "children": 1})


def test_a_foreign_referral_is_not_found_exactly_like_a_missing_one(runtime: Runtime, world: World) -> None:
    foreign = refused(runtime, NotFound, world.officer_a, world.refs_b[0], ARREST)
    missing = refused(runtime, NotFound, world.officer_a, 999_999, ARREST)
    assert foreign.message.replace(str(world.refs_b[0]), "N") == missing.message.replace("999999", "N")
    with runtime.sessions() as s, pytest.raises(NotFound):
        list_outcomes(s, world.officer_a, world.refs_b[0])
    # The operator's import for agency A is narrowed the same way.
    refused(runtime, NotFound, None, world.refs_b[0], ARREST, via="cli", agency_id=world.agency_a)


def test_roles_that_may_not_record(runtime: Runtime, world: World) -> None:
    refused(runtime, Forbidden, world.analyst, world.refs_a[0], ARREST)
    refused(runtime, NotFound, world.platform, world.refs_a[0], ARREST)  # sees no referral: missing
    rec(runtime, world.officer_a, world.refs_a[0], ARREST)
    with runtime.sessions() as s:
        # Analysts read every referral's timeline; platform staff none.
        assert [v.code for v in list_outcomes(s, world.analyst, world.refs_a[0])] == ["ARREST"]
        with pytest.raises(NotFound):
            list_outcomes(s, world.platform, world.refs_a[0])
    officer_without_agency = Principal(world.officer_a.user_id, "officer-a", "officer", agency_id=None)
    refused(runtime, NotFound, officer_without_agency, world.refs_a[0], ARREST)


def test_one_open_terminal_until_reopened(runtime: Runtime, world: World) -> None:
    ref, who = world.refs_a[0], world.officer_a
    closed = rec(runtime, who, ref, {"code": "CLOSED_NOT_ACTIONABLE", "occurredOn": "2026-07-01",
                                     "reason": "cannot_locate"}).outcome
    err = refused(runtime, Conflict, who, ref, {"code": "CLOSED_NOT_PURSUED", "occurredOn": "2026-07-02",
                                                "reason": "evidential"})
    assert "already closed by CLOSED_NOT_ACTIONABLE" in err.message and "reopen" in err.message
    # A non-terminal event may still be recorded on a closed referral (late feedback).
    rec(runtime, who, ref, {"code": "FORENSIC_EXAM", "occurredOn": "2026-07-03"})
    refused(runtime, Invalid, who, ref, {"kind": "reopen", "occurredOn": "2026-06-30"})  # before the closing
    refused(runtime, Invalid, who, ref, {"kind": "reopen", "occurredOn": "2026-07-05", "reason": "evidential"})
    reopen = rec(runtime, who, ref, {"kind": "reopen", "occurredOn": "2026-07-05", "note": "new lead"}).outcome
    assert reopen.kind == "reopen" and reopen.supersedes == closed.id and reopen.code == "CLOSED_NOT_ACTIONABLE"
    assert reopen.state == "action"
    second = rec(runtime, who, ref, {"code": "CLEARED_EXCEPTIONALLY", "occurredOn": "2026-08-01",
                                     "nibrsCode": "C"}).outcome
    with runtime.sessions() as s:
        states = {v.id: (v.state, v.changed_by) for v in list_outcomes(s, who, ref)}
    assert states[closed.id] == ("reopened", reopen.id) and states[second.id] == ("effective", None)
    err = refused(runtime, Conflict, who, world.refs_a[1], {"kind": "reopen", "occurredOn": "2026-07-05"})
    assert "not closed" in err.message


def test_amend_and_withdraw_are_new_rows(runtime: Runtime, world: World) -> None:
    ref, who = world.refs_a[0], world.officer_a
    first = rec(runtime, who, ref, ARREST).outcome
    amended = rec(runtime, who, ref, {"kind": "amend", "supersedes": first.id, "persons": 2}).outcome
    assert amended.details["persons"] == 2 and amended.details["arrestType"] == "T"  # the rest carried over
    assert amended.occurred_on == first.occurred_on and amended.supersedes == first.id
    err = refused(runtime, Conflict, who, ref, {"kind": "amend", "supersedes": first.id, "persons": 3})
    assert f"amended by outcome {amended.id}" in err.message
    refused(runtime, Invalid, who, ref, {"kind": "amend", "supersedes": amended.id, "code": "CHARGED"})
    refused(runtime, Invalid, who, ref, {"kind": "amend", "supersedes": 10**6, "persons": 3})
    refused(runtime, Invalid, who, ref, {"kind": "amend", "persons": 3})
    refused(runtime, Invalid, who, ref, {"kind": "withdraw", "supersedes": amended.id, "persons": 3})
    other = rec(runtime, who, ref, {"code": "FORENSIC_EXAM", "occurredOn": "2026-07-05"}).outcome
    withdrawn = rec(runtime, who, ref, {"kind": "withdraw", "supersedes": other.id, "note": "wrong case"}).outcome
    assert withdrawn.occurred_on == other.occurred_on and withdrawn.code == "FORENSIC_EXAM"
    refused(runtime, Conflict, who, ref, {"kind": "withdraw", "supersedes": other.id})
    refused(runtime, Invalid, who, ref, {"kind": "amend", "supersedes": withdrawn.id, "note": "x"})
    with runtime.sessions() as s:
        rows = s.scalars(select(Outcome).order_by(Outcome.id)).all()
        # Nothing was edited: the first arrest still says one person.
        assert rows[0].persons == 1 and rows[0].kind == "record"
        timeline = {v.id: v.state for v in list_outcomes(s, who, ref)}
        audit_actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert timeline == {first.id: "superseded", amended.id: "effective", other.id: "withdrawn",
                        withdrawn.id: "action"}
    assert audit_actions == ["outcome.record", "outcome.amend", "outcome.record", "outcome.withdraw"]
    # An amendment of a referral on another agency's referral's outcome is not found.
    refused(runtime, NotFound, world.officer_b, ref, {"kind": "amend", "supersedes": amended.id, "persons": 3})


def test_acknowledged_sets_acknowledged_at_once(runtime: Runtime, world: World) -> None:
    ref, who = world.refs_a[0], world.officer_a
    rec(runtime, who, ref, {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-02"})
    with runtime.sessions() as s:
        r = s.get(Referral, ref)
        assert r is not None and r.acknowledged_at is not None
        assert r.acknowledged_at.replace(tzinfo=UTC) == datetime(2026, 6, 2, tzinfo=UTC)
    err = refused(runtime, Conflict, who, ref, {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-03"})
    assert "already recorded" in err.message
    # acknowledge(): today, once; a second call returns the first event.
    with transaction(runtime.sessions) as s:
        first = acknowledge(s, who, world.refs_a[1], via="page", now=NOW)
    with transaction(runtime.sessions) as s:
        again = acknowledge(s, who, world.refs_a[1], via="page", now=NOW + timedelta(hours=1))
        r2 = s.get(Referral, world.refs_a[1])
        assert r2 is not None and r2.acknowledged_at is not None
        assert r2.acknowledged_at.replace(tzinfo=UTC) == NOW
    assert first.created and not again.created and again.outcome.id == first.outcome.id


def test_idempotency_key(runtime: Runtime, world: World) -> None:
    ref, who = world.refs_a[0], world.officer_a
    first = rec(runtime, who, ref, {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-02"}, idempotency_key="k-1")
    before = counts(runtime)
    again = rec(runtime, who, ref, {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-02"}, idempotency_key="k-1")
    assert counts(runtime) == before
    assert first.created and not again.created and again.outcome == first.outcome
    err = refused(runtime, Conflict, who, ref, ARREST, idempotency_key="k-1")
    assert err.field == "Idempotency-Key"
    refused(runtime, Conflict, who, world.refs_a[1], {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-02"},
            idempotency_key="k-1")
    # Keys are per agency: agency B may use the same key.
    assert rec(runtime, world.officer_b, world.refs_b[0], ARREST, idempotency_key="k-1").created
    refused(runtime, Invalid, who, ref, ARREST, idempotency_key="")


def test_trusted_callers_are_named_in_the_audit_trail(runtime: Runtime, world: World) -> None:
    r = rec(runtime, None, world.refs_b[0], ARREST, via="cli", actor_name="cli:root")
    with runtime.sessions() as s:
        row = s.get(Outcome, r.outcome.id)
        event = s.scalars(select(AuditEvent)).one()
    assert row is not None and row.user_id is None and row.via == "cli"
    assert event.actor == "cli:root" and event.actor_user_id is None
    with pytest.raises(ValueError):
        rec(runtime, None, world.refs_b[0], ARREST, via="fax")


# --- effective_outcomes (pure) ---------------------------------------------------------------


@dataclass
class Ev:
    id: int
    code: str
    kind: str = "record"
    supersedes_id: int | None = None
    referral_id: int = 1


def test_effective_outcomes_contract() -> None:
    events = [
        Ev(5, "ARREST", "amend", 2),
        Ev(1, "ACKNOWLEDGED"),
        Ev(2, "ARREST"),
        Ev(3, "FORENSIC_EXAM"),
        Ev(4, "FORENSIC_EXAM", "withdraw", 3),
        Ev(6, "CLOSED_NOT_PURSUED"),
        Ev(7, "CLOSED_NOT_PURSUED", "amend", 6),
        Ev(8, "CLOSED_NOT_PURSUED", "reopen", 7),
        Ev(9, "ARREST", "amend", 5),
    ]
    out = effective_outcomes(events)
    assert [e.id for e in out] == list(range(1, 10))
    got = {e.id: (e.state, e.root_id, e.changed_by) for e in out}
    assert got == {
        1: ("effective", 1, None),
        2: ("superseded", 2, 5), 5: ("superseded", 2, 9), 9: ("effective", 2, None),
        3: ("withdrawn", 3, 4), 4: ("action", None, None),
        6: ("superseded", 6, 7), 7: ("reopened", 6, 8), 8: ("action", None, None),
    }
    assert effective_outcomes([]) == []
    with pytest.raises(ValueError):
        effective_outcomes([Ev(2, "ARREST", "amend", 1)])


# --- reminders --------------------------------------------------------------------------------


def test_overdue_outcomes(runtime: Runtime, world: World) -> None:
    a0, a1, a2 = world.refs_a
    rec(runtime, world.officer_a, a0, {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-02"})  # receipt only
    rec(runtime, world.officer_a, a1, {"code": "INVESTIGATION_OPENED", "occurredOn": "2026-06-03"})
    exam = rec(runtime, world.officer_a, a2, {"code": "FORENSIC_EXAM", "occurredOn": "2026-06-03"}).outcome
    rec(runtime, world.officer_a, a2, {"kind": "withdraw", "supersedes": exam.id})  # nothing stands
    with runtime.sessions() as s:
        assert overdue_outcomes(s, NOW) == {world.agency_a: [a0, a2], world.agency_b: world.refs_b}
        # Not yet 90 days after being made available: nothing is overdue.
        assert overdue_outcomes(s, MADE + timedelta(days=89)) == {}
        assert overdue_outcomes(s, MADE + timedelta(days=10), days=5) == {
            world.agency_a: [a0, a2], world.agency_b: world.refs_b}


def test_the_reminder_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from tipline.config import Settings

    monkeypatch.setenv("TIPLINE_OUTCOME_REMINDER_DAYS", "30")
    assert Settings.from_env(tmp_path).outcome_reminder_days == 30
    monkeypatch.delenv("TIPLINE_OUTCOME_REMINDER_DAYS")
    assert Settings.from_env(tmp_path).outcome_reminder_days == 90


def test_list_is_ordered_by_date(runtime: Runtime, world: World) -> None:
    ref, who = world.refs_a[0], world.officer_a
    rec(runtime, who, ref, {"code": "FORENSIC_EXAM", "occurredOn": "2026-07-05"})
    rec(runtime, who, ref, {"code": "ACKNOWLEDGED", "occurredOn": "2026-06-02"})
    with runtime.sessions() as s:
        assert [v.occurred_on for v in list_outcomes(s, who, ref)] == [date(2026, 6, 2), date(2026, 7, 5)]
        assert list_outcomes(s, who, world.refs_a[1]) == []


def test_docs_list_every_code_as_the_registry_has_it() -> None:
    from pathlib import Path

    from tipline.kinds.outcomes import registry

    text = (Path(__file__).resolve().parents[1] / "docs" / "outcomes.md").read_text()
    table = text.split("<!-- codes: generated from the registry; a test fails when it differs -->\n", 1)[1]
    table = table.split("\n<!-- /codes -->", 1)[0]
    reg = registry()
    rows = []
    for oc in reg.codes.values():
        det = ", ".join(f"`{d}`" + ("*" if d in oc.required else "") for d in oc.details) or "—"
        rows.append(f"| `{oc.code}` | {oc.title} | {oc.maps_to} | {'yes' if oc.repeats else 'no'} | "
                    f"{'yes' if oc.terminal else 'no'} | {det} |")
    want = "\n".join(["| code | title | maps to | repeats | terminal | details (* required) |",
                      "|---|---|---|---|---|---|", *rows])
    assert table == want, "docs/outcomes.md's code table differs from the registry: regenerate it"
    assert f"`{reg.version}`" in text
    for key, values in reg.values.items():
        for v in values:
            assert f"`{v}`" in text, (key, v)
