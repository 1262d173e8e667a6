"""The public report form: ``/report`` (submit) and ``/report/receipt`` (add information later).

Plain server-rendered HTML that works with JavaScript switched off and without an account.
A submission is read with the streaming multipart parser, so uploaded files go straight into
encrypting blob writers and their plaintext never touches the disk. Nothing is stored
unless every field is valid: the writers are committed only after validation, and an
invalid submission aborts them all and shows the form again with the person's values and
a message next to each field.

A valid submission becomes a CyberTipline ``Report`` (the same model every other intake
path produces), is checked by a round trip through the XML format, and is filed under the
public reporter. The person gets a receipt code, shown once; only its SHA-256 is stored.
With the code they can later add information (``/report/receipt``).

What the ``web`` document of a report holds: the submitted text fields exactly as received
(JSON, keyed by form field name) plus each file's name, detected type and size. The parsed
report, in CyberTipline field names, is in ``reports.document`` like every other report.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from tipline import __version__
from tipline.cybertip.codes import CybertipError
from tipline.cybertip.xml import parse_report, report_to_xml
from tipline.intake.service import clean_file_name
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
from tipline.runtime import Runtime
from tipline.store.blobs import BlobStore, BlobWriter
from tipline.web.forms import BadForm, BodyTooLarge, Part, stream_form
from tipline.web.places import (
    country_choices,
    country_name,
    emergency_numbers,
    single_zone,
    time_zones,
    zone_info,
)
from tipline.web.render import env

log = logging.getLogger("tipline.public")

STATIC_DIR = Path(__file__).with_name("static")

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
# Once the files are over the size limit we keep reading (and discarding) the body up to
# this much more, so the browser gets the form back with a message instead of a reset
# connection; beyond it we stop reading.
DRAIN_EXTRA = 64 * 1024 * 1024
# Each multipart text field is capped by the parser; far above any field's own limit.
FIELD_BYTES = 64 * 1024
SNIFF_BYTES = 8192

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
# The places the form asks about: field prefix -> who is there (for messages).
PLACES: dict[str, str] = {"person": "the person responsible", "child": "the child",
                          "reporter": "you"}
# The element each field's error links to (a radio group links to its first option).
_ANCHOR = {"incident": f"incident-{INCIDENT_CHOICES[0].key}"}

# --- receipt codes ----------------------------------------------------------------------

# Crockford base32: no I, L, O or U, so nothing is confused with 1, 0 or V when read aloud.
RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RECEIPT_CHARS = 16  # 16 x 5 bits = 80 bits of randomness
RECEIPT_PREFIX = "TPL"
_RECEIPT_SEPARATORS = re.compile(r"[\s\-_.\u2010-\u2015]+")
_RECEIPT_IN_TEXT = re.compile(
    r"TPL[\s\-]*(?:[0-9A-Z]{4}[\s\-]*){3}[0-9A-Z]{4}", re.IGNORECASE
)


def new_receipt_code() -> str:
    """A fresh receipt code such as ``TPL-7KQ4-M9XD-2HPR-W3CT`` (80 random bits)."""
    raw = "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(RECEIPT_CHARS))
    return format_receipt_code(raw)


def format_receipt_code(raw: str) -> str:
    """``TPL-`` plus the 16 code characters in groups of four."""
    return RECEIPT_PREFIX + "-" + "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalise_receipt_code(entered: str) -> str | None:
    """The canonical code for what a person typed, or None if it cannot be a code.

    Case, spaces, dashes and the ``TPL`` prefix are optional; O is read as 0 and I or L as 1
    (Crockford's rule), since people copy codes by hand.
    """
    compact = _RECEIPT_SEPARATORS.sub("", entered).upper()
    if len(compact) == RECEIPT_CHARS + len(RECEIPT_PREFIX) and compact.startswith(RECEIPT_PREFIX):
        compact = compact[len(RECEIPT_PREFIX) :]
    compact = compact.translate(str.maketrans("OIL", "011"))
    if len(compact) != RECEIPT_CHARS or any(ch not in RECEIPT_ALPHABET for ch in compact):
        return None
    return format_receipt_code(compact)


def receipt_hash(code: str) -> str:
    """SHA-256 (hex) of the canonical code: the only form of the code that is stored.

    No salt is needed: 80 random bits cannot be found by hashing guesses.
    """
    return hashlib.sha256(code.encode("ascii")).hexdigest()


# --- file types -------------------------------------------------------------------------

# Extensions whose name promises a kind; a file whose bytes are of another kind is refused.
_EXTENSION_KIND: dict[str, str] = {
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


def human_size(n: int) -> str:
    """Bytes as people say them: 8 GB, 25 MB, 300 KB."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            value = n / size
            shown = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
            return f"{shown} {unit}"
    return f"{n} bytes"


# --- uploads ----------------------------------------------------------------------------


@dataclass
class Upload:
    """One file part of a submission while it streams in."""

    part: Part
    name: str | None
    writer: BlobWriter | None = None
    head: bytearray = field(default_factory=bytearray)
    size: int = 0
    kind: str | None = None
    media_type: str | None = None
    sniffed: bool = False
    problem: str | None = None  # why it is refused; set at most once

    @property
    def label(self) -> str:
        return f"“{self.name}”" if self.name else "A file"


class Uploads:
    """Streams each file part into its own encrypting writer; nothing is committed here.

    Limits (number of files, total size, type) are applied as the bytes arrive: a refused
    file's writer is aborted at once and its remaining bytes are discarded.
    """

    def __init__(self, blobs: BlobStore, limit: int, max_files: int = MAX_FILES) -> None:
        self.blobs = blobs
        self.limit = limit
        self.max_files = max_files
        self.items: list[Upload] = []
        self.total = 0

    @property
    def chosen(self) -> list[Upload]:
        """The parts that carry a file (a browser sends one empty part when none was chosen)."""
        return [u for u in self.items if u.part.filename or u.size]

    def on_file(self, part: Part) -> Callable[[bytes], None]:
        """The ``stream_form`` hook: a sink for one file part."""
        up = Upload(part, clean_file_name(part.filename))
        self.items.append(up)
        if part.name != "files":
            up.problem = "This form takes files only in the “Files” field."
        elif part.filename and len([u for u in self.items if u.part.filename]) > self.max_files:
            up.problem = f"You can attach at most {self.max_files} files."

        def sink(data: bytes) -> None:
            self._write(up, data)

        return sink

    def _refuse(self, up: Upload, problem: str) -> None:
        if up.problem is None:
            up.problem = problem
        if up.writer is not None:
            up.writer.abort()
            up.writer = None

    def _write(self, up: Upload, data: bytes) -> None:
        if not data:
            return
        up.size += len(data)
        self.total += len(data)
        if self.total > self.limit + DRAIN_EXTRA:
            raise BodyTooLarge(self.limit)
        if self.total > self.limit:
            self._refuse(up, f"{up.label} is too large: files can be at most "
                             f"{human_size(self.limit)} together.")
        if up.problem is not None:
            if up.writer is not None:
                self._refuse(up, up.problem)
            return  # discard: a refused file is never stored
        if len(up.head) < SNIFF_BYTES:
            up.head += data[: SNIFF_BYTES - len(up.head)]
            if len(up.head) >= SNIFF_BYTES:
                self._sniff(up, complete=False)
                if up.problem is not None:
                    return
        if up.writer is None:
            up.writer = self.blobs.writer(self.limit)
        up.writer.write(data)

    def _sniff(self, up: Upload, *, complete: bool) -> None:
        up.sniffed = True
        found = sniff(bytes(up.head), complete)
        if found is None:
            self._refuse(up, f"{up.label} is not a picture, video, PDF or text file. "
                             "Only these kinds of files can be sent.")
            return
        up.kind, up.media_type = found
        ext = (up.name or "").rsplit(".", 1)[-1].lower() if "." in (up.name or "") else ""
        promised = _EXTENSION_KIND.get(ext)
        if promised is not None and promised != up.kind:
            self._refuse(up, f"{up.label} is named like {KIND_WORDS[promised]}, but its "
                             f"content is not {KIND_WORDS[promised]}. Please check the file.")

    def complete(self, ended: list[Part]) -> bool:
        """Whether every file part that began also ended (``ended``: the parser's parts)."""
        done = {id(p) for p in ended}
        return all(id(up.part) in done for up in self.items)

    def finish(self) -> list[str]:
        """Classify what is left after the body ended; the problems, one per refused file."""
        problems: list[str] = []
        for up in self.chosen:
            if up.problem is None and up.size == 0:
                self._refuse(up, f"{up.label} is empty.")
            if up.problem is None and not up.sniffed:
                self._sniff(up, complete=True)
            if up.problem is not None and up.problem not in problems:
                problems.append(up.problem)
        return problems

    def abort_all(self) -> None:
        """Drop every uncommitted writer (their temporary ciphertext is deleted)."""
        for up in self.items:
            if up.writer is not None:
                up.writer.abort()


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
    elif _RECEIPT_IN_TEXT.search(description):
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
        """``Intake.add_document``'s ``revise``: merged, then checked as every report is.

        Raises ``CybertipError`` when the merged report is not valid CyberTipline.
        """
        merged = self.merge(Report.model_validate(document), received)
        parsed = parse_report(report_to_xml(merged))
        stored: dict[str, Any] = parsed.value.model_dump(mode="json", exclude_defaults=True)
        return stored


def validate_addendum(fields: Mapping[str, str], errors: dict[str, str]) -> Addendum | None:
    """Check the "add information" fields; None (and messages in ``errors``) when invalid."""
    information = clean_text(fields.get("information", ""))
    if len(information) > MAX_TEXT:
        errors["information"] = (f"Please shorten this to {MAX_TEXT:,} characters or fewer "
                                 f"(it is {len(information):,}).")
    elif _RECEIPT_IN_TEXT.search(information):
        errors["information"] = ("Please do not write the receipt code here; enter it "
                                 "only in the receipt code field.")
    person = check_person(fields, errors)
    child = check_child(fields, errors)
    for name in ("usernames", "profile_urls"):
        if name not in errors and _RECEIPT_IN_TEXT.search(fields.get(name, "")):
            errors[name] = "Please do not write the receipt code here."
    nothing = not (information or person.usernames or person.profile_urls or person.place
                   or child.age is not None or child.place)
    if nothing and not any(k in errors for k in ADDENDUM_FIELDS[2:]):
        errors["information"] = "Enter the information you want to add."
    if errors:
        return None
    return Addendum(information, person, child)


# --- pages ------------------------------------------------------------------------------

# No scripts at all; styles only from our own stylesheet; never framed.
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    context.setdefault("errors", {})
    # Every page says what to do in an emergency: for the chosen country once there is one.
    context.setdefault("emergency", emergency_numbers().advice(None))
    html = env.get_template(f"public/{template}").render(
        root=root, css=f"{root}/static/tipline.css?v={__version__}", **context
    )
    # Pages can carry what the person typed (and the receipt page the code): never cache.
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


def _summary(errors: Mapping[str, str], order: tuple[str, ...]) -> list[tuple[str, str]]:
    """(anchor id, message) in page order for the error summary."""
    ranked = sorted(errors, key=lambda k: order.index(k) if k in order else len(order))
    return [(_ANCHOR.get(k, k), errors[k]) for k in ranked]


def emergency_country(values: Mapping[str, str]) -> str | None:
    """The country whose emergency number to show: the child's, else the reporter's."""
    for name in ("child_country", "reporter_country"):
        code = clean_text(values.get(name, "")).upper()
        if country_name(code) is not None:
            return code
    return None


def _form_context(rt: Runtime, values: Mapping[str, str], errors: Mapping[str, str],
                  token: str, files_dropped: bool = False) -> dict[str, Any]:
    return {
        "choices": INCIDENT_CHOICES,
        "countries": country_choices(),
        "zones": time_zones(),
        "places": PLACES,
        "emergency": emergency_numbers().advice(emergency_country(values)),
        "values": {k: values.get(k, "") for k in REPORT_FIELDS},
        "errors": dict(errors),
        "summary": _summary(errors, REPORT_FIELDS),
        "token": token,
        "max_files": MAX_FILES,
        "max_text": MAX_TEXT,
        "max_lines": MAX_LINES,
        "size_limit": human_size(rt.settings.max_upload_bytes),
        "files_dropped": files_dropped,
        # The latest date that is not in the future somewhere on Earth (UTC+14).
        "today": (datetime.now(UTC) + timedelta(hours=14)).date().isoformat(),
    }


def privacy_context(rt: Runtime) -> dict[str, Any]:
    """What the privacy notice states that depends on this installation's settings."""
    return {
        "operator_name": rt.settings.operator_name,
        "operator_contact": rt.settings.operator_contact,
        # Public reports are finished at once; this bounds a part left by a crash mid-way.
        "unfinished_hours": max(1, round(max(rt.settings.open_ttl_seconds,
                                             rt.settings.idle_ttl_seconds) / 3600)),
    }


def _addendum_context(values: Mapping[str, str], errors: Mapping[str, str]) -> dict[str, Any]:
    return {
        "values": {k: values.get(k, "") for k in ADDENDUM_FIELDS},
        "errors": dict(errors),
        "summary": _summary(errors, ADDENDUM_FIELDS),
        "max_text": MAX_TEXT,
        "max_lines": MAX_LINES,
        "countries": country_choices(),
        "places": PLACES,
        "emergency": emergency_numbers().advice(emergency_country(values)),
    }


_NOT_SAVED = (
    "Your report could not be saved",
    "Something went wrong on our side and your report was not filed. Please try again in a "
    "few minutes.",
)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _form_token(raw: str | None) -> str:
    # A random token per form view, used as the idempotency key: resubmitting the same
    # form (reload after sending) files the report once. A bad or missing one gets a new one.
    return raw if raw is not None and _TOKEN.match(raw) else secrets.token_urlsafe(16)


def web_document(fields: Mapping[str, str], uploads: list[Upload]) -> bytes:
    """The ``web`` document kept with the report: the text fields as received, file facts."""
    doc = {
        "form": "tipline public report form, version 1",
        "fields": {k: fields[k] for k in REPORT_FIELDS if k in fields},
        "files": [{"name": u.name, "mediaType": u.media_type, "size": u.size} for u in uploads],
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def router(rt: Runtime) -> APIRouter:
    """The public pages as a router (``install`` adds it and the stylesheet to the app)."""
    pages = APIRouter(include_in_schema=False)

    def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return _page(request, "error.html", status, title=title, message=message)

    @pages.get("/report")
    async def report_form(request: Request) -> HTMLResponse:
        return _page(request, "form.html", **_form_context(rt, {}, {}, _form_token(None)))

    @pages.post("/report")
    async def report_submit(request: Request) -> HTMLResponse:
        limit = rt.settings.max_upload_bytes
        uploads = Uploads(rt.blobs, limit)
        try:
            try:
                fields, parts = await stream_form(request, on_file=uploads.on_file,
                                                  field_limit=FIELD_BYTES)
            except BodyTooLarge:
                return error_page(
                    request, 413, "Your files are too large",
                    f"Files can be at most {human_size(limit)} together. Nothing was sent or "
                    "stored. Please go back and choose fewer or smaller files.")
            except (BadForm, UnicodeDecodeError):
                return error_page(
                    request, 400, "The form could not be read",
                    "Something went wrong while sending the form, so nothing was stored. "
                    "Please go back and try again.")
            if not uploads.complete(parts):
                # A file part that never ended (no closing boundary): possibly cut short.
                return error_page(
                    request, 400, "The form could not be read",
                    "The form arrived incomplete, so nothing was stored. Please go back and "
                    "try again.")
            token = _form_token(fields.get("form_token"))
            file_problems = uploads.finish()
            checked = validate_report_form(fields, datetime.now(UTC))
            errors = dict(checked.errors)
            if file_problems:
                errors["files"] = " ".join(file_problems)
            if errors or checked.report is None:
                # Nothing is stored: the writers are aborted in ``finally``.
                return _page(request, "form.html", 422, **_form_context(
                    rt, fields, errors, token, files_dropped=bool(uploads.chosen)))
            return await _file_report(request, fields, checked.report, uploads, token)
        finally:
            uploads.abort_all()  # after a commit this is a no-op for that writer

    async def _file_report(request: Request, fields: Mapping[str, str], model: Report,
                           uploads: Uploads, token: str) -> HTMLResponse:
        files = uploads.chosen
        try:
            # The same format rules as every other path: what we store is valid CyberTipline.
            parsed = await run_in_threadpool(parse_report, report_to_xml(model))
        except CybertipError as exc:
            log.warning("public form produced an invalid report: %s", exc.description)
            return _page(request, "form.html", 422, **_form_context(
                rt, fields, {"description": "Part of this report could not be accepted. "
                             "Please check what you entered."}, token,
                files_dropped=bool(files)))
        code = new_receipt_code()
        reporter_id = await run_in_threadpool(rt.intake.public_reporter_id)
        body = web_document(fields, files)
        try:
            report_id, created = await run_in_threadpool(
                rt.intake.open_report, reporter_id, parsed, source="web", body=body,
                content_type="application/json", document_kind="web",
                idempotency_key=f"web-form:{token}", receipt_hash=receipt_hash(code))
        except CybertipError:
            # The same form token with different content: a stale form. Nothing was stored.
            return error_page(
                request, 409, "Please start a new report",
                "This form was already used to send a report. Nothing new was stored. Open "
                "the report form again to send another report.")
        except Exception:
            log.exception("public report could not be opened")
            return error_page(request, 503, *_NOT_SAVED)
        if not created:
            # A reload of the "thank you" page re-sent the form: it was filed the first time.
            return _page(request, "already.html")
        try:
            for up in files:
                assert up.writer is not None
                stored = await run_in_threadpool(up.writer.commit)
                await run_in_threadpool(
                    rt.intake.attach_file, reporter_id, report_id, stored,
                    file_name=up.name, media_type=up.media_type)
            await run_in_threadpool(rt.intake.finish, reporter_id, report_id)
        except Exception:
            # The report is open but incomplete (a file or the finish failed). Retract it now
            # so that no half-made report stays behind until the expiry purge; the person is
            # told that nothing was filed and gets no receipt code.
            log.exception("public report %d could not be completed; retracting it", report_id)
            try:
                await run_in_threadpool(rt.intake.retract, reporter_id, report_id)
            except Exception:
                log.exception("retracting public report %d failed; it will expire", report_id)
            return error_page(request, 503, *_NOT_SAVED)
        log.info("public report %d filed with %d file(s)", report_id, len(files))
        return _page(request, "receipt.html", code=code, file_count=len(files),
                     emergency=emergency_numbers().advice(emergency_country(fields)))

    @pages.get("/report/receipt")
    async def addendum_form(request: Request) -> HTMLResponse:
        return _page(request, "addendum.html", **_addendum_context({}, {}))

    @pages.post("/report/receipt")
    async def addendum_submit(request: Request) -> HTMLResponse:
        try:
            fields, _ = await stream_form(request, on_file=None, field_limit=FIELD_BYTES)
        except (BadForm, BodyTooLarge, UnicodeDecodeError):
            return error_page(
                request, 400, "The form could not be read",
                "Something went wrong while sending the form, so nothing was stored. "
                "Please go back and try again.")
        entered = fields.get("code", "")
        errors: dict[str, str] = {}
        code = normalise_receipt_code(entered)
        if not entered.strip():
            errors["code"] = "Enter the receipt code you were given when you sent your report."
        elif code is None:
            errors["code"] = ("This is not a receipt code. Receipt codes look like "
                              "TPL-7KQ4-M9XD-2HPR-W3CT.")
        added = validate_addendum(fields, errors)
        report_id: int | None = None
        if not errors and code is not None:
            report_id = await run_in_threadpool(rt.intake.report_id_for_receipt, receipt_hash(code))
            if report_id is None:
                # One message for every code we cannot use, whatever the reason.
                errors["code"] = ("We could not match this receipt code. Check that you typed "
                                  "it exactly as it was shown to you.")
        if errors or report_id is None or added is None:
            return _page(request, "addendum.html", 422,
                         **_addendum_context(fields, errors))
        received = datetime.now(UTC).replace(microsecond=0)
        try:
            await run_in_threadpool(
                rt.intake.add_document, report_id, "addendum", added.document(fields), "application/json",
                revise=lambda doc: added.revise(doc, received))
        except CybertipError as exc:
            # The report with this addendum would not be valid CyberTipline: nothing stored.
            log.warning("addendum to public report %d refused: %s", report_id, exc.description)
            return _page(request, "addendum.html", 422, **_addendum_context(fields, {
                "information": "Part of this information could not be accepted. Please check "
                               "what you entered."}))
        except Exception:
            log.exception("addendum to public report %d could not be stored", report_id)
            return error_page(request, 503, "Your information could not be saved",
                              "Something went wrong on our side and nothing was added. Please "
                              "try again in a few minutes.")
        log.info("addendum added to public report %d", report_id)
        return _page(request, "addendum_done.html",
                     emergency=emergency_numbers().advice(emergency_country(fields)))

    @pages.get("/privacy")
    async def privacy(request: Request) -> HTMLResponse:
        return _page(request, "privacy.html", **privacy_context(rt))

    return pages


def install(app: FastAPI, rt: Runtime) -> None:
    """Add the public pages and, unless another part already did, the ``/static`` files."""
    if not any(isinstance(r, Mount) and r.path == "/static" for r in app.routes):
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router(rt))
