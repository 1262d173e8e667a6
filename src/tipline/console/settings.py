"""What supervisors manage (DESIGN.md: "manages hash banks and routing"): the hash banks,
the routing rules and the agency directory, read with where each came from, and changed
through the very functions the command line uses (``tipline bank import|enable|disable``,
``tipline agency import``).

Access is decided here with :func:`~tipline.kinds.roles.may` and
:data:`~tipline.kinds.roles.Capability.CONFIG_MANAGE`: anyone else gets the same
:class:`NotFound` as for a bank that does not exist. Every change needs a reason; the web
layer writes the audit row in the same transaction, so a change and its row commit together.

The routing rules are a file of the installation (``data/routing.toml``); no command
changes them, so neither does a page: :func:`routing` says where they are changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from tipline.console.service import NotFound, Refused, _reason
from tipline.kinds.roles import Capability, may
from tipline.people.principal import Principal
from tipline.pipeline import banks as bank_store
from tipline.pipeline import directory
from tipline.store.tables import Agency, BankEntry, HashBank, Referral
from tipline.store.tables_people import AuditEvent

#: The largest bank or agency file a page takes (the command line reads any size).
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
#: The most distinct labels a bank's page lists (most frequent first).
LABELS_SHOWN = 50
#: Audit object kinds of the things changed here.
BANK_OBJECT = "hash_bank"
DIRECTORY_OBJECT = "agency_directory"


def _require(principal: Principal) -> None:
    if not may(principal.role, Capability.CONFIG_MANAGE):
        raise NotFound()


# --- hash banks ------------------------------------------------------------------------------


@dataclass
class Change:
    """One recorded change of a bank or the directory (a row of the audit trail)."""

    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass
class BankView:
    id: int
    name: str
    enabled: bool
    pdq_threshold: int
    description: str | None
    created_at: datetime
    entries: dict[str, int]
    total: int
    labelled: int
    first_added: datetime | None
    last_added: datetime | None
    #: How many imports are on record: the bank's version is "import N".
    imports: int
    last_change: Change | None
    history: list[Change] = field(default_factory=list)
    labels: list[tuple[str, int]] = field(default_factory=list)

    @property
    def version(self) -> str:
        if self.imports:
            return f"import {self.imports}"
        return "loaded before imports were recorded"


def _history(s: Session, kind: str, object_id: str | None, limit: int | None = None) -> list[Change]:
    q = (select(AuditEvent).where(AuditEvent.object_kind == kind,
                                  AuditEvent.object_id.is_(None) if object_id is None
                                  else AuditEvent.object_id == object_id)
         .order_by(AuditEvent.seq.desc()))
    if limit is not None:
        q = q.limit(limit)
    return [Change(e.at, e.actor, e.action, dict(e.detail or {})) for e in s.scalars(q)]


def _bank_views(s: Session, only: int | None = None) -> list[BankView]:
    where = [] if only is None else [BankEntry.bank_id == only]
    counts: dict[int, dict[str, int]] = {}
    for bank_id, htype, n in s.execute(select(BankEntry.bank_id, BankEntry.hash_type, func.count())
                                       .where(*where).group_by(BankEntry.bank_id, BankEntry.hash_type)):
        counts.setdefault(bank_id, {})[htype] = int(n)
    spans = {r[0]: (int(r[1]), r[2], r[3]) for r in s.execute(
        select(BankEntry.bank_id, func.count(BankEntry.label), func.min(BankEntry.added_at),
               func.max(BankEntry.added_at)).where(*where).group_by(BankEntry.bank_id))}
    imports = dict(s.execute(select(AuditEvent.object_id, func.count()).where(
        AuditEvent.object_kind == BANK_OBJECT, AuditEvent.action == "bank.import")
        .group_by(AuditEvent.object_id)).all())
    q = select(HashBank).order_by(HashBank.name)
    if only is not None:
        q = q.where(HashBank.id == only)
    out = []
    for b in s.scalars(q):
        labelled, first, last = spans.get(b.id, (0, None, None))
        latest = _history(s, BANK_OBJECT, str(b.id), limit=1)
        out.append(BankView(b.id, b.name, b.enabled, b.pdq_threshold, b.description, b.created_at,
                            counts.get(b.id, {}), sum(counts.get(b.id, {}).values()), labelled, first, last,
                            int(imports.get(str(b.id), 0)), latest[0] if latest else None))
    return out


def hash_banks(s: Session, principal: Principal) -> list[BankView]:
    """Every bank: state, threshold, sizes per hash type, when its entries were loaded, and
    its latest recorded change."""
    _require(principal)
    return _bank_views(s)


def hash_bank(s: Session, principal: Principal, bank_id: int) -> BankView:
    """One bank with its most frequent labels and every recorded change (its provenance)."""
    _require(principal)
    found = _bank_views(s, only=bank_id)
    if not found:
        raise NotFound()
    view = found[0]
    view.history = _history(s, BANK_OBJECT, str(bank_id))
    view.labels = [(str(label), int(n)) for label, n in s.execute(
        select(BankEntry.label, func.count().label("n")).where(BankEntry.bank_id == bank_id,
                                                               BankEntry.label.is_not(None))
        .group_by(BankEntry.label).order_by(func.count().desc(), BankEntry.label).limit(LABELS_SHOWN))]
    return view


def set_bank_enabled(s: Session, principal: Principal, bank_id: int, enabled: bool,
                     reason: str | None) -> dict[str, Any]:
    """Enable or disable a bank, as ``tipline bank enable|disable`` does; the audit detail."""
    _require(principal)
    bank = s.get(HashBank, bank_id)
    if bank is None:
        raise NotFound()
    why = _reason(reason)
    if bank.enabled == enabled:
        raise Refused(f"Bank {bank.name} is already {'enabled' if enabled else 'disabled'}.")
    bank_store.set_enabled(s, bank.name, enabled)
    return {"bank": bank.name, "enabled": enabled, "reason": why}


@dataclass(frozen=True)
class Imported:
    bank_id: int
    result: bank_store.ImportResult
    detail: dict[str, Any]


def import_hash_bank(s: Session, principal: Principal, name: str, data: bytes, *, source: str, fmt: str,
                     description: str | None, pdq_threshold: int | None, reason: str | None) -> Imported:
    """Import a bank file, as ``tipline bank import`` does: all or nothing; the file's name and
    SHA-256 go into the audit detail, so the bank's provenance is on record."""
    _require(principal)
    why = _reason(reason)
    name = name.strip()
    if not name or len(name) > 100:
        raise Refused("Give the bank a name of 1 to 100 characters.")
    if fmt not in bank_store.FORMATS:
        raise Refused(f"Choose a format: {', '.join(bank_store.FORMATS)}.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise Refused(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB: "
                      "import it with `tipline bank import` instead.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Refused("The file is not UTF-8 text.") from None
    try:
        result = bank_store.import_bank(s, name, text, fmt=fmt, description=(description or "").strip() or None,
                                        pdq_threshold=pdq_threshold, source=source)
    except bank_store.BankImportError as exc:
        shown = exc.errors[:10] + ([f"… and {len(exc.errors) - 10} more"] if len(exc.errors) > 10 else [])
        raise Refused("Nothing was imported: " + "; ".join(shown)) from None
    bank_id = s.execute(select(HashBank.id).where(HashBank.name == name)).scalar_one()
    detail = import_detail(result, source=source, data=data, fmt=fmt, reason=why)
    return Imported(bank_id, result, detail)


def import_detail(result: bank_store.ImportResult, *, source: str, data: bytes, fmt: str,
                  reason: str | None) -> dict[str, Any]:
    """What an import's audit row says (the page and ``tipline bank import`` alike)."""
    return {"bank": result.bank, "file": source, "sha256": hashlib.sha256(data).hexdigest(), "format": fmt,
            "added": result.added, "relabelled": result.relabelled, "unchanged": result.unchanged,
            "skipped": len(result.skipped), **({"reason": reason} if reason else {})}


# --- routing rules ---------------------------------------------------------------------------


@dataclass
class RoutingView:
    path: Path
    sha256: str
    rules: directory.RoutingRules
    #: Each precedence class with its confidence (tipline.kinds.locations).
    precedence: list[tuple[str, float]]
    #: Referrals made by each rule (by name; "manual" for analysts' routing by hand).
    referrals: dict[str, int]


def routing(s: Session, principal: Principal) -> RoutingView:
    """The routing rules in force: the file, its SHA-256 (its version), precedence with
    confidences, the rules and how many referrals each made."""
    _require(principal)
    path = directory.ROUTING_FILE
    rules = directory.load_routing()
    used = {str(rule): int(n) for rule, n in s.execute(select(Referral.rule, func.count()).group_by(Referral.rule))}
    return RoutingView(path, hashlib.sha256(path.read_bytes()).hexdigest(), rules,
                       [(c, directory.LOCATION_CONFIDENCE[c]) for c in rules.precedence], used)


# --- the agency directory --------------------------------------------------------------------


@dataclass
class AgencyView:
    agency: Agency
    referrals: int
    escalated: int
    acknowledged: int


def agencies(s: Session, principal: Principal, *, include_inactive: bool = True) -> list[AgencyView]:
    """The directory (inactive agencies too: referrals point at them), with each agency's
    referral counts."""
    _require(principal)
    counts = {r[0]: (int(r[1]), int(r[2] or 0), int(r[3])) for r in s.execute(
        select(Referral.agency_id, func.count(), func.count(case((Referral.escalated.is_(True), 1))),
               func.count(Referral.acknowledged_at)).group_by(Referral.agency_id))}
    q = select(Agency).order_by(Agency.kind, Agency.country, Agency.us_state, Agency.code)
    if not include_inactive:
        q = q.where(Agency.active.is_(True))
    return [AgencyView(a, *counts.get(a.id, (0, 0, 0))) for a in s.scalars(q)]


def directory_history(s: Session, principal: Principal) -> list[Change]:
    _require(principal)
    return _history(s, DIRECTORY_OBJECT, None, limit=20)


def import_directory(s: Session, principal: Principal, data: bytes, *, source: str,
                     reason: str | None) -> tuple[directory.ImportResult, dict[str, Any]]:
    """Replace the directory with an agency CSV, as ``tipline agency import FILE`` does:
    agencies missing from it are deactivated, never deleted."""
    _require(principal)
    why = _reason(reason)
    if len(data) > MAX_UPLOAD_BYTES:
        raise Refused(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB.")
    try:
        rows = directory.parse_agencies(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise Refused("The file is not UTF-8 text.") from None
    except directory.DirectoryError as exc:
        raise Refused("Nothing was imported: " + str(exc)) from None
    if not rows:
        raise Refused("Nothing was imported: the file lists no agencies (that would deactivate every one).")
    result = directory.import_agencies(s, rows)
    return result, directory_detail(result, rows=len(rows), source=source, data=data, reason=why)


def directory_detail(result: directory.ImportResult, *, rows: int, source: str, data: bytes,
                     reason: str | None) -> dict[str, Any]:
    """What a directory import's audit row says (the page and ``tipline agency import`` alike)."""
    return {"file": source, "sha256": hashlib.sha256(data).hexdigest(), "agencies": rows,
            "added": result.added, "updated": result.updated, "unchanged": result.unchanged,
            "deactivated": result.deactivated, **({"reason": reason} if reason else {})}
