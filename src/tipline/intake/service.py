"""Intake use cases: open, upload, fileinfo, finish, retract — shared by every protocol.

Every method is one database transaction; it returns only after the commit, so whatever
the caller acknowledges is durable. Errors are :class:`~tipline.intake.errors.IntakeError`
(a reason, a message, a field); each adapter maps them onto its own protocol's codes.

Another reporter's report is refused exactly like a missing one (``REPORT_NOT_FOUND``), so ids
cannot be probed. Reads and writes that skip that owner check say so in their name
(``view_unchecked``, ...): their callers (operators, the CLI, the receipt-code holder) have
established the right to the report some other way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tipline.config import Settings
from tipline.cybertip.xml import Parsed, finish_rule_violations
from tipline.intake.errors import IntakeError, Reason
from tipline.model.report import FileDetails
from tipline.model.report import Report as ReportModel
from tipline.store.blobs import BlobStore, BlobWriter, StoredBlob
from tipline.store.db import report_locks, transaction
from tipline.store.tables import Blob, Document, File, PipelineRun, Report, Reporter

log = logging.getLogger("tipline.intake")

#: Enrichment stages that read the parsed report (``reports.document``). An addendum that
#: changes the document makes them run again, and with them every stage reading their output
#: (links, jurisdiction, route). Stages that read only files (hashes, matches) are kept.
#: tests/test_public_addendum.py checks this list against the stage modules.
DOCUMENT_STAGES: tuple[str, ...] = ("identifiers", "location", "bundles", "assess")


# -- the hot paths' statements, built once ----------------------------------------------------
#
# Every ISPWS cycle runs about a dozen statements. Built per call, each cost more Python than
# its round trip (cProfile of a cycle: ~300 coercions, ORM bulk-persistence key/value pairs
# and a fresh cache key per statement). Built once with bind parameters and run on the tables
# (Core, not the ORM entities), SQLAlchemy reuses the compiled form and its memoized cache
# key; only the parameters change. Same SQL, same locks, same transactions.

_REPORTS = cast(Table, Report.__table__)
_FILES = cast(Table, File.__table__)
_BLOBS = cast(Table, Blob.__table__)
_DOCUMENTS = cast(Table, Document.__table__)
_R, _F, _B = _REPORTS.c, _FILES.c, _BLOBS.c
# Typed explicitly: a bind parameter used where no column gives it a type (the CASE's ELSE)
# would otherwise bypass UTCDateTime's conversion.
_NOW = bindparam("now", type_=_R.last_change_at.type)
_IDLE = bindparam("idle", type_=_R.expires_at.type)

_INSERT_REPORT = insert(_REPORTS).returning(_R.id)
_INSERT_DOCUMENT = insert(_DOCUMENTS)
_INSERT_BLOB = insert(_BLOBS)
_INSERT_FILE = insert(_FILES)
_OPEN_REPORT = (_R.id == bindparam("rid")) & (_R.reporter_id == bindparam("reporter")) & (_R.state == "open") \
    & (_R.expires_at > _NOW)
_TOUCH_VALUES = {
    "last_change_at": _NOW,
    # max(opened + 24 h, now + 1 h): the open deadline or the idle deadline, whichever is later.
    "expires_at": case((_R.open_deadline > _IDLE, _R.open_deadline), else_=_IDLE),
}
_TOUCH = update(_REPORTS).where(_OPEN_REPORT).values(_TOUCH_VALUES).returning(_R.file_count)
_TOUCH_ADD_FILE = (update(_REPORTS).where(_OPEN_REPORT)
                   .values({**_TOUCH_VALUES, "file_count": _R.file_count + 1}).returning(_R.file_count))
# Locking the blob row orders an upload against purge_expired deleting the same content.
_LOCK_BLOB = select(_B.stored_name, _B.data.is_not(None)).where(_B.sha256 == bindparam("sha")).with_for_update()
_HOLD_BLOB = update(_BLOBS).where(_B.sha256 == bindparam("sha")).values(
    stored_name=bindparam("stored_name"), data=bindparam("data"))
_FILE_DETAILS = update(_FILES).where(_F.id == bindparam("fid"), _F.report_id == bindparam("rid")).values(
    details=bindparam("details"), details_at=_NOW, file_relevance=bindparam("relevance"),
    viewed_by_esp=bindparam("viewed"), industry_classification=bindparam("classification"),
).returning(_F.id)
_FINISH = update(_REPORTS).where(_OPEN_REPORT).values(
    state="finished", finished_at=_NOW, last_change_at=_NOW, expires_at=None,
).returning(_R.id)
_REPORT_FILES = select(_F.id, _F.details).where(_F.report_id == bindparam("rid")).order_by(_F.seq)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_file_id() -> str:
    """32 lowercase hex characters that never look like a number to a naive XML parser.

    A JavaScript client turns an all-digit id or one like "7e10" into a number; forcing the
    first character into a–d or f (never e) rules out both.
    """
    raw = secrets.token_hex(16)
    return "abcdf"[int(raw[0], 16) % 5] + raw[1:]


def clean_file_name(name: str | None) -> str | None:
    """A display name safe to store and show: no directories, no control characters.

    Otherwise kept as the client sent it (no Unicode normalisation): a platform matches
    the name against its own records, and an NFD name from a Mac is the name it holds.
    """
    if name is None:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".") or None if name.strip() not in ("", ".", "..") else None
    if name is None:
        return None
    return name[:255]


# -- the rows a use case writes ------------------------------------------------------------
# One definition of each row, shared by the one-at-a-time use cases below and the bulk load
# (tipline.intake.bulk), so that a report stored either way is the same record.


def expiry(settings: Settings, opened: datetime, last_change: datetime) -> datetime:
    """When an open report expires: max(opened + open TTL, last change + idle TTL)."""
    return max(
        opened + timedelta(seconds=settings.open_ttl_seconds),
        last_change + timedelta(seconds=settings.idle_ttl_seconds),
    )


def report_row(
    settings: Settings, reporter_id: int, parsed: Parsed[ReportModel], *, source: str, now: datetime,
    idempotency_key: str | None, receipt_hash: str | None,
) -> dict[str, Any]:
    """The ``reports`` row of a report opened at ``now``: open, no files yet."""
    report = parsed.value
    return {
        "reporter_id": reporter_id, "source": source, "state": "open", "opened_at": now,
        "last_change_at": now, "expires_at": expiry(settings, now, now),
        "open_deadline": now + timedelta(seconds=settings.open_ttl_seconds), "file_count": 0,
        "incident_type": report.incident_type, "incident_at": _aware(report.incident_datetime),
        "escalation": report.escalation, "batched": report.batchedReport is not None,
        "document": report.model_dump(mode="json", exclude_defaults=True),
        "normalisations": list(parsed.normalisations), "idempotency_key": idempotency_key,
        "receipt_hash": receipt_hash,
    }


def finished_values(now: datetime) -> dict[str, Any]:
    """What a finish at ``now`` changes on the ``reports`` row."""
    return {"state": "finished", "finished_at": now, "last_change_at": now, "expires_at": None}


def document_row(
    report_id: int, kind: str, body: bytes, content_type: str | None, now: datetime,
    file_id: str | None = None,
) -> dict[str, Any]:
    """The ``documents`` row keeping a body byte for byte."""
    return {"report_id": report_id, "file_id": file_id, "kind": kind, "content_type": content_type,
            "received_at": now, "sha256": hashlib.sha256(body).hexdigest(), "body": body}


def blob_row(blob: StoredBlob, now: datetime) -> dict[str, Any]:
    """The ``blobs`` row of content seen for the first time (``stored_name`` and data None: hashes only)."""
    return {"sha256": blob.sha256, "size": blob.size, "stored_name": blob.stored_name, "data": blob.inline,
            "md5": blob.md5, "sha1": blob.sha1, "created_at": now}


def file_row(
    file_id: str, report_id: int, seq: int, blob: StoredBlob, *, file_name: str | None,
    media_type: str | None, now: datetime,
) -> dict[str, Any]:
    """The ``files`` row of an upload, before any fileDetails."""
    return {"id": file_id, "report_id": report_id, "seq": seq, "file_name": clean_file_name(file_name),
            "media_type": (media_type or None) and media_type[:255], "size": blob.size,
            "md5": blob.md5, "sha1": blob.sha1, "sha256": blob.sha256, "uploaded_at": now}


def file_details_values(fd: FileDetails, now: datetime) -> dict[str, Any]:
    """What a fileDetails document sets on its ``files`` row."""
    return {"details": fd.model_dump(mode="json", exclude_defaults=True), "details_at": now,
            "file_relevance": fd.fileRelevance, "viewed_by_esp": fd.fileViewedByEsp,
            "industry_classification": fd.industryClassification}


def finish_problems(files: Iterable[tuple[str, dict[str, Any] | FileDetails | None]]) -> list[str]:
    """The finish rules over a report's (fileId, details) pairs: empty when it may be filed.

    Details come as stored (JSON) or, where the caller has it already, as the model.
    """
    problems: list[str] = []
    for fid, details in files:
        if details:
            fd = details if isinstance(details, FileDetails) else FileDetails.model_validate(details)
            for p in finish_rule_violations(fd):
                problems.append(f"file {fid}: {p}")
    return problems


@dataclass(frozen=True)
class FileView:
    id: str
    file_name: str | None
    media_type: str | None
    size: int
    md5: str
    sha1: str
    sha256: str
    uploaded_at: datetime
    details: dict[str, Any] | None


@dataclass(frozen=True)
class ReportView:
    id: int
    reporter: str
    source: str
    state: str
    opened_at: datetime
    last_change_at: datetime
    expires_at: datetime | None
    finished_at: datetime | None
    retracted_at: datetime | None
    incident_type: str | None
    incident_at: datetime | None
    escalation: str | None
    document: dict[str, Any] | None
    normalisations: list[Any]
    files: list[FileView]

    def as_json(self) -> dict[str, Any]:
        def ts(v: datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {
            "reportId": self.id,
            "reporter": self.reporter,
            "source": self.source,
            "state": self.state,
            "openedAt": ts(self.opened_at),
            "lastChangeAt": ts(self.last_change_at),
            "expiresAt": ts(self.expires_at),
            "finishedAt": ts(self.finished_at),
            "retractedAt": ts(self.retracted_at),
            "incidentType": self.incident_type,
            "incidentDateTime": ts(self.incident_at),
            "escalation": self.escalation,
            "normalisations": self.normalisations,
            "report": self.document,
            "files": [
                {
                    "fileId": f.id,
                    "fileName": f.file_name,
                    "mediaType": f.media_type,
                    "size": f.size,
                    "md5": f.md5,
                    "sha1": f.sha1,
                    "sha256": f.sha256,
                    "uploadedAt": ts(f.uploaded_at),
                    "fileDetails": f.details,
                }
                for f in self.files
            ],
        }


class Intake:
    """The intake use cases over one database and one blob store."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], blobs: BlobStore):
        self.settings = settings
        self.sessions = sessions
        self.blobs = blobs
        # Called with the reportId after a finish has committed (e.g. to enqueue enrichment).
        # A failing hook never fails the finish: the pipeline's reconciler catches up.
        self.finished_hooks: list[Callable[[int], None]] = []

    # -- helpers ---------------------------------------------------------------------------

    def _expiry(self, opened: datetime, last_change: datetime) -> datetime:
        return expiry(self.settings, opened, last_change)

    def _owned(self, s: Session, reporter_id: int, report_id: int, *, lock: bool) -> Report:
        """The caller's report, or REPORT_NOT_FOUND — also for another reporter's or an expired one."""
        q = select(Report).where(Report.id == report_id, Report.reporter_id == reporter_id)
        if lock:
            q = q.with_for_update()
        rep = s.execute(q).scalar_one_or_none()
        if rep is None or rep.state == "expired":
            raise IntakeError(Reason.REPORT_NOT_FOUND, field="reportId")
        if rep.state == "open" and rep.expires_at is not None and rep.expires_at <= utcnow():
            raise IntakeError(Reason.REPORT_NOT_FOUND, "the unfinished report has expired", field="reportId")
        return rep

    def _touch(self, s: Session, reporter_id: int, report_id: int, now: datetime, *, add_file: bool = False) -> int:
        """Record a change to the caller's open report in one statement; returns its file count.

        The fast path of every change: a conditional UPDATE that locks the row, moves the
        expiry to max(opened + 24 h, now + 1 h) and (for uploads) counts the file. When it
        matches nothing, the slow path finds out why and raises the right code.
        """
        idle = now + timedelta(seconds=self.settings.idle_ttl_seconds)
        count = s.execute(_TOUCH_ADD_FILE if add_file else _TOUCH,
                          {"rid": report_id, "reporter": reporter_id, "now": now, "idle": idle}
                          ).scalar_one_or_none()
        if count is None:
            rep = self._owned(s, reporter_id, report_id, lock=True)
            self._require_open(rep)
            raise IntakeError(Reason.CHANGED_CONCURRENTLY, "the report changed state concurrently")
        return int(count)

    @staticmethod
    def _require_open(rep: Report) -> None:
        if rep.state == "retracted":
            raise IntakeError(Reason.REPORT_RETRACTED, field="reportId")
        if rep.state == "finished":
            raise IntakeError(Reason.REPORT_FINISHED, field="reportId")

    @staticmethod
    def _document(
        s: Session, report_id: int, kind: str, body: bytes, content_type: str | None,
        now: datetime, file_id: str | None = None,
    ) -> None:
        # Core inserts on the hot paths: the ORM's unit of work costs more than the statement.
        s.execute(_INSERT_DOCUMENT, document_row(report_id, kind, body, content_type, now, file_id))

    # -- use cases -------------------------------------------------------------------------

    def open_report(
        self,
        reporter_id: int,
        parsed: Parsed[ReportModel],
        *,
        source: str,
        body: bytes,
        content_type: str | None,
        document_kind: str = "submit",
        idempotency_key: str | None = None,
        receipt_hash: str | None = None,
    ) -> tuple[int, bool]:
        """Open a report. Returns (reportId, created); created is False on an idempotent replay."""
        now = utcnow()
        body_sha = hashlib.sha256(body).hexdigest()
        if idempotency_key is not None:
            existing = self._replay(reporter_id, idempotency_key, body_sha)
            if existing is not None:
                return existing, False
        try:
            with transaction(self.sessions) as s:
                rid = s.execute(_INSERT_REPORT, report_row(
                    self.settings, reporter_id, parsed, source=source, now=now,
                    idempotency_key=idempotency_key, receipt_hash=receipt_hash,
                )).scalar_one()
                self._document(s, rid, document_kind, body, content_type, now)
                return int(rid), True
        except IntegrityError:
            # Two requests with one key raced; the loser answers with the winner's report.
            if idempotency_key is None:
                raise
            existing = self._replay(reporter_id, idempotency_key, body_sha)
            if existing is None:
                raise
            return existing, False

    def _replay(self, reporter_id: int, key: str, body_sha: str) -> int | None:
        with self.sessions() as s:
            row = s.execute(
                select(Report.id, Report.state).where(
                    Report.reporter_id == reporter_id, Report.idempotency_key == key
                )
            ).first()
            if row is None:
                return None
            first = s.execute(
                select(Document.sha256).where(Document.report_id == row.id).order_by(Document.id)
            ).scalar()
        if first is not None and first != body_sha:
            raise IntakeError(
                Reason.IDEMPOTENCY_KEY_REUSED,
                f"idempotency key {key!r} was already used for a different request body",
                field="Idempotency-Key",
            )
        return int(row.id)

    def upload(
        self,
        reporter_id: int,
        report_id: int,
        writer: BlobWriter,
        *,
        file_name: str | None,
        media_type: str | None,
    ) -> tuple[StoredBlob, str]:
        """Store a streamed upload as a file of the caller's open report: (its blob, fileId).

        The one order every protocol needs: the blob is committed (durable, fsynced) before
        the row that points at it, so an acknowledged file is never a row without content; a
        refused attach deletes the ciphertext again (``attach_file``). Blocking: adapters call
        it in one worker-thread hop.
        """
        stored = writer.commit()
        return stored, self.attach_file(reporter_id, report_id, stored, file_name=file_name,
                                        media_type=media_type)

    def require_open(self, reporter_id: int, report_id: int) -> None:
        """Refuse unless ``report_id`` is the caller's open report (no lock, no change).

        A cheap early check, e.g. before a file is streamed, so that a wrong id costs no
        storage; the use case that changes the report checks again under its row lock.
        """
        view = self.view(report_id, reporter_id)
        if view is None:
            raise IntakeError(Reason.REPORT_NOT_FOUND, field="reportId")
        if view.state == "retracted":
            raise IntakeError(Reason.REPORT_RETRACTED, field="reportId")
        if view.state == "finished":
            raise IntakeError(Reason.REPORT_FINISHED, field="reportId")

    def attach_file(
        self,
        reporter_id: int,
        report_id: int,
        blob: StoredBlob,
        *,
        file_name: str | None,
        media_type: str | None,
    ) -> str:
        """Record an uploaded (already durable) blob as a file of an open report."""
        try:
            for attempt in range(3):
                try:
                    return self._attach(reporter_id, report_id, blob, file_name, media_type)
                except IntegrityError:
                    # A concurrent upload of the same bytes inserted the blob row first.
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        except BaseException:
            # Refused (wrong report, finished, expired...): the ciphertext written for it must
            # not stay behind unless another file already holds the same content.
            self.discard_unattached(blob)
            raise

    def _attach(
        self, reporter_id: int, report_id: int, blob: StoredBlob,
        file_name: str | None, media_type: str | None,
    ) -> str:
        now = utcnow()
        with transaction(self.sessions) as s:
            seq = self._touch(s, reporter_id, report_id, now, add_file=True)
            # Locking the blob row orders us against purge_expired deleting the same content.
            row = s.execute(_LOCK_BLOB, {"sha": blob.sha256}).first()
            if row is None:
                s.execute(_INSERT_BLOB, blob_row(blob, now))
            elif row[0] is None and not row[1]:
                # Known by hash until now; now we hold it.
                s.execute(_HOLD_BLOB, {"sha": blob.sha256, "stored_name": blob.stored_name, "data": blob.inline})
            file_name_held = row[0] if row is not None and (row[0] is not None or row[1]) else blob.stored_name
            if file_name_held is not None and not self.blobs.exists(file_name_held):
                # A purge removed identical content between our write and this commit.
                raise IntakeError(Reason.STORAGE_CHANGED, "storage changed during upload; retry")
            fid = new_file_id()
            s.execute(_INSERT_FILE, file_row(fid, report_id, seq, blob, file_name=file_name,
                                             media_type=media_type, now=now))
            return fid

    def file_info(
        self, reporter_id: int, parsed: Parsed[FileDetails], *, body: bytes, content_type: str | None
    ) -> tuple[int, str]:
        """Attach a fileDetails document to a file of an open report."""
        fd = parsed.value
        now = utcnow()
        report_id, file_id = int(fd.reportId), str(fd.fileId)
        with transaction(self.sessions) as s:
            self._touch(s, reporter_id, report_id, now)
            # The report_id condition makes a file of another report, for this report, a file
            # that does not exist.
            v = file_details_values(fd, now)
            found = s.execute(_FILE_DETAILS, {
                "fid": file_id, "rid": report_id, "now": now, "details": v["details"],
                "relevance": v["file_relevance"], "viewed": v["viewed_by_esp"],
                "classification": v["industry_classification"],
            }).scalar_one_or_none()
            if found is None:
                raise IntakeError(Reason.FILE_NOT_FOUND, field="fileId")
            self._document(s, report_id, "fileinfo", body, content_type, now, file_id=file_id)
            return report_id, file_id

    def finish(self, reporter_id: int, report_id: int) -> list[str]:
        """File the report. Returns its fileIds in upload order."""
        files = self._finish(reporter_id, report_id)
        for hook in self.finished_hooks:
            try:
                hook(report_id)
            except Exception:
                log.exception("finished hook failed for report %s", report_id)
        return files

    def _finish(self, reporter_id: int, report_id: int) -> list[str]:
        now = utcnow()
        with transaction(self.sessions) as s:
            # Conditional update first: it locks the row, so of a concurrent finish and
            # retract exactly one wins; the loser learns why on the slow path.
            # _FINISH sets what finished_values() says (the bulk path's); tests/test_intake_bulk.py
            # compares the rows the two paths write.
            won = s.execute(_FINISH, {"rid": report_id, "reporter": reporter_id, "now": now}).scalar_one_or_none()
            if won is None:
                rep = self._owned(s, reporter_id, report_id, lock=True)
                self._require_open(rep)
                raise IntakeError(Reason.CHANGED_CONCURRENTLY, "the report changed state concurrently")
            files = s.execute(_REPORT_FILES, {"rid": report_id}).all()
            problems = finish_problems((fid, details) for fid, details in files)
            if problems:
                # Raising rolls the state change back: the report stays open for corrections.
                raise IntakeError(Reason.RULES_VIOLATED, "; ".join(problems))
            return [fid for fid, _ in files]

    def retract(self, reporter_id: int, report_id: int) -> None:
        now = utcnow()
        with transaction(self.sessions) as s:
            won = s.execute(
                update(Report)
                .where(Report.id == report_id, Report.reporter_id == reporter_id, Report.state == "open",
                       Report.expires_at > now)
                .values(state="retracted", retracted_at=now, last_change_at=now, expires_at=None)
                .returning(Report.id)
            ).scalar_one_or_none()
            if won is None:
                rep = self._owned(s, reporter_id, report_id, lock=True)
                self._require_open(rep)
                raise IntakeError(Reason.CHANGED_CONCURRENTLY, "the report changed state concurrently")

    def add_document_unchecked(
        self, report_id: int, kind: str, body: bytes, content_type: str | None, *,
        revise: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Keep an addendum (e.g. a public reporter's later information) with the report.

        Unchecked: no owner is compared; the caller has shown its right to the report (the
        public form: the receipt code, ``report_id_for_receipt``).

        ``revise`` turns the stored parsed report into the report as it now stands (the
        addendum merged in); it runs under the report's row lock, so two addenda never lose
        one another, and whatever it raises rolls everything back. The stages that read the
        parsed report are then marked to run again (``DOCUMENT_STAGES``; their readers follow)
        and the report is handed to ``finished_hooks`` to be enqueued, so that its
        assessment, location and links reflect what was added. If that enqueue fails, the
        pipeline's reconciler finds the report by its ledger.
        """
        now = utcnow()
        with transaction(self.sessions) as s:
            # Wait for any enrichment of this report in flight to commit (it holds the report's
            # lock from its start): the ledger rows deleted below must not be written again
            # over the old document by a job that read it (PostgreSQL).
            report_locks(s, [report_id])
            doc = s.execute(
                select(Report.document).where(Report.id == report_id).with_for_update()
            ).scalar()
            self._document(s, report_id, kind, body, content_type, now)
            values: dict[str, Any] = {"last_change_at": now}
            if revise is not None and doc is not None:
                values["document"] = revise(doc)
            s.execute(update(Report).where(Report.id == report_id).values(**values))
            s.execute(delete(PipelineRun).where(PipelineRun.report_id == report_id,
                                                PipelineRun.stage.in_(DOCUMENT_STAGES)))
        # The same hooks as a finish: the queue's enqueue runs whatever the ledger lacks.
        for hook in self.finished_hooks:
            try:
                hook(report_id)
            except Exception:
                log.exception("enqueue after an addendum failed for report %s", report_id)

    def addenda_unchecked(self, report_id: int) -> list[dict[str, Any]]:
        """The report's addenda, oldest first: when each came and what it said (JSON-ready).

        Unchecked: any report's, for operators and the CLI.
        """
        with self.sessions() as s:
            rows = s.execute(
                select(Document.received_at, Document.body, Document.content_type)
                .where(Document.report_id == report_id, Document.kind == "addendum")
                .order_by(Document.id)
            ).all()
        out: list[dict[str, Any]] = []
        for received_at, body, content_type in rows:
            entry: dict[str, Any] = {"receivedAt": received_at.isoformat(), "information": None,
                                     "added": {}}
            try:
                data = json.loads(bytes(body))
            except ValueError:
                data = None
            if isinstance(data, dict):
                entry["information"] = data.get("information") or None
                entry["added"] = data.get("fields") or {}
            else:
                # Not ours (another kind of client wrote it): shown as text, never dropped.
                entry["information"] = bytes(body).decode("utf-8", "replace")
                entry["contentType"] = content_type
            out.append(entry)
        return out

    # -- reading ---------------------------------------------------------------------------

    def view(self, report_id: int, reporter_id: int) -> ReportView | None:
        """The caller's report with its files; None when it is not theirs, or expired."""
        return self._view(report_id, reporter_id)

    def view_unchecked(self, report_id: int) -> ReportView | None:
        """Any report with its files, expired tombstones included (operators, the CLI)."""
        return self._view(report_id, None)

    def _view(self, report_id: int, reporter_id: int | None) -> ReportView | None:
        with self.sessions() as s:
            q = select(Report, Reporter.name).join(Reporter).where(Report.id == report_id)
            if reporter_id is not None:
                q = q.where(Report.reporter_id == reporter_id)
            row = s.execute(q).first()
            if row is None:
                return None
            rep, name = row
            if reporter_id is not None and rep.state == "expired":
                return None
            files = s.execute(
                select(File).where(File.report_id == report_id).order_by(File.seq)
            ).scalars()
            return ReportView(
                id=rep.id, reporter=name, source=rep.source, state=rep.state,
                opened_at=rep.opened_at, last_change_at=rep.last_change_at,
                expires_at=rep.expires_at, finished_at=rep.finished_at,
                retracted_at=rep.retracted_at, incident_type=rep.incident_type,
                incident_at=rep.incident_at, escalation=rep.escalation, document=rep.document,
                normalisations=list(rep.normalisations or []),
                files=[
                    FileView(f.id, f.file_name, f.media_type, f.size, f.md5, f.sha1, f.sha256,
                             f.uploaded_at, f.details)
                    for f in files
                ],
            )

    def list_reports(
        self, reporter_id: int, *, limit: int = 100, state: str | None = None,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """The caller's reports newest first (by id, which never changes); ``before_id`` pages on.

        Keyset paging: a page starts below the last id of the previous one, so a walk sees
        every report that existed when it began exactly once, however many arrive meanwhile.
        Expired reports are not the caller's any more and are left out.
        """
        return self._list(reporter_id, limit=limit, state=state, before_id=before_id)

    def list_reports_unchecked(
        self, *, limit: int = 100, state: str | None = None, before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every reporter's reports, as ``list_reports`` pages them (operators, the CLI)."""
        return self._list(None, limit=limit, state=state, before_id=before_id)

    def _list(
        self, reporter_id: int | None, *, limit: int, state: str | None, before_id: int | None,
    ) -> list[dict[str, Any]]:
        with self.sessions() as s:
            q = (
                select(Report.id, Reporter.name, Report.source, Report.state, Report.opened_at,
                       Report.finished_at, Report.incident_type,
                       select(func.count(File.id)).where(File.report_id == Report.id)
                       .scalar_subquery().label("files"))
                .join(Reporter)
                .order_by(Report.id.desc())
                .limit(limit)
            )
            if reporter_id is not None:
                q = q.where(Report.reporter_id == reporter_id, Report.state != "expired")
            if state is not None:
                q = q.where(Report.state == state)
            if before_id is not None:
                q = q.where(Report.id < before_id)
            return [
                {
                    "reportId": r.id, "reporter": r.name, "source": r.source, "state": r.state,
                    "openedAt": r.opened_at.isoformat(),
                    "finishedAt": r.finished_at.isoformat() if r.finished_at else None,
                    "incidentType": r.incident_type, "files": r.files,
                }
                for r in s.execute(q)
            ]

    def discard_unattached(self, blob: StoredBlob) -> None:
        """Delete ciphertext written for an upload that was then refused, unless a row holds it."""
        if blob.stored_name is None:
            return
        with transaction(self.sessions) as s:
            if s.get(Blob, blob.sha256, with_for_update=True) is None:
                self.blobs.delete(blob.stored_name)

    def report_id_for_receipt(self, receipt_hash: str) -> int | None:
        """The public report whose receipt code hashes to ``receipt_hash``, if any."""
        with self.sessions() as s:
            rid = s.execute(
                select(Report.id).where(Report.receipt_hash == receipt_hash, Report.state != "expired")
            ).scalar_one_or_none()
            return int(rid) if rid is not None else None

    def public_reporter_id(self, name: str = "Public (web form)") -> int:
        """The reporter row that stands for anonymous members of the public (created once)."""
        with self.sessions() as s:
            rid = s.execute(select(Reporter.id).where(Reporter.name == name)).scalar_one_or_none()
        if rid is not None:
            return int(rid)
        try:
            with transaction(self.sessions) as s:
                rep = Reporter(name=name, kind="public", enabled=True, created_at=utcnow())
                s.add(rep)
                s.flush()
                return rep.id
        except IntegrityError:
            return self.public_reporter_id(name)

    def read_file_unchecked(self, file_id: str) -> bytes:
        """A file's content by fileId, whoever reported it; KeyError when it is not held."""
        with self.sessions() as s:
            f = s.get(File, file_id)
            if f is None:
                raise KeyError(file_id)
            row = s.execute(select(Blob.stored_name, Blob.data).where(Blob.sha256 == f.sha256)).first()
            if row is None or (row.stored_name is None and row.data is None):
                raise KeyError(f"{file_id}: content not held (hashes only)")
            return b"".join(self.blobs.open_held(row.stored_name, row.data))

    # -- expiry ----------------------------------------------------------------------------

    def purge_expired(self, now: datetime | None = None) -> int:
        """Purge unfinished reports past their expiry, with their files and documents.

        The report row stays as a tombstone in state ``expired`` so its id is never reused
        and counts stay honest; its content is gone.
        """
        now = now or utcnow()
        purged = 0
        with transaction(self.sessions) as s:
            ids = list(s.execute(
                select(Report.id).where(Report.state == "open", Report.expires_at <= now)
                .with_for_update(skip_locked=True)
            ).scalars())
            if not ids:
                return 0
            shas = set(s.execute(select(File.sha256).where(File.report_id.in_(ids))).scalars())
            s.execute(delete(File).where(File.report_id.in_(ids)))
            s.execute(delete(Document).where(Document.report_id.in_(ids)))
            s.execute(
                update(Report).where(Report.id.in_(ids), Report.state == "open")
                # The idempotency key is freed: a client retrying after expiry gets a new report.
                .values(state="expired", document=None, expires_at=None, idempotency_key=None)
            )
            purged = len(ids)
            for sha in shas:
                blob = s.get(Blob, sha, with_for_update=True)
                if blob is None:
                    continue
                still = s.execute(select(func.count()).where(File.sha256 == sha)).scalar_one()
                if still == 0:
                    # Unlink under the row lock: a concurrent upload of the same bytes waits,
                    # then sees the content gone and asks its client to retry.
                    if blob.stored_name is not None:
                        self.blobs.delete(blob.stored_name)
                    s.delete(blob)
        return purged


def _aware(dt: datetime | None) -> datetime | None:
    # xs:dateTime may come without a zone; such a time is taken as UTC for storage only.
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
