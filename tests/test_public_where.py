"""The public form asks where: places and profile links as report fields, fed to location and
jurisdiction; emergency advice for the chosen country; the incident time keeps its zone.

Database tests run on SQLite and PostgreSQL (the ``client``/``runtime`` fixtures).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tipline.intake.places import country_choices, emergency_numbers, parse_emergency, single_zone, time_zones
from tipline.intake.public_form import validate_report_form
from tipline.model.report import Address
from tipline.model.report import Report as ReportModel
from tipline.pipeline.core import StageContext, run_report
from tipline.pipeline.directory import LOCATION_CLASSES, LOCATION_CONFIDENCE, load_routing
from tipline.pipeline.stages.jurisdiction import resolve
from tipline.pipeline.stages.location import Loc, locate
from tipline.runtime import Runtime
from tipline.store.tables import Document, Jurisdiction, Location, Report

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def form(**over: str) -> dict[str, str]:
    data = {"incident": "enticement", "description": "Someone keeps messaging a child.",
            "form_token": "where" + "x" * 20}
    data.update(over)
    return data


def post(client: TestClient, data: dict[str, str]) -> Any:
    return client.post("/report", data=data, files=[("files", ("", b"", "application/octet-stream"))])


def the_report(rt: Runtime) -> tuple[int, dict[str, Any]]:
    with rt.sessions() as s:
        (rep,) = s.execute(select(Report)).scalars().all()
        return rep.id, rep.document


# --- the form's fields become report fields --------------------------------------------------


def test_places_and_profile_links_are_structured_report_fields(client: TestClient, runtime: Runtime) -> None:
    resp = post(client, form(
        usernames="stranger_1\nother.name", platform="Example Chat",
        profile_urls="https://chat.example.com/u/stranger_1",
        person_country="US", person_region="texas", person_town="Austin",
        child_age="13", child_country="GB", child_region="Greater Manchester", child_town="Bolton",
        reporter_country="DE", reporter_town="Köln"))
    assert resp.status_code == 200, resp.text
    _, doc = the_report(runtime)
    first, second = doc["personOrUserReported"]
    assert first == {"espService": "Example Chat", "screenName": "stranger_1",
                     "profileUrl": ["https://chat.example.com/u/stranger_1"],
                     "personOrUserReportedPerson": {"address": [
                         {"city": "Austin", "state": "TX", "country": "US"}]}}
    assert second == {"espService": "Example Chat", "screenName": "other.name"}
    assert doc["victim"] == [{"victimPerson": {"age": 13, "address": [
        {"city": "Bolton", "nonUsaState": "Greater Manchester", "country": "GB"}]}}]
    assert doc["reporter"]["reportingPerson"]["address"] == [{"city": "Köln", "country": "DE"}]
    # The original submission keeps the fields exactly as typed.
    with runtime.sessions() as s:
        web = s.execute(select(Document.body).where(Document.kind == "web")).scalar_one()
    assert json.loads(web)["fields"]["person_region"] == "texas"


def test_a_place_without_user_names_is_a_reported_person_of_its_own() -> None:
    checked = validate_report_form(form(person_country="FR", profile_urls="https://x.example/p"), NOW)
    assert checked.report is not None
    (p,) = checked.report.personOrUserReported
    assert p.screenName is None and p.profileUrl == ["https://x.example/p"]
    assert p.personOrUserReportedPerson is not None
    assert p.personOrUserReportedPerson.address[0].country == "FR"


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"child_country": "ZZ"}, "child_country", "Choose a country from the list"),
    ({"child_country": "A1"}, "child_country", "Choose a country from the list"),
    ({"person_town": "Paris"}, "person_country", "Choose the country as well"),
    ({"reporter_region": "Bavaria"}, "reporter_country", "Choose the country as well"),
    ({"person_country": "US", "person_region": "Narnia"}, "person_region", "Enter a US state"),
    ({"child_country": "CA", "child_town": "x" * 101}, "child_town", "100 characters"),
    ({"profile_urls": "www.example.com/u"}, "profile_urls", "must start with http"),
    ({"incident_date": "2024-03-27", "incident_time": "10:00", "incident_timezone": "Mars/Olympus"},
     "incident_timezone", "Choose a time zone from the list"),
])
def test_bad_places_get_a_message_next_to_the_field(
    client: TestClient, runtime: Runtime, fields: dict[str, str], field: str, message: str,
) -> None:
    resp = post(client, form(**fields))
    assert resp.status_code == 422
    assert f'id="{field}-error"' in resp.text and message in resp.text
    assert f'href="#{field}"' in resp.text  # the error summary links to the field
    with runtime.sessions() as s:
        assert s.execute(select(Report)).first() is None


def test_country_choices_are_the_iso_list() -> None:
    codes = dict(country_choices())
    assert len(codes) == 250  # 249 ISO 3166-1 countries plus Kosovo (XK), which the format lists
    assert codes["GB"] == "United Kingdom" and codes["XK"] == "Kosovo" and codes["BO"] == "Bolivia"
    assert not {"A1", "A2", "O1", "AP", "EU", "FX", "AN", ""} & set(codes)


def test_form_offers_every_country_for_each_place_without_script(client: TestClient) -> None:
    html = client.get("/report").text
    assert "<script" not in html.lower()
    for prefix in ("child", "person", "reporter"):
        assert f'<select id="{prefix}_country" name="{prefix}_country"' in html
        assert f'<label for="{prefix}_region">' in html and f'<label for="{prefix}_town">' in html
    assert html.count('<option value="GB">United Kingdom</option>') == 3
    assert '<label for="profile_urls">Links to their profiles</label>' in html


# --- location and jurisdiction ---------------------------------------------------------------


def _run_location(rt: Runtime, rid: int) -> tuple[list[Location], Jurisdiction]:
    run_report(StageContext(rt), rid, only=["location", "jurisdiction"])
    with rt.sessions() as s:
        locs = list(s.execute(select(Location).where(Location.report_id == rid).order_by(Location.id)).scalars())
        j = s.get(Jurisdiction, rid)
        assert j is not None
        return locs, j


def test_public_places_feed_location_and_jurisdiction(client: TestClient, runtime: Runtime) -> None:
    post(client, form(person_country="US", person_region="TX", person_town="Austin",
                      child_country="US", child_region="Ohio", reporter_country="CA"))
    rid, _ = the_report(runtime)
    locs, j = _run_location(runtime, rid)
    by_source = {loc.source: loc for loc in locs}
    assert set(by_source) == {"public_form_child", "public_form_person", "public_form_reporter"}
    assert (by_source["public_form_child"].country, by_source["public_form_child"].region) == ("US", "OH")
    assert by_source["public_form_child"].confidence == LOCATION_CONFIDENCE["public_form_child"]
    assert by_source["public_form_person"].city == "Austin"
    # The child's place decides, with its stated source and confidence.
    assert (j.country, j.us_state, j.source) == ("US", "OH", "public_form_child")
    assert j.confidence == LOCATION_CONFIDENCE["public_form_child"]
    assert "the child's location given on the public form" in (j.reason or "")
    assert "other sources say CA" in (j.reason or "")


def test_reporters_place_decides_only_when_nothing_better(client: TestClient, runtime: Runtime) -> None:
    post(client, form(reporter_country="NZ", reporter_town="Wellington"))
    rid, _ = the_report(runtime)
    _, j = _run_location(runtime, rid)
    assert (j.country, j.source) == ("NZ", "public_form_reporter")


def test_platform_reports_keep_victim_and_reporter_addresses_out() -> None:
    """For a platform's report, the reporter address is its office: not a location source."""
    report = ReportModel.model_validate({
        "incidentSummary": {"incidentType": "Child Sex Trafficking", "incidentDateTime": "2024-01-01T00:00:00Z"},
        "reporter": {"reportingPerson": {"address": [{"country": "IE"}]}},
        "victim": [{"victimPerson": {"address": [{"country": "FR"}]}}],
        "personOrUserReported": [{"personOrUserReportedPerson": {"address": [{"country": "DE"}]}}],
    })
    assert [(loc.source, loc.country) for loc in locate(report, [], geo=None, source="ispws")] == [  # type: ignore[arg-type]
        ("user_supplied", "DE")]
    public = [(loc.source, loc.country) for loc in locate(report, [], geo=None, source="web")]  # type: ignore[arg-type]
    assert public == [("public_form_child", "FR"), ("public_form_person", "DE"), ("public_form_reporter", "IE")]


