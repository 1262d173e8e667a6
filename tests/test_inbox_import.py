"""The officer's CSV upload of outcomes on the inbox page: all or nothing, line-numbered errors,
the same file again changes nothing, only the officer's own agency, CSRF required."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from inbox_seed import Inbox, seed
from people_helpers import session_csrf, sign_in
from tipline.runtime import Runtime
from tipline.store.tables_people import AuditEvent, Outcome


def _outcomes(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.execute(select(func.count()).select_from(Outcome)).scalar_one())


def _post(client: TestClient, csrf: str, body: bytes, name: str = "outcomes.csv") -> object:
    return client.post("/le/outcomes/import", data={"csrf_token": csrf},
                       files={"file": (name, body, "text/csv")})


def test_import_page_all_or_nothing_and_replay(runtime: Runtime, client: TestClient) -> None:
    box: Inbox = seed(runtime)
    sign_in(client, box.officer)
    csrf = session_csrf(client, "/le/outcomes/import")
    today = datetime.now(UTC).date().isoformat()
    bad = (f"referralId,code,occurredOn\n{box.referral},ACKNOWLEDGED,{today}\n"
           f"{box.foreign_referral},ACKNOWLEDGED,{today}\n{box.calm_referral},NOT_A_CODE,{today}\n").encode()
    resp = _post(client, csrf, bad)
    assert resp.status_code == 422  # type: ignore[attr-defined]
    text = resp.text  # type: ignore[attr-defined]
    assert "Nothing was imported" in text and "line 3" in text and "line 4" in text
    assert _outcomes(runtime) == 0
    good = f"\ufeffreferralId,code,occurredOn\n{box.referral},ACKNOWLEDGED,{today}\n".encode()
    resp = _post(client, csrf, good)
    assert resp.status_code == 200 and "Imported 1 row(s)" in resp.text  # type: ignore[attr-defined]
    assert _outcomes(runtime) == 1
    resp = _post(client, csrf, good)
    assert "already imported" in resp.text and _outcomes(runtime) == 1  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        assert s.scalars(select(AuditEvent).where(AuditEvent.action.like("outcome%"))).first() is not None


def test_import_refusals(runtime: Runtime, client: TestClient) -> None:
    box = seed(runtime)
    sign_in(client, box.officer)
    csrf = session_csrf(client, "/le/outcomes/import")
    today = datetime.now(UTC).date().isoformat()
    body = f"referralId,code,occurredOn\n{box.referral},ACKNOWLEDGED,{today}\n".encode()
    # No CSRF token: refused, nothing written.
    resp = client.post("/le/outcomes/import", files={"file": ("o.csv", body, "text/csv")})
    assert resp.status_code == 403 and _outcomes(runtime) == 0
    # No file chosen; junk bigger than the limit.
    assert client.post("/le/outcomes/import", data={"csrf_token": csrf}).status_code == 400
    junk = b"\x00" * (runtime.settings.max_document_bytes + 10)
    resp = _post(client, csrf, junk)
    assert resp.status_code == 413 and _outcomes(runtime) == 0  # type: ignore[attr-defined]
    # An analyst has no inbox: the page does not exist for them.
    other = TestClient(client.app, raise_server_exceptions=False)
    sign_in(other, box.analyst)
    assert other.get("/le/outcomes/import").status_code == 404
