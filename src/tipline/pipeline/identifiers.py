"""Normalisers for the identifiers a report carries: accounts, e-mails, phones, IPs, devices.

Each normaliser is a pure function from what a platform wrote to one canonical value (or
None when the value is unusable), so the same account written two ways on two reports
becomes one ``Identifier`` row. The per-service and per-device rules are data
(``tipline/data/identifiers.toml``); nothing here guesses: a service we know nothing about
keeps the case it was given, a phone number without a country code stays national.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
RULES_FILE = DATA_DIR / "identifiers.toml"

_ALNUM = re.compile(r"[^a-z0-9]+")


def _squash(text: str) -> str:
    """Lowercase and drop everything but letters and digits ("X/Twitter" -> "xtwitter")."""
    return _ALNUM.sub("", text.lower())


@dataclass(frozen=True)
class ServiceRule:
    name: str
    handles_case_insensitive: bool = False
    ids_case_insensitive: bool = False
    handle_prefixes: tuple[str, ...] = ()
    profile_url_patterns: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True)
class Rules:
    """The identifier and link rules of ``identifiers.toml``."""

    services: dict[str, ServiceRule]
    aliases: dict[str, str]
    dotless_plus_domains: frozenset[str]
    canonical_domain: dict[str, str]
    device_aliases: dict[str, str]
    device_placeholders: frozenset[str]
    link_roles: frozenset[str]
    weights: dict[str, float]
    ip_window_hours: float
    max_links_per_key: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def parse_rules(data: dict[str, Any]) -> Rules:
    """Build ``Rules`` from the parsed TOML, rejecting malformed entries with a clear error."""
    services: dict[str, ServiceRule] = {}
    aliases: dict[str, str] = {}
    for name, spec in data.get("services", {}).items():
        pats = tuple(re.compile(p) for p in spec.get("profile_url_patterns", []))
        for p in pats:
            if "handle" not in p.groupindex:
                raise ValueError(f"service {name}: profile_url_pattern {p.pattern!r} lacks (?P<handle>...)")
        services[name] = ServiceRule(
            name=name,
            handles_case_insensitive=bool(spec.get("handles_case_insensitive", False)),
            ids_case_insensitive=bool(spec.get("ids_case_insensitive", False)),
            handle_prefixes=tuple(spec.get("handle_prefixes", [])),
            profile_url_patterns=pats,
        )
        for alias in [name, *spec.get("aliases", [])]:
            key = _squash(alias)
            if key in aliases and aliases[key] != name:
                raise ValueError(f"service alias {alias!r} given for both {aliases[key]} and {name}")
            aliases[key] = name
    email = data.get("email", {})
    devices = data.get("devices", {})
    links = data.get("links", {})
    weights = {k: float(v) for k, v in links.get("weights", {}).items()}
    for needed in ("account", "email", "phone", "device", "content_exact", "content_near", "ip"):
        weights.setdefault(needed, 1.0 if needed == "account" else 0.5)
    if weights["ip"] >= weights["account"]:
        raise ValueError("links.weights.ip must be below links.weights.account")
    return Rules(
        services=services,
        aliases=aliases,
        dotless_plus_domains=frozenset(d.lower() for d in email.get("dotless_plus_domains", [])),
        canonical_domain={k.lower(): v.lower() for k, v in email.get("canonical_domain", {}).items()},
        device_aliases={_squash(k): v for k, v in devices.get("aliases", {}).items()},
        device_placeholders=frozenset(v.lower() for v in devices.get("placeholder_values", [])),
        link_roles=frozenset(links.get("roles", ["reported"])),
        weights=weights,
        ip_window_hours=float(links.get("ip_window_hours", 24)),
        max_links_per_key=int(links.get("max_links_per_key", 10)),
        raw=data,
    )


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> Rules:
    """The rules from ``path`` or the bundled ``identifiers.toml`` (cached per path)."""
    with open(path or RULES_FILE, "rb") as fh:
        return parse_rules(tomllib.load(fh))


# --- accounts ----------------------------------------------------------------------------


def normalise_service(service: str | None, rules: Rules) -> str | None:
    """The canonical service name: a known alias, else the squashed name, else None."""
    if service is None or not service.strip():
        return None
    key = _squash(service)
    if not key:
        return None
    return rules.aliases.get(key, key)


def normalise_handle(handle: str | None, service: str, rules: Rules) -> str | None:
    """A screen name without prefixes, lowercased only where the service is case-insensitive."""
    if handle is None:
        return None
    h = handle.strip()
    rule = rules.services.get(service)
    if rule is not None:
        for prefix in sorted(rule.handle_prefixes, key=len, reverse=True):
            if h.startswith(prefix):
                h = h[len(prefix):]
                break
        if rule.handles_case_insensitive:
            h = h.lower()
    return h or None


def normalise_account_id(value: str | None, service: str, rules: Rules) -> str | None:
    """A platform user id: trimmed; lowercased only where the service says ids ignore case."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    rule = rules.services.get(service)
    if rule is not None and rule.ids_case_insensitive:
        v = v.lower()
    return v


