"""Stage ``location``: where a report's reported user is.

It writes one ``Location`` row per source: each IP capture event of the reported user
(geolocated offline), each platform ``estimatedLocation``, and each address the report gives
for the reported person or the incident; for a report from the public web form also where
the reporter says the child and they themselves are. Nothing is guessed: no default country,
no state from a city name. See docs/routing.md for the confidences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tipline.kinds.locations import CONFIDENCE, ip_class
from tipline.model.report import Address, EstimatedLocation, IpCaptureEvent
from tipline.model.report import Report as ReportModel
from tipline.pipeline.core import Outcome, StageContext, insert_rows, report_documents, stage
from tipline.pipeline.geo import GeoIp, clean_city, us_state_code
from tipline.pipeline.identifiers import normalise_ip
from tipline.store.tables import Location, Report

#: The report source whose victim and reporter addresses are location sources of their own:
#: a member of the public telling where the child, the person responsible and they are.
PUBLIC_SOURCE = "web"
# ISO-3166 pseudo-codes that name no country (anonymous proxy, satellite, Europe, Asia/Pacific).
NOT_A_COUNTRY = frozenset({"", "A1", "A2", "O1", "AP", "EU", "XX", "ZZ"})


def _country(code: str | None) -> str | None:
    c = (code or "").strip().upper()
    return None if c in NOT_A_COUNTRY or len(c) != 2 else c


def _region(country: str | None, region: str | None) -> str | None:
    if not region or not region.strip():
        return None
    if country == "US":
        return us_state_code(region)  # an unrecognised US region stays unknown
    return region.strip()[:100]


def _to_second(dt: datetime | None) -> datetime | None:
    """A report's time in UTC to the second: what ranks locations (finer would reorder ties)."""
    if dt is None:
        return None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=0)


def iso_second(dt: datetime | None) -> str:
    return "none" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Loc:
    """One location source; ``location_class`` is its place in the jurisdiction precedence."""

    source: str
    detail: str
    country: str | None
    region: str | None
    city: str | None
    latitude: float | None
    longitude: float | None
    confidence: float
    location_class: str
    ip: str | None = None
    event: str | None = None
    event_at: datetime | None = None
    proxy: bool | None = None
    verified: bool | None = None


def _ip_loc(geo: GeoIp, ev: IpCaptureEvent, path: str) -> Loc:
    n = normalise_ip(ev.ipAddress, ev.possibleProxy)
    event = ev.eventName or "Unknown"
    proxy = bool(ev.possibleProxy)
    at = _to_second(ev.dateTime)
    ip = n.value if n else ev.ipAddress[:60]
    flags = ",".join(f for f in (n.flags if n else ("invalid",)) if f != "proxy") or "none"
    detail = (f"ip={ip} event={event} at={iso_second(at)} "
              f"proxy={'yes' if proxy else 'no'} flags={flags} path={path}")
    cls = ip_class(event, proxy)
    loc = Loc("ip", detail[:255], None, None, None, None, None, 0.0, cls, ip=ip[:64], event=event,
              event_at=at, proxy=proxy)
    res = geo.lookup(n.value) if n is not None else None
    country = _country(res.country) if res is not None else None
    if res is None or country is None:
        return loc
    loc.country, loc.region, loc.city = country, _region(country, res.region), (res.city or "")[:100] or None
    loc.latitude, loc.longitude, loc.confidence = res.latitude, res.longitude, CONFIDENCE[cls]
    return loc


def _estimate_loc(est: EstimatedLocation, path: str) -> Loc:
    verified = bool(est.verified)
    country = _country(est.countryCode)
    at = _to_second(est.timestamp)
    detail = f"verified={'yes' if verified else 'no'} at={iso_second(at)} path={path}"
    cls = "esp_estimate_verified" if verified else "esp_estimate_unverified"
    city = clean_city(est.city)
    return Loc("esp_estimate", detail[:255], country, _region(country, est.region),
               city[:100] if city else None, None, None, CONFIDENCE[cls] if country else 0.0,
               cls, event_at=at, verified=verified)


def _address_loc(addr: Address, path: str, kind: str = "user_supplied") -> Loc:
    country = _country(addr.country)
    if country is None and addr.state:
        country = "US"  # the schema's `state` holds US states only (others use nonUsaState)
    region = addr.state if country == "US" and addr.state else _region(country, addr.nonUsaState)
    if country == "US" and addr.state is None:
        region = None
    detail = f"type={addr.type or 'unknown'} zip={addr.zipCode or 'none'} path={path}"
    city = (addr.city or "").strip()[:100] or None
    return Loc(kind, detail[:255], country, region, city, None, None,
               CONFIDENCE[kind] if country else 0.0, kind)


