"""Everything an officer does with a referral, with access decided here.

Every function takes the caller's :class:`~tipline.people.principal.Principal`: it needs
``Capability.REFERRAL_READ_OWN`` to read and ``Capability.REFERRAL_ACT`` to act, and an
officer reaches only referrals whose agency is their own. Anything outside that — a
foreign referral, a missing one, a role without the capability, a file of another report —
raises the one :class:`NotFound`, so the answer never tells an outsider what exists.

Every read of report content and every write appends one audit row in the caller's
transaction (``tipline.people.audit.record``): the action and its row commit together.

Files the platform did not view (``viewed_by_esp`` false or unknown) stay closed to an
agency until it records legal process on its referral (US v. Wilson, 9th Cir. 2021;
DOMAIN.md A7): until then only their hashes and matches are shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import ModuleType
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tipline.config import Settings
from tipline.kinds.roles import ROLES, Capability, Scope, may
from tipline.people.audit import record
from tipline.people.principal import Principal
from tipline.store.tables import (
    Agency,
    Assessment,
    BankEntry,
    Blob,
    File,
    FileMatch,
    HashBank,
    Identifier,
    IncidentReport,
    Jurisdiction,
    Location,
    Referral,
    Report,
    Reporter,
    ReportIdentifier,
)
from tipline.store.tables_people import AssessmentOverride, LegalProcess, ReferralAction, User

#: Kinds of legal process an agency records (the column's vocabulary), with their labels.
LEGAL_PROCESS_KINDS: dict[str, str] = {
    "search_warrant": "Search warrant",
    "court_order": "Court order",
    "subpoena": "Subpoena",
    "consent": "Consent",
}
MAX_REASON = 2000
MAX_REFERENCE = 255
#: Referral ids are 32-bit integers; anything else cannot exist.
MAX_ID = 2**31 - 1
#: The oldest date legal process may carry (a typo such as 0202 is refused, not stored).
EARLIEST_PROCESS = date(1990, 1, 1)


class ReferralError(Exception):
    """A refused call; ``field`` names the input at fault (None: the whole call)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ReferralError):
    """No such referral or file for this caller (missing and foreign answer the same)."""


class Invalid(ReferralError):
    """The input is wrong (an assignee of another agency, an unknown agency, a bad date…)."""


# --- the outcomes service ---------------------------------------------------------------------


def outcomes_service() -> ModuleType | None:
    """``tipline.outcomes.service``, imported when first needed (the inbox records
    ``ACKNOWLEDGED`` through it and shows its timeline)."""
    from tipline.outcomes import service

    return service


# --- access -----------------------------------------------------------------------------------


def _agency_of(principal: Principal, capability: Capability) -> int:
    """The agency whose referrals this caller may reach with ``capability``."""
    role = ROLES.get(principal.role)
    if role is None or not may(principal.role, capability) or role.scope is not Scope.AGENCY \
            or principal.agency_id is None:
        raise NotFound("no such referral")
    return principal.agency_id


