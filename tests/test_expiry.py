"""Unfinished reports expire by max(opened + 24 h, last change + 1 h) and are purged with their files."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import func, select, update

from helpers import report_xml
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Blob, Document, File, Report

ACME = ("acme", "acme-secret-1")


def _submit(client: TestClient) -> int:
    return int(etree.fromstring(client.post("/ispws/submit", content=report_xml(), auth=ACME).content)
               .findtext("reportId"))  # type: ignore[arg-type]


def _upload(client: TestClient, rid: int, data: bytes) -> str:
    root = etree.fromstring(client.post("/ispws/upload", data={"id": str(rid)},
                                        files={"file": ("f.bin", data)}, auth=ACME).content)
    assert root.findtext("responseCode") == "0"
    return str(root.findtext("fileId"))


def _shift(rt: Runtime, rid: int, hours_ago_opened: float, hours_ago_changed: float) -> None:
    """Move a report's clock back, keeping the expiry rule consistent with the new times."""
    view = rt.intake.view_unchecked(rid)
    assert view is not None
    opened = view.opened_at - timedelta(hours=hours_ago_opened)
    changed = view.opened_at - timedelta(hours=hours_ago_changed)
    with transaction(rt.sessions) as s:
        s.execute(update(Report).where(Report.id == rid).values(
            opened_at=opened, last_change_at=changed, open_deadline=opened + timedelta(hours=24),
            expires_at=max(opened + timedelta(hours=24), changed + timedelta(hours=1))))


def test_expiry_rule(client: TestClient, runtime: Runtime) -> None:
    rid = _submit(client)
    view = runtime.intake.view_unchecked(rid)
    assert view is not None and view.expires_at == view.opened_at + timedelta(hours=24)
    # A change 23.5 h after opening pushes expiry to change + 1 h, past the 24 h mark.
    _shift(runtime, rid, hours_ago_opened=23.5, hours_ago_changed=23.5)
    _upload(client, rid, b"late change")
    view = runtime.intake.view_unchecked(rid)
    assert view is not None and view.expires_at is not None
    assert view.expires_at - view.last_change_at == timedelta(hours=1)
    assert view.expires_at > view.opened_at + timedelta(hours=24)


def test_expired_reports_are_purged_with_files(client: TestClient, runtime: Runtime) -> None:
    old, fresh, finished = _submit(client), _submit(client), _submit(client)
    # Over the inline limit: these are held as files, so the purge must remove ciphertext on disk.
    big = 40_000
    _upload(client, old, b"only in the old report" * big)
    _upload(client, old, b"shared content" * big)
    _upload(client, fresh, b"shared content" * big)
    _upload(client, finished, b"kept")
    client.post("/ispws/finish", data={"id": str(finished)}, auth=ACME)
    _shift(runtime, old, hours_ago_opened=25, hours_ago_changed=2)
    _shift(runtime, finished, hours_ago_opened=48, hours_ago_changed=48)

    # Before the purge runs, the expired report already answers as if it did not exist.
    root = etree.fromstring(client.post("/ispws/finish", data={"id": str(old)}, auth=ACME).content)
    assert root.findtext("responseCode") == "5001"

    blobs_before = {p for p in runtime.blobs.root.rglob("*") if p.is_file()}
    assert runtime.intake.purge_expired() == 1
    with runtime.sessions() as s:
        assert s.execute(select(Report.state).where(Report.id == old)).scalar_one() == "expired"
        assert s.execute(select(func.count()).where(File.report_id == old)).scalar_one() == 0
        assert s.execute(select(func.count()).where(Document.report_id == old)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(Blob)).scalar_one() == 2
    blobs_after = {p for p in runtime.blobs.root.rglob("*") if p.is_file()}
    assert len(blobs_before - blobs_after) == 1  # only the content no other report holds
    assert runtime.intake.view_unchecked(fresh).files[0].size == len(b"shared content" * big)  # type: ignore[union-attr]
    fresh_file = runtime.intake.view_unchecked(fresh).files[0].id  # type: ignore[union-attr]
    assert runtime.intake.read_file_unchecked(fresh_file) == b"shared content" * big
    assert runtime.intake.view_unchecked(finished).state == "finished"  # type: ignore[union-attr]
    # Ids of purged reports are never reused.
    assert _submit(client) > finished
    assert runtime.intake.purge_expired() == 0