def handle_from_profile_url(url: str, service: str, rules: Rules) -> str | None:
    """The screen name a profile URL points at, when the service's URL pattern is known."""
    rule = rules.services.get(service)
    if rule is None:
        return None
    u = url.strip().split("?", 1)[0].split("#", 1)[0]
    for pat in rule.profile_url_patterns:
        m = pat.match(u)
        if m:
            return normalise_handle(m.group("handle"), service, rules)
    return None


def normalise_profile_url(url: str) -> str | None:
    """A URL compared without scheme, ``www.``, query, fragment or trailing slash; host lowercased."""
    u = url.strip()
    if not u:
        return None
    u = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", u).split("#", 1)[0].split("?", 1)[0]
    host, _, path = u.partition("/")
    host = host.lower().removeprefix("www.")
    path = path.rstrip("/")
    return f"{host}/{path}" if path else host


# --- e-mail ------------------------------------------------------------------------------


def normalise_email(value: str | None, rules: Rules) -> str | None:
    """Lowercase domain; Gmail-style dot/plus/case folding only for the listed domains."""
    if value is None:
        return None
    v = value.strip().strip("<>").strip()
    if v.lower().startswith("mailto:"):
        v = v[7:]
    local, at, domain = v.rpartition("@")
    if not at or not local or not domain or " " in v:
        return None
    domain = domain.lower().rstrip(".")
    # An undecodable domain keeps its lowercase form: it still compares as given.
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    if "." not in domain:
        return None
    if domain in rules.dotless_plus_domains:
        local = local.split("+", 1)[0].replace(".", "").lower()
        domain = rules.canonical_domain.get(domain, domain)
        if not local:
            return None
    return f"{local}@{domain}"


# --- phone -------------------------------------------------------------------------------

# Countries whose national numbers keep the leading 0 in E.164 (Italy, San Marino, Vatican).
_KEEP_TRUNK_ZERO = {"39", "378", "379"}


@dataclass(frozen=True)
class NormalPhone:
    """``e164`` when the country is known (``+`` and 8–15 digits), else national digits."""

    value: str
    e164: bool