def parse_id(value: Any) -> int | None:
    """A referral id from a path segment or form field; None when it cannot be one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= MAX_ID else None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value.strip()):
        n = int(value.strip())
        return n if 1 <= n <= MAX_ID else None
    return None


def _referral(session: Session, principal: Principal, referral_id: int, capability: Capability, *,
              lock: bool = False) -> Referral:
    agency_id = _agency_of(principal, capability)
    if parse_id(referral_id) is None:
        raise NotFound(f"no referral {referral_id}")
    stmt = select(Referral).where(Referral.id == referral_id)
    if lock:
        stmt = stmt.with_for_update()
    ref = session.execute(stmt).scalar_one_or_none()
    if ref is None or ref.agency_id != agency_id:
        raise NotFound(f"no referral {referral_id}")
    return ref


@dataclass(frozen=True, slots=True)
class Where:
    """Where a call came from, for its audit row."""

    address: str | None = None
    request_id: str | None = None


def _audit(session: Session, principal: Principal, where: Where, action: str, referral_id: int,
           detail: dict[str, Any] | None = None) -> None:
    record(session, action=action, actor=principal, object_kind="referral", object_id=referral_id,
           address=where.address, request_id=where.request_id, detail=detail)


# --- deadlines --------------------------------------------------------------------------------


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def ack_minutes(settings: Settings, priority: int | None) -> int:
    """Minutes an agency has to acknowledge a referral of ``priority`` (unknown: priority 3)."""
    if priority == 1:
        return settings.ack_deadline_p1_minutes
    if priority == 2:
        return settings.ack_deadline_p2_minutes
    return settings.ack_deadline_p3_minutes


def deadline_of(settings: Settings, made_available_at: datetime, priority: int | None) -> datetime:
    return _utc(made_available_at) + timedelta(minutes=ack_minutes(settings, priority))


def _priorities(session: Session, report_ids: Sequence[int]) -> dict[int, int]:
    """The standing priority of each report: an analyst's latest override, else the pipeline's."""
    out: dict[int, int] = {}
    ids = list(dict.fromkeys(report_ids))
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for rid, prio in session.execute(select(Assessment.report_id, Assessment.priority)
                                         .where(Assessment.report_id.in_(chunk))):
            out[rid] = prio
        for rid, override in session.execute(
                select(AssessmentOverride.report_id, AssessmentOverride.priority)
                .where(AssessmentOverride.report_id.in_(chunk), AssessmentOverride.priority.is_not(None))
                .order_by(AssessmentOverride.at, AssessmentOverride.id)):
            if override is not None:
                out[rid] = override  # later rows overwrite earlier: the latest override stands
    return out


# --- views ------------------------------------------------------------------------------------


def iso(at: datetime | None) -> str | None:
    return None if at is None else _utc(at).astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class ReferralSummary:
    """One referral as the inbox lists it (and as the JSON API's ``Referral`` carries it)."""

    id: int
    report_id: int
    agency_code: str
    escalated: bool
    made_available_at: datetime
    escalated_at: datetime | None
    acknowledged_at: datetime | None
    priority: int | None
    deadline: datetime
    incident_type: str | None
    platform: str | None
    assigned_to: str | None
    transferred_to: str | None
    transferred_from: str | None
    rule: str
    reason: str

    def overdue(self, now: datetime) -> bool:
        return self.acknowledged_at is None and self.transferred_to is None and now > self.deadline

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "referralId": self.id, "reportId": self.report_id, "agency": self.agency_code,
            "escalated": self.escalated, "madeAvailableAt": iso(self.made_available_at),
            "escalatedAt": iso(self.escalated_at), "acknowledgedAt": iso(self.acknowledged_at),
            "deadline": iso(self.deadline), "overdue": self.overdue(now), "priority": self.priority,
            "incidentType": self.incident_type, "platform": self.platform,
            "assignedTo": self.assigned_to, "transferredTo": self.transferred_to,
            "transferredFrom": self.transferred_from, "rule": self.rule, "reason": self.reason,
        }


@dataclass(slots=True)
class Inbox:
    """A page of an agency's inbox and the counts of the whole (filtered) inbox."""

    referrals: list[ReferralSummary]
    total: int
    escalated: int
    unacknowledged: int
    overdue: int
    agency_code: str
    agency_name: str


def _summaries(session: Session, settings: Settings, refs: Sequence[Referral]) -> list[ReferralSummary]:
    if not refs:
        return []
    report_ids = [r.report_id for r in refs]
    prio = _priorities(session, report_ids)
    reports = {r.id: (r.incident_type, name) for r, name in session.execute(
        select(Report, Reporter.name).join(Reporter, Reporter.id == Report.reporter_id)
        .where(Report.id.in_(report_ids)))}
    agency_ids = {r.agency_id for r in refs}
    users = {r.assigned_user_id for r in refs if r.assigned_user_id}
    ref_ids = [r.id for r in refs]
    transfers: dict[int, int] = {}
    for a in session.scalars(select(ReferralAction).where(ReferralAction.referral_id.in_(ref_ids),
                                                          ReferralAction.action == "transfer")):
        if a.target_referral_id is not None:
            transfers[a.referral_id] = a.target_referral_id
    linked = set(transfers.values()) | {r.transferred_from_id for r in refs if r.transferred_from_id}
    agency_of_ref = dict(session.execute(select(Referral.id, Referral.agency_id).where(Referral.id.in_(linked)))
                         .all()) if linked else {}
    agency_ids |= set(agency_of_ref.values())
    codes = dict(session.execute(select(Agency.id, Agency.code).where(Agency.id.in_(agency_ids))).all())
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(users))).all()) \
        if users else {}
    out = []
    for r in refs:
        incident_type, platform = reports.get(r.report_id, (None, None))
        p = prio.get(r.report_id)
        to = transfers.get(r.id)
        out.append(ReferralSummary(
            id=r.id, report_id=r.report_id, agency_code=codes.get(r.agency_id, "?"), escalated=bool(r.escalated),
            made_available_at=_utc(r.made_available_at),
            escalated_at=_utc(r.escalated_at) if r.escalated_at else None,
            acknowledged_at=_utc(r.acknowledged_at) if r.acknowledged_at else None,
            priority=p, deadline=deadline_of(settings, r.made_available_at, p),
            incident_type=incident_type, platform=platform,
            assigned_to=names.get(r.assigned_user_id) if r.assigned_user_id else None,
            transferred_to=codes.get(agency_of_ref.get(to, -1)) if to else None,
            transferred_from=codes.get(agency_of_ref.get(r.transferred_from_id, -1))
            if r.transferred_from_id else None,
            rule=r.rule, reason=r.reason))
    return out


