"""Countries, time zones and emergency numbers for the public pages.

- Countries: ISO 3166-1 from ``pycountry`` (the maintained copy of the ISO list), limited to
  the codes the CyberTipline format accepts, plus Kosovo (``XK``), which the format lists.
- Time zones: ``data/timezones.csv``, the country → IANA zone table of the tz database's
  ``zone.tab`` (public domain), so a country with one zone gives its zone.
- Emergency numbers: ``data/emergency.toml``, per country, with a fallback that names no
  number that might be wrong.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from tipline.model.report import COUNTRIES

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TIMEZONES_FILE = DATA_DIR / "timezones.csv"
EMERGENCY_FILE = DATA_DIR / "emergency.toml"

# Codes the format has that ISO 3166-1 does not; only XK names a place a person lives in.
_EXTRA_COUNTRIES = {"XK": "Kosovo"}


@lru_cache(maxsize=1)
def country_choices() -> tuple[tuple[str, str], ...]:
    """(ISO alpha-2 code, English name) of every country a person can choose, by name."""
    import pycountry  # only the public pages need it; keeps CLI start-up light

    names = {c.alpha_2: getattr(c, "common_name", None) or c.name for c in pycountry.countries}
    names.update(_EXTRA_COUNTRIES)
    allowed = set(COUNTRIES)
    return tuple(sorted(((code, name) for code, name in names.items() if code in allowed),
                        key=lambda cn: cn[1].casefold()))


def country_name(code: str | None) -> str | None:
    """The English name of an ISO code, or None when it is not a country people choose."""
    return dict(country_choices()).get((code or "").upper())


@dataclass(frozen=True)
class Zone:
    zone: str  # IANA name, e.g. Europe/London
    country: str
    label: str  # what the person sees, e.g. "United Kingdom – London"


@lru_cache(maxsize=1)
def time_zones() -> tuple[Zone, ...]:
    """Every zone of ``data/timezones.csv``, by country name then zone (the form's list)."""
    out: list[Zone] = []
    with TIMEZONES_FILE.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name = country_name(row["country"])
            if name is None:
                continue
            city = row["zone"].rsplit("/", 1)[-1].replace("_", " ")
            out.append(Zone(row["zone"], row["country"], f"{name} – {city}"))
    return tuple(sorted(out, key=lambda z: (z.label.casefold(), z.zone)))


def zone_info(zone: str) -> ZoneInfo | None:
    """The zone when it is one the form offers, else None (never an arbitrary tz path)."""
    if zone not in {z.zone for z in time_zones()}:
        return None
    return ZoneInfo(zone)


# Instants at which zones are compared: the 1st and 15th of every month, 2020-2027, so that
# daylight-saving rules must agree too.
_SAMPLES = tuple(datetime(y, m, d, 12, tzinfo=UTC) for y in range(2020, 2028) for m in range(1, 13)
                 for d in (1, 15))


@lru_cache(maxsize=512)
def single_zone(country: str | None) -> str | None:
    """The country's time zone when its clocks all agree, else None.

    Germany lists Europe/Berlin and Europe/Busingen, which keep the same time: one clock.
    The United States has several: None (the time zone stays unknown).
    """
    zones = sorted(z.zone for z in time_zones() if z.country == (country or "").upper())
    if not zones:
        return None
    clocks = {tuple(t.astimezone(ZoneInfo(z)).utcoffset() for t in _SAMPLES) for z in zones}
    return zones[0] if len(clocks) == 1 else None


# --- emergency numbers -------------------------------------------------------------------------


@dataclass(frozen=True)
class EmergencyNumbers:
    by_country: dict[str, tuple[str, str | None]]  # code -> (number, note)
    fallback: str
    general: str

    def advice(self, country: str | None) -> str:
        """What to do in an emergency, as the end of "If a child is in immediate danger, ..."."""
        if not country:
            return self.general
        found = self.by_country.get(country.upper())
        name = country_name(country)
        if found is None or name is None:
            return self.fallback
        number, note = found
        return f"call {number}{' ' + note if note else ''} in {name}"


def parse_emergency(data: dict[str, object]) -> EmergencyNumbers:
    """Validate ``emergency.toml``: known country codes, each listed once, a number each."""
    by_country: dict[str, tuple[str, str | None]] = {}
    allowed = set(COUNTRIES) - {""}

    def add(code: object, number: object, note: object, where: str) -> None:
        if not isinstance(code, str) or code not in allowed:
            raise ValueError(f"emergency numbers: {where}: {code!r} is not an ISO country code")
        if code in by_country:
            raise ValueError(f"emergency numbers: {code} is listed twice")
        if not isinstance(number, str) or not number.isdigit():
            raise ValueError(f"emergency numbers: {where}: number must be digits, got {number!r}")
        by_country[code] = (number, note if isinstance(note, str) and note else None)

    groups = data.get("group", {})
    countries = data.get("country", {})
    if not isinstance(groups, dict) or not isinstance(countries, dict):
        raise ValueError("emergency numbers: [group.*] and [country.*] must be tables")
    for gname, g in groups.items():
        for code in g.get("countries", []):
            add(code, g.get("number"), g.get("note"), f"group {gname}")
    for code, c in countries.items():
        add(code, c.get("number"), c.get("note"), f"country {code}")
    fallback, general = data.get("fallback"), data.get("general")
    if not isinstance(fallback, str) or not isinstance(general, str):
        raise ValueError("emergency numbers: fallback and general texts are required")
    return EmergencyNumbers(by_country, fallback, general)


@lru_cache(maxsize=2)
def emergency_numbers(path: str | None = None) -> EmergencyNumbers:
    """The emergency numbers from ``path`` or the bundled ``emergency.toml``."""
    with open(path or EMERGENCY_FILE, "rb") as fh:
        return parse_emergency(tomllib.load(fh))
