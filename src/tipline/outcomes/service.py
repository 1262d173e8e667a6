"""The outcome service: every way in (page, JSON API, CSV, simulator, CLI) records through
:func:`record_outcome`, so the validation, the access rules and the audit rows are the same.

An outcome is a dated event on a referral and is never edited. Four kinds of event exist,
stored in ``outcomes.kind``:

``record``
    A new outcome: a code of the registry (``tipline.kinds.outcomes``) with its details.
``amend``
    A correction: ``supersedes`` names the event it corrects (the latest version of it). The
    amendment carries the full corrected values (fields left out are taken from the event it
    corrects; ``null`` clears an optional one) and keeps the code: to change a code, withdraw
    the event and record the right one.
``withdraw``
    The event (every version of it) is taken back, as if never recorded. It takes only a note.
``reopen``
    A referral closed by a terminal code (CLEARED_EXCEPTIONALLY, CLOSED_NOT_ACTIONABLE,
    CLOSED_NOT_PURSUED) is open again from ``occurredOn``; ``supersedes`` names the closing
    (optional: the one open closing is meant). The closing stays in the timeline as something
    that happened, but no longer closes the referral, so another terminal code may follow.

At most one terminal code is open per referral: recording a second one is refused until the
first is reopened or withdrawn. A code that does not repeat (ACKNOWLEDGED, LINKED_DUPLICATE,
INVESTIGATION_OPENED) is refused while it stands.

The contract of :func:`effective_outcomes` (statistics rely on it)
------------------------------------------------------------------
``effective_outcomes(events)`` is pure: give it *every* event of the referrals concerned (any
order; anything with ``id``, ``referral_id``, ``code``, ``kind`` and ``supersedes_id``, such as
``Outcome`` rows) and it returns one :class:`EffectiveEvent` per event, in ``id`` order, whose
``state`` is

- ``"effective"``: an outcome that stands now, with the values of this row (count these);
- ``"superseded"``: a version replaced by an amendment (``changed_by`` names it); its values
  no longer count, the amendment's do;
- ``"withdrawn"``: every version of a withdrawn event (``changed_by``: the withdrawal);
- ``"reopened"``: the standing version of a terminal event that a later ``reopen`` re-opened:
  it happened (the referral was closed for a while) but does not close the referral now;
- ``"action"``: a ``withdraw`` or ``reopen`` event itself, which is not an outcome.

``root_id`` is the id of the ``record`` an event belongs to (an amendment's original), so each
outcome counts once however often it was amended. An action naming an event that was not
passed raises ``ValueError``. A referral with no events has no entry: it is *unknown*, never
"no arrest".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tipline.kinds.outcomes import DETAIL_KEYS, OutcomeCode, OutcomeRegistry, registry
from tipline.kinds.roles import ROLES, Capability, Scope, may
from tipline.people import audit
from tipline.people.principal import Principal
from tipline.store.tables import Referral
from tipline.store.tables_people import Outcome

#: The kinds of event (``outcomes.kind``).
KINDS: tuple[str, ...] = ("record", "amend", "withdraw", "reopen")
#: The ways in (``outcomes.via``).
VIAS: tuple[str, ...] = ("page", "api", "csv", "sim", "cli")
#: The fields a payload may carry besides the details of ``DETAIL_KEYS``.
BASE_KEYS: tuple[str, ...] = ("code", "occurredOn", "kind", "supersedes")
#: Counts (persons, children) above this are typing errors, not cases.
MAX_COUNT = 10_000
MAX_NOTE = 2000
MAX_KEY = 255
#: The code whose recording is the receipt of a referral (sets ``referrals.acknowledged_at``).
ACKNOWLEDGED = "ACKNOWLEDGED"
#: Dates are calendar dates where the officer is. Any date that is "today" somewhere on Earth
#: (UTC-12 to UTC+14) is accepted, so that no officer is refused for their time zone.
_EAST = timedelta(hours=14)
_WEST = timedelta(hours=12)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_COUNTS = ("persons", "children")


# --- errors (protocol-neutral; adapters map them: 422, 404, 403, 409 / a row error / a message)


class OutcomeError(Exception):
    """A refused outcome: ``field`` names the payload key at fault (None: the whole call)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Invalid(OutcomeError):
    """The payload breaks the registry or a rule of dates and counts."""


