"""The inbox with the outcomes service (issue "Outcomes and answers"): acknowledging records
``ACKNOWLEDGED`` once, the referral page shows the timeline and takes an outcome through
``record_outcome``, and the API export carries the timeline.

Switched on by the outcomes service itself: the module is skipped in a build without
``tipline.outcomes`` (the inbox works without it), and runs wherever it is installed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from inbox_seed import Inbox, seed
from people_helpers import session_csrf, sign_in, user_token
from tipline.runtime import Runtime
from tipline.store.tables_people import AuditEvent, Outcome

pytest.importorskip("tipline.outcomes.service")


@pytest.fixture
def box(runtime: Runtime, client: TestClient) -> Inbox:
    return seed(runtime)


def _codes(rt: Runtime, referral: int) -> list[str]:
    with rt.sessions() as s:
        return list(s.scalars(select(Outcome.code).where(Outcome.referral_id == referral).order_by(Outcome.id)))


def test_acknowledge_records_acknowledged_once(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    sign_in(client, box.officer)
    base = f"/le/referrals/{box.referral}"
    csrf = session_csrf(client, base)
    for _ in range(2):
        assert client.post(f"{base}/acknowledge", data={"csrf_token": csrf},
                           follow_redirects=False).status_code == 303
    assert _codes(runtime, box.referral) == ["ACKNOWLEDGED"]
    h = {"Authorization": f"Bearer {user_token(runtime, box.officer)}"}
    assert client.post(f"/api/v1/referrals/{box.referral}/acknowledge", headers=h).json()["changed"] is False
    assert _codes(runtime, box.referral) == ["ACKNOWLEDGED"]
    doc = client.get(f"/api/v1/referrals/{box.referral}", headers=h).json()
    assert [o["code"] for o in doc["outcomes"]] == ["ACKNOWLEDGED"]


def test_outcome_form_on_the_referral_page(runtime: Runtime, client: TestClient, box: Inbox) -> None:
    sign_in(client, box.officer)
    base = f"/le/referrals/{box.referral}"
    page = client.get(base).text
    assert f'action="/le/referrals/{box.referral}/outcomes"' in page and "Arrest" in page
    csrf = session_csrf(client, base)
    today = datetime.now(UTC).date().isoformat()
    # Refused: an arrest without its details; nothing written.
    bad = client.post(f"{base}/outcomes", data={"csrf_token": csrf, "code": "ARREST", "occurredOn": today})
    assert bad.status_code == 400 and _codes(runtime, box.referral) == []
    future = (datetime.now(UTC) + timedelta(days=9)).date().isoformat()
    assert client.post(f"{base}/outcomes", data={"csrf_token": csrf, "code": "ARREST", "occurredOn": future,
                                                 "persons": "1", "arrestType": "T"}).status_code == 400
    assert client.post(f"{base}/outcomes", data={"csrf_token": csrf, "code": "ARREST", "persons": "one",
                                                 "occurredOn": today, "arrestType": "T"}).status_code == 400
    ok = client.post(f"{base}/outcomes", data={"csrf_token": csrf, "code": "ARREST", "occurredOn": today,
                                               "persons": "2", "arrestType": "T", "note": "two suspects"},
                     follow_redirects=False)
    assert ok.status_code == 303 and "done=outcome" in ok.headers["location"]
    assert _codes(runtime, box.referral) == ["ARREST"]
    assert "Arrest" in client.get(base).text.split('id="outcomes"')[1]
    # Without the CSRF token, and on a foreign referral: refused, nothing written.
    assert client.post(f"{base}/outcomes", data={"code": "ARREST", "occurredOn": today}).status_code == 403
    assert client.post(f"/le/referrals/{box.foreign_referral}/outcomes",
                       data={"csrf_token": csrf, "code": "CLOSED_NOT_PURSUED", "occurredOn": today,
                             "reason": "evidential"}).status_code == 404
    assert _codes(runtime, box.foreign_referral) == []
    with runtime.sessions() as s:
        assert s.scalars(select(AuditEvent.action).where(AuditEvent.object_id == str(box.referral))).all()
