"""The agency directory (kept as data) and the routing rules that choose agencies for a report.

``data/agencies.csv`` is the default directory; ``tipline agency import FILE`` replaces it with
an operator's own. ``data/routing.toml`` holds the jurisdiction precedence and the routing
rules. Both are explained in docs/routing.md.
"""

from __future__ import annotations

import csv
import io
import threading
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from tipline.kinds.agencies import KIND_NAMES
from tipline.kinds.locations import CLASS_NAMES, CONFIDENCE
from tipline.model.report import COUNTRIES
from tipline.pipeline.geo import US_STATES, clean_city
from tipline.pipeline.identifiers import DATA_DIR
from tipline.store.tables import Agency

AGENCIES_FILE = DATA_DIR / "agencies.csv"
ROUTING_FILE = DATA_DIR / "routing.toml"
KINDS = KIND_NAMES
COLUMNS = ("code", "name", "kind", "country", "us_state", "lead", "counties", "cities", "channel", "notes")
#: Every location class's confidence (0..1), from the one registry (tipline.kinds.locations);
#: routing.toml's precedence may name only its classes.
LOCATION_CONFIDENCE: dict[str, float] = CONFIDENCE
LOCATION_CLASSES: tuple[str, ...] = CLASS_NAMES


class DirectoryError(ValueError):
    """The agency file is malformed; the message names the line and the problem."""


@dataclass(frozen=True)
class AgencyRow:
    code: str
    name: str
    kind: str
    country: str | None
    us_state: str | None
    area: dict[str, Any] | None
    notes: str | None


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(";") if v.strip()]


