"""Outcome questions in plain English, parsed by a small grammar (no language model).

A question names a *measure* (arrests, persons arrested, charges, convictions, children
identified, any feedback, or a plain count), a *population* (reports, referrals,
escalations), a *period* (years, a range of years, a quarter, a month) and optionally a
*slice* (agency kind, agency, platform, US state, country, incident type, priority) and a
*grouping* ("per year", "by state"). Each part is recognised by a few patterns; anything the
patterns do not cover makes the question unanswerable, and the caller is offered the
closest questions that are answerable — never a guess.
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum


class Measure(StrEnum):
    COUNT = "count"
    ARRESTS = "arrests"
    PERSONS_ARRESTED = "persons_arrested"
    CHARGES = "charges"
    CONVICTIONS = "convictions"
    CHILDREN_IDENTIFIED = "children_identified"
    ANY_FEEDBACK = "any_feedback"


class Population(StrEnum):
    REPORTS = "reports"
    REFERRALS = "referrals"
    ESCALATIONS = "escalations"


class SliceKind(StrEnum):
    AGENCY_KIND = "agency_kind"
    AGENCY = "agency"
    PLATFORM = "platform"
    STATE = "state"
    COUNTRY = "country"
    INCIDENT_TYPE = "incident_type"
    PRIORITY = "priority"


#: What a measure is called in an answer's prose.
MEASURE_WORDS: dict[Measure, str] = {
    Measure.COUNT: "number",
    Measure.ARRESTS: "resulted in an arrest",
    Measure.PERSONS_ARRESTED: "persons arrested",
    Measure.CHARGES: "resulted in a charge",
    Measure.CONVICTIONS: "resulted in a conviction",
    Measure.CHILDREN_IDENTIFIED: "resulted in a child being identified",
    Measure.ANY_FEEDBACK: "received any feedback",
}
POPULATION_WORDS: dict[Population, str] = {
    Population.REPORTS: "CyberTipline reports",
    Population.REFERRALS: "referrals to law enforcement",
    Population.ESCALATIONS: "escalations to law enforcement",
}

#: The dimensions a question may group by; the names are those of ``tipline stats outcomes --by``.
GROUPINGS = ("year", "month", "agency", "platform", "incident-type", "priority", "state", "country")


@dataclass(frozen=True, slots=True)
class Period:
    start: date  # inclusive
    end: date  # inclusive
    label: str

    @property
    def years(self) -> list[int]:
        return list(range(self.start.year, self.end.year + 1))

    @property
    def whole_years(self) -> bool:
        return (self.start.month, self.start.day, self.end.month, self.end.day) == (1, 1, 12, 31)


@dataclass(frozen=True, slots=True)
class Slice:
    kind: SliceKind
    value: str  # a code: "icac", "TX", "DE", an incident type's full name, "1", a platform name
    label: str  # as people say it: "ICAC task forces", "Texas"


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    measure: Measure
    population: Population
    period: Period
    slice: Slice | None = None
    by: str | None = None

    def canonical(self) -> str:
        """The question re-phrased from its parts: how the answer titles what it answered."""
        pop = POPULATION_WORDS[self.population]
        where = f" ({self.slice.label})" if self.slice else ""
        per = f", per {self.by}" if self.by else ""
        if self.measure is Measure.COUNT:
            return f"How many {pop}{where} were there in {self.period.label}{per}?"
        if self.measure is Measure.PERSONS_ARRESTED:
            return f"How many persons were arrested after {pop}{where} in {self.period.label}{per}?"
        return f"How many {pop}{where} {MEASURE_WORDS[self.measure]} in {self.period.label}{per}?"


@dataclass(frozen=True, slots=True)
class Unanswerable:
    text: str
    reason: str
    closest: list[str] = field(default_factory=list)


class QuestionError(ValueError):
    def __init__(self, result: Unanswerable) -> None:
        super().__init__(result.reason)
        self.result = result


# --- the grammar ------------------------------------------------------------------------------

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_YEAR = r"((?:19|20)\d\d)"
_RANGE = re.compile(rf"(?:between|from)?\s*{_YEAR}\s*(?:-|to|through|and|until)\s*{_YEAR}\b")
_QUARTER = re.compile(rf"\bq([1-4])\s*(?:of\s+)?{_YEAR}\b|\b{_YEAR}\s*q([1-4])\b|"
                      rf"\b(first|second|third|fourth)\s+quarter\s+of\s+{_YEAR}\b")
_MONTH = re.compile(rf"\b({'|'.join(sorted(_MONTHS, key=len, reverse=True))})\.?\s+(?:of\s+)?{_YEAR}\b|"
                    rf"\b{_YEAR}-(0[1-9]|1[0-2])\b")
_SINGLE = re.compile(rf"\b{_YEAR}\b")
_ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4}

_GROUP = re.compile(r"\b(?:per|by|each|for each|broken down by)\s+(year|month|agency|platform|"
                    r"incident type|priority|state|country)\b")

# Order matters: the more specific measure first ("persons arrested" before "arrests").
_MEASURES: list[tuple[Measure, re.Pattern[str]]] = [
    (Measure.CHILDREN_IDENTIFIED, re.compile(
        r"\bchild(?:ren)?\b[\w\s]{0,20}\bidentif|\bidentif\w*\s+(?:a\s+|the\s+)?child|\bvictims? identif")),
    (Measure.PERSONS_ARRESTED, re.compile(
        r"\b(?:people|persons|individuals|offenders|suspects)\b[\w\s]{0,25}\barrest|\bpersons arrested\b")),
    (Measure.CONVICTIONS, re.compile(r"\bconvict")),
    (Measure.CHARGES, re.compile(r"\bcharge[sd]?\b|\bprosecut")),
    (Measure.ARRESTS, re.compile(r"\barrest")),
    (Measure.ANY_FEEDBACK, re.compile(r"\bfeedback\b|\bany outcome\b|\breported back\b|\bheard back\b")),
]
_POPULATIONS: list[tuple[Population, re.Pattern[str]]] = [
    (Population.ESCALATIONS, re.compile(r"\bescalat|\burgent\b")),
    (Population.REFERRALS, re.compile(r"\breferr")),
    (Population.REPORTS, re.compile(r"\breports?\b|\btips?\b|\bcybertips?\b|\bcybertipline\b")),
]
_HOW_MANY = re.compile(
    r"\bhow many\b|\bnumber of\b|\bcount of\b|\bwhat share\b|\bwhat (?:percentage|proportion|fraction)\b")

_AGENCY_KINDS: list[tuple[str, str, re.Pattern[str]]] = [
    ("icac", "ICAC task forces", re.compile(r"\bicac\b|\binternet crimes against children\b")),
    ("federal", "federal agencies", re.compile(r"\bfederal\b")),
    ("international", "international agencies",
     re.compile(r"\binternational\b|\bforeign (?:law enforcement|agenc|police)")),
    ("local", "local law enforcement", re.compile(r"\blocal (?:law enforcement|police|agenc)")),
]
_INCIDENT_WORDS: list[tuple[str, re.Pattern[str]]] = [
    ("Online Enticement of Children for Sexual Acts", re.compile(r"\benticement\b|\bsextortion\b|\bgrooming\b")),
    ("Child Sex Trafficking", re.compile(r"\btrafficking\b")),
    ("Child Sex Tourism", re.compile(r"\bsex tourism\b")),
    ("Child Sexual Molestation", re.compile(r"\bmolestation\b")),
    ("Unsolicited Obscene Material Sent to a Child", re.compile(r"\bunsolicited\b|\bobscene material\b")),
    ("Misleading Domain Name", re.compile(r"\bmisleading domain\b")),
    ("Misleading Words or Digital Images on the Internet", re.compile(r"\bmisleading (?:words|images)\b")),
    ("Child Pornography (possession, manufacture, and distribution)",
     re.compile(r"\bchild pornography\b|\bcsam\b|\bchild sexual abuse material\b|\bapparent child pornography\b")),
]
_PRIORITY = re.compile(r"\bpriority\s*([123])\b|\bp([123])\b")
_AGENCY = re.compile(r"\bagency\s+([A-Za-z0-9][A-Za-z0-9._-]{1,40})\b")


def _period(t: str) -> Period | None:
    m = _RANGE.search(t)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a > b:
            return None
        label = str(a) if a == b else f"{a}–{b}"
        return Period(date(a, 1, 1), date(b, 12, 31), label)
    m = _QUARTER.search(t)
    if m:
        if m.group(1):
            q, y = int(m.group(1)), int(m.group(2))
        elif m.group(4):
            q, y = int(m.group(4)), int(m.group(3))
        else:
            q, y = _ORDINAL[m.group(5)], int(m.group(6))
        start = date(y, 3 * q - 2, 1)
        end = (date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)) - timedelta(days=1)
        return Period(start, end, f"Q{q} {y}")
    m = _MONTH.search(t)
    if m:
        if m.group(1):
            mon, y = _MONTHS[m.group(1)], int(m.group(2))
        else:
            y, mon = int(m.group(3)), int(m.group(4))
        last = calendar.monthrange(y, mon)[1]
        return Period(date(y, mon, 1), date(y, mon, last), f"{calendar.month_name[mon]} {y}")
    years = sorted({int(y) for y in _SINGLE.findall(t)})
    if len(years) == 1:
        return Period(date(years[0], 1, 1), date(years[0], 12, 31), str(years[0]))
    return None


def _state(original: str, t: str) -> Slice | None:
    from tipline.pipeline.geo import US_STATES as US_STATE_NAMES

    for code, name in sorted(US_STATE_NAMES.items(), key=lambda kv: -len(kv[1])):
        if re.search(rf"\b(?:in|from|of)\s+(?:the state of\s+)?{re.escape(name.lower())}\b", t):
            return Slice(SliceKind.STATE, code, name)
    # Two-letter codes only in capitals as typed ("in TX"): "in" + "IN" would be ambiguous.
    m = re.search(r"\b(?:in|from)\s+([A-Z]{2})\b", original)
    if m and m.group(1) in US_STATE_NAMES:
        return Slice(SliceKind.STATE, m.group(1), US_STATE_NAMES[m.group(1)])
    return None


def _country(t: str) -> Slice | None:
    import pycountry

    # The words after "in"/"from", longest run first: "in the united kingdom in 2023".
    for m in re.finditer(r"\b(?:in|from)\s+(?:the\s+)?", t):
        words = re.findall(r"[a-z][a-z.'-]*", t[m.end():m.end() + 60])[:4]
        for n in range(len(words), 0, -1):
            name = " ".join(words[:n])
            if len(name) < 4:  # codes ("it", "me", "in") are words too: names only
                continue
            try:
                country = pycountry.countries.lookup(name)
            except LookupError:
                continue
            if country.alpha_2 == "US":
                return None  # all of the US is no slice of a US clearinghouse's records
            return Slice(SliceKind.COUNTRY, country.alpha_2, country.name)
    return None


def _platform(t: str, platforms: Iterable[str]) -> Slice | None:
    for name in sorted(platforms, key=len, reverse=True):
        if re.search(rf"\b(?:from|by|on|via|at)\s+{re.escape(name.lower())}\b", t):
            return Slice(SliceKind.PLATFORM, name, name)
    return None


def parse(text: str, *, platforms: Iterable[str] = (), agencies: Iterable[str] = ()) -> Question:
    """The question ``text`` asks, or :class:`QuestionError` with the closest answerable ones.

    ``platforms`` and ``agencies`` are the names and codes that may appear as slices (the
    store's registered platforms and the directory's agency codes).
    """
    original = " ".join(text.split())
    t = original.lower().replace("\u2013", "-").replace("\u2014", "-")
    if not original:
        raise QuestionError(Unanswerable(text, "the question is empty", closest(text)))
    if not _HOW_MANY.search(t):
        raise QuestionError(Unanswerable(
            text, "only \"how many …\" questions about reports, referrals and escalations can be "
                  "answered", closest(text)))
    population = next((p for p, rx in _POPULATIONS if rx.search(t)), None)
    if population is None:
        raise QuestionError(Unanswerable(
            text, "the question does not say which reports it counts (reports, referrals or "
                  "escalations)", closest(text)))
    # "reported back" is feedback, not the population "reports": strip it before measures.
    measure = next((m for m, rx in _MEASURES if rx.search(t)), Measure.COUNT)
    period = _period(t)
    if period is None:
        raise QuestionError(Unanswerable(
            text, "the question names no period (a year such as 2023, a range such as 2023–2024, "
                  "a quarter such as Q1 2024 or a month such as March 2024)", closest(text)))
    group = _GROUP.search(t)
    by = group.group(1).replace(" ", "-") if group else None
    return Question(original, measure, population, period, _slice(original, t, platforms, agencies), by)


def _slice(original: str, t: str, platforms: Iterable[str], agencies: Iterable[str]) -> Slice | None:
    m = _PRIORITY.search(t)
    if m:
        p = m.group(1) or m.group(2)
        return Slice(SliceKind.PRIORITY, p, f"priority {p}")
    m = _AGENCY.search(original)
    codes = {a.upper(): a for a in agencies}
    if m and m.group(1).upper() in codes:
        code = codes[m.group(1).upper()]
        return Slice(SliceKind.AGENCY, code, f"agency {code}")
    for code, label, rx in _AGENCY_KINDS:
        if rx.search(t):
            return Slice(SliceKind.AGENCY_KIND, code, label)
    for name, rx in _INCIDENT_WORDS:
        if rx.search(t):
            return Slice(SliceKind.INCIDENT_TYPE, name, name)
    found = _platform(t, platforms) or _state(original, t) or _country(t)
    return found


# --- what can be asked ----------------------------------------------------------------------

#: Questions the grammar answers, one per shape; the "closest questions" come from these.
EXAMPLES: tuple[str, ...] = (
    "How many CyberTipline escalations to law enforcement resulted in arrests in 2023–2024?",
    "How many CyberTipline escalations to law enforcement resulted in arrests in 2023?",
    "How many CyberTipline escalations resulted in arrests per year in 2023–2024?",
    "How many CyberTipline reports resulted in arrests in Texas in 2023?",
    "How many CyberTipline reports from Instagram resulted in arrests in 2023?",
    "How many CyberTipline escalations resulted in a child being identified in 2023?",
    "How many persons were arrested after CyberTipline referrals in 2024?",
    "How many referrals to ICAC task forces resulted in a conviction in 2023?",
    "How many CyberTipline reports about enticement resulted in charges in 2024?",
    "How many priority 1 reports received any feedback in Q1 2024?",
    "How many CyberTipline reports were there in 2023?",
    "How many CyberTipline escalations were there in 2024?",
    "How many CyberTipline reports resulted in arrests per state in 2023?",
)


def closest(text: str, n: int = 3) -> list[str]:
    """The answerable questions nearest to ``text`` (by wording), best first."""
    key = text.lower()
    scored = sorted(EXAMPLES, key=lambda q: -difflib.SequenceMatcher(None, key, q.lower()).ratio())
    return scored[:n]


def describe(q: Question) -> dict[str, str | None]:
    """The parse as data: what the answer's method section and JSON show."""
    return {
        "measure": q.measure.value,
        "population": q.population.value,
        "from": q.period.start.isoformat(),
        "to": q.period.end.isoformat(),
        "period": q.period.label,
        "slice": f"{q.slice.kind.value}={q.slice.value}" if q.slice else None,
        "by": q.by,
    }


def quoted(values: Sequence[str]) -> str:
    return ", ".join(f"\u201c{v}\u201d" for v in values)
