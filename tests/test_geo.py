"""Location and jurisdiction: offline geolocation on the bundled DB-IP database, precedence, unknowns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from helpers import person, report_doc, run, store_report
from tipline.kinds.locations import CONFIDENCE, ip_class
from tipline.pipeline.directory import load_routing
from tipline.pipeline.geo import ATTRIBUTION, GeoIp, GeoIpUnavailable, us_state_code
from tipline.pipeline.stages.jurisdiction import resolve
from tipline.runtime import Runtime
from tipline.store.tables import Jurisdiction, Location

PRECEDENCE = list(load_routing().precedence)


@pytest.fixture(scope="module")
def geo() -> GeoIp:
    return GeoIp.open("")


# What the bundled DB-IP City Lite (April 2023) says about well-known public addresses.
KNOWN = [
    ("8.8.8.8", "US", "CA", "Mountain View"),  # Google Public DNS
    ("128.32.0.1", "US", "CA", "Berkeley"),  # UC Berkeley
    ("171.64.0.1", "US", "CA", "Stanford"),  # Stanford University
    ("18.0.0.1", "US", "MA", "Cambridge"),  # MIT
    ("1.1.1.1", "AU", "New South Wales", "Sydney"),  # Cloudflare (APNIC research prefix)
    ("9.9.9.9", "CH", "Zurich", "Zurich"),  # Quad9
    ("193.0.6.139", "NL", "North Holland", "Amsterdam"),  # RIPE NCC
    ("130.149.7.201", "DE", "Berlin", "Berlin"),  # TU Berlin
    ("163.1.0.1", "GB", "England", "Oxford"),  # University of Oxford
]


@pytest.mark.parametrize(("ip", "country", "region", "city"), KNOWN)
def test_known_addresses_resolve_as_the_database_says(geo: GeoIp, ip: str, country: str, region: str,
                                                       city: str) -> None:
    res = geo.lookup(ip)
    assert res is not None
    assert (res.country, res.region, res.city) == (country, region, city)


def test_unplaceable_addresses_are_unknown_not_guessed(geo: GeoIp) -> None:
    for ip in ("10.0.0.1", "100.64.1.1", "192.0.2.1", "127.0.0.1", "not-an-ip"):
        assert geo.lookup(ip) is None


def test_bundled_database_is_attributed_and_missing_database_is_a_clear_error(geo: GeoIp, tmp_path: Path) -> None:
    assert geo.bundled and geo.attribution == ATTRIBUTION and "db-ip.com" in ATTRIBUTION
    with pytest.raises(GeoIpUnavailable, match="no such file"):
        GeoIp.open(str(tmp_path / "missing.mmdb"))


def test_us_state_codes() -> None:
    assert us_state_code("California") == "CA"
    assert us_state_code("US-tx") == "TX"
    assert us_state_code("District of Columbia") == "DC"
    assert us_state_code("Bavaria") is None and us_state_code(None) is None


@dataclass
class Row:
    id: int
    source: str
    location_class: str
    country: str | None
    region: str | None
    confidence: float
    city: str | None = None
    ip: str | None = None
    event: str | None = None
    event_at: datetime | None = None
    verified: bool | None = None
    detail: str | None = None


def ip_row(i: int, country: str | None, region: str | None, event: str = "Login", at: str = "2024-01-01T00:00:00Z",
           proxy: bool = False) -> Row:
    cls = ip_class(event, proxy)
    return Row(i, "ip", cls, country, region, CONFIDENCE[cls],
               ip=f"8.8.8.{i}", event=event, event_at=datetime.fromisoformat(at))


def est_row(i: int, country: str, region: str | None, verified: bool) -> Row:
    return Row(i, "esp_estimate", "esp_estimate_verified" if verified else "esp_estimate_unverified", country,
               region, 0.9 if verified else 0.4, verified=verified)


def test_precedence_verified_estimate_first_then_latest_login() -> None:
    rows = [ip_row(1, "IN", None, at="2024-01-02T00:00:00Z"), est_row(2, "US", "TX", verified=True)]
    r = resolve(rows, PRECEDENCE)
    assert (r.country, r.us_state, r.source) == ("US", "TX", "esp_estimate_verified")
    assert "other sources say IN" in r.reason
    # Without it, the most recent login wins over an older login and over other events.
    rows = [ip_row(1, "US", "CA", at="2024-01-01T00:00:00Z"), ip_row(2, "US", "NY", at="2024-03-01T00:00:00Z"),
            ip_row(3, "PH", None, event="Upload", at="2024-04-01T00:00:00Z"), est_row(4, "IN", None, verified=False)]
    r = resolve(rows, PRECEDENCE)
    assert (r.country, r.us_state, r.source) == ("US", "NY", "ip_login")


def test_an_upload_ip_ranks_as_it_is_scored() -> None:
    """Between a login and any other event: an older upload beats a newer other event, a login
    beats a newer upload, and the upload's confidence is ip_upload's."""
    upload = ip_row(1, "PH", None, event="Upload", at="2024-01-01T00:00:00Z")
    other = ip_row(2, "IN", None, event="Registration", at="2024-06-01T00:00:00Z")
    login = ip_row(3, "US", "NY", event="Login", at="2023-01-01T00:00:00Z")
    r = resolve([other, upload], PRECEDENCE)
    assert (r.country, r.source, r.confidence) == ("PH", "ip_upload", CONFIDENCE["ip_upload"])
    assert resolve([other, upload, login], PRECEDENCE).source == "ip_login"
    assert CONFIDENCE["ip_login"] > CONFIDENCE["ip_upload"] > CONFIDENCE["ip_other"]


def test_proxy_addresses_never_decide_and_nothing_is_unknown_as_a_guess() -> None:
    r = resolve([ip_row(1, "NL", None, proxy=True)], PRECEDENCE)
    assert (r.country, r.us_state, r.source) == (None, None, None) and "ignored" in r.reason
    r = resolve([], PRECEDENCE)
    assert (r.country, r.us_state, r.confidence) == (None, None, 0.0)
    # US without a state stays state-unknown unless a lower source agrees on the US and has one.
    r = resolve([est_row(1, "US", None, verified=True), ip_row(2, "US", "GA")], PRECEDENCE)
    assert (r.country, r.us_state) == ("US", "GA")
    r = resolve([est_row(1, "US", None, verified=True), ip_row(2, "MX", "Jalisco")], PRECEDENCE)
    assert (r.country, r.us_state) == ("US", None) and "state unknown" in r.reason


def test_location_and_jurisdiction_stages(runtime: Runtime) -> None:
    both = store_report(runtime, report_doc(
        [person("a", ip="8.8.8.8", estimate={"countryCode": "US", "region": "Texas", "verified": False},
                address={"city": "Boston", "state": "MA"})]),
        files=["f"], file_details=[{"reportId": 1, "fileId": "x",
                                    "ipCaptureEvent": {"ipAddress": "9.9.9.9", "eventName": "Upload"}}])
    private = store_report(runtime, report_doc([person("b", ip="10.1.1.1")]))
    nothing = store_report(runtime, report_doc([person("c")]))
    run(runtime, ["location", "jurisdiction"], [both, private, nothing])
    run(runtime, ["location", "jurisdiction"], [both])  # idempotent
    with runtime.sessions() as s:
        locs = s.execute(select(Location).where(Location.report_id == both).order_by(Location.id)).scalars().all()
        assert [(x.source, x.country, x.region) for x in locs] == [
            ("ip", "US", "CA"), ("esp_estimate", "US", "TX"), ("user_supplied", "US", "MA"), ("ip", "CH", "Zurich")]
        assert locs[0].city == "Mountain View" and locs[0].confidence == 0.7
        # The facts ranking reads are columns of their own, not text to parse.
        assert [(x.location_class, x.ip, x.event, x.event_at, x.proxy, x.verified) for x in locs] == [
            ("ip_login", "8.8.8.8", "Login", datetime(2024, 3, 5, 9, tzinfo=UTC), False, None),
            ("esp_estimate_unverified", None, None, None, None, False),
            ("user_supplied", None, None, None, None, None),
            ("ip_upload", "9.9.9.9", "Upload", None, False, None)]
        j = s.get(Jurisdiction, both)
        assert j is not None and (j.country, j.us_state, j.source) == ("US", "CA", "ip_login")
        jp = s.get(Jurisdiction, private)
        assert jp is not None and jp.country is None and jp.us_state is None
        assert s.execute(select(Location.country).where(Location.report_id == private)).scalar_one() is None
        jn = s.get(Jurisdiction, nothing)
        assert jn is not None and jn.country is None and "no usable location" in (jn.reason or "")