def parse_agencies(text: str) -> list[AgencyRow]:
    """Parse and validate an agency CSV (see docs/routing.md for the columns)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("code", "name", "kind") if c not in (reader.fieldnames or [])]
    if missing:
        raise DirectoryError(f"agency file: missing column(s) {', '.join(missing)}; columns are {', '.join(COLUMNS)}")
    unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
    if unknown:
        raise DirectoryError(f"agency file: unknown column(s) {', '.join(unknown)}")
    rows: list[AgencyRow] = []
    seen: dict[str, int] = {}
    errors: list[str] = []
    for line, rec in enumerate(reader, start=2):
        def get(col: str, rec: dict[str, str | None] = rec) -> str:
            return (rec.get(col) or "").strip()

        code, name, kind = get("code"), get("name"), get("kind").lower()
        country, state = get("country").upper() or None, get("us_state").upper() or None
        where = f"line {line} ({code or 'no code'})"
        if not code or len(code) > 60:
            errors.append(f"{where}: code must be 1-60 characters")
        elif code in seen:
            errors.append(f"{where}: code {code!r} already used on line {seen[code]}")
        else:
            seen[code] = line
        if not name or len(name) > 255:
            errors.append(f"{where}: name must be 1-255 characters")
        if kind not in KINDS:
            errors.append(f"{where}: kind must be one of {', '.join(KINDS)}")
        if country is not None and (country not in COUNTRIES or len(country) != 2):
            errors.append(f"{where}: country {country!r} is not an ISO-3166 alpha-2 code")
        if state is not None and state not in US_STATES:
            errors.append(f"{where}: us_state {state!r} is not a US state or DC")
        if state is not None and country != "US":
            errors.append(f"{where}: us_state given but country is not US")
        if kind == "icac" and (country != "US" or state is None):
            errors.append(f"{where}: an ICAC task force needs country US and a us_state")
        if kind == "international" and country is None:
            errors.append(f"{where}: an international liaison needs a country")
        lead = get("lead").lower()
        if lead not in ("", "yes", "no", "true", "false", "1", "0"):
            errors.append(f"{where}: lead must be yes or no")
        area: dict[str, Any] = {}
        if counties := _split(get("counties")):
            area["counties"] = counties
        if cities := _split(get("cities")):
            area["cities"] = cities
        if lead in ("yes", "true", "1"):
            area["lead"] = True
        if channel := get("channel"):
            area["channel"] = channel
        rows.append(AgencyRow(code, name, kind, country, state, area or None, get("notes") or None))
    if not errors:
        errors.extend(_check_states(rows))
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise DirectoryError("agency file has errors:\n  " + "\n  ".join(shown))
    return rows


def _check_states(rows: Sequence[AgencyRow]) -> list[str]:
    """A state with several task forces needs exactly one lead (the fallback when no area matches)."""
    errors: list[str] = []
    by_state: dict[str, list[AgencyRow]] = {}
    for r in rows:
        if r.kind == "icac" and r.us_state:
            by_state.setdefault(r.us_state, []).append(r)
    for state, tfs in sorted(by_state.items()):
        leads = [t.code for t in tfs if (t.area or {}).get("lead")]
        if len(tfs) > 1 and len(leads) != 1:
            errors.append(f"state {state}: {len(tfs)} task forces need exactly one with lead=yes "
                          f"(got {leads or 'none'})")
    return errors


def read_agency_file(path: str | Path | None = None) -> list[AgencyRow]:
    """Parse the given agency CSV, or the bundled default."""
    p = Path(path) if path else AGENCIES_FILE
    return parse_agencies(p.read_text(encoding="utf-8-sig"))


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    deactivated: list[str] = field(default_factory=list)


def import_agencies(session: Session, rows: Iterable[AgencyRow]) -> ImportResult:
    """Make the directory equal to ``rows`` (idempotent): add, update, and deactivate the rest.

    Agencies are never deleted: referrals point at them. One missing from the new file is
    marked inactive and no longer receives reports.
    """
    result = ImportResult()
    existing = {a.code: a for a in session.execute(select(Agency)).scalars()}
    wanted = {r.code for r in rows}
    for r in rows:
        values = {"name": r.name, "kind": r.kind, "country": r.country, "us_state": r.us_state,
                  "area": r.area, "notes": r.notes, "active": True}
        cur = existing.get(r.code)
        if cur is None:
            session.add(Agency(code=r.code, **values))
            result.added.append(r.code)
        elif any(getattr(cur, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(cur, k, v)
            result.updated.append(r.code)
        else:
            result.unchanged += 1
    for code, cur in sorted(existing.items()):
        if code not in wanted and cur.active:
            cur.active = False
            result.deactivated.append(code)
    session.flush()
    return result


# --- routing rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingRule:
    name: str
    country: str | tuple[str, ...]  # "US" | ("PR", ...) | "unknown" | "any"
    state: str | tuple[str, ...] | None  # "known" | "unknown" | (codes) | None (no condition)
    to: str | tuple[str, ...]  # "state_task_force" | "country_liaison" | agency codes
    reason: str
    also: bool  # keep matching later rules after this one


@dataclass(frozen=True)
class RoutingRules:
    version: str
    precedence: tuple[str, ...]
    rules: tuple[RoutingRule, ...]
    fallback_to: tuple[str, ...]
    fallback_reason: str


def _tuple_or_str(v: Any, what: str) -> str | tuple[str, ...]:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    raise ValueError(f"{what} must be a string or a list of strings")


def parse_routing(data: dict[str, Any]) -> RoutingRules:
    """Validate and build the routing rules."""
    prec = tuple(data.get("jurisdiction", {}).get("precedence", []))
    bad = [p for p in prec if p not in LOCATION_CLASSES]
    if not prec or bad:
        raise ValueError(f"jurisdiction.precedence must list classes from {', '.join(LOCATION_CLASSES)}; bad: {bad}")
    rules: list[RoutingRule] = []
    for i, r in enumerate(data.get("rule", [])):
        name = str(r.get("name", "")).strip()
        if not name or len(name) > 60:
            raise ValueError(f"routing rule {i + 1}: a name of 1-60 characters is required")
        when = r.get("when", {})
        country = _tuple_or_str(when.get("country", "any"), f"rule {name}: when.country")
        state = when.get("state")
        state = None if state is None else _tuple_or_str(state, f"rule {name}: when.state")
        to = _tuple_or_str(r.get("to"), f"rule {name}: to")
        if isinstance(to, str) and to not in ("state_task_force", "country_liaison"):
            to = (to,)
        rules.append(RoutingRule(name, country, state, to, str(r.get("reason", name)), bool(r.get("also", False))))
    fb = data.get("fallback", {})
    return RoutingRules(str(data.get("version", "1")), prec, tuple(rules),
                        tuple(fb.get("to", ["FBI", "HSI"])), str(fb.get("reason", "fallback")))


@lru_cache(maxsize=4)
def load_routing(path: str | None = None) -> RoutingRules:
    """The routing rules from ``path`` or the bundled ``routing.toml``."""
    with open(path or ROUTING_FILE, "rb") as fh:
        return parse_routing(tomllib.load(fh))


def _matches(rule: RoutingRule, country: str | None, state: str | None) -> bool:
    c = rule.country
    if c == "unknown":
        ok = country is None
    elif c == "any":
        ok = country is not None
    elif isinstance(c, str):
        ok = country == c
    else:
        ok = country in c
    if not ok:
        return False
    s = rule.state
    if s is None:
        return True
    if s == "known":
        return state is not None
    if s == "unknown":
        return state is None
    return state in (s if isinstance(s, tuple) else (s,))


@dataclass(frozen=True)
class Decision:
    agency_code: str
    rule: str
    reason: str


def _norm_place(v: str) -> str:
    return " ".join(v.casefold().replace(".", "").split())


class AgencyLike(Protocol):
    """What routing reads of an agency: an ``Agency`` row or an :class:`AgencyInfo`."""

    @property
    def id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def country(self) -> str | None: ...
    @property
    def us_state(self) -> str | None: ...
    @property
    def area(self) -> dict[str, Any] | None: ...
    @property
    def active(self) -> bool: ...


@dataclass(frozen=True)
class AgencyInfo:
    """An agency as routing sees it, detached from any session (safe to keep between transactions)."""

    id: int
    code: str
    name: str
    kind: str
    country: str | None
    us_state: str | None
    area: dict[str, Any] | None
    active: bool


_AGENCY_COLUMNS = (Agency.id, Agency.code, Agency.name, Agency.kind, Agency.country, Agency.us_state, Agency.area,
                   Agency.active)
_FINGERPRINT_COLUMNS = (*_AGENCY_COLUMNS[:6], cast(Agency.area, Text), Agency.active)


class Directory:
    """The active agencies, indexed for routing."""

    def __init__(self, agencies: Sequence[AgencyLike]) -> None:
        self.by_code: dict[str, AgencyLike] = {a.code: a for a in agencies if a.active}
        self.icac: dict[str, list[AgencyLike]] = {}
        self.liaison: dict[str, AgencyLike] = {}
        for a in sorted(self.by_code.values(), key=lambda a: a.code):
            if a.kind == "icac" and a.us_state:
                self.icac.setdefault(a.us_state, []).append(a)
            elif a.kind == "international" and a.country and a.country not in self.liaison:
                self.liaison[a.country] = a

    @classmethod
    def load(cls, session: Session) -> Directory:
        """The directory as stored now (the reference for :class:`DirectoryCache`)."""
        return cls(session.execute(select(Agency).where(Agency.active.is_(True))).scalars().all())


    def state_task_force(self, state: str, city: str | None) -> tuple[AgencyLike, str] | None:
        """The state's task force for a city (by its area's city list), else its lead task force."""
        tfs = self.icac.get(state, [])
        if not tfs:
            return None
        if city:
            want = _norm_place(clean_city(city) or city)
            for tf in tfs:
                cities = {_norm_place(c) for c in (tf.area or {}).get("cities", [])}
                if want in cities:
                    return tf, f"city {city} is in its area"
        if len(tfs) == 1:
            return tfs[0], "the state's task force"
        lead = [t for t in tfs if (t.area or {}).get("lead")]
        chosen = lead[0] if lead else tfs[0]
        where = f"city {city} not in any task force's area list" if city else "no city known"
        return chosen, f"{where}: the state's lead task force"



class DirectoryCache:
    """The directory built once per process and rebuilt only when the stored one changes.

    Every call reads the agencies table's routing columns (one small query, a few hundred rows)
    in the caller's transaction and compares them with what the cached directory was built
    from. ``tipline agency import`` can change names, areas and ``active`` in place, and the
    table has no version or ``updated_at`` column, so nothing cheaper (a count, max(id)) would
    see every change. Because the check is against the caller's own view of the table, the
    cache is right whatever was committed or rolled back in between.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[tuple[Any, ...]] | None = None
        self._directory: Directory | None = None
        self.builds = 0

    def current(self, session: Session) -> Directory | None:
        """The directory equal to ``Directory.load(session)``; None when the table is empty."""
        # The area as stored text: comparing it needs no JSON decoding (most of the check's cost).
        rows = [tuple(r) for r in session.execute(select(*_FINGERPRINT_COLUMNS).order_by(Agency.id))]
        if not rows:
            return None
        with self._lock:
            if self._directory is not None and rows == self._rows:
                return self._directory
        directory = Directory([AgencyInfo(*r) for r in session.execute(select(*_AGENCY_COLUMNS).order_by(Agency.id))])
        with self._lock:
            self._rows, self._directory = rows, directory
            self.builds += 1
        return directory


