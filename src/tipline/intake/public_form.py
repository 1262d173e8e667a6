"""The public report form's rules: what it asks, what it accepts, what it makes of it.

Protocol-free (no HTTP, no HTML): ``web/public.py`` renders the pages and streams the files,
the simulator fills the same form for synthetic people, and both get the same CyberTipline
``Report`` from the same fields. Messages are for the person filling the form, keyed by
form field name.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from tipline.cybertip.codes import CybertipError
from tipline.cybertip.xml import Parsed, parse_report, report_to_xml
from tipline.intake.errors import IntakeError, Reason
from tipline.intake.places import country_name, single_zone, zone_info
from tipline.intake.receipts import RECEIPT_IN_TEXT
from tipline.model.report import (
    Address,
    Email,
    IncidentSummary,
    IncidentType,
    InternetDetails,
    Person,
    PersonOrUserReported,
    Phone,
    Report,
    Reporter,
    Victim,
    WebPageIncident,
)
from tipline.pipeline.geo import us_state_code

# --- limits -----------------------------------------------------------------------------

MAX_FILES = 10
MAX_TEXT = 3000  # description and later information, in characters
MAX_LINES = 20  # web addresses, user names
MAX_URL = 2000
MAX_SHORT = 200  # platform, one user name
MAX_NAME = 100
MAX_EMAIL = 254
MAX_PHONE = 40
MAX_PLACE = 100  # state/region, town

# --- what happened: the one table mapping plain language onto the CyberTipline types ------


@dataclass(frozen=True)
class IncidentChoice:
    """One answer to "What happened?": form value, the public's wording, the format's type."""

    key: str
    label: str
    hint: str
    incident_type: IncidentType


INCIDENT_CHOICES: tuple[IncidentChoice, ...] = (
    IncidentChoice(
        "images", "Sexual pictures or videos of a child",
        "Someone has, makes or shares them — including pictures a young person took of "
        "themselves, or fake and AI-made pictures.",
        "Child Pornography (possession, manufacture, and distribution)",
    ),
    IncidentChoice(
        "enticement", "Someone is trying to get a child to meet up or send sexual pictures",
        "Including threats to share a child's pictures unless they send more or pay money.",
        "Online Enticement of Children for Sexual Acts",
    ),
    IncidentChoice(
        "trafficking", "A child is being offered or sold for sex",
        "In exchange for money, drugs, a place to stay or anything else.",
        "Child Sex Trafficking",
    ),
    IncidentChoice(
        "abuse", "A child is being, or was, sexually abused in person",
        "", "Child Sexual Molestation",
    ),
    IncidentChoice(
        "obscene", "Someone sent sexual material to a child",
        "Pictures, videos or messages the child did not ask for.",
        "Unsolicited Obscene Material Sent to a Child",
    ),
    IncidentChoice(
        "travel", "Someone is travelling, or planning to travel, to have sex with a child",
        "", "Child Sex Tourism",
    ),
    IncidentChoice(
        "misleading-content", "Words or pictures online made to trick a child into seeing "
        "sexual material", "", "Misleading Words or Digital Images on the Internet",
    ),
    IncidentChoice(
        "misleading-domain", "A website address made to trick a child into visiting a sexual "
        "website", "For example a name that looks like a game or a cartoon.",
        "Misleading Domain Name",
    ),
)
_CHOICE_BY_KEY = {c.key: c for c in INCIDENT_CHOICES}

# The text fields of the report form, in page order (the error summary follows it).
REPORT_FIELDS: tuple[str, ...] = (
    "incident", "description", "incident_date", "incident_time", "incident_timezone", "urls",
    "platform", "usernames", "profile_urls", "person_country", "person_region", "person_town",
    "child_age", "child_country", "child_region", "child_town", "files", "first_name",
    "last_name", "email", "phone", "reporter_country", "reporter_region", "reporter_town",
)


def checked_report(report: Report) -> Parsed[Report]:
    """``report`` read back through the CyberTipline XML reader, as every intake path stores it.

    The same format walk, business rules and normalisations as ISPWS; raises ``IntakeError``
    (``RULES_VIOLATED``) when the report is not valid CyberTipline.
    """
    try:
        return parse_report(report_to_xml(report))
    except CybertipError as exc:
        raise IntakeError(Reason.RULES_VIOLATED, exc.description) from None


class FileFacts(Protocol):
    """What the ``web`` document records of each file (an upload as it streamed in)."""

    @property
    def name(self) -> str | None: ...
    @property
    def media_type(self) -> str | None: ...
    @property
    def size(self) -> int: ...


def web_document(fields: Mapping[str, str], uploads: Sequence[FileFacts]) -> bytes:
    """The ``web`` document kept with the report: the text fields as received, file facts."""
    doc = {
        "form": "tipline public report form, version 1",
        "fields": {k: fields[k] for k in REPORT_FIELDS if k in fields},
        "files": [{"name": u.name, "mediaType": u.media_type, "size": u.size} for u in uploads],
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


# --- file types -------------------------------------------------------------------------

# Extensions whose name promises a kind; a file whose bytes are of another kind is refused.
EXTENSION_KIND: dict[str, str] = {
    ext: kind
    for kind, exts in (
        ("image", "jpg jpeg jpe jfif png gif webp bmp tif tiff heic heif avif"),
        ("video", "mp4 m4v mov qt 3gp 3g2 webm mkv avi mpg mpeg ts mts m2ts flv wmv asf"),
        ("pdf", "pdf"),
        ("text", "txt text log csv"),
    )
    for ext in exts.split()
}
KIND_WORDS = {"image": "a picture", "video": "a video", "pdf": "a PDF", "text": "a text file"}
_FTYP_IMAGE = {b"heic": "image/heic", b"heix": "image/heic", b"mif1": "image/heif",
               b"msf1": "image/heif", b"avif": "image/avif", b"avis": "image/avif"}
_TEXT_CONTROL = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def sniff(head: bytes, complete: bool) -> tuple[str, str] | None:
    """(kind, media type) from a file's first bytes, or None if it is not an accepted type.

    Accepted: pictures, videos, PDF and UTF-8 text. ``complete`` says whether ``head`` is
    the whole file (then a multi-byte character may not be cut off at its end).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image", "image/gif"
    if head.startswith(b"BM") and head[6:10] == b"\0\0\0\0":
        return "image", "image/bmp"
    if head.startswith((b"II*\0", b"MM\0*")):
        return "image", "image/tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video", "video/x-msvideo"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _FTYP_IMAGE:
            return "image", _FTYP_IMAGE[brand]
        if brand == b"qt  ":
            return "video", "video/quicktime"
        if brand.startswith(b"3g"):
            return "video", "video/3gpp"
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return None  # audio only
        return "video", "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith((b"\0\0\x01\xba", b"\0\0\x01\xb3")):
        return "video", "video/mpeg"
    # MPEG transport stream: a 0x47 sync byte every 188 bytes (four packets, so text that
    # happens to have a "G" in the right places is not taken for video).
    if len(head) >= 4 * 188 and all(head[i] == 0x47 for i in range(0, 4 * 188, 188)):
        return "video", "video/mp2t"
    if head.startswith(b"FLV\x01"):
        return "video", "video/x-flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video", "video/x-ms-asf"
    if head.startswith(b"%PDF-"):
        return "pdf", "application/pdf"
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return None
    if _TEXT_CONTROL.search(text):
        return None
    return "text", "text/plain; charset=utf-8"



