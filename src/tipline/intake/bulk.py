"""Bulk intake: many finished reports stored in one transaction, as the one-at-a-time path stores them.

A report loaded here is the record ``open_report`` → ``upload`` (or a hashes-only file) →
``file_info`` → ``finish`` leaves behind: the same ``reports``, ``documents``, ``files`` and
``blobs`` rows, built by the same row functions of :mod:`tipline.intake.service`, checked by
the same finish rules, idempotent on the same key. Only the statements differ: COPY on
PostgreSQL, ``executemany`` on SQLite, one transaction per batch. tests/test_intake_bulk.py
compares the two paths row for row on both backends.

A batch is all or nothing. Every report is checked before anything is written; a report
that fails is named in :class:`BulkIntakeError` and none of its batch is stored. What a call
returned (or handed to ``on_loaded``) is committed.

Two steps, so that a caller can spread the CPU work over processes: :func:`prepare` is a
pure function of one report (validation, fileIds, the fileDetails documents) and its result
pickles cheaply; :meth:`BulkIntake.store` writes prepared reports.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tipline.config import Settings
from tipline.cybertip.codes import CybertipError
from tipline.cybertip.xml import Parsed, file_details_to_xml, file_details_to_xml_fast
from tipline.intake.errors import IntakeError, Reason
from tipline.intake.service import (
    Intake,
    blob_row,
    document_row,
    file_details_values,
    file_row,
    finish_problems,
    finished_values,
    new_file_id,
    report_row,
)
from tipline.model.report import FileDetails
from tipline.model.report import Report as ReportModel
from tipline.store.base import UTCDateTime
from tipline.store.blobs import StoredBlob
from tipline.store.db import transaction
from tipline.store.tables import Blob, Document, File, Report

log = logging.getLogger("tipline.intake")

#: The content type ISPWS clients send fileDetails with (what the one-at-a-time path keeps).
XML_TYPE = "text/xml; charset=utf-8"
#: Stands in for the reportId while a fileDetails document is rendered before the report has
#: an id. It is the document's first child and an integer, so the rendered bytes carry it
#: exactly once as ``<reportId>1</reportId>``; :meth:`PreparedFile.document` swaps the real
#: id in, which gives byte for byte what rendering with the real id gives (a test checks).
_PLACEHOLDER_ID = 1
_PLACEHOLDER = b"<reportId>1</reportId>"


@dataclass(frozen=True)
class FileHashes:
    """A file known only by its hashes (no bytes held), e.g. a simulated year's ``--files hashes``."""

    md5: str
    sha1: str
    sha256: str
    size: int


@dataclass(frozen=True)
class BulkFile:
    """One file of a report to load: its bytes (or only its hashes) and the platform's details."""

    file_name: str | None
    media_type: str | None
    #: The content; None for a file known only by ``hashes``.
    data: bytes | None = None
    hashes: FileHashes | None = None
    #: fileDetails fields other than reportId and fileId (model values), or None for none.
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BulkReport:
    """One finished report to load, as a protocol adapter would hand it to ``open_report``.

    ``ref`` names it in errors (e.g. "simulated report 17"); it is not stored.
    """

    ref: str
    reporter_id: int
    parsed: Parsed[ReportModel]
    source: str
    body: bytes
    content_type: str | None
    document_kind: str = "submit"
    idempotency_key: str | None = None
    receipt_hash: str | None = None
    files: Sequence[BulkFile] = ()


@dataclass
class PreparedFile:
    """A checked file: its row (less the report id), its fileinfo document, its content."""

    row: dict[str, Any]
    blob: StoredBlob  # hashes; ``stored_name``/``inline`` filled in once the bytes are stored
    data: bytes | None
    details_template: bytes | None  # fileDetails XML with the placeholder reportId

    def document(self, report_id: int) -> bytes | None:
        if self.details_template is None:
            return None
        return self.details_template.replace(_PLACEHOLDER, f"<reportId>{report_id}</reportId>".encode(), 1)


