"""The product's own definition of the CyberTipline XML format.

This module is the single declarative description of the wire format: element order,
occurrence bounds, sequence / choice / all groups, attributes and simple types. The XML
reader and writer in ``tipline.cybertip.xml`` walk this definition; nothing else describes
the tree. Each complex type names the ``tipline.model.report`` class its elements land in,
and an import-time check keeps the two in step.

It was written from NCMEC's published XSD, but the product never reads or ships that file;
the tests compare this definition against it.

Also here: the ONE registry of deliberate deviations from a strict libxml2 XSD check
(``NORMALISATIONS``: what we accept and how it is stored; ``STRICTER``: what we reject
although libxml2 accepts it).

Pure Python: no lxml import, so the definition can be read (e.g. for docs) anywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Literal, get_args

from pydantic import BaseModel

from tipline.model import report as m

# --- the deviation registry -------------------------------------------------------------


@dataclass(frozen=True)
class Normalisation:
    """One accepted variant: where it applies, what is accepted and what is stored."""

    key: str
    where: str
    accepted: str
    stored: str
    why: str
    # True when a strict libxml2 XSD check rejects the variant (a deliberate disagreement);
    # False when the document is XSD-valid and only the stored value's form changes.
    xsd_rejects: bool


NORMALISATIONS: dict[str, Normalisation] = {
    n.key: n
    for n in (
        Normalisation(
            key="incident-type-sexual-act",
            where="/report/incidentSummary/incidentType",
            accepted="Online Enticement of Children for Sexual Act",
            stored="Online Enticement of Children for Sexual Acts",
            why="Real clients drop the final 's'; no other incident type is close, so the "
            "meaning is unambiguous.",
            xsd_rejects=True,
        ),
        Normalisation(
            key="flea-country-on-law-enforcement",
            where="/report/lawEnforcement/@fleaCountry",
            accepted="fleaCountry written on lawEnforcement instead of on its child "
            "servedLegalProcessInternational",
            stored="servedLegalProcessInternational/@fleaCountry",
            why="The attribute only has meaning on servedLegalProcessInternational. Accepted "
            "only when that element is present and carries no different fleaCountry; "
            "otherwise it is a 4100.",
            xsd_rejects=True,
        ),
        Normalisation(
            key="flag-value-form",
            where="annotation flags (reportAnnotations/*, fileAnnotations/*)",
            accepted="1, or true/1 with surrounding whitespace",
            stored="true",
            why="XSD compares a fixed value by value (Xerces, which NCMEC runs, accepts these); "
            "libxml2 compares the raw text and rejects them.",
            xsd_rejects=True,
        ),
        Normalisation(
            key="datetime-whitespace",
            where="every xs:dateTime and xs:date element or attribute",
            accepted="the value with leading/trailing whitespace",
            stored="the value without it",
            why="xs:dateTime and xs:date collapse whitespace per XSD (Xerces accepts it); "
            "libxml2 rejects it.",
            xsd_rejects=True,
        ),
        Normalisation(
            key="fraction-truncated",
            where="every xs:dateTime",
            accepted="more than 6 fractional-second digits (RFC 3339 nanoseconds, Go clients)",
            stored="the value truncated to microseconds",
            why="Python datetimes hold microseconds; the lost digits are recorded.",
            xsd_rejects=False,
        ),
        Normalisation(
            key="date-timezone-dropped",
            where="every xs:date (dateOfBirth)",
            accepted="a date with a timezone, e.g. 2001-05-04Z or 2001-05-04-05:00",
            stored="the calendar date without the timezone",
            why="A birth date's timezone carries no information and Python dates cannot hold "
            "one.",
            xsd_rejects=False,
        ),
    )
}


@dataclass(frozen=True)
class Stricter:
    """A form libxml2's XSD check accepts but tipline rejects (4100), and why."""

    key: str
    what: str
    why: str