def locate(report: ReportModel, files: list[tuple[int, dict[str, Any] | None]], geo: GeoIp,
           source: str | None = None) -> list[Loc]:
    """Every location source of a report's reported user(s) and incident (a pure function).

    For a public web-form report (``source`` "web") the addresses the reporter gave are
    sources of their own: the child's (``public_form_child``), the person responsible's
    (``public_form_person``) and the reporter's (``public_form_reporter``). A platform's
    reporter address is its office, and its victim addresses are not what routing has
    trusted so far, so for other sources those stay out, as before.
    """
    public = source == PUBLIC_SOURCE
    out: list[Loc] = []
    if public:
        for i, v in enumerate(report.victim):
            for j, addr in enumerate(v.victimPerson.address):
                out.append(_address_loc(addr, f"victim[{i}].victimPerson.address[{j}]", "public_form_child"))
    person_kind = "public_form_person" if public else "user_supplied"
    for i, p in enumerate(report.personOrUserReported):
        path = f"personOrUserReported[{i}]"
        for j, ev in enumerate(p.ipCaptureEvent):
            out.append(_ip_loc(geo, ev, f"{path}.ipCaptureEvent[{j}]"))
        if p.estimatedLocation is not None:
            out.append(_estimate_loc(p.estimatedLocation, f"{path}.estimatedLocation"))
        person = p.personOrUserReportedPerson
        if person is not None:
            for j, addr in enumerate(person.address):
                out.append(_address_loc(addr, f"{path}.personOrUserReportedPerson.address[{j}]", person_kind))
    for i, det in enumerate(report.internetDetails):
        if det.peer2peerIncident is not None:
            for j, ev in enumerate(det.peer2peerIncident.ipCaptureEvent):
                out.append(_ip_loc(geo, ev, f"internetDetails[{i}].peer2peerIncident.ipCaptureEvent[{j}]"))
        if det.nonInternetIncident is not None:
            for j, addr in enumerate(det.nonInternetIncident.incidentAddress):
                out.append(_address_loc(addr, f"internetDetails[{i}].nonInternetIncident.incidentAddress[{j}]"))
    for seq, details in files:
        raw = (details or {}).get("ipCaptureEvent")
        if raw:
            out.append(_ip_loc(geo, IpCaptureEvent.model_validate(raw), f"file[{seq}].ipCaptureEvent"))
    if public:
        for j, addr in enumerate(report.reporter.reportingPerson.address):
            out.append(_address_loc(addr, f"reporter.reportingPerson.address[{j}]", "public_form_reporter"))
    return out


def geoip_service(ctx: StageContext) -> GeoIp:
    """The process-wide GeoIP reader (opened once; a clear error when no database exists)."""
    geo: GeoIp = ctx.service("geoip", lambda: GeoIp.open(ctx.rt.settings.geoip_db))
    return geo


def _chunks(ids: list[int], n: int = 500) -> list[list[int]]:
    return [ids[i:i + n] for i in range(0, len(ids), n)]


def locations_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The location stage over a group: two statements per 500 reports, whatever they hold
    (the documents are the group's decoded ones, ``report_documents``).

    Rows are written report by report in the group's order, as one executemany: the row ids
    (which break ties in the jurisdiction stage) keep the order the per-report runs give.
    """
    geo = geoip_service(ctx)
    ids = list(report_ids)
    sources: dict[int, str | None] = {}
    docs = report_documents(session, ids)  # decoded once for the group's stages
    for chunk in _chunks(ids):
        session.execute(delete(Location).where(Location.report_id.in_(chunk)))
        for rid, source in session.execute(select(Report.id, Report.source).where(Report.id.in_(chunk))):
            sources[int(rid)] = source
    rows: list[dict[str, Any]] = []
    for rid in ids:
        doc = docs.get(rid)
        if doc is None or doc.document is None:
            continue
        files = [(f.seq, f.details) for f in doc.files]
        for loc in locate(doc.model(), files, geo, sources.get(rid)):
            rows.append({"report_id": rid, "source": loc.source, "detail": loc.detail, "country": loc.country,
                         "region": loc.region, "city": loc.city, "latitude": loc.latitude,
                         "longitude": loc.longitude, "confidence": loc.confidence,
                         "location_class": loc.location_class, "ip": loc.ip, "event": loc.event,
                         "event_at": loc.event_at, "proxy": loc.proxy, "verified": loc.verified})
    insert_rows(session, Location, rows)
    return dict.fromkeys(ids, Outcome.DONE)


# 2: public-form places; 3: upload IPs rank as ip_upload
@stage("location", version="3", group=locations_group)
def location_stage(ctx: StageContext, session: Session, report_id: int) -> None:
    """Write one Location row per location source: IP capture events, platform estimates, addresses."""
    # The same code as the group form, on a group of one. (The report's document cannot change
    # under us: the runner holds the report's lock, which an addendum takes too.)
    locations_group(ctx, session, [report_id])