@dataclass
class PreparedReport:
    """A checked report ready to store: its rows with ids and the store's own values left open."""

    ref: str
    reporter_id: int
    idempotency_key: str | None
    row: dict[str, Any]
    submit: tuple[str, bytes, str | None]  # document kind, body, content type
    #: When it is loaded: its documents' receipt, its files' upload and blobs' creation time.
    now: datetime
    files: list[PreparedFile] = field(default_factory=list)

    def backdate(self, received_at: datetime) -> None:
        """Count the report as received, and finished, at ``received_at`` (a simulated or
        historic report): what stamping its stored row afterwards gives, in the row itself.
        Its documents and files keep the load time, as they would with the stamp."""
        self.row.update(opened_at=received_at, last_change_at=received_at, finished_at=received_at,
                        expires_at=None)


@dataclass(frozen=True)
class Loaded:
    """A stored report: its id, its fileIds in upload order, and False on an idempotent replay."""

    report_id: int
    file_ids: list[str]
    created: bool


class BulkIntakeError(Exception):
    """A report of a batch was refused; nothing of that batch was stored."""

    def __init__(self, ref: str, error: IntakeError) -> None:
        super().__init__(f"{ref}: {error.message}")
        self.ref = ref
        self.error = error


def prepare(settings: Settings, report: BulkReport, now: datetime | None = None, *,
            checked_xml: bool = True) -> PreparedReport:
    """Check one report and build its rows (pure: no database, no blob store).

    Raises :class:`BulkIntakeError` naming the report for anything the one-at-a-time path
    would refuse: a file with neither bytes nor hashes, fileDetails that are not valid, a
    report that breaks the finish rules.

    ``checked_xml=False`` renders the fileDetails documents with the fast writer (the same
    bytes, without reading them back through the CyberTipline reader): only for details made
    in process by code whose output the checked writer is tested to accept (the simulator).
    """
    now = now or datetime.now(UTC)
    try:
        row = report_row(settings, report.reporter_id, report.parsed, source=report.source, now=now,
                         idempotency_key=report.idempotency_key, receipt_hash=report.receipt_hash)
    except (CybertipError, ValueError) as exc:
        raise BulkIntakeError(report.ref, IntakeError(Reason.RULES_VIOLATED, str(exc))) from exc
    row.update(finished_values(now), file_count=len(report.files))
    files: list[PreparedFile] = []
    checked: list[tuple[str, FileDetails | None]] = []
    for seq, f in enumerate(report.files, start=1):
        fid = new_file_id()
        if f.data is not None:
            blob = StoredBlob(hashlib.sha256(f.data).hexdigest(), hashlib.md5(f.data).hexdigest(),
                              hashlib.sha1(f.data).hexdigest(), len(f.data), None)
        elif f.hashes is not None:
            h = f.hashes
            blob = StoredBlob(h.sha256, h.md5, h.sha1, h.size, None)
        else:
            raise BulkIntakeError(report.ref, IntakeError(
                Reason.RULES_VIOLATED, f"file {seq} has neither content nor hashes", field="file"))
        frow = file_row(fid, 0, seq, blob, file_name=f.file_name, media_type=f.media_type, now=now)
        template: bytes | None = None
        fd: FileDetails | None = None
        if f.details is not None:
            try:
                fd = FileDetails(reportId=_PLACEHOLDER_ID, fileId=fid, **f.details)
                template = file_details_to_xml(fd) if checked_xml else file_details_to_xml_fast(fd)
            except ValidationError as exc:
                raise BulkIntakeError(report.ref, IntakeError(
                    Reason.RULES_VIOLATED, f"file {seq}: fileDetails are not valid: " + "; ".join(
                        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), field="fileDetails",
                )) from exc
            except CybertipError as exc:
                raise BulkIntakeError(report.ref, IntakeError(
                    Reason.RULES_VIOLATED, f"file {seq}: {exc.description}", field="fileDetails")) from exc
            frow.update(file_details_values(fd, now))
        checked.append((fid, fd))
        files.append(PreparedFile(frow, blob, f.data, template))
    problems = finish_problems(checked)
    if problems:
        raise BulkIntakeError(report.ref, IntakeError(Reason.RULES_VIOLATED, "; ".join(problems)))
    return PreparedReport(report.ref, report.reporter_id, report.idempotency_key, row,
                          (report.document_kind, report.body, report.content_type), now, files)


