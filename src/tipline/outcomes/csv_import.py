"""CSV bulk import of outcomes for one agency: all or nothing, the same file twice changes nothing.

The columns (docs/outcomes.md), in any order, the first line naming them::

    referralId,code,occurredOn,persons,children,arrestType,result,nibrsCode,reason,note

``referralId``, ``code`` and ``occurredOn`` are required columns; the others may be left out
of the header or left empty. Each row is one new outcome (``kind`` record), recorded
through :func:`tipline.outcomes.service.record_outcome` with the same validation as the page
and the API. A file is UTF-8 (with or without a byte-order mark), RFC 4180 quoting.

- A file with any bad row changes nothing; every bad row is reported with its line number
  (``line 7: no referral 123 for agency X``).
- The same bytes imported again for the same agency change nothing (``outcome_imports``
  keeps each file's SHA-256). A row identical to one an earlier file imported is recognised
  too (each row carries an idempotency key derived from its content), so overlapping
  exports from a case system do not count an outcome twice; give a ``note`` to tell two
  genuinely separate, otherwise identical events apart.
- Two identical rows within one file are an error (almost always a copy-paste slip).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tipline.kinds.roles import ROLES, Scope
from tipline.outcomes import service
from tipline.people import audit
from tipline.people.principal import Principal
from tipline.store.tables import Agency
from tipline.store.tables_people import OutcomeImport

#: The documented columns, in the documented order.
COLUMNS: tuple[str, ...] = ("referralId", "code", "occurredOn", "persons", "children", "arrestType", "result",
                            "nibrsCode", "reason", "note")
REQUIRED_COLUMNS: tuple[str, ...] = ("referralId", "code", "occurredOn")
_INTEGERS = ("referralId", "persons", "children")
#: Errors listed before the rest are only counted (a file of junk must not print a novel).
MAX_ERRORS = 50
#: A header naming every column fits in far less; a longer first line is not a header.
MAX_HEADER = 4096
#: Default cap on a file's size (the setting TIPLINE_MAX_DOCUMENT_BYTES is passed by callers).
DEFAULT_MAX_BYTES = 10 * 1024**2


@dataclass(frozen=True, slots=True)
class RowError:
    #: The file's line the row starts on (1 is the header); 0 for the file as a whole.
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class ImportFailed(Exception):
    """The file was refused; nothing was stored. ``errors`` holds each bad row (or the file's fault)."""

    def __init__(self, errors: list[RowError], more: int = 0) -> None:
        self.errors = errors
        self.more = more
        lines = [str(e) for e in errors]
        if more:
            lines.append(f"… and {more} more error(s)")
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class ImportResult:
    import_id: int
    rows: int
    #: Outcomes stored by this import.
    created: int
    #: Rows an earlier file had already recorded (same content).
    already_recorded: int
    #: True when these exact bytes were imported before: nothing was done.
    replay: bool
    imported_at: datetime


def _file_error(message: str) -> ImportFailed:
    return ImportFailed([RowError(0, None, message)])


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_error(f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save it as \"CSV UTF-8\"") from None
    if "\x00" in text:
        raise _file_error("the file holds NUL characters: it is not a CSV text file")
    return text


@dataclass(frozen=True, slots=True)
class ParsedFile:
    #: (line, payload) of every well-formed row, values typed.
    rows: list[tuple[int, dict[str, Any]]]
    #: Rows that could not be read (the service never sees them).
    errors: list[RowError]


def parse_rows(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedFile:
    """The rows of a CSV file as (line, payload) with typed values, and the rows that are not
    well formed; a fault of the whole file (size, encoding, header) raises ImportFailed."""
    if len(data) > max_bytes:
        raise _file_error(f"the file is {len(data):,} bytes; at most {max_bytes:,} are accepted "
                          "(TIPLINE_MAX_DOCUMENT_BYTES): split it")
    text = _decode(data)
    first = text.split("\n", 1)[0]
    if len(first) > MAX_HEADER:
        raise _file_error(f"line 1 is {len(first):,} characters long: not a header naming the columns "
                          f"({','.join(COLUMNS)})")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _file_error(f"line 1: not a CSV header ({exc})") from None
    if header is None or not any(h.strip() for h in header):
        raise _file_error(f"the file is empty; its first line must name the columns ({','.join(COLUMNS)})")
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if unknown:
        shown = ", ".join(service_cut(n) for n in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        problems.append(f"unknown column(s): {shown}")
    if twice:
        problems.append(f"column(s) named twice: {', '.join(twice)}")
    if problems:
        raise _file_error("line 1: " + "; ".join(problems) + f" (the columns are {','.join(COLUMNS)})")

    errors: list[RowError] = []
    out: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}

    def fail(line: int, field: str | None, message: str) -> None:
        errors.append(RowError(line, field, message))

    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            fail(start, None, f"not CSV ({exc})")
            break  # the reader cannot resynchronise after a broken quote
        line = reader.line_num
        if not any(v.strip() for v in row):
            continue
        if len(row) != len(names):
            fail(start, None, f"{len(row)} field(s), but the header names {len(names)}")
            continue
        payload: dict[str, Any] = {}
        bad = False
        for name, raw in zip(names, row, strict=True):
            value = raw.strip()
            if value == "":
                continue
            if name in _INTEGERS:
                if not value.isdigit() or not value.isascii():
                    fail(start, name, f"{name} {service_cut(value)!r} is not a whole number")
                    bad = True
                    continue
                payload[name] = int(value)
            else:
                payload[name] = value
        if bad:
            continue
        for name in REQUIRED_COLUMNS:
            if name not in payload:
                fail(start, name, f"{name} is empty")
                bad = True
        if bad:
            continue
        key = json.dumps(payload, sort_keys=True)
        if key in seen:
            fail(start, None, f"the same row as line {seen[key]} (a duplicate)")
            continue
        seen[key] = start
        out.append((start, payload))
    if not out and not errors:
        raise _file_error("the file has a header but no rows")
    return ParsedFile(out, errors)


def service_cut(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def row_key(payload: dict[str, Any]) -> str:
    """The idempotency key of a CSV row: its content, so the same row in another file is the same event."""
    return "csv:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def import_outcomes(
    session: Session,
    principal: Principal | None,
    data: bytes,
    *,
    agency_id: int | None = None,
    file_name: str | None = None,
    via: str = "csv",
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    actor_name: str | None = None,
    address: str | None = None,
    request_id: str | None = None,
) -> ImportResult:
    """Import ``data`` for one agency in ``session``'s transaction; raises ImportFailed (the
    caller's transaction then rolls back, so a bad row leaves nothing behind).

    An officer imports for their own agency; ``principal`` None (the operator's CLI) names the
    agency with ``agency_id``.
    """
    now = now or datetime.now(UTC)
    if principal is not None:
        role = ROLES.get(principal.role)
        if role is not None and role.scope == Scope.AGENCY:
            if principal.agency_id is None or (agency_id is not None and agency_id != principal.agency_id):
                raise _file_error("you can import outcomes only for your own agency")
            agency_id = principal.agency_id
    if agency_id is None:
        raise ValueError("import_outcomes needs the agency (agency_id, or an officer's principal)")
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise _file_error(f"no agency {agency_id}")
    sha = hashlib.sha256(data).hexdigest()
    earlier = session.execute(select(OutcomeImport).where(OutcomeImport.agency_id == agency_id,
                                                          OutcomeImport.sha256 == sha)).scalar_one_or_none()
    if earlier is not None:
        return ImportResult(earlier.id, earlier.rows, 0, 0, True, earlier.imported_at)
    parsed = parse_rows(data, max_bytes=max_bytes)
    rows = parsed.rows
    imp = OutcomeImport(agency_id=agency_id, user_id=principal.user_id if principal else None, sha256=sha,
                        file_name=(file_name or "")[:255] or None, rows=len(rows), imported_at=now)
    session.add(imp)
    session.flush()
    # Every row is checked, the well-formed ones by the service too, so one pass names every
    # bad line; the caller's transaction rolls back whatever the good ones wrote.
    errors: list[RowError] = list(parsed.errors)
    created = already = 0
    for line, payload in rows:
        referral_id = payload.pop("referralId")
        try:
            rec = service.record_outcome(
                session, principal, referral_id, payload, via=via, idempotency_key=row_key(
                    {"referralId": referral_id, **payload}), now=now, agency_id=agency_id, import_id=imp.id,
                actor_name=actor_name, address=address, request_id=request_id)
        except service.NotFound:
            err = RowError(line, "referralId", f"no referral {referral_id} for agency {agency.code}")
        except service.Forbidden as exc:
            raise _file_error(exc.message) from None
        except service.OutcomeError as exc:
            err = RowError(line, exc.field, f"{exc.field}: {exc.message}" if exc.field else exc.message)
        else:
            created += rec.created
            already += not rec.created
            continue
        errors.append(err)
    if errors:
        errors.sort(key=lambda e: e.line)
        raise ImportFailed(errors[:MAX_ERRORS], max(0, len(errors) - MAX_ERRORS))
    audit.record(session, action="outcome.import", actor=principal,
                 actor_name=None if principal else (actor_name or via), object_kind="agency",
                 object_id=agency_id, address=address, request_id=request_id,
                 detail={"importId": imp.id, "sha256": sha, "rows": len(rows), "created": created,
                         "alreadyRecorded": already, "fileName": imp.file_name})
    return ImportResult(imp.id, len(rows), created, already, False, now)
