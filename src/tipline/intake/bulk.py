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
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import JSON, Table, select, text
from sqlalchemy.engine import Dialect
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
#: How the stored details (JSON, reportId their first key) begin with the placeholder id.
_JSON_PLACEHOLDER = f'{{"reportId": {_PLACEHOLDER_ID}'
#: The columns of a packed ``documents`` row (``_write_packed`` builds them in this order) and
#: of a ``blobs`` row (``blob_row``'s, bound in its order: sha256 first).
_DOC_COLS = ("report_id", "file_id", "kind", "content_type", "received_at", "sha256", "body")
_BLOB_COLS = tuple(blob_row(StoredBlob("", "", "", 0, None), datetime(2000, 1, 1, tzinfo=UTC)))
if set(_DOC_COLS) != set(document_row(0, "submit", b"", None, datetime(2000, 1, 1, tzinfo=UTC))) \
        or _BLOB_COLS[0] != "sha256":
    raise ImportError("tipline.intake.bulk: the packed rows no longer match intake's row functions")


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
        with intake.sessions() as s:  # no connection is made: the engine's dialect only
            self._dialect: Dialect = s.get_bind().dialect

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
        keys = [_Keyed(p.ref, p.reporter_id, p.idempotency_key, p.submit[1]) for p in batch]
        before, same_as = self._replays(keys)
        fresh = [i for i in range(len(batch)) if i not in before and i not in same_as]
        held: dict[str, StoredBlob] = {}
        try:
            # Bytes are durable before the rows that point at them, as in ``Intake.upload``.
            for i in fresh:
                for f in batch[i].files:
                    if f.data is not None and f.blob.sha256 not in held:
                        held[f.blob.sha256] = self.intake.blobs.put(f.data)
            ids = self._commit([batch[i] for i in fresh], lambda s, part: self._write(s, part, held))
        except BaseException:
            # Nothing of the batch was committed: ciphertext no row holds goes again.
            for blob in held.values():
                self.intake.discard_unattached(blob)
            raise
        return self._results(keys, fresh, ids, [[str(f.row["id"]) for f in p.files] for p in batch], before, same_as)

    def pack(self, batch: Sequence[PreparedReport]) -> PackedBatch | None:
        """``batch`` with every value bound for this store's driver, ready for :meth:`store_packed`.

        Pure (no database), so that a producer process can do it: binding (JSON encoding of the
        ``document`` and ``details`` columns, timestamps, hashes of the documents) is a third
        of storing a batch, and a packed batch of plain tuples pickles in about half the time.
        None where the batch is not of the shape this takes (a file with bytes, to be put in
        the blob store first; rows of unlike columns; a JSON encoding this cannot place the
        report id in): then :meth:`store` is the way, and it stores the same rows.
        """
        if not batch or any(f.data is not None for p in batch for f in p.files):
            return None
        dialect = self._dialect
        report_cols = tuple(batch[0].row)
        files = [f.row for p in batch for f in p.files]
        file_cols = tuple(files[0]) if files else ()
        if (any(tuple(p.row) != report_cols for p in batch) or any(tuple(r) != file_cols for r in files)
                or "id" in report_cols or (files and ("report_id" not in file_cols or "id" not in file_cols))):
            return None
        bind_report = _binders(dialect, _table(Report), report_cols)
        bind_file = _binders(dialect, _table(File), file_cols)
        bind_blob = _binders(dialect, _table(Blob), _BLOB_COLS)
        bind_received = _binders(dialect, _table(Document), ("received_at",))
        rid_at, fid_at = (file_cols.index("report_id"), file_cols.index("id")) if files else (0, 0)
        det_at = file_cols.index("details") if "details" in file_cols else None
        out: list[PackedReport] = []
        for p in batch:
            kind, body, ctype = p.submit
            sha = _sha(body)
            received = bind_received({"received_at": p.now})[0]
            packed_files: list[PackedFile] = []
            for f in p.files:
                values = bind_file(f.row)
                details: str | None = None
                if det_at is not None and values[det_at] is not None:
                    # The stored details carry the report id, known only when the writer takes one:
                    # their encoding with the placeholder id, less its opening, to put the id before.
                    details = values[det_at]
                    if not isinstance(details, str) or not details.startswith(_JSON_PLACEHOLDER):
                        return None
                    details = details[len(_JSON_PLACEHOLDER):]
                    if details[:1] not in (",", "}"):
                        return None
                values[rid_at] = None
                packed_files.append(PackedFile(str(values[fid_at]), tuple(values), details,
                                               f.details_template,
                                               tuple(bind_blob(blob_row(f.blob, p.now)))))
            out.append(PackedReport(p.ref, p.reporter_id, p.idempotency_key, sha,
                                    tuple(bind_report(p.row)), (kind, ctype, received, sha, body),
                                    packed_files))
        return PackedBatch(dialect.name, report_cols, file_cols, det_at, out)

    def store_packed(self, batch: PackedBatch) -> list[Loaded]:
        """Store a :meth:`pack`-ed batch in one transaction: what :meth:`store` stores for the
        prepared reports it was packed from (tests/test_sim_load.py compares the stores)."""
        reports = batch.reports
        if not reports:
            return []
        if batch.dialect != self._dialect.name:
            raise ValueError(f"a batch packed for {batch.dialect} cannot be stored in {self._dialect.name}")
        keys = [_Keyed(p.ref, p.reporter_id, p.idempotency_key, None, p.sha256) for p in reports]
        before, same_as = self._replays(keys)
        fresh = [i for i in range(len(reports)) if i not in before and i not in same_as]
        ids = self._commit([reports[i] for i in fresh], lambda s, part: self._write_packed(s, batch, part))
        return self._results(keys, fresh, ids, [[f.file_id for f in p.files] for p in reports], before, same_as)

    def _commit(self, fresh: Sequence[Any], write: Callable[[Session, Sequence[Any]], list[int]]) -> list[int]:
        """``write`` the fresh reports in one transaction; their ids. A report the database
        refuses is named (:class:`BulkIntakeError`) and nothing is stored."""
        try:
            with transaction(self.intake.sessions) as s:
                return write(s, fresh)
        except DBAPIError as exc:
            # The database refused a row of the batch (all of it rolled back): find whose.
            culprit = self._culprit(fresh, write)
            if culprit is None:
                raise
            raise BulkIntakeError(culprit.ref, IntakeError(
                Reason.RULES_VIOLATED, f"the store refused it: {str(exc.orig).strip()}")) from exc

    def _results(self, keys: Sequence[_Keyed], fresh: Sequence[int], ids: Sequence[int],
                 file_ids: Sequence[list[str]], before: Mapping[int, int], same_as: Mapping[int, int]) -> list[Loaded]:
        """Each report's result in batch order, once its batch is committed; the hooks run."""
        out: dict[int, Loaded] = {}
        for i, rid in zip(fresh, ids, strict=True):
            out[i] = Loaded(rid, file_ids[i], True)
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
        return [out[i] for i in range(len(keys))]

    # -- idempotency -----------------------------------------------------------------------

    def _replays(self, batch: Sequence[_Keyed]) -> tuple[dict[int, int], dict[int, int]]:
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
                if batch[j].sha() != p.sha():
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
                if first_sha is not None and first_sha != batch[i].sha():
                    raise BulkIntakeError(batch[i].ref, _reused(cast(str, batch[i].idempotency_key)))
        # A repeat of a report stored before is a replay of that report.
        for i, j in list(same_as.items()):
            if j in before:
                before[i] = before[j]
                del same_as[i]
        return before, same_as

    def _culprit(self, batch: Sequence[Any], write: Callable[[Session, Sequence[Any]], list[int]]) -> Any:
        """The first report of ``batch`` the database refuses, each tried in a savepoint; writes nothing.

        Run only after a batch failed, so its cost (a statement per report) is paid only then.
        """
        found: Any = None
        try:
            with transaction(self.intake.sessions) as s:
                for p in batch:
                    try:
                        with s.begin_nested():
                            write(s, [p])
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
        ids = _report_ids(s, len(batch), postgres)
        if postgres:
            _copy(s, _table(Report), [{"id": rid, **p.row} for rid, p in zip(ids, batch, strict=True)])
        else:
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


    def _write_packed(self, s: Session, batch: PackedBatch, reports: Sequence[PackedReport]) -> list[int]:
        """``_write`` for packed reports: the same rows, in the same order, only the ids to put in."""
        if not reports:
            return []
        postgres = batch.dialect == "postgresql"
        ids = _report_ids(s, len(reports), postgres)
        put = _copy_values if postgres else _executemany_values
        put(s, "reports", ("id", *batch.report_cols), [(rid, *p.row) for rid, p in zip(ids, reports, strict=True)])
        rid_at = batch.file_cols.index("report_id") if batch.file_cols else 0
        det_at = batch.details_at
        blobs: dict[str, tuple[Any, ...]] = {}
        files: list[tuple[Any, ...]] = []
        docs: list[tuple[Any, ...]] = []
        for rid, p in zip(ids, reports, strict=True):
            kind, ctype, received, sha, body = p.submit
            docs.append((rid, None, kind, ctype, received, sha, body))
            for f in p.files:
                # Known by hashes only (pack takes no bytes): the first file of a content makes its row.
                blobs.setdefault(f.blob[0], f.blob)
                values = list(f.row)
                values[rid_at] = rid
                if det_at is not None and f.details is not None:
                    values[det_at] = f'{_JSON_PLACEHOLDER[:-1]}{rid}{f.details}'
                files.append(tuple(values))
                if f.document is not None:
                    fi = f.document.replace(_PLACEHOLDER, f"<reportId>{rid}</reportId>".encode(), 1)
                    docs.append((rid, f.file_id, "fileinfo", XML_TYPE, received, _sha(fi), fi))
        if blobs:
            rows = list(blobs.values())
            if postgres:
                s.execute(text("CREATE TEMP TABLE IF NOT EXISTS bulk_blobs (LIKE blobs) ON COMMIT DELETE ROWS"))
                _copy_values(s, "bulk_blobs", _BLOB_COLS, rows)
                s.execute(text(f"INSERT INTO blobs SELECT * FROM bulk_blobs {_BLOB_CONFLICT}"))
            else:
                _executemany_values(s, "blobs", _BLOB_COLS, rows, suffix=_BLOB_CONFLICT)
        if files:
            put(s, "files", batch.file_cols, files)
        put(s, "documents", _DOC_COLS, docs)
        return ids