class BulkIntake:
    """Stores batches of finished reports through Intake's rows, in one transaction per batch."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def load(self, reports: Iterable[BulkReport]) -> list[Loaded]:
        """Check and store ``reports`` as one batch (all or nothing); their results in order."""
        now = datetime.now(UTC)
        return self.store([prepare(self.intake.settings, r, now) for r in reports])

    def store(self, batch: Sequence[PreparedReport]) -> list[Loaded]:
        """Store prepared reports in one transaction; returns after the commit.

        A report whose (reporter, idempotency key) is already stored is not stored again: its
        result is the stored report's id with ``created`` False, as ``open_report`` answers a
        replay; the same key with another body is refused (``IDEMPOTENCY_KEY_REUSED``).
        ``finished_hooks`` run for every created report after the commit, as after ``finish``.
        """
        if not batch:
            return []
        before, same_as = self._replays(batch)
        fresh = [i for i in range(len(batch)) if i not in before and i not in same_as]
        held: dict[str, StoredBlob] = {}
        try:
            # Bytes are durable before the rows that point at them, as in ``Intake.upload``.
            for i in fresh:
                for f in batch[i].files:
                    if f.data is not None and f.blob.sha256 not in held:
                        held[f.blob.sha256] = self.intake.blobs.put(f.data)
            try:
                with transaction(self.intake.sessions) as s:
                    ids = self._write(s, [batch[i] for i in fresh], held)
            except DBAPIError as exc:
                # The database refused a row of the batch (all of it rolled back): find whose.
                culprit = self._culprit([batch[i] for i in fresh], held)
                if culprit is None:
                    raise
                raise BulkIntakeError(culprit.ref, IntakeError(
                    Reason.RULES_VIOLATED, f"the store refused it: {str(exc.orig).strip()}")) from exc
        except BaseException:
            # Nothing of the batch was committed: ciphertext no row holds goes again.
            for blob in held.values():
                self.intake.discard_unattached(blob)
            raise
        out: dict[int, Loaded] = {}
        for i, rid in zip(fresh, ids, strict=True):
            out[i] = Loaded(rid, [str(f.row["id"]) for f in batch[i].files], True)
        for i, rid in before.items():
            out[i] = Loaded(rid, self._file_ids(rid), False)
        for i, first in same_as.items():
            out[i] = Loaded(out[first].report_id, out[first].file_ids, False)
        for i in fresh:
            for hook in self.intake.finished_hooks:
                try:
                    hook(out[i].report_id)
                except Exception:
                    # As after a finish: the report is stored; the pipeline's reconciler catches up.
                    log.exception("finished hook failed for report %s", out[i].report_id)
        return [out[i] for i in range(len(batch))]

    # -- idempotency -----------------------------------------------------------------------

    def _replays(self, batch: Sequence[PreparedReport]) -> tuple[dict[int, int], dict[int, int]]:
        """Reports already stored (index → report id) and repeats within the batch (index → first).

        The same check as ``Intake._replay``: a key already used with another body is refused.
        """
        keyed = [(i, p) for i, p in enumerate(batch) if p.idempotency_key is not None]
        if not keyed:
            return {}, {}
        first_of: dict[tuple[int, str], int] = {}
        same_as: dict[int, int] = {}
        for i, p in keyed:
            k = (p.reporter_id, cast(str, p.idempotency_key))
            if k in first_of:
                j = first_of[k]
                if _sha(batch[j].submit[1]) != _sha(p.submit[1]):
                    raise BulkIntakeError(p.ref, _reused(k[1]))
                same_as[i] = j
            else:
                first_of[k] = i
        before: dict[int, int] = {}
        by_reporter: dict[int, list[str]] = {}
        for reporter_id, key in first_of:
            by_reporter.setdefault(reporter_id, []).append(key)
        with self.intake.sessions() as s:
            # Per reporter, so the lookup is a range of uq_reports_idempotency (reporter, key),
            # not a scan of every report: a year's load asks this once per batch.
            for reporter_id, keys in by_reporter.items():
                for chunk in _chunks(keys, 500):
                    rows = s.execute(
                        select(Report.id, Report.idempotency_key)
                        .where(Report.reporter_id == reporter_id, Report.idempotency_key.in_(chunk))
                    ).all()
                    for rid, stored_key in rows:
                        before[first_of[(reporter_id, str(stored_key))]] = int(rid)
            for i, rid in before.items():
                first_sha = s.execute(
                    select(Document.sha256).where(Document.report_id == rid).order_by(Document.id).limit(1)
                ).scalar()
                if first_sha is not None and first_sha != _sha(batch[i].submit[1]):
                    raise BulkIntakeError(batch[i].ref, _reused(cast(str, batch[i].idempotency_key)))
        # A repeat of a report stored before is a replay of that report.
        for i, j in list(same_as.items()):
            if j in before:
                before[i] = before[j]
                del same_as[i]
        return before, same_as

    def _culprit(self, batch: Sequence[PreparedReport], held: Mapping[str, StoredBlob]) -> PreparedReport | None:
        """The first report of ``batch`` the database refuses, each tried in a savepoint; writes nothing.

        Run only after a batch failed, so its cost (a statement per report) is paid only then.
        """
        found: PreparedReport | None = None
        try:
            with transaction(self.intake.sessions) as s:
                for p in batch:
                    try:
                        with s.begin_nested():
                            self._write(s, [p], held)
                    except DBAPIError:
                        found = p
                        break
                raise _Undo
        except _Undo:
            pass
        return found

    def _file_ids(self, report_id: int) -> list[str]:
        with self.intake.sessions() as s:
            return [str(x) for x in s.execute(
                select(File.id).where(File.report_id == report_id).order_by(File.seq)).scalars()]

    # -- writing ---------------------------------------------------------------------------

    def _write(self, s: Session, batch: Sequence[PreparedReport], held: Mapping[str, StoredBlob]) -> list[int]:
        if not batch:
            return []
        postgres = s.get_bind().dialect.name == "postgresql"
        if postgres:
            ids = [int(x) for x in s.execute(text(
                "SELECT nextval(pg_get_serial_sequence('reports', 'id')) FROM generate_series(1, :n)"
            ), {"n": len(batch)}).scalars()]
            _copy(s, _table(Report), [{"id": rid, **p.row} for rid, p in zip(ids, batch, strict=True)])
        else:
            # Under the write lock (BEGIN IMMEDIATE) nobody else takes an id: the next ones are
            # the AUTOINCREMENT counter's, exactly what INSERT would have given one by one.
            last = s.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'reports'")).scalar()
            first = int(last or 0) + 1
            ids = list(range(first, first + len(batch)))
            _executemany(s, _table(Report), [{"id": rid, **p.row} for rid, p in zip(ids, batch, strict=True)])
        blobs: dict[str, dict[str, Any]] = {}
        files: list[dict[str, Any]] = []
        docs: list[dict[str, Any]] = []
        for rid, p in zip(ids, batch, strict=True):
            kind, body, ctype = p.submit
            now = p.now
            docs.append(document_row(rid, kind, body, ctype, now))
            for f in p.files:
                blob = held.get(f.blob.sha256, f.blob)
                known = blobs.get(blob.sha256)
                # The first file of a content makes its row, as one upload after another does;
                # a later one only where it brings the bytes the first did not.
                if known is None or (known["stored_name"] is None and known["data"] is None
                                     and (blob.stored_name is not None or blob.inline is not None)):
                    blobs[blob.sha256] = blob_row(blob, now)
                row = {**f.row, "report_id": rid}
                if row.get("details") is not None:
                    row["details"] = {**row["details"], "reportId": rid}
                files.append(row)
                fi = f.document(rid)
                if fi is not None:
                    docs.append(document_row(rid, "fileinfo", fi, XML_TYPE, now, str(row["id"])))
        if blobs:
            _upsert_blobs(s, list(blobs.values()), postgres)
        if postgres:
            if files:
                _copy(s, _table(File), files)
            _copy(s, _table(Document), docs)
        else:
            if files:
                _executemany(s, _table(File), files)
            _executemany(s, _table(Document), docs)
        return ids


class _Undo(Exception):
    """Rolls back the transaction that searched for the culprit of a failed batch."""


#: The rule of ``Intake._attach`` for a content's row: one that holds bytes stays as it is;
#: one known by hash until now gets the bytes if these bring them.
_BLOB_CONFLICT = (
    "ON CONFLICT (sha256) DO UPDATE SET stored_name = excluded.stored_name, data = excluded.data "
    "WHERE blobs.stored_name IS NULL AND blobs.data IS NULL "
    "AND (excluded.stored_name IS NOT NULL OR excluded.data IS NOT NULL)"
)


def _upsert_blobs(s: Session, rows: list[dict[str, Any]], postgres: bool) -> None:
    """Insert content seen for the first time, with the rule of ``_BLOB_CONFLICT`` for the rest."""
    table = _table(Blob)
    if postgres:
        # COPY cannot skip existing keys: load a scratch table, then one INSERT … ON CONFLICT.
        s.execute(text("CREATE TEMP TABLE IF NOT EXISTS bulk_blobs (LIKE blobs) ON COMMIT DELETE ROWS"))
        _copy(s, table, rows, into="bulk_blobs")
        s.execute(text(f"INSERT INTO blobs SELECT * FROM bulk_blobs {_BLOB_CONFLICT}"))
    else:
        _executemany(s, table, rows, suffix=_BLOB_CONFLICT)


def _bound(s: Session, table: Table, rows: list[dict[str, Any]]) -> tuple[list[str], Iterator[list[Any]]]:
    """The columns of ``rows`` and their values as SQLAlchemy would bind them, for the driver itself."""
    dialect = s.get_bind().dialect
    cols = list(rows[0])
    procs = [_memoised(table.c[c].type, table.c[c].type.dialect_impl(dialect).bind_processor(dialect))
             for c in cols]
    values = ([v if (pr is None or v is None) else pr(v) for v, pr in zip((row[c] for c in cols), procs, strict=True)]
              for row in rows)
    return cols, values


def _memoised(kind: Any, proc: Any) -> Any:
    """A timestamp column's bind processor, remembering its answers for one statement.

    Most timestamps of a batch are the same instant (the batch's ``now``: opened, finished,
    uploaded, received …), and binding one is a conversion to UTC and a string format on
    SQLite. The processor is a pure function of the instant (equal instants in other zones
    bind alike, being converted to UTC first), so its first answer serves every repeat.
    """
    if proc is None or not isinstance(kind, UTCDateTime):
        return proc
    memo: dict[Any, Any] = {}

    def bind(value: Any) -> Any:
        out = memo.get(value, memo)
        if out is memo:
            out = memo[value] = proc(value)
        return out

    return bind


def _executemany(s: Session, table: Table, rows: list[dict[str, Any]], *, suffix: str = "") -> None:
    """``executemany`` on the session's own DBAPI connection (SQLite), without the per-row cost of
    SQLAlchemy's parameter handling, which is a tenth of a bulk load's time."""
    if not rows:
        return
    cols, values = _bound(s, table, rows)
    raw = cast(Any, s.connection().connection).driver_connection
    statement = f'INSERT INTO {table.name} ({", ".join(cols)}) VALUES ({", ".join("?" for _ in cols)}) {suffix}'
    try:
        raw.executemany(statement, values)
    except raw.Error as exc:  # wrapped as SQLAlchemy wraps the driver's errors
        raise DBAPIError(statement, None, exc) from exc


def _copy(s: Session, table: Table, rows: list[dict[str, Any]], *, into: str | None = None) -> None:
    """COPY ``rows`` into ``table`` (or a table shaped like it), values bound as SQLAlchemy binds them."""
    if not rows:
        return
    cols, values = _bound(s, table, rows)
    # The session's own DBAPI connection, so the COPY is part of its transaction.
    raw = cast(Any, s.connection().connection).driver_connection
    names = ", ".join(f'"{c}"' for c in cols)
    statement = f"COPY {into or table.name} ({names}) FROM STDIN"
    import psycopg  # only PostgreSQL gets here

    try:
        with raw.cursor() as cur, cur.copy(statement) as cp:
            for row in values:
                cp.write_row(row)
    except psycopg.Error as exc:
        # As SQLAlchemy wraps the driver's errors on every other statement.
        raise DBAPIError(statement, None, exc) from exc


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _reused(key: str) -> IntakeError:
    return IntakeError(Reason.IDEMPOTENCY_KEY_REUSED,
                       f"idempotency key {key!r} was already used for a different request body",
                       field="Idempotency-Key")


def _chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