def route(directory: Directory, rules: RoutingRules, country: str | None, state: str | None,
          city: str | None) -> list[Decision]:
    """The agencies a report is made available to, with the rule and a readable reason."""
    out: list[Decision] = []
    seen: set[str] = set()
    ctx = {"country": country or "unknown", "state": state or "unknown", "city": city or "unknown"}

    def add(code: str, rule: str, reason: str) -> None:
        if code not in seen:
            seen.add(code)
            out.append(Decision(code, rule, reason))

    for rule in rules.rules:
        if not _matches(rule, country, state):
            continue
        targets: list[tuple[AgencyLike, str]] = []
        if rule.to == "state_task_force" and state is not None:
            found = directory.state_task_force(state, city)
            if found is not None:
                targets.append(found)
        elif rule.to == "country_liaison" and country is not None:
            if country in directory.liaison:
                targets.append((directory.liaison[country], f"liaison for {country}"))
        elif isinstance(rule.to, tuple):
            targets.extend((directory.by_code[c], c) for c in rule.to if c in directory.by_code)
        for agency, how in targets:
            text = rule.reason.format(**ctx, agency=agency.name, how=how)
            add(agency.code, rule.name, text)
        if targets and not rule.also:
            break
    if not out:
        for code in rules.fallback_to:
            if code in directory.by_code:
                add(code, "fallback", rules.fallback_reason.format(**ctx, agency=directory.by_code[code].name,
                                                                   how="fallback"))
    return out