def list_referrals(session: Session, settings: Settings, principal: Principal, *,
                   escalated: bool | None = None, acknowledged: bool | None = None,
                   since: datetime | None = None, overdue: bool | None = None,
                   limit: int = 100, offset: int = 0, now: datetime | None = None,
                   where: Where | None = None, audit_action: str | None = None) -> Inbox:
    """The caller's agency's referrals: escalated first, then by acknowledgement deadline.

    ``since`` keeps referrals made available at or after it. Reading the list is not a read
    of report content (it shows no report fields), so it writes no audit row unless
    ``audit_action`` names one (the bulk export does).
    """
    agency_id = _agency_of(principal, Capability.REFERRAL_READ_OWN)
    now = _utc(now or datetime.now(UTC))
    agency = session.get(Agency, agency_id)
    # Light columns of the whole inbox first: the order needs the priority of every row
    # (the deadline is computed from it), and the counts describe the whole filtered inbox.
    stmt = select(Referral.id, Referral.report_id, Referral.escalated, Referral.made_available_at,
                  Referral.acknowledged_at).where(Referral.agency_id == agency_id)
    if escalated is not None:
        stmt = stmt.where(Referral.escalated.is_(escalated))
    if acknowledged is True:
        stmt = stmt.where(Referral.acknowledged_at.is_not(None))
    elif acknowledged is False:
        stmt = stmt.where(Referral.acknowledged_at.is_(None))
    if since is not None:
        stmt = stmt.where(Referral.made_available_at >= _utc(since))
    rows = session.execute(stmt).all()
    prio = _priorities(session, [r.report_id for r in rows])
    transferred = set(session.scalars(select(ReferralAction.referral_id).where(
        ReferralAction.action == "transfer", ReferralAction.referral_id.in_(select(Referral.id).where(
            Referral.agency_id == agency_id)))))
    keyed = []
    for r in rows:
        dl = deadline_of(settings, r.made_available_at, prio.get(r.report_id))
        late = r.acknowledged_at is None and r.id not in transferred and now > dl
        if overdue is not None and late != overdue:
            continue
        keyed.append((not r.escalated, dl, r.id, r, late))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    page_ids = [k[2] for k in keyed[offset:offset + limit]]
    refs = {r.id: r for r in session.scalars(select(Referral).where(Referral.id.in_(page_ids)))} if page_ids else {}
    page = _summaries(session, settings, [refs[i] for i in page_ids])
    if audit_action is not None:
        record(session, action=audit_action, actor=principal, object_kind="agency", object_id=agency_id,
               address=(where or Where()).address, request_id=(where or Where()).request_id,
               detail={"referrals": [k[2] for k in keyed], "escalated": escalated,
                       "acknowledged": acknowledged, "since": iso(since), "overdue": overdue})
    return Inbox(referrals=page, total=len(keyed), escalated=sum(1 for k in keyed if not k[0]),
                 unacknowledged=sum(1 for k in keyed if k[3].acknowledged_at is None),
                 overdue=sum(1 for k in keyed if k[4]),
                 agency_code=agency.code if agency else "?", agency_name=agency.name if agency else "?")