class NotFound(OutcomeError):
    """No such referral for this caller: a foreign referral is answered exactly like a missing one."""


class Forbidden(OutcomeError):
    """The caller's role may not do this at all (whatever the referral)."""


class Conflict(OutcomeError):
    """The event conflicts with the referral's timeline or with an earlier use of the idempotency key."""


# --- the effective state of a timeline (pure) -------------------------------------------------


class EventLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def referral_id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def supersedes_id(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class EffectiveEvent:
    id: int
    referral_id: int
    code: str
    kind: str
    #: effective | superseded | withdrawn | reopened | action (module docstring)
    state: str
    #: The ``record`` this event is a version of (itself for a record; None for an action).
    root_id: int | None
    #: The amendment, withdrawal or reopening that changed this event's standing, if any.
    changed_by: int | None


def effective_outcomes(events: Iterable[EventLike]) -> list[EffectiveEvent]:
    """The standing of every event (see the module docstring for the contract)."""
    evs = sorted(events, key=lambda e: e.id)
    root_of: dict[int, int] = {}
    current: dict[int, int] = {}  # root -> its latest version
    members: dict[int, list[int]] = {}
    ended: dict[int, tuple[str, int]] = {}  # root -> (withdrawn | reopened, by event id)
    changed_by: dict[int, int] = {}
    for e in evs:
        if e.kind == "record":
            root_of[e.id] = e.id
            current[e.id] = e.id
            members[e.id] = [e.id]
            continue
        if e.supersedes_id is None or e.supersedes_id not in root_of:
            if e.kind == "reopen" and e.supersedes_id is None:
                raise ValueError(f"reopen event {e.id} names no event (the service always stores it)")
            raise ValueError(f"event {e.id} ({e.kind}) names event {e.supersedes_id}, which was not passed")
        root = root_of[e.supersedes_id]
        if e.kind == "amend":
            changed_by[current[root]] = e.id
            root_of[e.id] = root
            current[root] = e.id
            members[root].append(e.id)
        elif e.kind == "withdraw":
            ended[root] = ("withdrawn", e.id)
        elif e.kind == "reopen":
            if ended.get(root, ("", 0))[0] != "withdrawn":
                ended[root] = ("reopened", e.id)
        else:
            raise ValueError(f"event {e.id} has unknown kind {e.kind!r}")
    out: list[EffectiveEvent] = []
    for e in evs:
        if e.kind in ("withdraw", "reopen"):
            out.append(EffectiveEvent(e.id, e.referral_id, e.code, e.kind, "action", None, None))
            continue
        root = root_of[e.id]
        end = ended.get(root)
        by: int | None
        if end is not None and end[0] == "withdrawn":
            state, by = "withdrawn", end[1]
        elif current[root] != e.id:
            state, by = "superseded", changed_by.get(e.id)
        elif end is not None:
            state, by = "reopened", end[1]
        else:
            state, by = "effective", None
        out.append(EffectiveEvent(e.id, e.referral_id, e.code, e.kind, state, root, by))
    return out


def open_terminal(effective: Sequence[EffectiveEvent], reg: OutcomeRegistry | None = None) -> EffectiveEvent | None:
    """The terminal event that closes the referral now, if any (at most one by construction)."""
    reg = reg or registry()
    for e in effective:
        oc = reg.get(e.code)
        if e.state == "effective" and oc is not None and oc.terminal:
            return e
    return None


def codes_json() -> dict[str, Any]:
    """The registry as the API and the officer's outcome form show it: each code with its title,
    mapping, whether it repeats or closes, the details it takes and needs, and their allowed values."""
    reg = registry()
    out = []
    for oc in reg.codes.values():
        values = {k: v for k in oc.details if (v := reg.allowed(oc, k)) is not None}
        out.append({"code": oc.code, "title": oc.title, "mapsTo": oc.maps_to, "repeats": oc.repeats,
                    "terminal": oc.terminal, "stage": oc.stage, "details": [*oc.details, "note"],
                    "required": list(oc.required), "values": values})
    return {"version": reg.version, "codes": out}


# --- views ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutcomeView:
    """One event as the adapters show it (JSON keys of the API: :meth:`as_json`)."""

    id: int
    referral_id: int
    code: str
    kind: str
    supersedes: int | None
    occurred_on: date
    details: dict[str, Any]
    via: str
    user_id: int | None
    recorded_at: datetime
    codes_version: str
    state: str
    changed_by: int | None
    import_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "outcomeId": self.id, "referralId": self.referral_id, "code": self.code, "kind": self.kind,
            "supersedes": self.supersedes, "occurredOn": self.occurred_on.isoformat(),
            **self.details,
            "via": self.via, "recordedAt": self.recorded_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "codesVersion": self.codes_version, "state": self.state, "changedBy": self.changed_by,
        }


