"""Outcome codes: the one registry, read from ``tipline/data/outcomes.toml``.

The outcome service validates against it, the CSV import and the JSON API document it, the
simulator draws from it and the statistics count by it; nothing else lists the codes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

#: The detail JSON keys an outcome may carry, and the column each is stored in. ``persons``
#: counts people acted against (arrested, charged, identified as suspects); ``children``
#: counts children identified, which ICAC reports apart from persons.
DETAIL_KEYS: dict[str, str] = {
    "persons": "persons",
    "children": "children",
    "arrestType": "arrest_type",
    "result": "result",
    "nibrsCode": "nibrs_code",
    "reason": "reason",
    "note": "note",
}


@dataclass(frozen=True, slots=True)
class OutcomeCode:
    code: str
    title: str
    maps_to: str
    #: May be recorded more than once on one referral (ARREST: one per arrest).
    repeats: bool
    #: Ends the referral's handling; at most one terminal code is open at a time.
    terminal: bool
    #: receipt | investigation | result | closed
    stage: str
    #: Detail keys this code takes besides ``note`` (which every code takes).
    details: tuple[str, ...]
    required: tuple[str, ...]
    #: For ``result``: the values this code allows (others come from ``values.result``).
    result_values: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class OutcomeRegistry:
    version: str
    codes: dict[str, OutcomeCode]
    #: detail key -> allowed value -> meaning (arrestType, nibrsCode, result, reason)
    values: dict[str, dict[str, str]]

    def get(self, code: str) -> OutcomeCode | None:
        return self.codes.get(code)

    def allowed(self, code: OutcomeCode, key: str) -> dict[str, str] | None:
        """The values ``key`` may take on ``code``, or None when it is free (counts, note)."""
        values = self.values.get(key)
        if values is None:
            return None
        if key == "result" and code.result_values is not None:
            return {v: values[v] for v in code.result_values}
        return values

    @property
    def terminal(self) -> tuple[str, ...]:
        return tuple(c for c, oc in self.codes.items() if oc.terminal)


@cache
def registry() -> OutcomeRegistry:
    raw = tomllib.loads(resources.files("tipline.data").joinpath("outcomes.toml").read_text("utf-8"))
    values: dict[str, dict[str, str]] = {k: dict(v) for k, v in raw.get("values", {}).items()}
    codes: dict[str, OutcomeCode] = {}
    for name, spec in raw["codes"].items():
        details = tuple(spec.get("details", ()))
        required = tuple(spec.get("required", ()))
        unknown = [k for k in (*details, *required) if k not in DETAIL_KEYS]
        if unknown or not set(required) <= set(details):
            raise ValueError(f"outcomes.toml: code {name}: bad details {unknown or required}")
        rv = spec.get("result_values")
        if rv is not None and not set(rv) <= set(values.get("result", {})):
            raise ValueError(f"outcomes.toml: code {name}: result_values outside values.result")
        codes[name] = OutcomeCode(
            code=name, title=spec["title"], maps_to=spec["maps_to"], repeats=bool(spec["repeats"]),
            terminal=bool(spec.get("terminal", False)), stage=spec["stage"], details=details,
            required=required, result_values=tuple(rv) if rv is not None else None,
        )
    return OutcomeRegistry(version=str(raw["version"]), codes=codes, values=values)


def code_names() -> tuple[str, ...]:
    """Every code, in the registry's order (the order docs/outcomes.md lists them)."""
    return tuple(registry().codes)