# --- one referral, in full --------------------------------------------------------------------


@dataclass(slots=True)
class FileMatchView:
    kind: str
    hash_type: str
    distance: int
    bank: str | None
    label: str | None
    other_file_id: str | None


@dataclass(slots=True)
class FileView:
    id: str
    seq: int
    file_name: str | None
    media_type: str | None
    size: int
    md5: str
    sha1: str
    sha256: str
    viewed_by_esp: bool | None
    relevance: str | None
    classification: str | None
    gated: bool
    held: bool
    matches: list[FileMatchView]

    def as_json(self) -> dict[str, Any]:
        return {
            "fileId": self.id, "seq": self.seq, "fileName": self.file_name, "mediaType": self.media_type,
            "size": self.size, "md5": self.md5, "sha1": self.sha1, "sha256": self.sha256,
            "viewedByEsp": self.viewed_by_esp, "relevance": self.relevance,
            "industryClassification": self.classification, "gated": self.gated, "contentHeld": self.held,
            "matches": [{"kind": m.kind, "hashType": m.hash_type, "distance": m.distance, "bank": m.bank,
                         "label": m.label, "otherFileId": m.other_file_id} for m in self.matches],
        }


@dataclass(slots=True)
class Event:
    """One line of the referral's chain of events."""

    at: datetime
    what: str
    who: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "event": self.what, "by": self.who, "detail": self.detail}


@dataclass(slots=True)
class LegalProcessView:
    id: int
    kind: str
    reference: str
    issued_on: date
    recorded_at: datetime
    by: str | None

    @property
    def label(self) -> str:
        return LEGAL_PROCESS_KINDS.get(self.kind, self.kind)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "reference": self.reference, "issuedOn": self.issued_on.isoformat(),
                "recordedAt": iso(self.recorded_at), "recordedBy": self.by}


@dataclass(slots=True)
class RelatedReport:
    """Another report of the same incident that was made available to this agency too."""

    report_id: int
    referral_id: int
    incident_id: int
    made_available_at: datetime
    escalated: bool

    def as_json(self) -> dict[str, Any]:
        return {"reportId": self.report_id, "referralId": self.referral_id, "incidentId": self.incident_id,
                "madeAvailableAt": iso(self.made_available_at), "escalated": self.escalated}


