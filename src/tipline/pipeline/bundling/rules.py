"""The bundling rules (``data/bundling.toml``) and what a plan says: an incident's key, its
members and why each is there."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tipline.pipeline.identifiers import DATA_DIR

RULES_FILE = DATA_DIR / "bundling.toml"
#: Ids per IN (...) list: well inside both backends' limits on bound parameters.
CHUNK = 2000


@dataclass(frozen=True)
class GraphRule:
    name: str
    description: str
    reasons: frozenset[str]
    min_weight: float
    min_reports: int


@dataclass(frozen=True)
class BundlingRules:
    version: str
    rules: tuple[GraphRule, ...]
    batched_name: str
    batched_description: str
    single_name: str
    single_description: str
    batched_count: str


def parse_bundling(data: dict[str, Any]) -> BundlingRules:
    """Validate and build the bundling rules; a clear ValueError for a malformed file."""
    rules: list[GraphRule] = []
    names: set[str] = set()
    for i, r in enumerate(data.get("rule", [])):
        name = str(r.get("name", "")).strip()
        if not name or ":" in name or len(name) > 40:
            raise ValueError(f"rule {i + 1}: a name of 1-40 characters without ':' is required")
        if name in names:
            raise ValueError(f"rule {name!r} defined twice")
        names.add(name)
        reasons = r.get("links")
        if not reasons or not isinstance(reasons, list):
            raise ValueError(f"rule {name!r}: 'links' must list link reasons, e.g. [\"account\"]")
        min_reports = int(r.get("min_reports", 2))
        if min_reports < 2:
            raise ValueError(f"rule {name!r}: min_reports must be at least 2")
        rules.append(GraphRule(name, str(r.get("description", name)), frozenset(map(str, reasons)),
                               float(r.get("min_weight", 0.0)), min_reports))
    batched = data.get("batched", {})
    single = data.get("single", {})
    b_name, s_name = str(batched.get("name", "batched")), str(single.get("name", "single"))
    if len({*names, b_name, s_name}) != len(names) + 2:
        raise ValueError("rule names, batched.name and single.name must all differ")
    count = str(data.get("counts", {}).get("batched", "reported_users"))
    if count not in ("reported_users", "one"):
        raise ValueError("counts.batched must be 'reported_users' or 'one'")
    return BundlingRules(str(data.get("version", "1")), tuple(rules), b_name,
                         str(batched.get("description", b_name)), s_name,
                         str(single.get("description", s_name)), count)


@lru_cache(maxsize=4)
def load_bundling(path: str | None = None) -> BundlingRules:
    """The bundling rules from ``path`` or the bundled ``bundling.toml``."""
    with open(path or RULES_FILE, "rb") as fh:
        return parse_bundling(tomllib.load(fh))


@dataclass(frozen=True)
class MemberReason:
    """Why a report is in its incident: the rule and the link to the member it names, as facts;
    ``text`` is made from them for people (and cut to fit), never read back."""

    rule: str
    via: int | None
    detail: str | None
    text: str

    @classmethod
    def link(cls, rule: str, detail: str, via: int) -> MemberReason:
        return cls(rule, via, detail, f"{rule}: {detail} (report {via})"[:255])

    @classmethod
    def described(cls, rule: str, text: str) -> MemberReason:
        """A member no link explains: batched, single, or (rarely) a rule's member without a link."""
        return cls(rule, None, None, text[:255])

    def values(self) -> dict[str, Any]:
        """The ``IncidentReport`` columns that hold it."""
        return {"reason": self.text, "rule": self.rule, "via_report_id": self.via, "link_detail": self.detail}


def key_of(rule: str, lowest: int) -> str:
    """An incident's stable key: its rule and its lowest-numbered member."""
    return f"{rule}:{lowest}"


@dataclass(frozen=True)
class Assignment:
    """The incident a report belongs to under the rules."""

    rule: str
    key: str
    members: frozenset[int]
    reasons: dict[int, MemberReason] = field(default_factory=dict, compare=False, hash=False)

    @property
    def lowest(self) -> int:
        return min(self.members)


def incidents_in_report(document: dict[str, Any] | None, batched: bool, rules: BundlingRules) -> tuple[int, str]:
    """How many incidents a report stands for, and why (NCMEC's "adjusted for bundling" count)."""
    if not batched:
        return 1, "single report"
    if rules.batched_count == "one":
        return 1, "batched report counted once (counts.batched = one)"
    users = len((document or {}).get("personOrUserReported") or [])
    return max(1, users), f"batched: {users} reported users listed"
