"""Stage ``identifiers``: normalised identifiers of a report.

It reads the stored report tree and its files' details and writes one ``ReportIdentifier``
per (identifier, role) with the path it was found at; the ``links`` stage (``links.py``) then
links reports that share them. The rules are data (``data/identifiers.toml``) and are
explained in docs/routing.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tipline.kinds.hashes import CRYPTO_NAMES
from tipline.model.report import DeviceId, Email, IpCaptureEvent, Phone
from tipline.model.report import Report as ReportModel
from tipline.pipeline.core import (
    Outcome,
    StageContext,
    forget_objects,
    insert_rows,
    report_documents,
    stage,
)
from tipline.pipeline.identifiers import (
    Rules,
    handle_from_profile_url,
    load_rules,
    normalise_account_id,
    normalise_device,
    normalise_email,
    normalise_handle,
    normalise_ip,
    normalise_phone,
    normalise_profile_url,
    normalise_service,
)
from tipline.store.tables import (
    File,
    Identifier,
    Report,
    Reporter,
    ReportIdentifier,
)

CRYPTO_HASHES = frozenset(CRYPTO_NAMES)


@dataclass(frozen=True)
class Found:
    """One identifier occurrence in a report."""

    kind: str  # account | email | phone | ip | device
    scope: str
    value: str
    shared: bool
    role: str
    source: str
    at: datetime | None = None  # capture time, for IPs


def aware_utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class _Collector:
    def __init__(self, rules: Rules, default_service: str) -> None:
        self.rules = rules
        self.default_service = default_service
        self.out: list[Found] = []

    def add(self, kind: str, scope: str, value: str | None, role: str, source: str, *,
            shared: bool = False, at: datetime | None = None) -> None:
        if value is None or not value or len(value) > 512 or len(scope) > 100:
            return
        self.out.append(Found(kind, scope, value, shared, role, source[:255], aware_utc(at)))

    def account(self, obj: Any, role: str, path: str) -> None:
        service = normalise_service(getattr(obj, "espService", None), self.rules) or self.default_service
        ident = normalise_account_id(getattr(obj, "espIdentifier", None), service, self.rules)
        self.add("account", service, f"id:{ident}" if ident else None, role, f"{path}.espIdentifier")
        handle = normalise_handle(getattr(obj, "screenName", None), service, self.rules)
        self.add("account", service, f"handle:{handle}" if handle else None, role, f"{path}.screenName")
        for i, url in enumerate(getattr(obj, "profileUrl", []) or []):
            h = handle_from_profile_url(url, service, self.rules)
            if h:
                self.add("account", service, f"handle:{h}", role, f"{path}.profileUrl[{i}]")
            else:
                u = normalise_profile_url(url)
                self.add("account", service, f"url:{u}" if u else None, role, f"{path}.profileUrl[{i}]")

    def emails(self, emails: Iterable[Email], role: str, path: str) -> None:
        for i, e in enumerate(emails):
            self.add("email", "", normalise_email(e.value, self.rules), role, f"{path}[{i}]")

    def phones(self, phones: Iterable[Phone], role: str, path: str) -> None:
        for i, p in enumerate(phones):
            n = normalise_phone(p.value, p.countryCallingCode)
            if n is not None:
                self.add("phone", "e164" if n.e164 else "national", n.value, role, f"{path}[{i}]")

    def ips(self, events: Iterable[IpCaptureEvent], role: str, path: str) -> None:
        for i, ev in enumerate(events):
            n = normalise_ip(ev.ipAddress, ev.possibleProxy)
            if n is not None:
                self.add("ip", "", n.value, role, f"{path}[{i}]", shared=n.shared, at=ev.dateTime)

    def devices(self, devices: Iterable[DeviceId], role: str, path: str) -> None:
        for i, d in enumerate(devices):
            n = normalise_device(d.idType, d.idValue, self.rules)
            if n is not None:
                self.add("device", n.scope, n.value, role, f"{path}[{i}]", shared=n.placeholder)

    def person(self, person: Any, role: str, path: str) -> None:
        if person is None:
            return
        self.emails(person.email, role, f"{path}.email")
        self.phones(person.phone, role, f"{path}.phone")

    def party(self, obj: Any, role: str, path: str, person_attr: str) -> None:
        self.account(obj, role, path)
        self.person(getattr(obj, person_attr, None), role, f"{path}.{person_attr}")
        self.ips(obj.ipCaptureEvent, role, f"{path}.ipCaptureEvent")
        self.devices(obj.deviceId, role, f"{path}.deviceId")
        for j, acc in enumerate(getattr(obj, "associatedAccount", []) or []):
            apath = f"{path}.associatedAccount[{j}]"
            # An associated account may be a parent's or a business's: recorded, not linked on.
            self.account(acc, "associated", apath)
            self.emails(acc.email, "associated", f"{apath}.email")
            self.phones(acc.phone, "associated", f"{apath}.phone")
            self.ips(acc.ipCaptureEvent, "associated", f"{apath}.ipCaptureEvent")
            self.devices(acc.deviceId, "associated", f"{apath}.deviceId")


def extract(report: ReportModel, files: Sequence[tuple[int, dict[str, Any] | None]], default_service: str,
            rules: Rules) -> list[Found]:
    """Every identifier of a report tree and its files' details, with role and source path.

    ``default_service`` is the scope of accounts whose ``espService`` is missing: the
    reporting platform itself for ESP reports, ``unspecified`` for public ones.
    """
    c = _Collector(rules, default_service)
    for i, p in enumerate(report.personOrUserReported):
        c.party(p, "reported", f"personOrUserReported[{i}]", "personOrUserReportedPerson")
    for i, r in enumerate(report.intendedRecipient):
        c.party(r, "recipient", f"intendedRecipient[{i}]", "intendedRecipientPerson")
    for i, v in enumerate(report.victim):
        c.party(v, "victim", f"victim[{i}]", "victimPerson")
    c.person(report.reporter.reportingPerson, "reporter", "reporter.reportingPerson")
    for i, det in enumerate(report.internetDetails):
        path = f"internetDetails[{i}]"
        if det.emailIncident is not None:
            c.emails(det.emailIncident.emailAddress, "incident", f"{path}.emailIncident.emailAddress")
        if det.newsgroupIncident is not None:
            c.emails(det.newsgroupIncident.emailAddress, "incident", f"{path}.newsgroupIncident.emailAddress")
        if det.cellPhoneIncident is not None and det.cellPhoneIncident.phoneNumber is not None:
            c.phones([det.cellPhoneIncident.phoneNumber], "incident", f"{path}.cellPhoneIncident.phoneNumber")
        if det.peer2peerIncident is not None:
            # The peer's address in a P2P incident is the reported party's.
            c.ips(det.peer2peerIncident.ipCaptureEvent, "reported", f"{path}.peer2peerIncident.ipCaptureEvent")
    for seq, details in files:
        if not details:
            continue
        path = f"file[{seq}]"
        ev = details.get("ipCaptureEvent")
        if ev:
            c.ips([IpCaptureEvent.model_validate(ev)], "reported", f"{path}.ipCaptureEvent")
        devs = details.get("deviceId") or []
        c.devices([DeviceId.model_validate(d) for d in devs], "reported", f"{path}.deviceId")
    return c.out


FileDetailsList = list[tuple[int, dict[str, Any] | None]]


def load_report(session: Session, report_id: int) -> tuple[ReportModel | None, FileDetailsList, str]:
    """The parsed report (None once purged), its files' (seq, details) and its default service."""
    row = session.execute(
        select(Report.document, Report.source, Reporter.name, Reporter.kind)
        .join(Reporter, Reporter.id == Report.reporter_id).where(Report.id == report_id)
    ).one_or_none()
    if row is None or row.document is None:
        return None, [], "unspecified"
    files = [(int(seq), det) for seq, det in session.execute(
        select(File.seq, File.details).where(File.report_id == report_id).order_by(File.seq))]
    rules = load_rules()
    default = (normalise_service(row.name, rules) or "unspecified") if row.kind == "esp" else "unspecified"
    return ReportModel.model_validate(row.document), files, default