@dataclass(slots=True)
class ReferralDetail:
    summary: ReferralSummary
    agency_name: str
    report_state: str
    received_at: datetime
    incident_at: datetime | None
    fields: list[tuple[str, str]]
    identifiers: list[dict[str, Any]]
    locations: list[dict[str, Any]]
    jurisdiction: dict[str, Any] | None
    assessment: dict[str, Any] | None
    files: list[FileView]
    related: list[RelatedReport]
    legal_process: list[LegalProcessView]
    events: list[Event]
    colleagues: list[tuple[int, str]] = field(default_factory=list)

    @property
    def has_legal_process(self) -> bool:
        return bool(self.legal_process)

    @property
    def gated_files(self) -> int:
        return sum(1 for f in self.files if f.gated)


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Every leaf of the report document as (path, value): the fields an officer would
    otherwise re-key, in the order the platform sent them."""
    out: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.extend(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc, 1):
            out.extend(flatten(value, f"{prefix}[{i}]"))
    elif doc is not None and doc != "":
        out.append((prefix, "yes" if doc is True else "no" if doc is False else str(doc)))
    return out


def _has_legal_process(session: Session, referral_id: int) -> bool:
    return session.execute(select(LegalProcess.id).where(LegalProcess.referral_id == referral_id)
                           .limit(1)).first() is not None


def _gated(viewed_by_esp: bool | None, has_process: bool) -> bool:
    # Only a file the platform says it viewed is open without legal process: "unknown" is
    # treated as "not viewed" (DOMAIN.md: fileViewedByEsp false or absent).
    return viewed_by_esp is not True and not has_process


def _files(session: Session, report_id: int, has_process: bool) -> list[FileView]:
    files = list(session.scalars(select(File).where(File.report_id == report_id).order_by(File.seq)))
    if not files:
        return []
    ids = [f.id for f in files]
    matches: dict[str, list[FileMatchView]] = {}
    for m, label, bank in session.execute(
            select(FileMatch, BankEntry.label, HashBank.name)
            .outerjoin(BankEntry, BankEntry.id == FileMatch.bank_entry_id)
            .outerjoin(HashBank, HashBank.id == BankEntry.bank_id)
            .where(FileMatch.file_id.in_(ids)).order_by(FileMatch.id)):
        matches.setdefault(m.file_id, []).append(FileMatchView(m.kind, m.hash_type, m.distance, bank, label,
                                                               m.other_file_id))
    held = {sha for sha, name, has in session.execute(
        select(Blob.sha256, Blob.stored_name, Blob.data.is_not(None))
        .where(Blob.sha256.in_({f.sha256 for f in files}))) if name or has}
    return [FileView(id=f.id, seq=f.seq, file_name=f.file_name, media_type=f.media_type, size=f.size,
                     md5=f.md5, sha1=f.sha1, sha256=f.sha256, viewed_by_esp=f.viewed_by_esp,
                     relevance=f.file_relevance, classification=f.industry_classification,
                     gated=_gated(f.viewed_by_esp, has_process), held=f.sha256 in held,
                     matches=matches.get(f.id, [])) for f in files]


def _related(session: Session, report_id: int, agency_id: int) -> list[RelatedReport]:
    incidents = list(session.scalars(select(IncidentReport.incident_id).where(IncidentReport.report_id == report_id)))
    if not incidents:
        return []
    rows = session.execute(
        select(IncidentReport.incident_id, Referral).join(Referral, Referral.report_id == IncidentReport.report_id)
        .where(IncidentReport.incident_id.in_(incidents), IncidentReport.report_id != report_id,
               Referral.agency_id == agency_id)
        .order_by(Referral.report_id))
    return [RelatedReport(r.report_id, r.id, inc, _utc(r.made_available_at), bool(r.escalated)) for inc, r in rows]


def _events(session: Session, ref: Referral, summary: ReferralSummary,
            processes: list[LegalProcessView]) -> list[Event]:
    events = [Event(_utc(ref.made_available_at), "Made available",
                    detail=f"{ref.rule}: {ref.reason}")]
    if ref.escalated and ref.escalated_at:
        events.append(Event(_utc(ref.escalated_at), "Escalated"))
    if summary.transferred_from:
        events.append(Event(_utc(ref.made_available_at), "Transferred in",
                            detail=f"from {summary.transferred_from}"))
    users: dict[int, str] = {}
    actions = list(session.scalars(select(ReferralAction).where(ReferralAction.referral_id == ref.id)
                                   .order_by(ReferralAction.at, ReferralAction.id)))
    ids = {a.user_id for a in actions if a.user_id} | {a.assignee_user_id for a in actions if a.assignee_user_id}
    if ids:
        users = dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())
    for a in actions:
        who = users.get(a.user_id) if a.user_id else None
        if a.action == "acknowledge":
            events.append(Event(_utc(a.at), "Acknowledged", who))
        elif a.action == "assign":
            events.append(Event(_utc(a.at), "Assigned", who,
                                f"to {users.get(a.assignee_user_id, '?') if a.assignee_user_id else 'nobody'}"))
        elif a.action == "transfer":
            events.append(Event(_utc(a.at), "Transferred out", who,
                                f"to {summary.transferred_to or '?'}: {a.reason or ''}".strip()))
        else:
            events.append(Event(_utc(a.at), a.action.capitalize(), who, a.reason))
    for p in processes:
        events.append(Event(p.recorded_at, "Legal process recorded", p.by,
                            f"{p.label} {p.reference}, issued {p.issued_on.isoformat()}"))
    events.sort(key=lambda e: e.at)
    return events


def _legal_processes(session: Session, referral_id: int) -> list[LegalProcessView]:
    rows = session.execute(select(LegalProcess, User.username).outerjoin(User, User.id == LegalProcess.user_id)
                           .where(LegalProcess.referral_id == referral_id).order_by(LegalProcess.id))
    return [LegalProcessView(p.id, p.kind, p.reference, p.issued_on, _utc(p.recorded_at), name) for p, name in rows]


def get_referral(session: Session, settings: Settings, principal: Principal, referral_id: int, *,
                 where: Where | None = None, audit_action: str | None = "referral.read") -> ReferralDetail:
    """Everything an officer needs about one referral; the read is audited (``audit_action``)."""
    ref = _referral(session, principal, referral_id, Capability.REFERRAL_READ_OWN)
    report = session.get(Report, ref.report_id)
    if report is None:  # a referral's report is deleted with it (ON DELETE CASCADE)
        raise NotFound(f"no referral {referral_id}")
    agency = session.get(Agency, ref.agency_id)
    (summary,) = _summaries(session, settings, [ref])
    processes = _legal_processes(session, ref.id)
    idents = [{"kind": i.kind, "scope": i.scope, "value": i.value, "role": ri.role, "shared": i.shared,
               "source": ri.source}
              for ri, i in session.execute(select(ReportIdentifier, Identifier)
                                           .join(Identifier, Identifier.id == ReportIdentifier.identifier_id)
                                           .where(ReportIdentifier.report_id == report.id)
                                           .order_by(ReportIdentifier.role, Identifier.kind, Identifier.value))]
    locations = [{"source": loc.source, "detail": loc.detail, "country": loc.country, "region": loc.region,
                  "city": loc.city, "latitude": loc.latitude, "longitude": loc.longitude,
                  "confidence": loc.confidence}
                 for loc in session.scalars(select(Location).where(Location.report_id == report.id)
                                            .order_by(Location.confidence.desc(), Location.id))]
    jur = session.get(Jurisdiction, report.id)
    jurisdiction = None if jur is None else {"country": jur.country, "usState": jur.us_state, "source": jur.source,
                                             "confidence": jur.confidence, "reason": jur.reason}
    a = session.get(Assessment, report.id)
    assessment = None if a is None else {
        "priority": summary.priority, "pipelinePriority": a.priority, "priorityReasons": a.priority_reasons,
        "disposition": a.disposition, "dispositionReasons": a.disposition_reasons, "quality": a.quality,
        "missing": a.missing, "escalate": a.escalate}
    colleagues = [(u.id, u.username) for u in session.scalars(
        select(User).where(User.agency_id == ref.agency_id, User.role == "officer", User.disabled_at.is_(None))
        .order_by(User.username))]
    detail = ReferralDetail(
        summary=summary, agency_name=agency.name if agency else "?", report_state=report.state,
        received_at=_utc(report.finished_at or report.opened_at),
        incident_at=_utc(report.incident_at) if report.incident_at else None,
        fields=flatten(report.document or {}), identifiers=idents, locations=locations,
        jurisdiction=jurisdiction, assessment=assessment,
        files=_files(session, report.id, bool(processes)), related=_related(session, report.id, ref.agency_id),
        legal_process=processes, events=_events(session, ref, summary, processes), colleagues=colleagues)
    if audit_action is not None:
        _audit(session, principal, where or Where(), audit_action, ref.id, {"reportId": report.id})
    return detail


# --- files ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileContent:
    file_id: str
    file_name: str | None
    media_type: str | None
    sha256: str
    data: bytes


class Gated(NotFound):
    """The file exists but the platform did not view it and no legal process is recorded."""


def file_content(session: Session, blobs: Any, principal: Principal, referral_id: int, file_id: str, *,
                 where: Where | None = None, action: str = "referral.file_download") -> FileContent:
    """The decrypted bytes of one file of the referral's report, audited as ``action``.

    Raises :class:`Gated` (a :class:`NotFound`) for a file the platform did not view while
    the referral has no legal process, and :class:`NotFound` for anything else missing.
    """
    ref = _referral(session, principal, referral_id, Capability.REFERRAL_READ_OWN)
    if not isinstance(file_id, str) or not re.fullmatch(r"[A-Za-z0-9]{1,32}", file_id):
        raise NotFound(f"no file {file_id!r} in this referral")
    f = session.get(File, file_id)
    if f is None or f.report_id != ref.report_id:
        raise NotFound(f"no file {file_id} in this referral")
    if _gated(f.viewed_by_esp, _has_legal_process(session, ref.id)):
        raise Gated(f"file {file_id} was not viewed by the platform: it opens only after your agency "
                    "records legal process on this referral")
    row = session.execute(select(Blob.stored_name, Blob.data).where(Blob.sha256 == f.sha256)).first()
    if row is None or (row.stored_name is None and row.data is None):
        raise NotFound(f"the content of file {file_id} is not held (hashes only)")
    data = b"".join(blobs.open_held(row.stored_name, row.data))
    _audit(session, principal, where or Where(), action, ref.id, {"fileId": f.id, "sha256": f.sha256})
    return FileContent(f.id, f.file_name, f.media_type, f.sha256, data)


# --- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acknowledged:
    acknowledged_at: datetime
    #: False when the referral was acknowledged already (nothing was written).
    changed: bool


def acknowledge(session: Session, principal: Principal, referral_id: int, *, via: str = "page",
                where: Where | None = None, now: datetime | None = None) -> Acknowledged:
    """Acknowledge receipt; a second call changes nothing and answers the first time.

    Records ``ACKNOWLEDGED`` through the outcomes service when it is installed, so the
    statistics count acknowledgements from the same events as every other outcome.
    """
    ref = _referral(session, principal, referral_id, Capability.REFERRAL_ACT, lock=True)
    if ref.acknowledged_at is not None:
        return Acknowledged(_utc(ref.acknowledged_at), changed=False)
    now = _utc(now or datetime.now(UTC))
    ref.acknowledged_at = now
    session.add(ReferralAction(referral_id=ref.id, user_id=principal.user_id, action="acknowledge", at=now))
    w = where or Where()
    _audit(session, principal, w, "referral.acknowledge", ref.id)
    outcomes = outcomes_service()
    if outcomes is not None:
        outcomes.acknowledge(session, principal, ref.id, via=via, now=now, address=w.address,
                             request_id=w.request_id)
    session.flush()
    return Acknowledged(now, changed=True)


def assign(session: Session, principal: Principal, referral_id: int, assignee: str | int, *,
           where: Where | None = None, now: datetime | None = None) -> str:
    """Give the referral to an officer of the same agency (by username or user id); returns
    the assignee's username."""
    ref = _referral(session, principal, referral_id, Capability.REFERRAL_ACT, lock=True)
    if isinstance(assignee, int) and not isinstance(assignee, bool):
        user = session.get(User, assignee)
    elif isinstance(assignee, str) and 0 < len(assignee.strip()) <= 60:
        user = session.execute(select(User).where(User.username == assignee.strip())).scalar_one_or_none()
    else:
        raise Invalid("name the colleague to assign the referral to", "assignee")
    agency = session.get(Agency, ref.agency_id)
    code = agency.code if agency else "your agency"
    # Another agency's officer and a name that does not exist get the same answer: the
    # inbox does not tell who works elsewhere.
    if user is None or user.agency_id != ref.agency_id or user.role != "officer" or user.disabled_at is not None:
        raise Invalid(f"{assignee} is not an active officer of {code}: a referral can only be "
                      "assigned to a colleague of the same agency", "assignee")
    now = _utc(now or datetime.now(UTC))
    ref.assigned_user_id = user.id
    session.add(ReferralAction(referral_id=ref.id, user_id=principal.user_id, action="assign",
                               assignee_user_id=user.id, at=now))
    _audit(session, principal, where or Where(), "referral.assign", ref.id, {"assignee": user.username})
    session.flush()
    return user.username


