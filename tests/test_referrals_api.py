"""/api/v1/referrals with user bearer tokens: scope, filters, actions, the gate, exports,
problem documents and the audit rows — on both backends."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from inbox_seed import HOME, OTHER, Inbox, seed
from people_helpers import sign_in, user_token
from tipline.runtime import Runtime
from tipline.store.tables import Referral
from tipline.store.tables_people import AuditEvent, LegalProcess, ReferralAction

API = "/api/v1/referrals"


@pytest.fixture
def box(runtime: Runtime, client: TestClient) -> Inbox:
    return seed(runtime)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _actions(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        return dict(s.execute(select(AuditEvent.action, func.count()).group_by(AuditEvent.action)).all())  # type: ignore[arg-type]


def test_list_filters_and_fields(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    h = _h(user_token(runtime, box.officer))
    body = client.get(API, headers=h).json()
    refs = body["referrals"]
    assert [r["referralId"] for r in refs] == [box.referral, box.related_referral, box.calm_referral]
    first = refs[0]
    for key in ("referralId", "reportId", "agency", "escalated", "madeAvailableAt", "acknowledgedAt", "deadline"):
        assert key in first
    assert first["agency"] == HOME and first["escalated"] is True and first["acknowledgedAt"] is None
    assert first["overdue"] is True and first["priority"] == 1 and first["deadline"].endswith("Z")
    assert body["counts"] == {"total": 3, "escalated": 1, "unacknowledged": 3, "overdue": 1}
    assert body["nextOffset"] is None
    assert [r["referralId"] for r in client.get(API, params={"escalated": "false"}, headers=h).json()["referrals"]] \
        == [box.related_referral, box.calm_referral]
    since = (datetime.now(UTC) - timedelta(minutes=90)).isoformat()
    assert [r["referralId"] for r in client.get(API, params={"since": since}, headers=h).json()["referrals"]] \
        == [box.calm_referral]
    page = client.get(API, params={"limit": 2}, headers=h).json()
    assert len(page["referrals"]) == 2 and page["nextOffset"] == 2
    assert client.post(f"{API}/{box.referral}/acknowledge", headers=h).status_code == 200
    acked = client.get(API, params={"acknowledged": "true"}, headers=h).json()["referrals"]
    assert [r["referralId"] for r in acked] == [box.referral]


def test_foreign_missing_and_bad_ids_are_problems(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    h = _h(user_token(runtime, box.officer))
    f = box.foreign_referral
    for method, path, body in (
            ("GET", f"{API}/{f}", None), ("GET", f"{API}/{f}/export?format=json", None),
            ("GET", f"{API}/{f}/files/{box.viewed_file}", None), ("POST", f"{API}/{f}/acknowledge", None),
            ("POST", f"{API}/{f}/assign", {"assignee": "frank"}),
            ("POST", f"{API}/{f}/transfer", {"agency": "HSI", "reason": "x"}),
            ("POST", f"{API}/{f}/legal-process", {"kind": "consent", "reference": "r", "issuedOn": "2026-01-01"}),
            ("GET", f"{API}/999999", None), ("GET", f"{API}/{box.referral}/files/nosuchfile", None)):
        resp = client.request(method, path, json=body, headers=h)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"] == "urn:tipline:problem:not-found"
    for path in (f"{API}/abc", f"{API}/0", f"{API}/{2**40}", f"{API}/abc/export"):
        resp = client.get(path, headers=h)
        assert resp.status_code == 400 and resp.headers["content-type"] == "application/problem+json", path
    with runtime.sessions() as s:
        other = s.get(Referral, f)
        assert other is not None and other.acknowledged_at is None
        assert s.execute(select(func.count()).select_from(ReferralAction)).scalar_one() == 0
    # The foreign agency's officer sees their own referral and not ours.
    fh = _h(user_token(runtime, box.foreign_officer))
    assert [r["referralId"] for r in client.get(API, headers=fh).json()["referrals"]] == [f]
    assert client.get(f"{API}/{box.referral}", headers=fh).status_code == 404


def test_no_token_or_wrong_role(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    resp = client.get(API)
    assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    assert client.get(API, headers={"Authorization": "Bearer tlu_nope_nope"}).status_code == 401
    ah = _h(user_token(runtime, box.analyst))
    assert client.get(f"{API}/{box.referral}", headers=ah).status_code == 404
    assert client.get(API, headers=ah).status_code == 404


def test_read_is_audited_and_carries_the_document(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    h = _h(user_token(runtime, box.officer))
    doc = client.get(f"{API}/{box.referral}", headers=h).json()
    assert doc["schema"] == "tipline.referral/1" and doc["referral"]["referralId"] == box.referral
    gated = {f["fileId"]: f["gated"] for f in doc["files"]}
    assert gated == {box.viewed_file: False, box.unviewed_file: True}
    with runtime.sessions() as s:
        row = s.execute(select(AuditEvent).where(AuditEvent.action == "referral.read")).scalar_one()
        assert row.token_id is not None and row.actor == "olivia" and row.object_id == str(box.referral)


def test_actions_over_the_api(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    h = _h(user_token(runtime, box.officer))
    base = f"{API}/{box.referral}"
    first = client.post(f"{base}/acknowledge", headers=h).json()
    again = client.post(f"{base}/acknowledge", headers=h).json()
    assert first["changed"] is True and again["changed"] is False
    assert first["acknowledgedAt"] == again["acknowledgedAt"]
    bad = client.post(f"{base}/assign", json={"assignee": "frank"}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.assignee"
    assert "not an active officer" in bad.json()["detail"]
    assert client.post(f"{base}/assign", json={"assignee": "carlos"}, headers=h).json()["assignedTo"] == "carlos"
    assert client.post(f"{base}/assign", json={}, headers=h).status_code == 422
    assert client.post(f"{base}/assign", content=b"{not json", headers={**h, "content-type": "application/json"}
                       ).status_code in (400, 422)
    # The gate: closed until legal process, then open.
    closed = client.get(f"{base}/files/{box.unviewed_file}", headers=h)
    assert closed.status_code == 404 and "legal process" in closed.json()["detail"]
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    assert client.post(f"{base}/legal-process", json={"kind": "court_order", "reference": "CO-1", "issuedOn": future},
                       headers=h).status_code == 422
    assert client.post(f"{base}/legal-process", json={"kind": "hunch", "reference": "CO-1",
                                                      "issuedOn": "2026-01-01"}, headers=h).status_code == 422
    lp = client.post(f"{base}/legal-process", json={"kind": "court_order", "reference": "CO-1",
                                                    "issuedOn": "2026-01-02"}, headers=h)
    assert lp.status_code == 201 and lp.json()["reference"] == "CO-1"
    opened = client.get(f"{base}/files/{box.unviewed_file}", headers=h)
    assert opened.status_code == 200 and opened.content.startswith(b"\x89PNG")
    assert client.get(f"{base}/files/{box.viewed_file}", headers=h).content == box.image
    # Transfer.
    assert client.post(f"{base}/transfer", json={"agency": OTHER, "reason": "x"}, headers=h).status_code == 422
    t = client.post(f"{base}/transfer", json={"agency": "hsi", "reason": "federal nexus"}, headers=h).json()
    assert t["agency"] == "HSI"
    assert client.post(f"{base}/transfer", json={"agency": "INTL-GB", "reason": "again"}, headers=h).status_code == 422
    listed = client.get(API, headers=h).json()["referrals"][0]
    assert listed["transferredTo"] == "HSI" and listed["assignedTo"] == "carlos"
    acts = _actions(runtime)
    for action, n in (("referral.acknowledge", 1), ("referral.assign", 1), ("referral.legal_process", 1),
                      ("referral.transfer", 1), ("referral.file_download", 2)):
        assert acts.get(action) == n, action
    with runtime.sessions() as s:
        assert s.execute(select(func.count()).select_from(LegalProcess)).scalar_one() == 1


def test_exports(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    h = _h(user_token(runtime, box.officer))
    base = f"{API}/{box.referral}/export"
    j = client.get(base, headers=h)
    assert j.status_code == 200 and j.json()["schema"] == "tipline.referral/1"
    c = client.get(base, params={"format": "csv"}, headers=h)
    assert c.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(c.text)))[1] == ["export", "schema", "tipline.referral/1"]
    p = client.get(base, params={"format": "pdf"}, headers=h)
    assert p.content.startswith(b"%PDF")
    assert client.get(base, params={"format": "doc"}, headers=h).status_code == 400
    acts = _actions(runtime)
    assert acts["referral.export_json"] == acts["referral.export_csv"] == acts["referral.export_pdf"] == 1


def test_session_posts_need_the_csrf_header(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    sign_in(client, box.officer)
    base = f"{API}/{box.referral}"
    resp = client.post(f"{base}/acknowledge")
    assert resp.status_code == 403 and resp.headers["content-type"] == "application/problem+json"
    with runtime.sessions() as s:
        ref = s.get(Referral, box.referral)
        assert ref is not None and ref.acknowledged_at is None
    page = client.get("/le").text
    import re

    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m
    assert client.post(f"{base}/acknowledge", headers={"X-CSRF-Token": m.group(1)}).status_code == 200