def dialect_insert(session: Session, table: Any) -> Any:
    """An INSERT for the session's dialect that supports ON CONFLICT."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {name}")


def identifier_ids(session: Session, keys: Iterable[tuple[str, str, str, bool]]) -> dict[tuple[str, str, str], int]:
    """Get or create Identifier rows for (kind, scope, value, shared); safe under concurrency.

    ``shared`` only ever goes from False to True: once any report shows an address behind a
    proxy, it is not used to link reports again.
    """
    wanted: dict[tuple[str, str, str], bool] = {}
    for kind, scope, value, shared in keys:
        wanted[(kind, scope, value)] = wanted.get((kind, scope, value), False) or shared
    if not wanted:
        return {}
    rows = [{"kind": k, "scope": s, "value": v, "shared": sh} for (k, s, v), sh in sorted(wanted.items())]
    session.execute(dialect_insert(session, Identifier).values(rows).on_conflict_do_nothing(
        index_elements=["kind", "scope", "value"]))
    out: dict[tuple[str, str, str], int] = {}
    keys_list = sorted(wanted)
    for i in range(0, len(keys_list), 300):
        chunk = keys_list[i:i + 300]
        conds = [and_(Identifier.kind == k, Identifier.scope == s, Identifier.value == v) for k, s, v in chunk]
        for ident in session.execute(select(Identifier).where(or_(*conds))).scalars():
            out[(ident.kind, ident.scope, ident.value)] = ident.id
            if wanted[(ident.kind, ident.scope, ident.value)] and not ident.shared:
                session.execute(update(Identifier).where(Identifier.id == ident.id).values(shared=True))
    return out


def load_reports(session: Session, report_ids: list[int]
                 ) -> dict[int, tuple[ReportModel | None, FileDetailsList, str]]:
    """``load_report`` for many reports: the documents from the group's decoded ones
    (``report_documents``), the reporters in one statement per 500 reports."""
    rules = load_rules()
    out: dict[int, tuple[ReportModel | None, FileDetailsList, str]] = {}
    docs = report_documents(session, report_ids)
    for i in range(0, len(report_ids), 500):
        chunk = report_ids[i:i + 500]
        for row in session.execute(
                select(Report.id, Reporter.name, Reporter.kind)
                .join(Reporter, Reporter.id == Report.reporter_id).where(Report.id.in_(chunk))):
            doc = docs.get(int(row.id))
            if doc is None or doc.document is None:
                out[int(row.id)] = (None, [], "unspecified")
                continue
            default = (normalise_service(row.name, rules) or "unspecified") if row.kind == "esp" else "unspecified"
            out[int(row.id)] = (doc.model(), [(f.seq, f.details) for f in doc.files], default)
    return out


#: Keys per statement when getting or creating identifiers in bulk (4 parameters each: well
#: under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters).
_KEYS_PER_STATEMENT = 2000


#: Identifiers by (kind, scope, value) for many keys, joined to the keys as a table so both
#: planners walk the unique index key by key. A row-value ``(kind, scope, value) IN (VALUES
#: ...)`` was planned by SQLite as a scan of the whole identifiers table per group, a cost that
#: grew with the store (tests/test_query_plans.py). The keys travel as one parameter (a JSON
#: array, or three arrays), so each backend compiles and caches a single statement.
_BY_KEYS = {
    "sqlite": text(
        "SELECT i.id, i.kind, i.scope, i.value, i.shared FROM json_each(:keys) AS j"
        " JOIN identifiers AS i ON i.kind = json_extract(j.value, '$[0]')"
        " AND i.scope = json_extract(j.value, '$[1]') AND i.value = json_extract(j.value, '$[2]')"),
    "postgresql": text(
        "SELECT i.id, i.kind, i.scope, i.value, i.shared"
        " FROM unnest(CAST(:kinds AS varchar[]), CAST(:scopes AS varchar[]), CAST(:ids AS varchar[]))"
        " AS j(kind, scope, value)"
        " JOIN identifiers AS i ON i.kind = j.kind AND i.scope = j.scope AND i.value = j.value"),
}


def _by_keys(session: Session, keys: Sequence[tuple[str, str, str]]) -> tuple[Any, dict[str, Any]]:
    """The statement of ``_BY_KEYS`` for the session's backend and its parameters for ``keys``."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return _BY_KEYS[dialect], {"keys": json.dumps(keys)}
    return _BY_KEYS[dialect], {"kinds": [k for k, _, _ in keys], "scopes": [s for _, s, _ in keys],
                               "ids": [v for _, _, v in keys]}