# --- validation -------------------------------------------------------------------------

_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE = re.compile(r"^\+?[0-9 ()\-./]+$")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])(:[0-5][0-9](\.[0-9]+)?)?$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
EARLIEST_DATE = date(1950, 1, 1)


def clean_text(value: str) -> str:
    """Browser line breaks (CRLF) as LF, characters XML cannot carry removed, ends trimmed."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return _NOT_TEXT.sub("", value).strip()


def _lines(value: str) -> list[str]:
    return [line.strip() for line in clean_text(value).split("\n") if line.strip()]


def _check_url(url: str) -> str | None:
    """Why ``url`` is not a web address, or None if it is one."""
    if len(url) > MAX_URL:
        return f"is longer than {MAX_URL:,} characters"
    if any(ch.isspace() for ch in url):
        return "contains a space (put each web address on its own line)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a valid web address"
    if parts.scheme.lower() not in ("http", "https"):
        return "must start with http:// or https://"
    if not host or ("." not in host.strip(".") and host != "localhost" and ":" not in host):
        return "has no website name after http:// or https://"
    return None


def check_place(fields: Mapping[str, str], prefix: str, errors: dict[str, str]) -> Address | None:
    """The ``Address`` of one "where" block (``{prefix}_country``, ``_region``, ``_town``).

    None when the block is empty. The US region must be a state (its code is stored in
    ``state``); elsewhere the region is free text (``nonUsaState``). Messages go to ``errors``.
    """
    raw_country = clean_text(fields.get(f"{prefix}_country", "")).upper()
    region = clean_text(fields.get(f"{prefix}_region", ""))
    town = clean_text(fields.get(f"{prefix}_town", ""))
    country: str | None = None
    if raw_country:
        if country_name(raw_country) is None:
            errors[f"{prefix}_country"] = "Choose a country from the list, or leave it empty."
        else:
            country = raw_country
    elif region or town:
        errors[f"{prefix}_country"] = ("Choose the country as well, or leave the state or region "
                                       "and the town empty.")
    state: str | None = None
    if len(region) > MAX_PLACE:
        errors[f"{prefix}_region"] = f"Please shorten this to {MAX_PLACE} characters or fewer."
    elif country == "US" and region:
        state = us_state_code(region)
        if state is None:
            errors[f"{prefix}_region"] = ("Enter a US state, such as Texas or TX, or leave it "
                                          "empty.")
    if len(town) > MAX_PLACE:
        errors[f"{prefix}_town"] = f"Please shorten this to {MAX_PLACE} characters or fewer."
    if country is None:
        return None
    # model_validate: the codes were checked against the lists above; the model checks again.
    return Address.model_validate({"city": town or None, "state": state, "country": country,
                                   "nonUsaState": region or None if country != "US" else None})


def _check_urls(urls: list[str], name: str, errors: dict[str, str], what: str) -> None:
    if len(urls) > MAX_LINES:
        errors[name] = f"Enter at most {MAX_LINES} {what}."
        return
    for i, url in enumerate(urls, 1):
        why = _check_url(url)
        if why:
            where = f"Line {i}" if len(urls) > 1 else "The web address"
            errors[name] = f"{where} {why}. Example: https://example.com/page"
            return


def check_when(fields: Mapping[str, str], now: datetime,
               errors: dict[str, str]) -> tuple[datetime, str]:
    """The incident time and its description, from date, time and time zone.

    A time zone chosen on the form is used; without one, the zone of the country the reporter
    gave for themselves when that country has only one; else the time stays without zone and
    the description says so. The stored time then carries the zone's UTC offset.
    """
    raw_date = clean_text(fields.get("incident_date", ""))
    raw_time = clean_text(fields.get("incident_time", ""))
    raw_zone = clean_text(fields.get("incident_timezone", ""))
    day: date | None = None
    if raw_date:
        try:
            day = date.fromisoformat(raw_date) if _DATE.match(raw_date) else None
        except ValueError:
            day = None
        if day is None:
            errors["incident_date"] = ("Enter a real date, for example 2024-03-27, or leave it "
                                       "empty.")
        elif day < EARLIEST_DATE:
            errors["incident_date"] = f"Enter a date after {EARLIEST_DATE.year}."
        # The person's time zone may be unknown: "the future" is later than today anywhere.
        elif day > (now + timedelta(hours=14)).date():
            errors["incident_date"] = "The date cannot be in the future."
    at: time | None = None
    if raw_time:
        m = _TIME.match(raw_time)
        if m is None:
            errors["incident_time"] = "Enter a time like 14:30, or leave it empty."
        elif not raw_date:
            errors["incident_time"] = "Enter the date as well, or leave the time empty."
        else:
            at = time(int(m.group(1)), int(m.group(2)))
    zone: ZoneInfo | None = None
    zone_note = ""
    if raw_zone:
        zone = zone_info(raw_zone)
        if zone is None:
            errors["incident_timezone"] = "Choose a time zone from the list, or leave it empty."
        else:
            zone_note = f"time zone {raw_zone}, chosen by the reporter"
    elif at is not None:
        country = clean_text(fields.get("reporter_country", "")).upper()
        only = single_zone(country) if country_name(country) else None
        if only is not None:
            zone = ZoneInfo(only)
            zone_note = (f"time zone {only}, the only one of the reporter's country "
                         f"({country_name(country)})")
    if day is None:
        return now.astimezone(UTC).replace(microsecond=0), (
            "The reporter did not give a date; this is the time the report was submitted.")
    if at is None:
        when = datetime.combine(day, time(0, 0))
        note = "Date given by the reporter; time of day not given; "
    else:
        when = datetime.combine(day, at)
        note = "Date and time given by the reporter, in their local time; "
    if zone is None:
        # Local time, zone unknown: "the future" is later than now anywhere (UTC+14).
        if at is not None and when > now.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=14):
            errors["incident_time"] = "The time cannot be in the future."
        return when, note + "time zone not known."
    # Keep the zone as a fixed UTC offset: what the CyberTipline format (xs:dateTime) carries.
    local = when.replace(tzinfo=zone)
    offset = local.utcoffset() or timedelta(0)
    aware = local.replace(tzinfo=timezone(offset))
    if at is not None and aware > now + timedelta(minutes=1):
        errors["incident_time"] = "The time cannot be in the future."
    return aware, note + zone_note + "."


@dataclass
class Validated:
    """The outcome of validating the report form."""

    report: Report | None
    errors: dict[str, str]


def validate_report_form(fields: Mapping[str, str], now: datetime) -> Validated:
    """Check the form's text fields and build the CyberTipline report they describe.

    ``errors`` maps field name to a message for the person; ``report`` is None when any.
    """
    errors: dict[str, str] = {}

    def get(name: str) -> str:
        return fields.get(name, "")  # a missing field is an empty one

    choice = _CHOICE_BY_KEY.get(get("incident"))
    if choice is None:
        errors["incident"] = "Choose what happened. If you are not sure, choose the closest one."

    description = clean_text(get("description"))
    if not description:
        errors["description"] = "Tell us what happened."
    elif len(description) > MAX_TEXT:
        errors["description"] = (f"Please shorten this to {MAX_TEXT:,} characters or fewer "
                                 f"(it is {len(description):,}).")
    elif RECEIPT_IN_TEXT.search(description):
        errors["description"] = "Please do not write a receipt code here."

    when, when_note = check_when(fields, now, errors)

    urls = _lines(get("urls"))
    _check_urls(urls, "urls", errors, "web addresses")

    platform = clean_text(get("platform"))
    if len(platform) > MAX_SHORT:
        errors["platform"] = f"Please shorten this to {MAX_SHORT} characters or fewer."

    person = check_person(fields, errors)
    child = check_child(fields, errors)

    first, last = clean_text(get("first_name")), clean_text(get("last_name"))
    for name, value in (("first_name", first), ("last_name", last)):
        if len(value) > MAX_NAME:
            errors[name] = f"Please shorten this to {MAX_NAME} characters or fewer."
    email = clean_text(get("email"))
    if email and (len(email) > MAX_EMAIL or not _EMAIL.match(email)):
        errors["email"] = "Enter an e-mail address like name@example.com, or leave it empty."
    phone = clean_text(get("phone"))
    if phone and (len(phone) > MAX_PHONE or not _PHONE.match(phone)
                  or not 5 <= sum(ch.isdigit() for ch in phone) <= 20):
        errors["phone"] = ("Enter a phone number using digits, like +1 555 010 0000, or leave "
                           "it empty.")
    reporter_place = check_place(fields, "reporter", errors)

    if errors or choice is None:
        return Validated(None, errors)

    report = Report(
        incidentSummary=IncidentSummary(
            incidentType=choice.incident_type, platform=platform or None,
            incidentDateTime=when, incidentDateTimeDescription=when_note,
        ),
        internetDetails=(
            [InternetDetails(webPageIncident=WebPageIncident(url=urls))] if urls else []
        ),
        # Anonymous is allowed: reportingPerson is then present but empty.
        reporter=Reporter(reportingPerson=Person(
            firstName=first or None, lastName=last or None,
            email=[Email(value=email)] if email else [],
            phone=[Phone(value=phone)] if phone else [],
            address=[reporter_place] if reporter_place else [],
        )),
        personOrUserReported=person.reported(platform or None),
        victim=child.victims(),
        additionalInfo=description,
    )
    return Validated(report, {})


@dataclass
class PersonGiven:
    """What the form says about the person responsible."""

    usernames: list[str]
    profile_urls: list[str]
    place: Address | None

    def reported(self, platform: str | None) -> list[PersonOrUserReported]:
        """One ``personOrUserReported`` per user name; the first also carries the profile
        links and where the person is (one entry of its own when no name was given)."""
        out = [PersonOrUserReported(espService=platform, screenName=u) for u in self.usernames]
        if not (self.profile_urls or self.place):
            return out
        if not out:
            out.append(PersonOrUserReported(espService=platform))
        first = out[0]
        first.profileUrl = list(self.profile_urls)
        if self.place is not None:
            first.personOrUserReportedPerson = Person(address=[self.place])
        return out


def check_person(fields: Mapping[str, str], errors: dict[str, str]) -> PersonGiven:
    """User names, profile links and place of the person responsible."""
    usernames = _lines(fields.get("usernames", ""))
    if len(usernames) > MAX_LINES:
        errors["usernames"] = f"Enter at most {MAX_LINES} user names."
    elif any(len(u) > MAX_SHORT for u in usernames):
        errors["usernames"] = f"Each user name can be at most {MAX_SHORT} characters."
    profile_urls = _lines(fields.get("profile_urls", ""))
    _check_urls(profile_urls, "profile_urls", errors, "profile links")
    return PersonGiven(usernames, profile_urls, check_place(fields, "person", errors))


@dataclass
class ChildGiven:
    """What the form says about the child."""

    age: int | None
    place: Address | None

    def victims(self) -> list[Victim]:
        if self.age is None and self.place is None:
            return []
        return [Victim(victimPerson=Person(age=self.age,
                                           address=[self.place] if self.place else []))]


def check_child(fields: Mapping[str, str], errors: dict[str, str]) -> ChildGiven:
    """The child's age and place."""
    age: int | None = None
    raw_age = clean_text(fields.get("child_age", ""))
    if raw_age:
        if raw_age.isdigit() and int(raw_age) <= 17:
            age = int(raw_age)
        else:
            errors["child_age"] = ("Enter an age from 0 to 17 as a number, or leave it empty "
                                   "if you are not sure.")
    return ChildGiven(age, check_place(fields, "child", errors))


