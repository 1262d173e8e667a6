"""Typed domain model of a CyberTipline report and of a file's details.

Field names are exactly the XML element and attribute names of the CyberTipline format
(camelCase, ``legalURL``, ``priorCTReport`` vs ``priorCTReports``), so the JSON form of these
models and the XML form are the same report. Field order follows the XML element order.

Conventions:
- a repeated element is a list (default empty); an optional one defaults to ``None``;
- an element with text *and* attributes is an object with a ``value`` field plus attributes;
- an annotation flag (``<sextortion/>``) is a ``bool`` that is True when present;
- every enumeration of the format is a ``Literal`` defined once here; the wire-format
  definition in ``tipline.cybertip.schema`` reads its value sets from these.

Pure domain: no lxml, web framework or database imports here.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

# --- enumerations -----------------------------------------------------------------------

IncidentType = Literal[
    "Child Pornography (possession, manufacture, and distribution)",
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
]
BatchedReportReason = Literal["VIRAL_POTENTIAL_MEME"]
EventName = Literal["Login", "Registration", "Purchase", "Upload", "Other", "Unknown"]
IndustryClassification = Literal["A1", "A2", "B1", "B2"]
FileRelevance = Literal["Reported", "Supplemental Reported"]
EmailType = Literal["Home", "Work", "Business", "Recovery"]
PhoneType = Literal["Mobile", "Home", "Business", "Work", "Fax", "Internet", "Recovery"]
AddressType = Literal["Home", "Business", "Billing", "Shipping", "Technical"]
AssociatedAccountType = Literal[
    "Billing", "Linked", "Business", "Creator", "Parent/Guardian", "Other"
]
MetadataType = Literal["EXIF", "HASH"]

# ISO-3166 alpha-2 (including the obsolete AN) plus the pseudo-codes A1, A2, O1, AP, EU, FX,
# XK, and the empty string: 258 values, in the order the CyberTipline format lists them.
Country = Literal[
    "", "A1", "A2", "O1", "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AN",
    "AO", "AP", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB",
    "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
    "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG",
    "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CX", "CW",
    "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH",
    "ER", "ES", "ET", "EU", "FI", "FJ", "FK", "FM", "FO", "FR", "FX", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ",
    "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU",
    "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY",
    "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO",
    "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM",
    "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT",
    "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD",
    "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK",
    "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM",
    "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS",
    "XK", "YE", "YT", "ZA", "ZM", "ZW",
]  # fmt: skip

# The 50 US states plus DC, GU, PR, VI, and the empty string.
UsState = Literal[
    "", "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA",
    "GU", "HI", "IA", "ID", "IL", "IN", "KS", "KY", "LA", "MA", "MD", "ME",
    "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ", "NM", "NV",
    "NY", "OH", "OK", "OR", "PA", "PR", "RI", "SC", "SD", "TN", "TX", "UT",
    "VA", "VI", "VT", "WA", "WI", "WV", "WY",
]  # fmt: skip

INCIDENT_TYPES: tuple[str, ...] = get_args(IncidentType)
COUNTRIES: tuple[str, ...] = get_args(Country)
US_STATES: tuple[str, ...] = get_args(UsState)
#: NCMEC's published tables ("kind of exploitation" rows) name each incident type in their own
#: wording: that wording -> the type. Read by the simulator's calibration and by the
#: transparency report's comparison with the published figures (no numpy needed for it).
INCIDENT_TYPE_TABLE_LABELS: dict[str, str] = {
    "child pornography": "Child Pornography (possession, manufacture, and distribution)",
    "online enticement of children": "Online Enticement of Children for Sexual Acts",
    "obscene material sent to a child": "Unsolicited Obscene Material Sent to a Child",
    "child sex trafficking": "Child Sex Trafficking",
    "child sexual molestation": "Child Sexual Molestation",
    "misleading words/images online": "Misleading Words or Digital Images on the Internet",
    "misleading domain name": "Misleading Domain Name",
    "child sex tourism": "Child Sex Tourism",
}

# --- constrained scalars ----------------------------------------------------------------

Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]  # xs:int
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # xs:long

_WS = re.compile(r"[ \t\n\r]+")


def _collapse(value: str) -> str:
    # xs:token: the XML form collapses whitespace, so the JSON form must too, or a report
    # would not survive a JSON -> XML -> model round trip unchanged.
    return _WS.sub(" ", value).strip(" ")


Token = Annotated[str, AfterValidator(_collapse)]

_LAX_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)
_LAX_DATE: TypeAdapter[date] = TypeAdapter(date)


_ISO_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T.+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_datetime(value: object) -> object:
    # Strict models still take ISO-8601 text, so a report stored as model_dump(mode="json")
    # reloads with model_validate(); Unix times and date-only text stay rejected.
    if isinstance(value, str):
        if not _ISO_DATETIME.fullmatch(value):
            raise ValueError("expected an ISO-8601 date-time such as 2024-03-05T14:30:00Z")
        return _LAX_DATETIME.validate_python(value)
    return value


def _iso_date(value: object) -> object:
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise ValueError("expected an ISO-8601 date such as 2009-05-31")
        return _LAX_DATE.validate_python(value)
    return value


DateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]
Date = Annotated[date, BeforeValidator(_iso_date)]
CountryCallingCode = Annotated[str, Field(pattern=r"^\+[0-9]{1,3}$")]
PhoneExtension = Annotated[str, Field(pattern=r"^[0-9]+$")]


class _Model(BaseModel):
    # strict: JSON "yes" is not a boolean, "12" is not an int; unknown keys are rejected.
    model_config = ConfigDict(extra="forbid", strict=True)


# --- shared types -----------------------------------------------------------------------


class Email(_Model):
    value: str
    type: EmailType | None = None
    verified: bool | None = None
    verificationDate: DateTime | None = None


class Phone(_Model):
    value: str
    type: PhoneType | None = None
    verified: bool | None = None
    verificationDate: DateTime | None = None
    countryCallingCode: CountryCallingCode | None = None
    extension: PhoneExtension | None = None


class Address(_Model):
    address: str | None = None
    city: str | None = None
    zipCode: str | None = None
    state: UsState | None = None
    nonUsaState: str | None = None
    country: Country | None = None
    type: AddressType | None = None


class ContactPerson(_Model):
    firstName: str | None = None
    lastName: str | None = None
    phone: list[Phone] = []
    email: list[Email] = []
    address: list[Address] = []


class Person(_Model):
    firstName: str | None = None
    lastName: str | None = None
    phone: list[Phone] = []
    email: list[Email] = []
    address: list[Address] = []
    age: Int32 | None = None
    dateOfBirth: Date | None = None


class IpCaptureEvent(_Model):
    ipAddress: str
    eventName: EventName | None = None
    dateTime: DateTime | None = None
    possibleProxy: bool | None = None
    port: Int32 | None = None


class DeviceId(_Model):
    idType: str
    idValue: str
    eventName: EventName | None = None
    dateTime: DateTime | None = None


class EstimatedLocation(_Model):
    city: str | None = None
    region: str | None = None
    countryCode: Country | None = None
    verified: bool | None = None
    timestamp: DateTime | None = None


class AccountTemporarilyDisabled(_Model):
    value: bool
    disabledDate: DateTime | None = None
    userNotified: bool | None = None
    userNotifiedDate: DateTime | None = None
    reenabledDate: DateTime | None = None


class AccountPermanentlyDisabled(_Model):
    value: bool
    disabledDate: DateTime | None = None
    userNotified: bool | None = None
    userNotifiedDate: DateTime | None = None


class AssociatedAccountPlatform(_Model):
    value: str
    thirdPartyUser: bool | None = None


class AssociatedAccount(_Model):
    platform: AssociatedAccountPlatform | None = None
    firstName: str | None = None
    middleName: str | None = None
    lastName: str | None = None
    approximateAge: Int32 | None = None
    dateOfBirth: Date | None = None
    phone: list[Phone] = []
    email: list[Email] = []
    allEmailsReported: bool | None = None
    address: list[Address] = []
    espService: str | None = None
    espIdentifier: str | None = None
    profileUrl: list[str] = []
    screenName: str | None = None
    displayName: list[str] = []
    profileBio: str | None = None
    groupIdentifier: str | None = None
    compromisedAccount: bool | None = None
    accountTemporarilyDisabled: AccountTemporarilyDisabled | None = None
    accountPermanentlyDisabled: AccountPermanentlyDisabled | None = None
    ipCaptureEvent: list[IpCaptureEvent] = []
    deviceId: list[DeviceId] = []
    priorCTReport: list[Int64] = []
    additionalInfo: str | None = None
    type: AssociatedAccountType


# --- report -----------------------------------------------------------------------------


class BatchedReport(_Model):
    reason: BatchedReportReason


class ReportAnnotations(_Model):
    sextortion: bool = False
    csamSolicitation: bool = False
    minorToMinorInteraction: bool = False
    spam: bool = False
    sadisticOnlineExploitation: bool = False


class IncidentSummary(_Model):
    incidentType: IncidentType
    platform: str | None = None
    escalateToHighPriority: str | None = None
    reportAnnotations: ReportAnnotations | None = None
    incidentDateTime: DateTime
    incidentDateTimeDescription: str | None = None


class WebPageIncident(_Model):
    url: list[str] = []
    additionalInfo: str | None = None
    thirdPartyHostedContent: bool | None = None


class EmailIncident(_Model):
    emailAddress: list[Email] = []
    content: str | None = None
    additionalInfo: str | None = None


class NewsgroupIncident(_Model):
    name: str | None = None
    emailAddress: list[Email] = []
    content: str | None = None
    additionalInfo: str | None = None


class ChatImIncident(_Model):
    chatClient: str | None = None
    chatRoomName: str | None = None
    content: str | None = None
    additionalInfo: str | None = None


class OnlineGamingIncident(_Model):
    gameName: str | None = None
    console: str | None = None
    content: str | None = None
    additionalInfo: str | None = None


class CellPhoneIncident(_Model):
    # xs:double admits INF, -INF and NaN; keep them representable in JSON too.
    model_config = ConfigDict(extra="forbid", strict=True, ser_json_inf_nan="constants")

    phoneNumber: Phone | None = None
    latitude: float | None = None
    longitude: float | None = None
    additionalInfo: str | None = None


class NonInternetIncident(_Model):
    locationName: str | None = None
    incidentAddress: list[Address] = []
    additionalInfo: str | None = None


class Peer2peerIncident(_Model):
    client: str | None = None
    ipCaptureEvent: list[IpCaptureEvent] = []
    fileNames: str | None = None
    additionalInfo: str | None = None


INCIDENT_KINDS: tuple[str, ...] = (
    "webPageIncident",
    "emailIncident",
    "newsgroupIncident",
    "chatImIncident",
    "onlineGamingIncident",
    "cellPhoneIncident",
    "nonInternetIncident",
    "peer2peerIncident",
)


class InternetDetails(_Model):
    """Exactly one of the eight incident kinds (an XML choice)."""

    webPageIncident: WebPageIncident | None = None
    emailIncident: EmailIncident | None = None
    newsgroupIncident: NewsgroupIncident | None = None
    chatImIncident: ChatImIncident | None = None
    onlineGamingIncident: OnlineGamingIncident | None = None
    cellPhoneIncident: CellPhoneIncident | None = None
    nonInternetIncident: NonInternetIncident | None = None
    peer2peerIncident: Peer2peerIncident | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> InternetDetails:
        present = [k for k in INCIDENT_KINDS if getattr(self, k) is not None]
        if len(present) != 1:
            raise ValueError(
                f"internetDetails holds exactly one of {', '.join(INCIDENT_KINDS)}; "
                f"got {len(present)}" + (f" ({', '.join(present)})" if present else "")
            )
        return self

    @property
    def kind(self) -> str:
        """The name of the incident element this entry holds, e.g. ``webPageIncident``."""
        return next(k for k in INCIDENT_KINDS if getattr(self, k) is not None)


class ServedLegalProcessInternational(_Model):
    value: bool
    fleaCountry: Country | None = None


class LawEnforcement(_Model):
    agencyName: str
    caseNumber: str | None = None
    officerContact: ContactPerson | None = None
    reportedToLe: bool | None = None
    servedLegalProcessDomestic: bool | None = None
    servedLegalProcessInternational: ServedLegalProcessInternational | None = None


class Reporter(_Model):
    reportingPerson: Person
    contactPerson: ContactPerson | None = None
    companyTemplate: str | None = None
    termsOfService: str | None = None
    legalURL: str | None = None


class PersonOrUserReported(_Model):
    personOrUserReportedPerson: Person | None = None
    vehicleDescription: str | None = None
    espIdentifier: str | None = None
    espService: str | None = None
    compromisedAccount: bool | None = None
    screenName: str | None = None
    displayName: list[str] = []
    profileUrl: list[str] = []
    profileBio: str | None = None
    ipCaptureEvent: list[IpCaptureEvent] = []
    deviceId: list[DeviceId] = []
    thirdPartyUserReported: bool | None = None
    priorCTReports: list[Int64] = []
    groupIdentifier: str | None = None
    accountTemporarilyDisabled: AccountTemporarilyDisabled | None = None
    accountPermanentlyDisabled: AccountPermanentlyDisabled | None = None
    estimatedLocation: EstimatedLocation | None = None
    allEmailsReported: bool | None = None
    associatedAccount: list[AssociatedAccount] = []
    additionalInfo: str | None = None


class IntendedRecipient(_Model):
    intendedRecipientPerson: Person | None = None
    espIdentifier: str | None = None
    espService: str | None = None
    compromisedAccount: bool | None = None
    screenName: str | None = None
    displayName: list[str] = []
    profileUrl: list[str] = []
    profileBio: str | None = None
    ipCaptureEvent: list[IpCaptureEvent] = []
    deviceId: list[DeviceId] = []
    priorCTReports: list[Int64] = []
    groupIdentifier: str | None = None
    accountTemporarilyDisabled: AccountTemporarilyDisabled | None = None
    accountPermanentlyDisabled: AccountPermanentlyDisabled | None = None
    estimatedLocation: EstimatedLocation | None = None
    allEmailsReported: bool | None = None
    additionalInfo: list[str] = []  # repeatable here only


class Victim(_Model):
    victimPerson: Person
    espIdentifier: str | None = None
    espService: str | None = None
    compromisedAccount: bool | None = None
    screenName: str | None = None
    displayName: list[str] = []
    profileUrl: list[str] = []
    profileBio: str | None = None
    ipCaptureEvent: list[IpCaptureEvent] = []
    deviceId: list[DeviceId] = []
    schoolName: str | None = None
    priorCTReports: list[Int64] = []
    accountTemporarilyDisabled: AccountTemporarilyDisabled | None = None
    accountPermanentlyDisabled: AccountPermanentlyDisabled | None = None
    estimatedLocation: EstimatedLocation | None = None
    allEmailsReported: bool | None = None
    associatedAccount: list[AssociatedAccount] = []
    additionalInfo: str | None = None


class Report(_Model):
    """A CyberTipline report (XML root ``report``), as submitted to ``/submit``."""

    batchedReport: BatchedReport | None = None
    incidentSummary: IncidentSummary
    internetDetails: list[InternetDetails] = []
    lawEnforcement: LawEnforcement | None = None
    reporter: Reporter
    personOrUserReported: list[PersonOrUserReported] = []
    intendedRecipient: list[IntendedRecipient] = []
    victim: list[Victim] = []
    additionalInfo: str | None = None

    @property
    def incident_type(self) -> str:
        """The incident type, one of the eight CyberTipline incident types."""
        return self.incidentSummary.incidentType

    @property
    def incident_datetime(self) -> datetime:
        """When the incident happened, as given (aware when the report gave an offset)."""
        return self.incidentSummary.incidentDateTime

    @property
    def escalation(self) -> str | None:
        """The escalateToHighPriority text; any value, even empty, escalates the report."""
        return self.incidentSummary.escalateToHighPriority


# --- fileDetails ------------------------------------------------------------------------


class FileAnnotations(_Model):
    animeDrawingVirtualHentai: bool = False
    potentialMeme: bool = False
    viral: bool = False
    possibleSelfProduction: bool = False
    physicalHarm: bool = False
    violenceGore: bool = False
    bestiality: bool = False
    liveStreaming: bool = False
    infant: bool = False
    generativeAi: bool = False


class OriginalFileHash(_Model):
    value: str
    hashType: str


class NameValuePair(_Model):
    name: str
    value: str


class Details(_Model):
    nameValuePair: Annotated[list[NameValuePair], Field(min_length=1)]
    type: MetadataType | None = None


class FileDetails(_Model):
    """Details of one uploaded file (XML root ``fileDetails``), as sent to ``/fileinfo``."""

    reportId: Int64
    fileId: Token
    fileName: str | None = None
    originalFileName: str | None = None
    uploadedToEspTimestamp: DateTime | None = None
    locationOfFile: str | None = None
    fileViewedByEsp: bool | None = None
    exifViewedByEsp: bool | None = None
    publiclyAvailable: bool | None = None
    fileRelevance: FileRelevance | None = None
    # An XML choice: the legacy potentialMeme flag or the fileAnnotations block, not both.
    potentialMeme: bool | None = None
    fileAnnotations: FileAnnotations | None = None
    industryClassification: IndustryClassification | None = None
    originalFileHash: list[OriginalFileHash] = []
    ipCaptureEvent: IpCaptureEvent | None = None  # at most one here
    deviceId: list[DeviceId] = []
    details: list[Details] = []
    additionalInfo: list[str] = []

    @model_validator(mode="after")
    def _meme_choice(self) -> FileDetails:
        if self.potentialMeme is not None and self.fileAnnotations is not None:
            raise ValueError("potentialMeme and fileAnnotations are alternatives; give only one")
        return self