def identifier_ids_bulk(session: Session, keys: Iterable[tuple[str, str, str, bool]]
                        ) -> dict[tuple[str, str, str], int]:
    """``identifier_ids`` for a whole group: three statements per 2,000 distinct keys.

    One executemany INSERT ... ON CONFLICT DO NOTHING, one SELECT of the keys joined to the
    identifiers (``_BY_KEYS``), and one UPDATE for the identifiers that became shared.
    """
    wanted: dict[tuple[str, str, str], bool] = {}
    for kind, scope, value, shared in keys:
        wanted[(kind, scope, value)] = wanted.get((kind, scope, value), False) or shared
    out: dict[tuple[str, str, str], int] = {}
    keys_list = sorted(wanted)
    for i in range(0, len(keys_list), _KEYS_PER_STATEMENT):
        chunk = keys_list[i:i + _KEYS_PER_STATEMENT]
        # Rows as parameters (executemany, in key order so two groups cannot deadlock), not
        # .values(rows): a many-row VALUES is compiled anew for every group, which cost more
        # than the inserts.
        session.execute(dialect_insert(session, Identifier).on_conflict_do_nothing(
            index_elements=["kind", "scope", "value"]),
            [{"kind": k, "scope": sc, "value": v, "shared": wanted[(k, sc, v)]} for k, sc, v in chunk])
        now_shared: list[int] = []
        for iid, k, sc, v, shared in session.execute(*_by_keys(session, chunk)):
            out[(k, sc, v)] = int(iid)
            if wanted[(k, sc, v)] and not shared:
                now_shared.append(int(iid))
        if now_shared:
            session.execute(update(Identifier).where(Identifier.id.in_(now_shared)).values(shared=True)
                            .execution_options(synchronize_session=False))
    return out