@dataclass(frozen=True, slots=True)
class Recorded:
    outcome: OutcomeView
    #: False when an idempotency key (or a CSV row already imported) returned the first event.
    created: bool


def _details(row: Outcome) -> dict[str, Any]:
    return {key: getattr(row, column) for key, column in DETAIL_KEYS.items()}


def _view(row: Outcome, eff: EffectiveEvent | None) -> OutcomeView:
    recorded = row.recorded_at if row.recorded_at.tzinfo else row.recorded_at.replace(tzinfo=UTC)
    return OutcomeView(
        id=row.id, referral_id=row.referral_id, code=row.code, kind=row.kind, supersedes=row.supersedes_id,
        occurred_on=row.occurred_on, details=_details(row), via=row.via, user_id=row.user_id,
        recorded_at=recorded, codes_version=row.codes_version,
        state=eff.state if eff else "effective", changed_by=eff.changed_by if eff else None,
        import_id=row.import_id,
    )


# --- access -----------------------------------------------------------------------------------


def _not_found(referral_id: int) -> NotFound:
    return NotFound("referralId", f"no referral {referral_id}")


def _referral(session: Session, principal: Principal | None, referral_id: int, *, write: bool,
              agency_id: int | None) -> Referral:
    """The referral, if this caller may see it (writes lock it: the terminal rule is checked once).

    ``principal`` None is a trusted server-side caller (the operator's CLI, the simulator);
    ``agency_id`` then narrows it to one agency (``tipline outcome import --agency``).
    """
    if principal is not None:
        role = ROLES.get(principal.role)
        readers = (Capability.REFERRAL_READ_OWN, Capability.REPORT_READ)
        if role is None or not any(may(principal.role, c) for c in readers):
            # A role that cannot see referrals at all is answered as if it did not exist
            # (DESIGN.md: out-of-scope objects answer 404, never 403) ...
            raise _not_found(referral_id)
        if write and not may(principal.role, Capability.REFERRAL_ACT):
            # ... one that sees it (an analyst) is told it may not record.
            raise Forbidden(None, f"the role {principal.role!r} may not record outcomes")
        if role.scope == Scope.AGENCY:
            if principal.agency_id is None:
                raise _not_found(referral_id)
            agency_id = principal.agency_id if agency_id is None or agency_id == principal.agency_id else -1
        elif role.scope == Scope.PLATFORM:
            raise _not_found(referral_id)
    if isinstance(referral_id, bool) or not isinstance(referral_id, int) or not 1 <= referral_id < 2**31:
        raise _not_found(referral_id)
    stmt = select(Referral).where(Referral.id == referral_id)
    if write:
        stmt = stmt.with_for_update()
    ref = session.execute(stmt).scalar_one_or_none()
    # A foreign referral answers exactly as a missing one (DESIGN.md: 404, never 403).
    if ref is None or (agency_id is not None and ref.agency_id != agency_id):
        raise _not_found(referral_id)
    return ref