STRICTER: dict[str, Stricter] = {
    s.key: s
    for s in (
        Stricter(
            "year-out-of-range",
            "xs:dateTime / xs:date years before 0001 or after 9999 (e.g. -0001, 10000)",
            "Not representable as a Python datetime; no real incident has such a date.",
        ),
        Stricter(
            "double-empty-exponent",
            "an xs:double with an exponent marker but no exponent digits, e.g. 1e",
            "Not a valid xs:double per the XSD spec; libxml2 is lax here.",
        ),
        Stricter(
            "xsi-type-nil",
            "xsi:type and xsi:nil attributes",
            "Type substitution has no use in this format and no client sends it; "
            "xsi:schemaLocation and xsi:noNamespaceSchemaLocation remain allowed anywhere.",
        ),
    )
}


# --- simple types -----------------------------------------------------------------------

Base = Literal["string", "token", "boolean", "dateTime", "date", "long", "int", "double"]


class LexicalError(Exception):
    """A lexical/value problem in one simple value (message without the path)."""


@dataclass(frozen=True, eq=False)
class SimpleType:
    """An XSD simple type: base datatype plus optional enumeration / pattern / fixed flag."""

    name: str
    base: Base
    enum: frozenset[str] = frozenset()
    enum_label: str = ""  # e.g. "the 8 incident types"; empty: list the values
    enum_order: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    fixed_true: bool = False  # xs:boolean with fixed="true": the annotation flags
    aliases: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # raw -> (value, key)

    def describe_values(self) -> str:
        if self.enum_label:
            return self.enum_label
        return ", ".join(f"'{v}'" for v in self.enum_order)


def _enum(name: str, literal: object, label: str = "", **kw: object) -> SimpleType:
    values: tuple[str, ...] = get_args(literal)
    return SimpleType(name, "string", frozenset(values), label, values, **kw)  # type: ignore[arg-type]


STRING = SimpleType("xs:string", "string")
TOKEN = SimpleType("xs:token", "token")
BOOLEAN = SimpleType("xs:boolean", "boolean")
FLAG = SimpleType("flag (xs:boolean fixed true)", "boolean", fixed_true=True)
DATETIME = SimpleType("xs:dateTime", "dateTime")
DATE = SimpleType("xs:date", "date")
LONG = SimpleType("xs:long", "long")
INT = SimpleType("xs:int", "int")
DOUBLE = SimpleType("xs:double", "double")
INCIDENT_TYPE = _enum(
    "incidentType",
    m.IncidentType,
    "the 8 incident types",
    aliases={
        "Online Enticement of Children for Sexual Act": (
            "Online Enticement of Children for Sexual Acts",
            "incident-type-sexual-act",
        )
    },
)
BATCH_REASON = _enum("batchedReportReason", m.BatchedReportReason)
EVENT_NAME = _enum("eventName", m.EventName)
FILE_CLASS = _enum("industryClassification", m.IndustryClassification)
FILE_RELEVANCE = _enum("fileRelevance", m.FileRelevance)
EMAIL_TYPE = _enum("emailType", m.EmailType)
PHONE_TYPE = _enum("phoneType", m.PhoneType)
ADDRESS_TYPE = _enum("addressType", m.AddressType)
ACCOUNT_TYPE = _enum("associatedAccountType", m.AssociatedAccountType)
METADATA_TYPE = _enum("metadataType", m.MetadataType)
COUNTRY = _enum("country", m.Country, "the format's 258 country codes (ISO 3166 alpha-2 or '')")
STATE = _enum("state", m.UsState, "the US state codes (50 states, DC, GU, PR, VI, or '')")
CALLING_CODE = SimpleType("countryCallingCode", "string", pattern=re.compile(r"\+[0-9]{1,3}"))
EXTENSION = SimpleType("phoneExtension", "string", pattern=re.compile(r"[0-9]+"))

# --- lexical parsing of simple values ---------------------------------------------------