# --- adding information with a receipt code ------------------------------------------------

# The fields of the "add information" page, in page order.
ADDENDUM_FIELDS: tuple[str, ...] = (
    "code", "information", "usernames", "profile_urls", "person_country", "person_region",
    "person_town", "child_age", "child_country", "child_region", "child_town",
)


@dataclass
class Addendum:
    """What a person adds to their report: text, and the same "who and where" as the form."""

    information: str
    person: PersonGiven
    child: ChildGiven

    def document(self, fields: Mapping[str, str]) -> bytes:
        """The ``addendum`` document: the text, and the other fields as received when given."""
        doc: dict[str, Any] = {"information": self.information}
        given = {k: fields[k] for k in ADDENDUM_FIELDS[2:] if fields.get(k, "").strip()}
        if given:
            doc["fields"] = given
        return json.dumps(doc, ensure_ascii=False).encode()

    def merge(self, report: Report, received: datetime) -> Report:
        """The report as it stands with this addendum (a pure function of both).

        The text is appended to ``additionalInfo`` under a dated line; a child's age replaces
        the one given before (later information is taken as the better one), places are added
        to the addresses; new user names become reported users of their own, profile links
        and the person's place go to the first reported user, as on the form.
        """
        r = report.model_copy(deep=True)
        if self.information:
            stamp = f"Added by the reporter on {received.strftime('%Y-%m-%d %H:%M')} UTC:"
            r.additionalInfo = "\n\n".join(x for x in (r.additionalInfo, f"{stamp}\n{self.information}") if x)
        if self.child.age is not None or self.child.place is not None:
            if not r.victim:
                r.victim = self.child.victims()
            else:
                person = r.victim[0].victimPerson
                if self.child.age is not None:
                    person.age = self.child.age
                if self.child.place is not None:
                    person.address = [*person.address, self.child.place]
        platform = r.incidentSummary.platform
        if not r.personOrUserReported:
            r.personOrUserReported = self.person.reported(platform)  # exactly as on the form
        else:
            first = r.personOrUserReported[0]
            first.profileUrl = [*first.profileUrl, *self.person.profile_urls]
            if self.person.place is not None:
                held = first.personOrUserReportedPerson or Person()
                held.address = [*held.address, self.person.place]
                first.personOrUserReportedPerson = held
            r.personOrUserReported += [PersonOrUserReported(espService=platform, screenName=u)
                                       for u in self.person.usernames]
        return r

    def revise(self, document: dict[str, Any], received: datetime) -> dict[str, Any]:
        """``Intake.add_document_unchecked``'s ``revise``: merged, then checked as every report is.

        Raises ``IntakeError`` (``RULES_VIOLATED``) when the merged report is not valid
        CyberTipline.
        """
        merged = self.merge(Report.model_validate(document), received)
        stored: dict[str, Any] = checked_report(merged).value.model_dump(mode="json", exclude_defaults=True)
        return stored


def validate_addendum(fields: Mapping[str, str], errors: dict[str, str]) -> Addendum | None:
    """Check the "add information" fields; None (and messages in ``errors``) when invalid."""
    information = clean_text(fields.get("information", ""))
    if len(information) > MAX_TEXT:
        errors["information"] = (f"Please shorten this to {MAX_TEXT:,} characters or fewer "
                                 f"(it is {len(information):,}).")
    elif RECEIPT_IN_TEXT.search(information):
        errors["information"] = ("Please do not write the receipt code here; enter it "
                                 "only in the receipt code field.")
    person = check_person(fields, errors)
    child = check_child(fields, errors)
    for name in ("usernames", "profile_urls"):
        if name not in errors and RECEIPT_IN_TEXT.search(fields.get(name, "")):
            errors[name] = "Please do not write the receipt code here."
    nothing = not (information or person.usernames or person.profile_urls or person.place
                   or child.age is not None or child.place)
    if nothing and not any(k in errors for k in ADDENDUM_FIELDS[2:]):
        errors["information"] = "Enter the information you want to add."
    if errors:
        return None
    return Addendum(information, person, child)