def _report_ids(s: Session, n: int, postgres: bool) -> list[int]:
    """The ids the next ``n`` reports get."""
    if postgres:
        return [int(x) for x in s.execute(text(
            "SELECT nextval(pg_get_serial_sequence('reports', 'id')) FROM generate_series(1, :n)"
        ), {"n": n}).scalars()]
    # Under the write lock (BEGIN IMMEDIATE) nobody else takes an id: the next ones are
    # the AUTOINCREMENT counter's, exactly what INSERT would have given one by one.
    last = s.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'reports'")).scalar()
    first = int(last or 0) + 1
    return list(range(first, first + n))


@dataclass(frozen=True)
class _Keyed:
    """What the idempotency check needs of a report of a batch."""

    ref: str
    reporter_id: int
    idempotency_key: str | None
    body: bytes | None
    body_sha: str | None = None

    def sha(self) -> str:
        return self.body_sha if self.body_sha is not None else _sha(cast(bytes, self.body))


@dataclass(frozen=True)
class PackedFile:
    """A file of a packed report: its ``files`` row bound (report id left open), its details'
    encoding after the report id, its fileinfo document (placeholder id), its ``blobs`` row bound."""

    file_id: str
    row: tuple[Any, ...]
    details: str | None
    document: bytes | None
    blob: tuple[Any, ...]  # in _BLOB_COLS order: sha256 first