def normalise_phone(value: str | None, country_calling_code: str | None = None) -> NormalPhone | None:
    """E.164 from the number and its ``countryCallingCode`` when possible; never guesses a country.

    No phone library is used (none is pinned): numbers with an explicit ``+``/``00`` prefix or a
    calling code become E.164; others are kept as national digits (scope ``national``), which
    still link identical national numbers but are never presented as international.
    """
    if value is None:
        return None
    raw = value.strip()
    # An extension is not part of the subscriber number.
    raw = re.split(r"(?i)\s*(?:ext\.?|x|#)\s*\d+$", raw)[0]
    digits = re.sub(r"\D", "", raw)
    if not digits:
        return None
    if raw.startswith("+"):
        full = digits
    elif digits.startswith("00") and len(digits) > 10:
        full = digits[2:]
    elif country_calling_code:
        cc = re.sub(r"\D", "", country_calling_code)
        national = digits
        if national.startswith(cc) and len(national) > 10:
            national = national[len(cc):]  # the number already carried its country code
        if cc not in _KEEP_TRUNK_ZERO:
            national = national.lstrip("0")
        full = cc + national
    else:
        return NormalPhone(digits, e164=False) if 4 <= len(digits) <= 17 else None
    if not 8 <= len(full) <= 15 or full.startswith("0"):
        return NormalPhone(digits, e164=False) if 4 <= len(digits) <= 17 else None
    return NormalPhone("+" + full, e164=True)


# --- IP ----------------------------------------------------------------------------------

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_DOCUMENTATION = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
]


@dataclass(frozen=True)
class NormalIp:
    """A canonical address and why it cannot identify one subscriber (empty: it can)."""

    value: str
    flags: tuple[str, ...]

    @property
    def shared(self) -> bool:
        return bool(self.flags)

    @property
    def routable(self) -> bool:
        """Public unicast: something a geolocation database can place."""
        return not set(self.flags) - {"proxy"}


def ip_flags(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    """Why an address is not a single subscriber's: private, cgnat, documentation, ..."""
    flags: list[str] = []
    if any(addr in n for n in _DOCUMENTATION):
        flags.append("documentation")
    elif addr.version == 4 and addr in _CGNAT:
        flags.append("cgnat")
    elif addr.is_loopback:
        flags.append("loopback")
    elif addr.is_link_local:
        flags.append("link_local")
    elif addr.is_multicast:
        flags.append("multicast")
    elif addr.is_unspecified:
        flags.append("unspecified")
    elif addr.is_private:
        flags.append("private")
    elif addr.is_reserved:
        flags.append("reserved")
    return flags


def normalise_ip(value: str | None, possible_proxy: bool | None = None) -> NormalIp | None:
    """Canonical text of an IPv4/IPv6 address (IPv4-mapped IPv6 becomes IPv4) and its flags."""
    if value is None:
        return None
    v = value.strip()
    if v.startswith("[") and "]" in v:
        v = v[1:v.index("]")]
    v = v.split("%", 1)[0]  # zone index
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        # "1.2.3.4:5678" – an address with a port.
        host = v.rsplit(":", 1)[0] if v.count(":") == 1 else None
        if host is None:
            return None
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    flags = ip_flags(addr)
    if possible_proxy:
        flags.append("proxy")
    return NormalIp(addr.compressed, tuple(flags))


# --- devices -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalDevice:
    scope: str
    value: str
    placeholder: bool


def normalise_device(id_type: str | None, value: str | None, rules: Rules) -> NormalDevice | None:
    """Device id scoped by its canonical type; placeholder values (all zeros) are flagged."""
    if value is None or not value.strip():
        return None
    t = _squash(id_type or "") or "unknown"
    scope = rules.device_aliases.get(t, t)
    v = value.strip()
    if scope in ("imei", "meid"):
        v = re.sub(r"[\s-]", "", v).lower()
    elif scope == "mac":
        v = re.sub(r"[^0-9a-fA-F]", "", v).lower()
        v = ":".join(v[i:i + 2] for i in range(0, len(v), 2)) if len(v) == 12 else v
    elif re.fullmatch(r"[0-9a-fA-F-]{32,36}", v):
        v = v.lower()  # UUID-style ids (IDFA, IDFV, advertising id) compare case-insensitively
    placeholder = v.lower() in rules.device_placeholders or set(re.sub(r"[-:]", "", v)) <= {"0"}
    return NormalDevice(scope, v, placeholder)