def _text(value: Any, name: str, limit: int, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"give {what}", name)
    if len(value) > limit:
        raise Invalid(f"{what} is longer than {limit} characters", name)
    return value.strip()


def transfer(session: Session, principal: Principal, referral_id: int, agency_code: str, reason: str, *,
             where: Where | None = None, now: datetime | None = None) -> int:
    """Hand the referral over to another agency of the directory, with a reason.

    The other agency gets a referral of its own (``transferred_from_id`` pointing here);
    this one stays, marked transferred by its ``transfer`` action. Returns the new id.
    """
    ref = _referral(session, principal, referral_id, Capability.REFERRAL_ACT, lock=True)
    why = _text(reason, "reason", MAX_REASON, "a reason for the transfer")
    if not isinstance(agency_code, str) or not agency_code.strip() or len(agency_code) > 60:
        raise Invalid("name the agency to transfer to (its directory code, e.g. FBI)", "agency")
    target = session.execute(select(Agency).where(Agency.code == agency_code.strip().upper())).scalar_one_or_none()
    if target is None or not target.active:
        raise Invalid(f"no active agency {agency_code.strip()!r} in the directory", "agency")
    if target.id == ref.agency_id:
        raise Invalid("the referral is already your agency's: choose another agency", "agency")
    done = session.execute(select(ReferralAction.id).where(ReferralAction.referral_id == ref.id,
                                                           ReferralAction.action == "transfer")).first()
    if done is not None:
        raise Invalid("this referral was transferred already", "agency")
    existing = session.execute(select(Referral.id).where(Referral.report_id == ref.report_id,
                                                         Referral.agency_id == target.id)).first()
    if existing is not None:
        raise Invalid(f"{target.code} already has this report (a referral of its own)", "agency")
    own = session.get(Agency, ref.agency_id)
    now = _utc(now or datetime.now(UTC))
    new = Referral(report_id=ref.report_id, agency_id=target.id, rule="transfer",
                   reason=f"transferred by {own.code if own else '?'} ({principal.username}): {why}",
                   made_available_at=now, escalated=ref.escalated,
                   escalated_at=now if ref.escalated else None, transferred_from_id=ref.id)
    session.add(new)
    session.flush()
    session.add(ReferralAction(referral_id=ref.id, user_id=principal.user_id, action="transfer",
                               target_referral_id=new.id, reason=why, at=now))
    _audit(session, principal, where or Where(), "referral.transfer", ref.id,
           {"to": target.code, "newReferralId": new.id, "reason": why})
    session.flush()
    return int(new.id)