@dataclass(frozen=True)
class PackedReport:
    """A prepared report with its values bound: the ``reports`` row less its id, the submission
    as (kind, content type, received at, sha256, body), its files."""

    ref: str
    reporter_id: int
    idempotency_key: str | None
    sha256: str
    row: tuple[Any, ...]
    submit: tuple[str, str | None, Any, str, bytes]
    files: list[PackedFile]


@dataclass(frozen=True)
class PackedBatch:
    """Prepared reports bound for one database backend (:meth:`BulkIntake.pack`)."""

    dialect: str
    report_cols: tuple[str, ...]
    file_cols: tuple[str, ...]
    details_at: int | None  # the position of ``details`` among file_cols
    reports: list[PackedReport]


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


def _binders(dialect: Dialect, table: Table, cols: Sequence[str]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A row's values in ``cols`` order as ``_bound`` binds them, except JSON columns: as the
    text the driver sends (``_bound`` gives psycopg a wrapper it encodes with the same function),
    so that a packed batch holds only plain values."""
    procs: list[tuple[int, Any]] = []  # only the columns that have a processor: most have none
    for i, c in enumerate(cols):
        kind = table.c[c].type
        if isinstance(kind, JSON):
            procs.append((i, getattr(dialect, "_json_serializer", None) or json.dumps))
        else:
            proc = kind.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                procs.append((i, _memoised(kind, proc)))

    names = tuple(cols)

    def bind(row: Mapping[str, Any]) -> list[Any]:
        values = [row[c] for c in names]
        for i, proc in procs:
            v = values[i]
            if v is not None:
                values[i] = proc(v)
        return values

    return bind


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
    _executemany_values(s, table.name, cols, values, suffix=suffix)


def _executemany_values(s: Session, table: str, cols: Sequence[str], values: Iterable[Sequence[Any]], *,
                        suffix: str = "") -> None:
    """``executemany`` of values already bound (in ``cols`` order) into ``table``."""
    raw = cast(Any, s.connection().connection).driver_connection
    statement = f'INSERT INTO {table} ({", ".join(cols)}) VALUES ({", ".join("?" for _ in cols)}) {suffix}'
    try:
        raw.executemany(statement, values)
    except raw.Error as exc:  # wrapped as SQLAlchemy wraps the driver's errors
        raise DBAPIError(statement, None, exc) from exc


def _copy(s: Session, table: Table, rows: list[dict[str, Any]], *, into: str | None = None) -> None:
    """COPY ``rows`` into ``table`` (or a table shaped like it), values bound as SQLAlchemy binds them."""
    if not rows:
        return
    cols, values = _bound(s, table, rows)
    _copy_values(s, into or table.name, cols, values)


def _copy_values(s: Session, table: str, cols: Sequence[str], values: Iterable[Sequence[Any]]) -> None:
    """COPY values already bound (in ``cols`` order) into ``table``."""
    # The session's own DBAPI connection, so the COPY is part of its transaction.
    raw = cast(Any, s.connection().connection).driver_connection
    names = ", ".join(f'"{c}"' for c in cols)
    statement = f"COPY {table} ({names}) FROM STDIN"
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