_XML_WS = " \t\n\r"
_WS_RUN = re.compile(r"[ \t\n\r]+")
_DATETIME = re.compile(
    r"(-?[0-9]{4,})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)
_DATE = re.compile(r"(-?[0-9]{4,})-([0-9]{2})-([0-9]{2})(Z|[+-][0-9]{2}:[0-9]{2})?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DOUBLE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT_RANGE = {"long": (-(2**63), 2**63 - 1), "int": (-(2**31), 2**31 - 1)}


def collapse(raw: str) -> str:
    """XSD whiteSpace="collapse": runs of XML whitespace become one space, ends trimmed."""
    return _WS_RUN.sub(" ", raw).strip(" ")


def _tz(text: str | None) -> timezone | None:
    if text is None:
        return None
    if text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if minutes > 59 or hours * 60 + minutes > 14 * 60:
        raise LexicalError("the timezone offset must be between -14:00 and +14:00")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if text[0] == "-" else offset)


def _ymd(y: str, mo: str, d: str) -> date:
    year = int(y)
    if year == 0 and not y.startswith("-"):
        raise LexicalError("year 0000 does not exist")
    if len(y.lstrip("-")) > 4 and y.lstrip("-")[0] == "0":
        raise LexicalError("a year of more than 4 digits cannot start with 0")
    if not 1 <= year <= 9999:
        raise LexicalError("years outside 0001-9999 are not supported")
    try:
        return date(year, int(mo), int(d))
    except ValueError as exc:
        raise LexicalError(f"not a real calendar date ({exc})") from None


def _strip_for_dates(raw: str, notes: list[tuple[str, str]]) -> str:
    text = raw.strip(_XML_WS)
    if text != raw:
        notes.append(("datetime-whitespace", "surrounding whitespace removed"))
    return text


def parse_datetime(raw: str, notes: list[tuple[str, str]]) -> datetime:
    text = _strip_for_dates(raw, notes)
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise LexicalError(
            f"'{raw}' is not an xs:dateTime (expected e.g. 2024-01-31T13:45:00Z, "
            "2024-01-31T13:45:00.123-06:00)"
        )
    y, mo, d, hh, mi, ss, frac, tz = match.groups()
    day = _ymd(y, mo, d)
    hour, minute, second = int(hh), int(mi), int(ss)
    frac = frac or ""
    if hour == 24 and minute == 0 and second == 0 and not frac.strip("0"):
        extra_day, hour = timedelta(days=1), 0  # 24:00:00 is midnight at the end of the day
    elif hour > 23 or minute > 59 or second > 59:
        raise LexicalError(f"'{raw}' has an impossible time of day")
    else:
        extra_day = timedelta(0)
    if len(frac) > 6 and frac[6:].strip("0"):
        notes.append(("fraction-truncated", f"'{text}' truncated to microseconds"))
    micro = int((frac + "000000")[:6])
    value = datetime(day.year, day.month, day.day, hour, minute, second, micro, _tz(tz))
    if extra_day:
        try:
            value += extra_day
        except OverflowError:
            raise LexicalError("years outside 0001-9999 are not supported") from None
    return value


def parse_date(raw: str, notes: list[tuple[str, str]]) -> date:
    text = _strip_for_dates(raw, notes)
    match = _DATE.fullmatch(text)
    if match is None:
        raise LexicalError(f"'{raw}' is not an xs:date (expected e.g. 2009-05-31)")
    y, mo, d, tz = match.groups()
    value = _ymd(y, mo, d)
    if tz is not None:
        _tz(tz)  # still validate the offset
        notes.append(("date-timezone-dropped", f"timezone '{tz}' dropped from '{text}'"))
    return value


def parse_simple(st: SimpleType, raw: str, notes: list[tuple[str, str]]) -> object:
    """Check one simple value against its type and return the typed value.

    ``notes`` receives ``(normalisation key, message)`` for every accepted variant.
    Raises ``LexicalError`` with a message naming the problem.
    """
    base = st.base
    if base == "string":
        if st.enum:
            if raw in st.enum:
                return raw
            alias = st.aliases.get(raw)
            if alias is not None:
                notes.append((alias[1], f"'{raw}' stored as '{alias[0]}'"))
                return alias[0]
            hint = ""
            stripped = raw.strip(_XML_WS)
            if stripped in st.enum:
                hint = " (remove the surrounding whitespace)"
            else:
                folded = {v.casefold(): v for v in st.enum}
                guess = folded.get(stripped.casefold())
                if guess is not None:
                    hint = f" (values are case-sensitive: did you mean '{guess}'?)"
            raise LexicalError(f"'{raw}' is not one of {st.describe_values()}{hint}")
        if st.pattern is not None and st.pattern.fullmatch(raw) is None:
            raise LexicalError(f"'{raw}' does not match the pattern {st.pattern.pattern}")
        return raw
    if base == "token":
        return collapse(raw)
    if base == "boolean":
        if st.fixed_true:
            if raw == "":
                return True  # an empty flag element takes the fixed value
            text = collapse(raw)
            if text in ("true", "1"):
                if raw != "true":
                    notes.append(("flag-value-form", f"'{raw}' read as true"))
                return True
            if text in ("false", "0"):
                raise LexicalError(
                    f"a flag can only be true ('{raw}' given); leave the element out instead"
                )
            raise LexicalError(f"'{raw}' is not a flag value (write the element empty, or true)")
        text = collapse(raw)
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        hint = " (booleans are lowercase)" if text.lower() in ("true", "false") else ""
        raise LexicalError(f"'{raw}' is not an xs:boolean (true, false, 1 or 0){hint}")
    if base == "dateTime":
        return parse_datetime(raw, notes)
    if base == "date":
        return parse_date(raw, notes)
    if base in ("long", "int"):
        text = collapse(raw)
        if _INTEGER.fullmatch(text) is None:
            raise LexicalError(f"'{raw}' is not an integer ({st.name})")
        number = int(text)
        low, high = _INT_RANGE[base]
        if not low <= number <= high:
            raise LexicalError(f"{text} is outside the range of {st.name} ({low} to {high})")
        return number
    # double
    text = collapse(raw)
    if text == "INF":
        return math.inf
    if text == "-INF":
        return -math.inf
    if text == "NaN":
        return math.nan
    if _DOUBLE.fullmatch(text) is None:
        raise LexicalError(f"'{raw}' is not an xs:double (e.g. 40.7128, -74.006, 1.5E3)")
    return float(text)


def format_simple(st: SimpleType, value: object) -> str:
    """The canonical XML text of a typed value (inverse of ``parse_simple``)."""
    base = st.base
    if base == "boolean":
        return "true" if value else "false"
    if base == "dateTime":
        assert isinstance(value, datetime)
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if base == "date":
        assert isinstance(value, date)
        return value.isoformat()
    if base == "double":
        assert isinstance(value, float | int)
        number = float(value)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "INF" if number > 0 else "-INF"
        return repr(number)
    if base in ("long", "int"):
        return str(value)
    assert isinstance(value, str)
    return value


# --- structure --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Attribute:
    name: str
    type: SimpleType
    required: bool = False


@dataclass(frozen=True, eq=False)
class Element:
    """An element declaration (a particle): name, type and occurrence bounds."""

    name: str
    type: SimpleType | ComplexType
    min: int = 1
    max: int | None = 1  # None: unbounded

    @property
    def repeated(self) -> bool:
        return self.max != 1


@dataclass(frozen=True, eq=False)
class Choice:
    """An xs:choice of elements, occurring exactly once."""

    options: tuple[Element, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    @property
    def emptiable(self) -> bool:
        return any(o.min == 0 for o in self.options)


Particle = Element | Choice
Content = Literal["sequence", "all", "empty", "simple"]


@dataclass(eq=False)
class ComplexType:
    """A complex type: its content model, attributes, and the domain model it fills."""

    name: str
    model: type[BaseModel]
    content: Content
    particles: tuple[Particle, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    simple: SimpleType | None = None  # the value type of simple content
    # derived lookups, precomputed once so the reader does O(1) work per child
    position: dict[str, int] = field(init=False, default_factory=dict)
    element: dict[str, Element] = field(init=False, default_factory=dict)
    attribute: dict[str, Attribute] = field(init=False, default_factory=dict)
    required_attributes: tuple[Attribute, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        for index, particle in enumerate(self.particles):
            for el in particle.options if isinstance(particle, Choice) else (particle,):
                if el.name in self.element:
                    raise AssertionError(f"{self.name}: {el.name} declared twice")
                self.position[el.name] = index
                self.element[el.name] = el
        self.attribute = {a.name: a for a in self.attributes}
        self.required_attributes = tuple(a for a in self.attributes if a.required)

    def field_names(self) -> list[str]:
        """Model field names this type fills, in order: value, elements, attributes."""
        names = ["value"] if self.content == "simple" else []
        names += list(self.element)
        names += [a.name for a in self.attributes]
        return names


def req(name: str, t: SimpleType | ComplexType) -> Element:
    return Element(name, t, 1, 1)


def opt(name: str, t: SimpleType | ComplexType) -> Element:
    return Element(name, t, 0, 1)


def many(name: str, t: SimpleType | ComplexType, minimum: int = 0) -> Element:
    return Element(name, t, minimum, None)


def seq(
    name: str, model: type[BaseModel], *particles: Particle, attrs: tuple[Attribute, ...] = ()
) -> ComplexType:
    return ComplexType(name, model, "sequence", particles, attrs)


def simple_content(
    name: str, model: type[BaseModel], value: SimpleType, *attrs: Attribute
) -> ComplexType:
    return ComplexType(name, model, "simple", (), attrs, value)


# Shared types. Simple-content types without attributes (text, content, screenName,
# reportedToLawEnforcement) are plain simple values: nothing distinguishes them on the wire.
EMAIL = simple_content(
    "email", m.Email, STRING,
    Attribute("type", EMAIL_TYPE), Attribute("verified", BOOLEAN),
    Attribute("verificationDate", DATETIME),
)  # fmt: skip
PHONE = simple_content(
    "phone", m.Phone, STRING,
    Attribute("type", PHONE_TYPE), Attribute("verified", BOOLEAN),
    Attribute("verificationDate", DATETIME), Attribute("countryCallingCode", CALLING_CODE),
    Attribute("extension", EXTENSION),
)  # fmt: skip
ADDRESS = seq(
    "address", m.Address,
    opt("address", STRING), opt("city", STRING), opt("zipCode", STRING), opt("state", STATE),
    opt("nonUsaState", STRING), opt("country", COUNTRY),
    attrs=(Attribute("type", ADDRESS_TYPE),),
)  # fmt: skip
_CONTACT = (
    opt("firstName", STRING), opt("lastName", STRING), many("phone", PHONE),
    many("email", EMAIL), many("address", ADDRESS),
)  # fmt: skip
CONTACT_PERSON = seq("contactPerson", m.ContactPerson, *_CONTACT)
PERSON = seq("person", m.Person, *_CONTACT, opt("age", INT), opt("dateOfBirth", DATE))
IP_CAPTURE_EVENT = seq(
    "ipCaptureEvent", m.IpCaptureEvent,
    req("ipAddress", STRING), opt("eventName", EVENT_NAME), opt("dateTime", DATETIME),
    opt("possibleProxy", BOOLEAN), opt("port", INT),
)  # fmt: skip
DEVICE_ID = seq(
    "deviceId", m.DeviceId,
    req("idType", STRING), req("idValue", STRING), opt("eventName", EVENT_NAME),
    opt("dateTime", DATETIME),
)  # fmt: skip
ESTIMATED_LOCATION = seq(
    "estimatedLocation", m.EstimatedLocation,
    opt("city", STRING), opt("region", STRING), opt("countryCode", COUNTRY),
    attrs=(Attribute("verified", BOOLEAN), Attribute("timestamp", DATETIME)),
)  # fmt: skip
_DISABLED_ATTRS = (
    Attribute("disabledDate", DATETIME), Attribute("userNotified", BOOLEAN),
    Attribute("userNotifiedDate", DATETIME),
)  # fmt: skip
ACCOUNT_TEMPORARILY_DISABLED = simple_content(
    "accountTemporarilyDisabled", m.AccountTemporarilyDisabled, BOOLEAN,
    *_DISABLED_ATTRS, Attribute("reenabledDate", DATETIME),
)  # fmt: skip
ACCOUNT_PERMANENTLY_DISABLED = simple_content(
    "accountPermanentlyDisabled", m.AccountPermanentlyDisabled, BOOLEAN, *_DISABLED_ATTRS
)
ASSOCIATED_ACCOUNT = seq(
    "associatedAccount", m.AssociatedAccount,
    opt("platform", simple_content(
        "associatedAccount/platform", m.AssociatedAccountPlatform, STRING,
        Attribute("thirdPartyUser", BOOLEAN),
    )),
    opt("firstName", STRING), opt("middleName", STRING), opt("lastName", STRING),
    opt("approximateAge", INT), opt("dateOfBirth", DATE), many("phone", PHONE),
    many("email", EMAIL), opt("allEmailsReported", BOOLEAN), many("address", ADDRESS),
    opt("espService", STRING), opt("espIdentifier", STRING), many("profileUrl", STRING),
    opt("screenName", STRING), many("displayName", STRING), opt("profileBio", STRING),
    opt("groupIdentifier", STRING), opt("compromisedAccount", BOOLEAN),
    opt("accountTemporarilyDisabled", ACCOUNT_TEMPORARILY_DISABLED),
    opt("accountPermanentlyDisabled", ACCOUNT_PERMANENTLY_DISABLED),
    many("ipCaptureEvent", IP_CAPTURE_EVENT), many("deviceId", DEVICE_ID),
    many("priorCTReport", LONG), opt("additionalInfo", STRING),
    attrs=(Attribute("type", ACCOUNT_TYPE, required=True),),
)  # fmt: skip

# report
REPORT_ANNOTATIONS = ComplexType(
    "reportAnnotations", m.ReportAnnotations, "all",
    tuple(opt(n, FLAG) for n in m.ReportAnnotations.model_fields),
)  # fmt: skip
INCIDENT_SUMMARY = seq(
    "incidentSummary", m.IncidentSummary,
    req("incidentType", INCIDENT_TYPE), opt("platform", STRING),
    opt("escalateToHighPriority", STRING), opt("reportAnnotations", REPORT_ANNOTATIONS),
    req("incidentDateTime", DATETIME), opt("incidentDateTimeDescription", STRING),
)  # fmt: skip
INTERNET_DETAILS = seq(
    "internetDetails", m.InternetDetails,
    Choice((
        req("webPageIncident", seq(
            "webPageIncident", m.WebPageIncident,
            many("url", STRING), opt("additionalInfo", STRING),
            attrs=(Attribute("thirdPartyHostedContent", BOOLEAN),),
        )),
        req("emailIncident", seq(
            "emailIncident", m.EmailIncident,
            many("emailAddress", EMAIL), opt("content", STRING), opt("additionalInfo", STRING),
        )),
        req("newsgroupIncident", seq(
            "newsgroupIncident", m.NewsgroupIncident,
            opt("name", STRING), many("emailAddress", EMAIL), opt("content", STRING),
            opt("additionalInfo", STRING),
        )),
        req("chatImIncident", seq(
            "chatImIncident", m.ChatImIncident,
            opt("chatClient", STRING), opt("chatRoomName", STRING), opt("content", STRING),
            opt("additionalInfo", STRING),
        )),
        req("onlineGamingIncident", seq(
            "onlineGamingIncident", m.OnlineGamingIncident,
            opt("gameName", STRING), opt("console", STRING), opt("content", STRING),
            opt("additionalInfo", STRING),
        )),
        req("cellPhoneIncident", seq(
            "cellPhoneIncident", m.CellPhoneIncident,
            opt("phoneNumber", PHONE), opt("latitude", DOUBLE), opt("longitude", DOUBLE),
            opt("additionalInfo", STRING),
        )),
        req("nonInternetIncident", seq(
            "nonInternetIncident", m.NonInternetIncident,
            opt("locationName", STRING), many("incidentAddress", ADDRESS),
            opt("additionalInfo", STRING),
        )),
        req("peer2peerIncident", seq(
            "peer2peerIncident", m.Peer2peerIncident,
            opt("client", STRING), many("ipCaptureEvent", IP_CAPTURE_EVENT),
            opt("fileNames", STRING), opt("additionalInfo", STRING),
        )),
    )),
)  # fmt: skip
LAW_ENFORCEMENT = seq(
    "lawEnforcement", m.LawEnforcement,
    req("agencyName", STRING), opt("caseNumber", STRING),
    opt("officerContact", CONTACT_PERSON), opt("reportedToLe", BOOLEAN),
    opt("servedLegalProcessDomestic", BOOLEAN),
    opt("servedLegalProcessInternational", simple_content(
        "servedLegalProcessInternational", m.ServedLegalProcessInternational, BOOLEAN,
        Attribute("fleaCountry", COUNTRY),
    )),
)  # fmt: skip
REPORTER = seq(
    "reporter", m.Reporter,
    req("reportingPerson", PERSON), opt("contactPerson", CONTACT_PERSON),
    opt("companyTemplate", STRING), opt("termsOfService", STRING), opt("legalURL", STRING),
)  # fmt: skip
_ACCOUNT_STATE = (
    opt("accountTemporarilyDisabled", ACCOUNT_TEMPORARILY_DISABLED),
    opt("accountPermanentlyDisabled", ACCOUNT_PERMANENTLY_DISABLED),
    opt("estimatedLocation", ESTIMATED_LOCATION), opt("allEmailsReported", BOOLEAN),
)  # fmt: skip
_ONLINE_IDENTITY = (
    opt("espIdentifier", STRING), opt("espService", STRING),
    opt("compromisedAccount", BOOLEAN), opt("screenName", STRING),
    many("displayName", STRING), many("profileUrl", STRING), opt("profileBio", STRING),
    many("ipCaptureEvent", IP_CAPTURE_EVENT), many("deviceId", DEVICE_ID),
)  # fmt: skip
PERSON_OR_USER_REPORTED = seq(
    "personOrUserReported", m.PersonOrUserReported,
    opt("personOrUserReportedPerson", PERSON), opt("vehicleDescription", STRING),
    *_ONLINE_IDENTITY, opt("thirdPartyUserReported", BOOLEAN),
    many("priorCTReports", LONG), opt("groupIdentifier", STRING), *_ACCOUNT_STATE,
    many("associatedAccount", ASSOCIATED_ACCOUNT), opt("additionalInfo", STRING),
)  # fmt: skip
INTENDED_RECIPIENT = seq(
    "intendedRecipient", m.IntendedRecipient,
    opt("intendedRecipientPerson", PERSON), *_ONLINE_IDENTITY,
    many("priorCTReports", LONG), opt("groupIdentifier", STRING), *_ACCOUNT_STATE,
    many("additionalInfo", STRING),
)  # fmt: skip
VICTIM = seq(
    "victim", m.Victim,
    req("victimPerson", PERSON), *_ONLINE_IDENTITY, opt("schoolName", STRING),
    many("priorCTReports", LONG), *_ACCOUNT_STATE,
    many("associatedAccount", ASSOCIATED_ACCOUNT), opt("additionalInfo", STRING),
)  # fmt: skip
REPORT_TYPE = seq(
    "report", m.Report,
    opt("batchedReport", ComplexType(
        "batchedReport", m.BatchedReport, "empty",
        attributes=(Attribute("reason", BATCH_REASON, required=True),),
    )),
    req("incidentSummary", INCIDENT_SUMMARY), many("internetDetails", INTERNET_DETAILS),
    opt("lawEnforcement", LAW_ENFORCEMENT), req("reporter", REPORTER),
    many("personOrUserReported", PERSON_OR_USER_REPORTED),
    many("intendedRecipient", INTENDED_RECIPIENT), many("victim", VICTIM),
    opt("additionalInfo", STRING),
)  # fmt: skip

# fileDetails
FILE_ANNOTATIONS = ComplexType(
    "fileAnnotations", m.FileAnnotations, "all",
    tuple(opt(n, FLAG) for n in m.FileAnnotations.model_fields),
)  # fmt: skip
FILE_DETAILS_TYPE = seq(
    "fileDetails", m.FileDetails,
    req("reportId", LONG), req("fileId", TOKEN), opt("fileName", STRING),
    opt("originalFileName", STRING), opt("uploadedToEspTimestamp", DATETIME),
    opt("locationOfFile", STRING), opt("fileViewedByEsp", BOOLEAN),
    opt("exifViewedByEsp", BOOLEAN), opt("publiclyAvailable", BOOLEAN),
    opt("fileRelevance", FILE_RELEVANCE),
    Choice((opt("potentialMeme", BOOLEAN), opt("fileAnnotations", FILE_ANNOTATIONS))),
    opt("industryClassification", FILE_CLASS),
    many("originalFileHash", simple_content(
        "originalFileHash", m.OriginalFileHash, STRING,
        Attribute("hashType", STRING, required=True),
    )),
    opt("ipCaptureEvent", IP_CAPTURE_EVENT), many("deviceId", DEVICE_ID),
    many("details", seq(
        "details", m.Details,
        many("nameValuePair", seq(
            "nameValuePair", m.NameValuePair, req("name", STRING), req("value", STRING),
        ), minimum=1),
        attrs=(Attribute("type", METADATA_TYPE),),
    )),
    many("additionalInfo", STRING),
)  # fmt: skip

REPORT = req("report", REPORT_TYPE)
FILE_DETAILS = req("fileDetails", FILE_DETAILS_TYPE)

# Structural normalisation: an attribute a client put on the parent of the element it
# belongs to. parent type name -> attribute name -> (child element, normalisation key).
MISPLACED_ATTRIBUTES: dict[str, dict[str, tuple[str, str]]] = {
    "lawEnforcement": {
        "fleaCountry": ("servedLegalProcessInternational", "flea-country-on-law-enforcement")
    }
}


def complex_types() -> list[ComplexType]:
    """Every complex type reachable from the two roots, each once."""
    seen: dict[int, ComplexType] = {}

    def visit(t: ComplexType) -> None:
        if id(t) in seen:
            return
        seen[id(t)] = t
        for el in t.element.values():
            if isinstance(el.type, ComplexType):
                visit(el.type)

    visit(REPORT_TYPE)
    visit(FILE_DETAILS_TYPE)
    return list(seen.values())


def _check_against_models() -> None:
    # The domain model and this definition describe the same tree: same names, same order.
    for t in complex_types():
        fields = list(t.model.model_fields)
        if fields != t.field_names():
            raise AssertionError(
                f"schema type {t.name} and model {t.model.__name__} disagree: "
                f"{t.field_names()} != {fields}"
            )


_check_against_models()
