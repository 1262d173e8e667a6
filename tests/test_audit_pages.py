"""The auditor's pages: the filtered trail, exports (themselves audited), verification on
demand; every other role and anyone signed out is kept out, bad filters get a message."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from people_helpers import make_user, session_csrf, sign_in
from tipline.people import audit
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables_people import AuditEvent


def _fill(rt: Runtime) -> None:
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with transaction(rt.sessions) as s:
        for i in range(5):
            audit.record(s, action="report_view", actor=Principal(50 + i, "ana" if i < 3 else "bob", "analyst"),
                         object_kind="report", object_id=200 + i, address="192.0.2.1", request_id=f"q{i}",
                         detail={"page": i}, at=t0 + timedelta(hours=i))


@pytest.fixture
def auditor(runtime: Runtime, client: TestClient) -> TestClient:
    aud = make_user(runtime, "aud", "auditor")
    _fill(runtime)
    sign_in(client, aud)
    return client


def _rows(html: str) -> int:
    return html.count('<td class="num">')


def test_the_trail_newest_first_with_every_column(auditor: TestClient) -> None:
    resp = auditor.get("/audit")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    html = resp.text
    # Five rows filled, then the auditor's own sign-in.
    assert _rows(html) == 6 and "<strong>6</strong> matching row(s)" in html
    assert html.index("sign_in") < html.index("report 204") < html.index("report 200")
    for shown in ("192.0.2.1", "analyst", "<code>{\"page\": 4}</code>", "Audit trail"):
        assert shown in html


@pytest.mark.parametrize("query, expected", [
    ("actor=ANA", 3),
    ("actor=bob&object_kind=report", 2),
    ("object_kind=report&object_id=201", 1),
    ("action=sign_in", 1),
    ("since=2026-12-01T10:00&until=2026-12-01T11:00", 2),  # 10:00 and 11:00: the minute is included
    ("until=2026-12-01", 5),
    ("since=2026-12-02", 1),  # only today's sign-in
])
def test_filters(auditor: TestClient, query: str, expected: int) -> None:
    resp = auditor.get(f"/audit?{query}")
    assert resp.status_code == 200 and _rows(resp.text) == expected, resp.text


def test_pages_of_older_rows(runtime: Runtime, auditor: TestClient) -> None:
    with transaction(runtime.sessions) as s:
        for i in range(120):
            audit.record(s, action="file_view", actor_name="system", object_kind="file", object_id=i)
    first = auditor.get("/audit?action=file_view")
    assert _rows(first.text) == 100 and 'rel="next"' in first.text
    assert "action=file_view&amp;before=" in first.text
    seq = first.text.split("before=")[1].split('"')[0]
    second = auditor.get(f"/audit?action=file_view&before={seq}")
    assert _rows(second.text) == 20 and 'rel="next"' not in second.text


@pytest.mark.parametrize("query, message", [
    ("since=yesterday", "From: a date (2026-12-03)"),
    ("until=2026-02-30", "Until: a date"),
    ("since=2026-12-03&until=2026-12-01", "Until: must be later than From"),
    ("before=abc", "not a row number"),
    ("before=" + "9" * 40, "not a row number"),
    ("actor=" + "x" * 500, "Actor: at most 100 characters"),
    ("actor=ana%00", "Actor: letters, digits and punctuation only"),
    ("object_id=1%0A2", "Object id: letters, digits"),
    ("until=9999-12-31", "Until: a date"),
    ("since=2026-12-03T25:00", "From: a date"),
])
def test_bad_filters_are_a_clear_message(auditor: TestClient, query: str, message: str) -> None:
    resp = auditor.get(f"/audit?{query}")
    assert resp.status_code == 400
    assert 'class="error-summary"' in resp.text and message in resp.text


def test_export_csv_and_json_are_audited(runtime: Runtime, auditor: TestClient) -> None:
    resp = auditor.get("/audit/export?actor=ana&format=csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    assert resp.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["object_id"] for r in rows] == ["200", "201", "202"]
    assert {r["actor"] for r in rows} == {"ana"} and all(len(r["hash"]) == 64 for r in rows)
    resp = auditor.get("/audit/export?format=json&object_kind=report")
    docs = [json.loads(line) for line in resp.text.splitlines()]
    assert [d["object_id"] for d in docs] == ["200", "201", "202", "203", "204"]
    with runtime.sessions() as s:
        exports = s.scalars(select(AuditEvent).where(AuditEvent.action == "audit_export")
                            .order_by(AuditEvent.seq)).all()
        assert [(e.actor, e.role, (e.detail or {}).get("format")) for e in exports] == [
            ("aud", "auditor", "csv"), ("aud", "auditor", "json")]
        assert exports[0].detail == {"format": "csv", "actor": "ana"}
        assert exports[0].request_id and exports[0].address
        assert audit.verify(s).intact


def test_export_with_bad_input_is_a_message_and_not_audited(runtime: Runtime, auditor: TestClient) -> None:
    for query, message in (("format=xlsx", "the format is csv or json"), ("since=nope", "From: a date")):
        resp = auditor.get(f"/audit/export?{query}")
        assert resp.status_code == 400 and message in resp.text
    with runtime.sessions() as s:
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "audit_export")).first() is None


def test_an_oversized_or_malformed_form_is_refused_cleanly(runtime: Runtime, auditor: TestClient) -> None:
    csrf = session_csrf(auditor, "/audit")
    before = _count(runtime)
    resp = auditor.post("/audit/verify", content=b"csrf_token=" + b"x" * 3_000_000,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code in (400, 403, 413) and "Traceback" not in resp.text
    resp = auditor.post("/audit/verify", content=b"--nope\r\n", headers={
        "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert resp.status_code in (400, 403) and "Traceback" not in resp.text
    assert _count(runtime) == before  # nothing written
    assert auditor.post("/audit/verify", data={"csrf_token": csrf}).status_code == 200


def _count(rt: Runtime) -> int:
    with rt.sessions() as s:
        return len(s.scalars(select(AuditEvent.seq)).all())


def test_verify_on_demand_needs_the_csrf_token(runtime: Runtime, auditor: TestClient) -> None:
    assert auditor.post("/audit/verify").status_code == 403
    csrf = session_csrf(auditor, "/audit")
    resp = auditor.post("/audit/verify?actor=ana", data={"csrf_token": csrf})
    assert resp.status_code == 200
    assert "The trail is intact" in resp.text and "6 row(s)" in resp.text
    assert _rows(resp.text) == 3  # the filters of the page it was sent from stay
    with runtime.sessions() as s:
        last = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert last is not None and last.action == "audit_verify" and last.detail == {
            "intact": True, "rows": 6, "firstBadRow": None}


def test_verify_on_demand_names_the_broken_row(runtime: Runtime, auditor: TestClient) -> None:
    with runtime.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    csrf = session_csrf(auditor, "/audit")
    resp = auditor.post("/audit/verify", data={"csrf_token": csrf})
    assert "The trail is broken" in resp.text and "Row 2 was edited" in resp.text


@pytest.mark.parametrize("role, extra", [
    ("analyst", {}), ("supervisor", {}), ("officer", {"agency": "FBI"}),
    ("platform", {"platform": "Acme Social"}), ("admin", {}),
])
def test_other_roles_get_not_found(runtime: Runtime, client: TestClient, role: str, extra: dict[str, str]) -> None:
    user = make_user(runtime, f"u-{role}", role, **extra)
    sign_in(client, user)
    for path in ("/audit", "/audit/export?format=csv", "/audit?actor=x"):
        resp = client.get(path, headers={"Accept": "text/html"})
        assert resp.status_code == 404 and "Page not found" in resp.text, (role, path)
    csrf = session_csrf(client, "/account")
    resp = client.post("/audit/verify", data={"csrf_token": csrf}, headers={"Accept": "text/html"})
    assert resp.status_code == 404
    assert 'href="/audit"' not in client.get("/account").text  # not in their menu either
    with runtime.sessions() as s:
        assert s.scalars(select(AuditEvent).where(AuditEvent.action.like("audit_%"))).first() is None


def test_signed_out_goes_to_sign_in(client: TestClient) -> None:
    resp = client.get("/audit?actor=ana", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?next=/audit%3Factor%3Dana"
    assert client.post("/audit/verify", follow_redirects=False).status_code in (303, 403)
    assert client.get("/audit/export", follow_redirects=False).status_code == 303


def test_auditor_menu_and_home(runtime: Runtime, client: TestClient) -> None:
    aud = make_user(runtime, "aud", "auditor")
    from people_helpers import login_csrf

    csrf = login_csrf(client)
    resp = client.post("/login", data={"username": "aud", "password": aud.password, "code": aud.code(),
                                       "csrf_token": csrf}, follow_redirects=False)
    assert resp.headers["location"] == "/audit"
    page = client.get("/audit").text
    assert 'href="/audit" aria-current="page"' in page