class _Row:
    def __init__(self, i: int, loc: Loc) -> None:
        self.id, self.source, self.detail, self.location_class = i, loc.source, loc.detail, loc.location_class
        self.country, self.region, self.city, self.confidence = loc.country, loc.region, loc.city, loc.confidence
        self.ip, self.event, self.event_at, self.verified = loc.ip, loc.event, loc.event_at, loc.verified


def test_ranking_against_ip_and_platform_locations() -> None:
    """A login IP outranks what the public says; the child's place outranks a platform guess."""
    prec = list(load_routing().precedence)
    assert set(prec) <= set(LOCATION_CLASSES)
    ip = Loc("ip", "ip=8.8.8.8 event=Login at=2024-01-01T00:00:00Z proxy=no flags=none path=x", "US", "CA", None,
             None, None, LOCATION_CONFIDENCE["ip_login"], "ip_login", ip="8.8.8.8", event="Login",
             event_at=datetime(2024, 1, 1, tzinfo=UTC), proxy=False)
    child = Loc("public_form_child", "type=unknown zip=none path=victim[0]", "GB", None, None, None, None,
                LOCATION_CONFIDENCE["public_form_child"], "public_form_child")
    guess = Loc("esp_estimate", "verified=no at=none path=y", "FR", None, None, None, None,
                LOCATION_CONFIDENCE["esp_estimate_unverified"], "esp_estimate_unverified", verified=False)
    reporter = Loc("public_form_reporter", "path=z", "IE", None, None, None, None,
                   LOCATION_CONFIDENCE["public_form_reporter"], "public_form_reporter")
    rows = [_Row(i, loc) for i, loc in enumerate([reporter, guess, child, ip])]
    assert resolve(rows, prec).country == "US"
    assert resolve(rows[:3], prec).country == "GB"
    assert resolve(rows[:2], prec).country == "FR"
    assert resolve(rows[:1], prec).source == "public_form_reporter"


