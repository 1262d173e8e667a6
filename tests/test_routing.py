"""Agency directory and routing: every US state to its task force, federal without a state, liaisons abroad."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpers import person, report_doc, run, store_report
from tipline.cli import main
from tipline.config import Settings
from tipline.model.report import COUNTRIES
from tipline.pipeline.directory import (
    AgencyRow,
    Directory,
    DirectoryCache,
    DirectoryError,
    import_agencies,
    load_routing,
    parse_agencies,
    read_agency_file,
    route,
)
from tipline.pipeline.geo import US_STATES, US_TERRITORIES
from tipline.pipeline.stages.route import city_for, current_directory, reference_directory
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Agency, Assessment, Jurisdiction, Referral

ROWS = read_agency_file()
STAGES = ["location", "jurisdiction", "route"]


def directory() -> Directory:
    return Directory([Agency(id=i, code=r.code, name=r.name, kind=r.kind, country=r.country, us_state=r.us_state,
                             area=r.area, notes=r.notes, active=True) for i, r in enumerate(ROWS, 1)])


def test_bundled_directory_has_61_task_forces_covering_every_state() -> None:
    icac = [r for r in ROWS if r.kind == "icac"]
    assert len(icac) == 61
    states = {r.us_state for r in icac}
    assert states == set(US_STATES) - {"DC"}  # DC is served by the Northern Virginia/DC task force
    assert {r.code for r in ROWS if r.kind == "federal"} == {"FBI", "HSI"}
    liaisons = {r.country for r in ROWS if r.kind == "international"}
    real = {c for c in COUNTRIES if c not in ("", "A1", "A2", "O1", "AP", "EU", "AN", "FX")}
    assert liaisons == real - {"US"} - US_TERRITORIES
    # Honesty: every generic liaison says it is a placeholder; every task force says how sure we are.
    assert all("PLACEHOLDER" in (r.notes or "") for r in ROWS if r.kind == "international" and "via" in r.name)
    assert all(r.notes for r in icac)


def test_pure_routing_rules() -> None:
    d, rules = directory(), load_routing()
    for state in US_STATES:
        got = route(d, rules, "US", state, None)
        assert len(got) == 1
        tf = d.by_code[got[0].agency_code]
        assert tf.kind == "icac"
        assert tf.us_state == ("VA" if state == "DC" else state), state
    assert route(d, rules, "US", "CA", "Los Angeles")[0].agency_code == "ICAC-CA-LA"
    assert route(d, rules, "US", "CA", "Fresno")[0].agency_code == "ICAC-CA-CC"
    assert route(d, rules, "US", "CA", "Nowhere Special")[0].agency_code == "ICAC-CA-SAC"
    assert route(d, rules, "US", "NY", "Brooklyn")[0].agency_code == "ICAC-NY-NYC"
    assert route(d, rules, "US", "NY", None)[0].agency_code == "ICAC-NY-SP"
    assert {x.agency_code for x in route(d, rules, "US", None, None)} == {"FBI", "HSI"}
    assert {x.agency_code for x in route(d, rules, None, None, None)} == {"FBI", "HSI"}
    assert {x.agency_code for x in route(d, rules, "PR", None, None)} == {"FBI", "HSI"}
    assert [x.agency_code for x in route(d, rules, "DE", None, None)] == ["INTL-DE"]
    assert [x.agency_code for x in route(d, rules, "IN", "Delhi", "New Delhi")] == ["INTL-IN"]
    # A country the operator's directory lacks falls back to federal, with the reason saying so.
    small = Directory([a for a in d.by_code.values() if a.code != "INTL-PH"])
    fb = route(small, rules, "PH", None, None)
    assert {x.agency_code for x in fb} == {"FBI", "HSI"} and all(x.rule == "fallback" for x in fb)
    assert "No agency in the directory for country PH" in fb[0].reason


def _referrals(rt: Runtime) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    with rt.sessions() as s:
        for rid, code in s.execute(select(Referral.report_id, Agency.code).join(Agency)):
            out.setdefault(rid, set()).add(code)
    return out


def test_route_stage_sends_every_state_to_its_task_force(runtime: Runtime) -> None:
    by_state = {st: store_report(runtime, report_doc([person(f"u{st}", estimate={
        "countryCode": "US", "region": st, "verified": True})])) for st in sorted(US_STATES)}
    no_state = store_report(runtime, report_doc([person("x", estimate={"countryCode": "US", "verified": True})]))
    no_loc = store_report(runtime, report_doc([person("y", ip="10.9.9.9")]))
    foreign = store_report(runtime, report_doc([person("z", ip="130.149.7.201")]))  # TU Berlin
    la_ip = store_report(runtime, report_doc([person("w", ip="128.32.0.1")]))  # Berkeley: Silicon Valley area
    ids = [*by_state.values(), no_state, no_loc, foreign, la_ip]
    run(runtime, STAGES, ids)
    refs = _referrals(runtime)
    with runtime.sessions() as s:
        agencies = {a.code: a for a in s.execute(select(Agency)).scalars()}
    for st, rid in by_state.items():
        (code,) = refs[rid]
        assert agencies[code].kind == "icac" and agencies[code].us_state == ("VA" if st == "DC" else st)
    assert refs[no_state] == {"FBI", "HSI"}
    assert refs[no_loc] == {"FBI", "HSI"}
    assert refs[foreign] == {"INTL-DE"}
    assert refs[la_ip] == {"ICAC-CA-SV"}
    with runtime.sessions() as s:
        ref = s.execute(select(Referral).where(Referral.report_id == la_ip)).scalar_one()
    assert ref.rule == "us-state-icac" and "city Berkeley is in its area" in ref.reason


def test_escalation_recorded_and_rerun_keeps_acknowledgements(runtime: Runtime) -> None:
    rid = store_report(runtime, report_doc([person("e", estimate={"countryCode": "US", "region": "OH",
                                                                  "verified": True})]))
    run(runtime, STAGES, [rid])
    with transaction(runtime.sessions) as s:
        ref = s.execute(select(Referral).where(Referral.report_id == rid)).scalar_one()
        assert not ref.escalated
        ref.acknowledged_at = datetime(2024, 3, 6, tzinfo=UTC)
        first_made = ref.made_available_at
        s.add(Assessment(report_id=rid, quality=0.9, missing=[], disposition="referral", disposition_reasons=[],
                         priority=1, priority_reasons=["test"], escalate=True, rules_version="t",
                         assessed_at=datetime(2024, 3, 6, tzinfo=UTC)))
    run(runtime, ["route"], [rid])
    run(runtime, ["route"], [rid])
    with runtime.sessions() as s:
        ref = s.execute(select(Referral).where(Referral.report_id == rid)).scalar_one()
    assert ref.escalated and ref.escalated_at is not None
    assert ref.acknowledged_at == datetime(2024, 3, 6, tzinfo=UTC) and ref.made_available_at == first_made


def test_import_validates_and_is_idempotent(runtime: Runtime) -> None:
    with pytest.raises(DirectoryError, match="line 2"):
        parse_agencies("code,name,kind,country,us_state\nX,Bad,icac,US,ZZ\n")
    with pytest.raises(DirectoryError, match="exactly one with lead=yes"):
        parse_agencies("code,name,kind,country,us_state\nA,One,icac,US,TX\nB,Two,icac,US,TX\n")
    with pytest.raises(DirectoryError, match="already used"):
        parse_agencies("code,name,kind\nF,Fed,federal\nF,Fed,federal\n")
    with transaction(runtime.sessions) as s:
        first = import_agencies(s, ROWS)
    with transaction(runtime.sessions) as s:
        again = import_agencies(s, ROWS)
    assert len(first.added) == len(ROWS) and again.added == again.updated == again.deactivated == []
    with transaction(runtime.sessions) as s:
        smaller = import_agencies(s, [r for r in ROWS if r.code != "INTL-PH"])
    assert smaller.deactivated == ["INTL-PH"]


def test_agency_cli(settings: Settings, runtime: Runtime, tmp_path: object) -> None:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    res = CliRunner().invoke(main, ["agency", "import"], env=env, catch_exceptions=False)
    assert res.exit_code == 0 and f"{len(ROWS)} added" in res.output
    res = CliRunner().invoke(main, ["agency", "import"], env=env, catch_exceptions=False)
    assert "0 added, 0 updated" in res.output
    res = CliRunner().invoke(main, ["agency", "list", "--json", "--kind", "icac"], env=env, catch_exceptions=False)
    assert len(json.loads(res.output)) == 61


def test_cached_directory_routes_like_the_reference_and_sees_imports(runtime: Runtime) -> None:
    rules = load_routing()
    ids = [store_report(runtime, report_doc([person(f"c{st}", estimate={"countryCode": "US", "region": st,
                                                                       "verified": True})]))
           for st in ("CA", "NY", "TX", "OH")]
    foreign = store_report(runtime, report_doc([person("z", ip="130.149.7.201")]))  # TU Berlin
    la_ip = store_report(runtime, report_doc([person("w", ip="128.32.0.1")]))  # Berkeley
    ids += [foreign, la_ip, store_report(runtime, report_doc([person("y", ip="10.9.9.9")]))]
    ctx = run(runtime, STAGES, ids)

    def decisions(s: Session, directory: Directory | None) -> dict[int, list[tuple[str, str, str]]]:
        assert directory is not None
        out = {}
        for rid in ids:
            j = s.get(Jurisdiction, rid)
            assert j is not None
            city = city_for(s, rid, j.us_state, rules.precedence)
            out[rid] = [(d.agency_code, d.rule, d.reason) for d in route(directory, rules, j.country, j.us_state, city)]
        return out

    cache = DirectoryCache()
    with runtime.sessions() as s:
        first = cache.current(s)
        assert first is not None and cache.current(s) is first and cache.builds == 1  # unchanged: not rebuilt
        assert decisions(s, first) == decisions(s, reference_directory(s))
    # An operator's import changes agencies in place (same ids, same count): the cache notices.
    changed = [r for r in ROWS if r.code != "INTL-DE"]
    changed = [AgencyRow(r.code, r.name + " (renamed)", r.kind, r.country, r.us_state, r.area, r.notes)
               if r.code == "ICAC-CA-SV" else r for r in changed]
    with transaction(runtime.sessions) as s:
        import_agencies(s, changed)
    with runtime.sessions() as s:
        now = cache.current(s)
        assert now is not None and now is not first and "INTL-DE" not in now.by_code
        assert decisions(s, now) == decisions(s, reference_directory(s))
    run(runtime, ["route"], ids, ctx)  # the stage's own per-process cache, built before the import
    refs = _referrals(runtime)
    assert refs[foreign] == {"FBI", "HSI"} and refs[la_ip] == {"ICAC-CA-SV"}
    with runtime.sessions() as s:
        reason = s.execute(select(Referral.reason).where(Referral.report_id == la_ip)).scalar_one()
        assert "(renamed)" in reason
    # A change seen inside a transaction that is rolled back is forgotten at the next look.
    with runtime.sessions() as s:
        import_agencies(s, ROWS)
        assert "INTL-DE" in current_directory(ctx, s).by_code
        s.rollback()
        assert "INTL-DE" not in current_directory(ctx, s).by_code