def parse_date(value: Any, name: str = "issuedOn") -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise Invalid("give the date as YYYY-MM-DD (e.g. 2026-03-01)", name)


def record_legal_process(session: Session, principal: Principal, referral_id: int, kind: str,
                         reference: str, issued_on: date | str, *, where: Where | None = None,
                         now: datetime | None = None) -> LegalProcessView:
    """Record legal process on the referral: it opens the files the platform did not view to
    this agency's officers."""
    ref = _referral(session, principal, referral_id, Capability.REFERRAL_ACT, lock=True)
    if kind not in LEGAL_PROCESS_KINDS:
        raise Invalid(f"the kind of legal process is one of {', '.join(LEGAL_PROCESS_KINDS)}", "kind")
    ref_text = _text(reference, "reference", MAX_REFERENCE, "the reference (docket or warrant number)")
    issued = parse_date(issued_on)
    now = _utc(now or datetime.now(UTC))
    if issued > now.date() + timedelta(days=1):  # a day of slack for time zones east of UTC
        raise Invalid("the date of legal process cannot be in the future", "issuedOn")
    if issued < EARLIEST_PROCESS:
        raise Invalid(f"the date of legal process cannot be before {EARLIEST_PROCESS.isoformat()}", "issuedOn")
    row = LegalProcess(referral_id=ref.id, user_id=principal.user_id, kind=kind, reference=ref_text,
                       issued_on=issued, recorded_at=now)
    session.add(row)
    session.flush()
    _audit(session, principal, where or Where(), "referral.legal_process", ref.id,
           {"kind": kind, "reference": ref_text, "issuedOn": issued.isoformat()})
    return LegalProcessView(row.id, kind, ref_text, issued, now, principal.username)


# --- overdue acknowledgements (reminders) -----------------------------------------------------


def overdue_acknowledgements(session: Session, settings: Settings, now: datetime, *,
                             agency_ids: Iterable[int] | None = None) -> dict[int, list[int]]:
    """Per agency id, its referrals past their acknowledgement deadline, oldest deadline first
    (a trusted server-side call: the reminders command)."""
    now = _utc(now)
    stmt = select(Referral.id, Referral.agency_id, Referral.report_id, Referral.made_available_at).where(
        Referral.acknowledged_at.is_(None),
        ~Referral.id.in_(select(ReferralAction.referral_id).where(ReferralAction.action == "transfer")))
    if agency_ids is not None:
        stmt = stmt.where(Referral.agency_id.in_(list(agency_ids)))
    rows = session.execute(stmt).all()
    prio = _priorities(session, [r.report_id for r in rows])
    late: dict[int, list[tuple[datetime, int]]] = {}
    for r in rows:
        dl = deadline_of(settings, r.made_available_at, prio.get(r.report_id))
        if now > dl:
            late.setdefault(r.agency_id, []).append((dl, r.id))
    return {aid: [i for _, i in sorted(v)] for aid, v in sorted(late.items())}