# --- validation -------------------------------------------------------------------------------


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_date(value: Any, field_name: str = "occurredOn") -> date:
    if isinstance(value, datetime):
        raise Invalid(field_name, "give a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value.strip()):
        raise Invalid(field_name, f"{value!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(field_name, f"{value!r} is not a calendar date") from None


def _check_date(d: date, ref: Referral, now: datetime) -> None:
    latest = (now + _EAST).date()
    if d > latest:
        raise Invalid("occurredOn", f"{d.isoformat()} is in the future")
    earliest = (_utc(ref.made_available_at) - _WEST).date()
    if d < earliest:
        raise Invalid("occurredOn", f"{d.isoformat()} is before referral {ref.id} was made available "
                                    f"({_utc(ref.made_available_at).date().isoformat()})")


def _check_detail(reg: OutcomeRegistry, oc: OutcomeCode, key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _COUNTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(key, f"{key} must be a whole number, got {value!r}")
        if not 1 <= value <= MAX_COUNT:
            raise Invalid(key, f"{key} must be at least 1 (and at most {MAX_COUNT}), got {value}")
        return value
    if not isinstance(value, str):
        raise Invalid(key, f"{key} must be a string, got {value!r}")
    if key == "note":
        text = value.strip()
        if len(text) > MAX_NOTE:
            raise Invalid(key, f"note is {len(text)} characters; at most {MAX_NOTE}")
        return text or None
    allowed = reg.allowed(oc, key)
    if allowed is not None and value not in allowed:
        raise Invalid(key, f"{value!r} is not a {key} of {oc.code} (one of {', '.join(allowed)})")
    return value


def _check_details(reg: OutcomeRegistry, oc: OutcomeCode, given: Mapping[str, Any]) -> dict[str, Any]:
    """The details for ``oc`` with every key of DETAIL_KEYS (None when absent)."""
    takes = (*oc.details, "note")
    out: dict[str, Any] = {}
    for key in DETAIL_KEYS:
        value = given.get(key)
        if value is not None and key not in takes:
            others = ", ".join(d for d in takes)
            raise Invalid(key, f"{oc.code} takes no {key} (it takes {others})")
        out[key] = _check_detail(reg, oc, key, value)
    for key in oc.required:
        if out.get(key) is None:
            raise Invalid(key, f"{oc.code} needs {key}")
    return out


def request_hash_of(referral_id: int, payload: Mapping[str, Any]) -> str:
    """The SHA-256 an idempotency key is bound to: the referral and the payload, canonically."""
    doc = {"referralId": referral_id, **{k: payload[k] for k in sorted(payload)}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
                          .encode()).hexdigest()


def _replay(session: Session, ref: Referral, key: str, rh: str) -> Recorded | None:
    row = session.execute(select(Outcome).where(Outcome.agency_id == ref.agency_id,
                                                Outcome.idempotency_key == key)).scalar_one_or_none()
    if row is None:
        return None
    if row.referral_id != ref.id or row.request_hash != rh:
        raise Conflict("Idempotency-Key", f"the idempotency key {key!r} was already used for another "
                                          f"request (outcome {row.id} on referral {row.referral_id})")
    return Recorded(_timeline_view(session, row), created=False)


def _timeline(session: Session, referral_id: int) -> list[Outcome]:
    return list(session.scalars(select(Outcome).where(Outcome.referral_id == referral_id).order_by(Outcome.id)))


def _timeline_view(session: Session, row: Outcome) -> OutcomeView:
    eff = {e.id: e for e in effective_outcomes(_timeline(session, row.referral_id))}
    return _view(row, eff.get(row.id))


# --- the service ------------------------------------------------------------------------------


def record_outcome(
    session: Session,
    principal: Principal | None,
    referral_id: int,
    payload: Mapping[str, Any],
    *,
    via: str,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    now: datetime | None = None,
    agency_id: int | None = None,
    import_id: int | None = None,
    actor_name: str | None = None,
    address: str | None = None,
    request_id: str | None = None,
) -> Recorded:
    """Validate and store one event on a referral, with its audit row, in ``session``'s transaction.

    ``payload`` has the JSON API's keys: ``code``, ``occurredOn`` (``YYYY-MM-DD`` or a date),
    the details of ``DETAIL_KEYS``, and for changes ``kind`` (record | amend | withdraw |
    reopen) and ``supersedes``. ``principal`` None is a trusted server-side caller (CLI,
    simulator), named in the audit trail by ``actor_name``; ``agency_id`` narrows it to one
    agency. ``now`` is the moment of recording (the simulator passes its simulated time).

    Raises :class:`Invalid`, :class:`NotFound`, :class:`Forbidden` or :class:`Conflict`; none
    of them leaves a row behind. With ``idempotency_key``, a repeat of the same request returns
    the first event (``created`` False); the same key with another request is a Conflict.
    """
    if via not in VIAS:
        raise ValueError(f"via must be one of {VIAS}, not {via!r}")
    now = _utc(now or datetime.now(UTC))
    ref = _referral(session, principal, referral_id, write=True, agency_id=agency_id)
    if not isinstance(payload, Mapping):
        raise Invalid(None, "the outcome must be an object of fields")
    unknown = [k for k in payload if k not in BASE_KEYS and k not in DETAIL_KEYS]
    if unknown:
        raise Invalid(str(unknown[0]), f"unknown field {unknown[0]!r} (fields: "
                                       f"{', '.join((*BASE_KEYS, *DETAIL_KEYS))})")
    rh: str | None = None
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= MAX_KEY:
            raise Invalid("Idempotency-Key", f"an idempotency key has 1 to {MAX_KEY} characters")
        rh = request_hash or request_hash_of(ref.id, payload)
        # Before the rules: a replay of an acknowledgement must not be refused as a second one.
        replay = _replay(session, ref, idempotency_key, rh)
        if replay is not None:
            return replay

    reg = registry()
    kind = payload.get("kind") or "record"
    if kind not in KINDS:
        raise Invalid("kind", f"{kind!r} is not a kind of event (one of {', '.join(KINDS)})")
    events = _timeline(session, ref.id)
    eff = effective_outcomes(events)
    by_id = {e.id: e for e in events}
    state = {e.id: e for e in eff}
    supersedes = payload.get("supersedes")
    if supersedes is not None and (isinstance(supersedes, bool) or not isinstance(supersedes, int)):
        raise Invalid("supersedes", f"supersedes must be an outcome id, got {supersedes!r}")
    code = payload.get("code")
    if code is not None and not isinstance(code, str):
        raise Invalid("code", f"code must be a string, got {code!r}")

    target: Outcome | None = None
    if kind == "record":
        if supersedes is not None:
            raise Invalid("supersedes", "a new outcome supersedes nothing; use kind amend or withdraw")
        if code is None:
            raise Invalid("code", "code is required")
    elif kind in ("amend", "withdraw"):
        if supersedes is None:
            raise Invalid("supersedes", f"{kind} needs supersedes: the id of the outcome it changes")
        target = by_id.get(supersedes)
        if target is None:
            raise Invalid("supersedes", f"no outcome {supersedes} on referral {ref.id}")
        st = state[target.id]
        if st.state == "action":
            raise Invalid("supersedes", f"outcome {target.id} is a {target.kind}, not an outcome")
        if st.state == "superseded":
            raise Conflict("supersedes", f"outcome {target.id} was amended by outcome {st.changed_by}; "
                                         f"change that one")
        if st.state == "withdrawn":
            raise Conflict("supersedes", f"outcome {target.id} was withdrawn")
        if code is not None and code != target.code:
            raise Invalid("code", f"an amendment keeps the code ({target.code}); withdraw the outcome "
                                  f"and record {code} instead")
        code = target.code
    else:  # reopen
        closing = open_terminal(eff, reg)
        if closing is None:
            raise Conflict("kind", f"referral {ref.id} is not closed; there is nothing to reopen")
        if supersedes is not None and supersedes != closing.id:
            raise Invalid("supersedes", f"the closing of referral {ref.id} is outcome {closing.id}")
        if code is not None and code != closing.code:
            raise Invalid("code", f"referral {ref.id} is closed by {closing.code}, not {code}")
        target = by_id[closing.id]
        code = closing.code

    oc = reg.get(code)
    if oc is None:
        raise Invalid("code", f"unknown outcome code {code!r} (one of {', '.join(reg.codes)})")

    details: dict[str, Any]
    if kind in ("withdraw", "reopen"):
        extra = [k for k in DETAIL_KEYS if k != "note" and payload.get(k) is not None]
        if extra:
            raise Invalid(extra[0], f"a {kind} takes only a note, not {extra[0]}")
        details = {k: None for k in DETAIL_KEYS}
        details["note"] = _check_detail(reg, oc, "note", payload.get("note"))
    elif kind == "amend":
        assert target is not None
        merged = {k: (payload[k] if k in payload else getattr(target, c)) for k, c in DETAIL_KEYS.items()}
        details = _check_details(reg, oc, merged)
    else:
        details = _check_details(reg, oc, payload)

    if kind == "withdraw":
        assert target is not None
        if payload.get("occurredOn") is not None:
            parse_date(payload["occurredOn"])  # a bad value is still an error, though it is not used
        occurred = target.occurred_on  # a withdrawal stands where the event stood in the timeline
    elif kind == "amend" and payload.get("occurredOn") is None:
        assert target is not None
        occurred = target.occurred_on
    else:
        if payload.get("occurredOn") is None:
            raise Invalid("occurredOn", "occurredOn is required (YYYY-MM-DD)")
        occurred = parse_date(payload["occurredOn"])
        _check_date(occurred, ref, now)
    if kind == "reopen":
        assert target is not None
        if occurred < target.occurred_on:
            raise Invalid("occurredOn", f"{occurred.isoformat()} is before the closing it reopens "
                                        f"({target.occurred_on.isoformat()})")

    if kind == "record":
        closing = open_terminal(eff, reg)
        if oc.terminal and closing is not None:
            raise Conflict("code", f"referral {ref.id} is already closed by {closing.code} (outcome "
                                   f"{closing.id}); reopen it first")
        if not oc.repeats and not oc.terminal:
            standing = next((e for e in eff if e.code == code and e.state in ("effective", "reopened")), None)
            if standing is not None:
                raise Conflict("code", f"{code} is already recorded on referral {ref.id} (outcome "
                                       f"{standing.id}); amend that one instead")

    row = Outcome(
        referral_id=ref.id, agency_id=ref.agency_id, code=code, kind=kind,
        supersedes_id=target.id if target is not None else None, occurred_on=occurred,
        **{DETAIL_KEYS[k]: v for k, v in details.items()},
        user_id=principal.user_id if principal else None, via=via,
        idempotency_key=idempotency_key, request_hash=rh, import_id=import_id,
        codes_version=reg.version, recorded_at=now,
    )
    try:
        # A savepoint: a concurrent request with the same key loses the unique index race
        # without aborting the caller's transaction, and answers as a replay.
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        if idempotency_key is None or rh is None:
            raise
        replay = _replay(session, ref, idempotency_key, rh)
        if replay is None:
            raise
        return replay

    if code == ACKNOWLEDGED and kind == "record" and ref.acknowledged_at is None:
        # Today's date means "now"; an earlier date is the officer's word for when, never
        # before the referral was made available.
        if occurred >= now.date():
            ref.acknowledged_at = now
        else:
            ref.acknowledged_at = max(_utc(ref.made_available_at), datetime.combine(occurred, time(0), UTC))
    audit.record(
        session, action=f"outcome.{kind}", actor=principal,
        actor_name=None if principal else (actor_name or via),
        object_kind="referral", object_id=ref.id, address=address, request_id=request_id,
        detail={"outcomeId": row.id, "code": code, "kind": kind, "via": via,
                "supersedes": row.supersedes_id, "occurredOn": occurred.isoformat()},
    )
    eff_now = {e.id: e for e in effective_outcomes([*events, row])}
    return Recorded(_view(row, eff_now.get(row.id)), created=True)


def acknowledge(
    session: Session,
    principal: Principal | None,
    referral_id: int,
    *,
    via: str,
    now: datetime | None = None,
    agency_id: int | None = None,
    actor_name: str | None = None,
    address: str | None = None,
    request_id: str | None = None,
) -> Recorded:
    """Record ``ACKNOWLEDGED`` today unless it stands already (then that event, ``created`` False).

    The inbox's acknowledge button and ``POST …/acknowledge`` call this, so acknowledging is
    idempotent and always leaves the outcome the statistics count.
    """
    now = _utc(now or datetime.now(UTC))
    ref = _referral(session, principal, referral_id, write=True, agency_id=agency_id)
    rows = _timeline(session, ref.id)
    for e in effective_outcomes(rows):
        if e.code == ACKNOWLEDGED and e.state == "effective":
            row = next(r for r in rows if r.id == e.id)
            return Recorded(_view(row, e), created=False)
    return record_outcome(session, principal, ref.id, {"code": ACKNOWLEDGED, "occurredOn": now.date()},
                          via=via, now=now, agency_id=agency_id, actor_name=actor_name, address=address,
                          request_id=request_id)


def list_outcomes(session: Session, principal: Principal | None, referral_id: int, *,
                  agency_id: int | None = None) -> list[OutcomeView]:
    """The referral's timeline: every event with its standing, by date then by recording order."""
    ref = _referral(session, principal, referral_id, write=False, agency_id=agency_id)
    rows = _timeline(session, ref.id)
    eff = {e.id: e for e in effective_outcomes(rows)}
    views = [_view(r, eff[r.id]) for r in rows]
    return sorted(views, key=lambda v: (v.occurred_on, v.id))


# --- reminders ----------------------------------------------------------------------------------


def _default_reminder_days() -> int:
    from tipline.config import Settings

    return int(next(f.default for f in fields(Settings) if f.name == "outcome_reminder_days"))  # type: ignore[arg-type]


def overdue_outcomes(session: Session, now: datetime, *, days: int | None = None) -> dict[int, list[int]]:
    """Per agency id, the referrals made available at least ``days`` ago (default: the setting
    ``TIPLINE_OUTCOME_REMINDER_DAYS``, 90) with no outcome yet, oldest first.

    An acknowledgement alone is receipt, not an outcome (it has its own reminders); any other
    event that stands (or a closing that was reopened) is an outcome. Withdrawn events are not.
    """
    days = _default_reminder_days() if days is None else days
    cutoff = _utc(now) - timedelta(days=days)
    other = select(Outcome.id).where(Outcome.referral_id == Referral.id, Outcome.code != ACKNOWLEDGED)
    base = select(Referral.id, Referral.agency_id, Referral.made_available_at).where(
        Referral.made_available_at <= cutoff)
    overdue: list[tuple[int, int, datetime]] = [
        (r.id, r.agency_id, _utc(r.made_available_at)) for r in session.execute(base.where(~exists(other)))]
    # Referrals with some non-acknowledgement row: an outcome only if one still stands.
    candidates = [(r.id, r.agency_id, _utc(r.made_available_at)) for r in session.execute(
        base.where(exists(other)))]
    if candidates:
        by_ref: dict[int, list[Outcome]] = {}
        ids = [c[0] for c in candidates]
        for i in range(0, len(ids), 500):
            for row in session.scalars(select(Outcome).where(Outcome.referral_id.in_(ids[i:i + 500]))):
                by_ref.setdefault(row.referral_id, []).append(row)
        for cand in candidates:
            standing = [e for e in effective_outcomes(by_ref.get(cand[0], []))
                        if e.code != ACKNOWLEDGED and e.state in ("effective", "reopened")]
            if not standing:
                overdue.append(cand)
    out: dict[int, list[int]] = {}
    for rid, aid, _ in sorted(overdue, key=lambda o: (o[1], o[2], o[0])):
        out.setdefault(aid, []).append(rid)
    return out
