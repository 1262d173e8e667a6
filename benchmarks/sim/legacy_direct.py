"""The simulator's direct writer as it was before Intake had a bulk use case — a baseline only.

It rebuilt Intake's rows itself (a second copy of intake's logic, issue 9) and inserted them
with ``executemany`` on both backends. benchmarks/sim/run.py times it beside
``tipline.sim.write.DirectWriter`` (which goes through ``tipline.intake.bulk``) on the same
reports, so the ratio is measured, not remembered. Nothing in ``src/`` imports this.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, select, update

from tipline.cybertip.xml import file_details_to_xml, report_to_xml
from tipline.intake.public_form import validate_report_form, web_document
from tipline.intake.receipts import new_receipt_code, receipt_hash
from tipline.intake.service import clean_file_name, new_file_id
from tipline.runtime import Runtime
from tipline.sim.generate import SimReport
from tipline.sim.write import XML_TYPE, Account, file_details, utcnow
from tipline.store.blobs import StoredBlob
from tipline.store.db import transaction
from tipline.store.tables import Blob, Document, File, Report


class LegacyDirectWriter:
    """Inserts finished reports with their documents, files and blobs in batched transactions."""

    def __init__(self, rt: Runtime, accounts: dict[str, Account], batch: int = 500) -> None:
        self.rt, self.accounts, self.batch = rt, accounts, batch
        self._blobs_seen: set[str] = set()

    def write(self, reports: Iterable[SimReport], done: Callable[[SimReport, int], None]) -> None:
        buf: list[SimReport] = []
        for r in reports:
            buf.append(r)
            if len(buf) >= self.batch:
                self._flush(buf, done)
                buf = []
        if buf:
            self._flush(buf, done)

    def _flush(self, batch: list[SimReport], done: Callable[[SimReport, int], None]) -> None:
        now = utcnow()
        rows: list[dict[str, Any]] = []
        submit: list[tuple[str, str, bytes]] = []  # kind, content type, body
        for r in batch:
            if r.public:
                assert r.form is not None
                model = validate_report_form(r.form, now).report
                assert model is not None, f"simulated public report {r.seq} does not validate"
                body = web_document({**r.form, "form_token": ""}, [])
                rows.append(self._row(r, model, "web", now, idempotency_key=f"web-form:{secrets.token_urlsafe(16)}",
                                      receipt_hash=receipt_hash(new_receipt_code())))
                submit.append(("web", "application/json", body))
            else:
                assert r.report is not None
                rows.append(self._row(r, r.report, "ispws", now))
                submit.append(("submit", XML_TYPE, report_to_xml(r.report)))
        blob_rows: dict[str, dict[str, Any]] = {}
        stored: dict[str, StoredBlob] = {}
        for r in batch:
            for f in r.files:
                c = f.content
                if c.data is not None and c.sha256 not in stored:
                    # A file-held blob is durable before the rows commit; an inline one with them.
                    stored[c.sha256] = self.rt.blobs.put(c.data)
                if c.sha256 not in self._blobs_seen:
                    held = stored.get(c.sha256)
                    blob_rows[c.sha256] = {"sha256": c.sha256, "size": c.size, "md5": c.md5, "sha1": c.sha1,
                                           "stored_name": held.stored_name if held else None,
                                           "data": held.inline if held else None, "created_at": now}
        with transaction(self.rt.sessions) as s:
            ids = list(s.execute(insert(Report).returning(Report.id, sort_by_parameter_order=True), rows).scalars())
            if blob_rows:
                existing = {b.sha256: (b.stored_name is not None or b.held) for b in s.execute(
                    select(Blob.sha256, Blob.stored_name, Blob.data.is_not(None).label("held"))
                    .where(Blob.sha256.in_(list(blob_rows))))}
                new = [b for sha, b in blob_rows.items() if sha not in existing]
                if new:
                    s.execute(_table(Blob).insert(), new)  # Core executemany: no ORM bookkeeping
                for sha, held_already in existing.items():
                    sb = stored.get(sha)
                    if not held_already and sb is not None:  # known by hash until now; now we hold it
                        s.execute(update(Blob).where(Blob.sha256 == sha)
                                  .values(stored_name=sb.stored_name, data=sb.inline))
            docs: list[dict[str, Any]] = []
            files: list[dict[str, Any]] = []
            for r, rid, (kind, ctype, body) in zip(batch, ids, submit, strict=True):
                docs.append(_doc(rid, None, kind, ctype, body, now))
                for f in r.files:
                    fid = new_file_id()
                    fd = file_details(rid, fid, f)
                    c = f.content
                    files.append({
                        "id": fid, "report_id": rid, "seq": f.seq, "file_name": clean_file_name(f.file_name),
                        "media_type": c.media_type, "size": c.size, "md5": c.md5, "sha1": c.sha1,
                        "sha256": c.sha256, "uploaded_at": now,
                        "details": fd.model_dump(mode="json", exclude_defaults=True), "details_at": now,
                        "file_relevance": fd.fileRelevance, "viewed_by_esp": fd.fileViewedByEsp,
                        "industry_classification": fd.industryClassification,
                    })
                    docs.append(_doc(rid, fid, "fileinfo", XML_TYPE, file_details_to_xml(fd), now))
            if files:
                s.execute(_table(File).insert(), files)
            s.execute(_table(Document).insert(), docs)
        self._blobs_seen.update(blob_rows)
        for r, rid in zip(batch, ids, strict=True):
            for hook in self.rt.intake.finished_hooks:
                hook(rid)  # as Intake.finish does (e.g. enqueue enrichment)
            done(r, rid)

    def _row(self, r: SimReport, model: Any, source: str, now: datetime, **extra: Any) -> dict[str, Any]:
        when = model.incident_datetime
        return {
            "reporter_id": self.accounts[r.platform].reporter_id, "source": source, "state": "finished",
            "opened_at": now, "last_change_at": now, "expires_at": None, "finished_at": now,
            "incident_type": model.incident_type, "incident_at": when if when.tzinfo else when.replace(tzinfo=UTC),
            "escalation": model.escalation, "batched": model.batchedReport is not None,
            "document": model.model_dump(mode="json", exclude_defaults=True), "normalisations": [],
            "idempotency_key": extra.get("idempotency_key"), "receipt_hash": extra.get("receipt_hash"),
            "open_deadline": now + timedelta(seconds=self.rt.settings.open_ttl_seconds),
            "file_count": len(r.files),
        }


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def _doc(rid: int, fid: str | None, kind: str, ctype: str, body: bytes, now: datetime) -> dict[str, Any]:
    return {"report_id": rid, "file_id": fid, "kind": kind, "content_type": ctype, "received_at": now,
            "sha256": hashlib.sha256(body).hexdigest(), "body": body}