# --- emergency numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(("country", "number"), [
    ("DE", "call 112 in Germany"), ("FR", "call 112 in France"), ("GB", "call 999 or 112 in United Kingdom"),
    ("AU", "call 000 or 112 from a mobile phone in Australia"), ("NZ", "call 111 in New Zealand"),
    ("US", "call 911 in United States"), ("CA", "call 911 in Canada"),
])
def test_emergency_number_follows_the_country(country: str, number: str) -> None:
    assert emergency_numbers().advice(country) == number


def test_emergency_fallback_names_no_number() -> None:
    numbers = emergency_numbers()
    assert numbers.advice("TV") == numbers.fallback  # Tuvalu: not listed
    assert "local emergency number" in numbers.fallback
    assert "112" in numbers.advice(None) and "911" in numbers.advice(None)
    with pytest.raises(ValueError, match="listed twice"):
        parse_emergency({"fallback": "x", "general": "y", "group": {"a": {"number": "112", "countries": ["DE"]}},
                         "country": {"DE": {"number": "110"}}})
    with pytest.raises(ValueError, match="not an ISO country code"):
        parse_emergency({"fallback": "x", "general": "y", "country": {"UK": {"number": "999"}}})


def test_receipt_and_form_show_the_chosen_countrys_number(client: TestClient) -> None:
    again = post(client, form(child_country="AU", email="bad"))
    assert again.status_code == 422
    assert "If a child is in immediate danger, call 000 or 112 from a mobile phone in Australia." in again.text
    receipt = post(client, form(reporter_country="NZ", form_token="nz" + "y" * 20))
    assert receipt.status_code == 200
    assert "call 111 in New Zealand" in receipt.text
    assert "911" not in receipt.text
    # The child's country wins over the reporter's.
    both = post(client, form(child_country="GB", reporter_country="US", form_token="gb" + "z" * 20))
    assert "call 999 or 112 in United Kingdom" in both.text


# --- the incident time keeps its zone --------------------------------------------------------


def test_time_with_a_chosen_zone_keeps_its_offset(client: TestClient, runtime: Runtime) -> None:
    post(client, form(incident_date="2024-03-27", incident_time="14:30", incident_timezone="Europe/Berlin"))
    rid, doc = the_report(runtime)
    assert doc["incidentSummary"]["incidentDateTime"] == "2024-03-27T14:30:00+01:00"
    assert "Europe/Berlin" in doc["incidentSummary"]["incidentDateTimeDescription"]
    with runtime.sessions() as s:
        at = s.execute(select(Report.incident_at).where(Report.id == rid)).scalar_one()
    assert at == datetime(2024, 3, 27, 13, 30, tzinfo=UTC)  # stored as the true instant


def test_summer_time_and_the_reporters_single_zone_country() -> None:
    checked = validate_report_form(form(incident_date="2024-05-20", incident_time="09:00", reporter_country="GB"),
                                   NOW)
    assert checked.report is not None
    summary = checked.report.incidentSummary
    assert summary.incidentDateTime.isoformat() == "2024-05-20T09:00:00+01:00"
    assert "Europe/London, the only one of the reporter's country" in (summary.incidentDateTimeDescription or "")
    # A country with several zones gives none: the time stays local, and says so.
    many = validate_report_form(form(incident_date="2024-05-20", incident_time="09:00", reporter_country="US"), NOW)
    assert many.report is not None
    assert many.report.incidentSummary.incidentDateTime.tzinfo is None
    assert "time zone not known" in (many.report.incidentSummary.incidentDateTimeDescription or "")


def test_a_zoned_time_in_the_future_is_refused() -> None:
    # 12:30 in Berlin is 10:30 UTC: before NOW (12:00 UTC). 15:00 in Berlin is 13:00 UTC: after.
    ok = validate_report_form(form(incident_date="2024-06-01", incident_time="12:30",
                                   incident_timezone="Europe/Berlin"), NOW)
    assert ok.report is not None
    late = validate_report_form(form(incident_date="2024-06-01", incident_time="15:00",
                                     incident_timezone="Europe/Berlin"), NOW)
    assert late.errors == {"incident_time": "The time cannot be in the future."}


def test_time_zone_list() -> None:
    zones = {z.zone for z in time_zones()}
    assert {"Europe/London", "America/Chicago", "Pacific/Auckland", "Asia/Kolkata"} <= zones
    assert single_zone("DE") == "Europe/Berlin" and single_zone("US") is None and single_zone("") is None


def test_address_model_holds_what_the_form_gives() -> None:
    # The form's US region is a state code; elsewhere free text. Both are valid CyberTipline.
    assert Address.model_validate({"state": "TX", "country": "US"}).state == "TX"
    assert Address.model_validate({"nonUsaState": "Bavaria", "country": "DE"}).nonUsaState == "Bavaria"