def identifiers_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The identifiers stage over a group: a fixed number of statements, not a few per report.

    Writes what ``identifiers_stage`` run on each report in turn writes: an identifier's
    ``shared`` only ever goes from False to True, so it ends the same whichever report of the
    group showed it behind a proxy first.
    """
    rules = load_rules()
    ids = list(report_ids)
    for i in range(0, len(ids), 500):
        session.execute(delete(ReportIdentifier).where(ReportIdentifier.report_id.in_(ids[i:i + 500])))
    loaded = load_reports(session, ids)
    found: dict[int, list[Found]] = {}
    for rid in ids:
        report, files, default_service = loaded.get(rid, (None, [], "unspecified"))
        if report is not None:
            found[rid] = extract(report, files, default_service, rules)
    idents = identifier_ids_bulk(session, ((f.kind, f.scope, f.value, f.shared)
                                           for lst in found.values() for f in lst))
    out_rows: list[dict[str, Any]] = []
    for rid in ids:
        rows: dict[tuple[int, str], str] = {}
        for f in found.get(rid, []):
            rows.setdefault((idents[(f.kind, f.scope, f.value)], f.role), f.source)  # the first place it was found
        out_rows += [{"report_id": rid, "identifier_id": iid, "role": role, "source": src}
                     for (iid, role), src in sorted(rows.items())]
    insert_rows(session, ReportIdentifier, out_rows)
    forget_objects(session, Identifier, ReportIdentifier)
    return dict.fromkeys(ids, Outcome.DONE)


@stage("identifiers", version="1", group=identifiers_group)
def identifiers_stage(ctx: StageContext, session: Session, report_id: int) -> None:
    """Normalise the report's accounts, e-mails, phones, IPs and device ids into Identifier rows."""
    # The same code as the group form, on a group of one. (The report's document cannot change
    # under us: the runner holds the report's lock, which an addendum takes too.)
    identifiers_group(ctx, session, [report_id])
