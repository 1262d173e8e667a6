"""The supervisors' settings pages on both backends: hash banks (read with provenance,
enable/disable and import through the CLI's functions, with a reason, CSRF and an audit
row), the routing rules (read-only, saying where they are changed), the agency directory
(referral counts; replaced from a CSV as `tipline agency import` does); 404 for everyone
else and for unknown ids; the CLI's bank and agency imports are on the same record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from people_helpers import make_user, session_csrf, sign_in
from tipline.cli import main
from tipline.people.audit import verify
from tipline.pipeline.banks import import_bank
from tipline.pipeline.directory import AGENCIES_FILE, ROUTING_FILE
from tipline.pipeline.stages.route import ensure_directory
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Agency, BankEntry, HashBank, Referral, Report, Reporter
from tipline.store.tables_people import AuditEvent

MD5 = "0123456789abcdef0123456789abcdef"
BANK_CSV = f"hash_type,value,label\nmd5,{MD5},series S-1\nsha1,{'ab' * 20},series S-1\nsha1,{'cd' * 20},\n"


@pytest.fixture
def sup(runtime: Runtime, client: TestClient) -> TestClient:
    with transaction(runtime.sessions) as s:
        ensure_directory(s)
        import_bank(s, "seed-bank", f"hash_type,value,label\nmd5,{'f' * 32},seed\n", description="test seed")
    sign_in(client, make_user(runtime, "sofia", "supervisor"))
    return client


def rows(rt: Runtime, kind: str) -> list[AuditEvent]:
    with rt.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.object_kind == kind).order_by(AuditEvent.seq)))


def bank_id(rt: Runtime, name: str) -> int:
    with rt.sessions() as s:
        return int(s.execute(select(HashBank.id).where(HashBank.name == name)).scalar_one())


def test_bank_import_enable_disable_with_reason_csrf_and_audit(runtime: Runtime, sup: TestClient) -> None:
    page = sup.get("/supervise/banks")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "seed-bank" in page.text and "test seed" in page.text and "loaded before imports were recorded" in page.text
    csrf = session_csrf(sup, "/supervise/banks")
    upload = {"file": ("known.csv", BANK_CSV.encode())}
    form = {"bank": "new-bank", "format": "csv", "description": "synthetic test hashes", "pdq_threshold": "20"}
    # No reason, no CSRF token, a bad line: each refused with nothing written.
    assert sup.post("/supervise/banks/import", data={**form, "csrf_token": csrf}, files=upload).status_code == 400
    assert sup.post("/supervise/banks/import", data={**form, "reason": "r"}, files=upload).status_code == 403
    bad = sup.post("/supervise/banks/import", data={**form, "reason": "r", "csrf_token": csrf},
                   files={"file": ("bad.csv", b"hash_type,value,label\nmd5,nothex,x\n")})
    assert bad.status_code == 400 and "line 2" in bad.text and "Nothing was imported" in bad.text
    with runtime.sessions() as s:
        assert s.execute(select(HashBank).where(HashBank.name == "new-bank")).first() is None
    assert rows(runtime, "hash_bank") == []
    ok = sup.post("/supervise/banks/import", data={**form, "reason": "new list from the hotline", "csrf_token": csrf},
                  files=upload, follow_redirects=False)
    assert ok.status_code == 303
    bid = bank_id(runtime, "new-bank")
    assert ok.headers["location"] == f"/supervise/banks/{bid}?done=imported"
    with runtime.sessions() as s:
        bank = s.get(HashBank, bid)
        assert bank is not None and bank.pdq_threshold == 20 and bank.description == "synthetic test hashes"
        assert s.scalar(select(func.count()).where(BankEntry.bank_id == bid)) == 3
    (row,) = rows(runtime, "hash_bank")
    assert row.action == "bank.import" and row.actor == "sofia" and row.object_id == str(bid)
    assert row.detail["sha256"] == hashlib.sha256(BANK_CSV.encode()).hexdigest()
    assert (row.detail["file"], row.detail["added"]) == ("known.csv", 3)
    assert row.detail["reason"] == "new list from the hotline"
    detail = sup.get(f"/supervise/banks/{bid}")
    assert "import 1" in detail.text and "known.csv" in detail.text and "new list from the hotline" in detail.text
    assert "series S-1" in detail.text and "md5 1, sha1 2" in detail.text and "2 with a label" in detail.text
    # Disable, then enable: the CLI's set_enabled, each with its reason and audit row.
    path = f"/supervise/banks/{bid}/enabled"
    assert sup.post(path, data={"enabled": "no", "csrf_token": csrf}).status_code == 409  # no reason
    off = sup.post(path, data={"enabled": "no", "reason": "bad source", "csrf_token": csrf}, follow_redirects=False)
    assert off.status_code == 303 and off.headers["location"].endswith("done=disabled")
    with runtime.sessions() as s:
        assert s.get(HashBank, bid).enabled is False  # type: ignore[union-attr]
    again = sup.post(path, data={"enabled": "no", "reason": "twice", "csrf_token": csrf})
    assert again.status_code == 409 and "already disabled" in again.text
    assert sup.post(path, data={"enabled": "yes", "reason": "fixed", "csrf_token": csrf},
                    follow_redirects=False).status_code == 303
    assert [r.action for r in rows(runtime, "hash_bank")] == ["bank.import", "bank.disable", "bank.enable"]
    with runtime.sessions() as s:
        assert verify(s).intact
    # Unknown and malformed ids answer as a page that does not exist.
    assert sup.get("/supervise/banks/99999").status_code == 404
    assert sup.get("/supervise/banks/abc").status_code == 404
    assert sup.post("/supervise/banks/99999/enabled", data={"enabled": "no", "reason": "r",
                                                            "csrf_token": csrf}).status_code == 404


def test_cli_bank_and_agency_imports_are_on_the_same_record(runtime: Runtime, sup: TestClient, tmp_path: Path) -> None:
    f = tmp_path / "cli-bank.csv"
    f.write_text(BANK_CSV)
    env = {"TIPLINE_DATA_DIR": str(runtime.settings.data_dir),
           "TIPLINE_DATABASE_URL": runtime.settings.database_url or ""}
    cli = CliRunner()
    r = cli.invoke(main, ["bank", "import", str(f), "--bank", "cli-bank"], env=env)
    assert r.exit_code == 0, r.output
    assert cli.invoke(main, ["bank", "disable", "cli-bank"], env=env).exit_code == 0
    r = cli.invoke(main, ["agency", "import"], env=env)
    assert r.exit_code == 0, r.output
    bank_rows = rows(runtime, "hash_bank")
    assert [x.action for x in bank_rows] == ["bank.import", "bank.disable"]
    assert bank_rows[0].actor.startswith("cli") and bank_rows[0].detail["file"] == "cli-bank.csv"
    assert bank_rows[0].detail["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    page = sup.get(f"/supervise/banks/{bank_id(runtime, 'cli-bank')}")
    assert "cli-bank.csv" in page.text and "disabled" in page.text
    (agency_row,) = rows(runtime, "agency_directory")
    assert agency_row.detail["file"] == AGENCIES_FILE.name
    assert agency_row.detail["sha256"] == hashlib.sha256(AGENCIES_FILE.read_bytes()).hexdigest()
    assert AGENCIES_FILE.name in sup.get("/supervise/agencies").text


def test_routing_rules_are_read_only_and_say_where_they_change(runtime: Runtime, sup: TestClient) -> None:
    page = sup.get("/supervise/routing")
    assert page.status_code == 200
    text = page.text
    assert str(ROUTING_FILE) in text and "tipline pipeline rerun --stage route" in text
    assert hashlib.sha256(ROUTING_FILE.read_bytes()).hexdigest()[:16] in text
    for name in ("us-dc-icac", "us-state-icac", "international-liaison", "esp_estimate_verified"):
        assert name in text
    assert "<form" not in text.split("</header>", 1)[1].split("<footer", 1)[0]  # nothing to submit
    # Confidences come from the one registry.
    from tipline.kinds.locations import CONFIDENCE

    assert f"{CONFIDENCE['ip_login']:.2f}" in text


def test_directory_lists_referral_counts_and_is_replaced_from_a_csv(runtime: Runtime, sup: TestClient) -> None:
    with transaction(runtime.sessions) as s:
        tx = s.execute(select(Agency).where(Agency.code == "ICAC-TX-OAG")).scalar_one()
        rep = Reporter(name="Acme Test", kind="esp", enabled=True, created_at=tx_now())
        s.add(rep)
        s.flush()
        for i in range(3):
            r = Report(reporter_id=rep.id, source="api", state="finished", opened_at=tx_now(),
                       last_change_at=tx_now(), finished_at=tx_now(), batched=False, normalisations=[], file_count=0)
            s.add(r)
            s.flush()
            s.add(Referral(report_id=r.id, agency_id=tx.id, rule="us-state-icac", reason="synthetic",
                           made_available_at=tx_now(), escalated=i == 0,
                           acknowledged_at=tx_now() if i < 2 else None))
    page = sup.get("/supervise/agencies")
    assert page.status_code == 200
    row = page.text.split("<code>ICAC-TX-OAG</code>", 1)[1].split("</tr>", 1)[0]
    assert [c.split("<")[0] for c in row.split('<td class="num">')[1:]] == ["3", "1", "2"]
    assert "Austin" in row and "ICAC Data System" in row  # jurisdiction and contact
    csrf = session_csrf(sup, "/supervise/agencies")
    lines = AGENCIES_FILE.read_text().splitlines()
    # The bundled directory without one federal agency: it is deactivated, never deleted.
    fewer = "\n".join(ln for ln in lines if not ln.startswith("HSI,")) + "\n"
    assert fewer.count("\n") == len(lines) - 1
    assert sup.post("/supervise/agencies/import", data={"csrf_token": csrf},
                    files={"file": ("a.csv", fewer.encode())}).status_code == 400  # no reason
    bad = sup.post("/supervise/agencies/import", data={"csrf_token": csrf, "reason": "r"},
                   files={"file": ("a.csv", b"code,name,kind\nX,,nope\n")})
    assert bad.status_code == 400 and "Nothing was imported" in bad.text
    done = sup.post("/supervise/agencies/import", data={"csrf_token": csrf, "reason": "HSI left the programme"},
                    files={"file": ("agencies-2026.csv", fewer.encode())}, follow_redirects=False)
    assert done.status_code == 303
    with runtime.sessions() as s:
        hsi = s.execute(select(Agency).where(Agency.code == "HSI")).scalar_one()
        assert hsi.active is False
    (row_a,) = rows(runtime, "agency_directory")
    assert row_a.action == "directory.import" and row_a.actor == "sofia"
    assert row_a.detail["deactivated"] == ["HSI"] and row_a.detail["reason"] == "HSI left the programme"
    after = sup.get("/supervise/agencies").text
    assert "agencies-2026.csv" in after and "inactive" in after


def tx_now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_only_supervisors_see_these_pages(runtime: Runtime, client: TestClient) -> None:
    with transaction(runtime.sessions) as s:
        ensure_directory(s)
    for role in ("analyst", "officer", "platform", "auditor", "admin"):
        extra = {"agency": "FBI"} if role == "officer" else {"platform": "Acme Social"} if role == "platform" else {}
        with TestClient(client.app, raise_server_exceptions=False) as c:
            sign_in(c, make_user(runtime, f"u-{role}", role, **extra))
            for path in ("/supervise/banks", "/supervise/routing", "/supervise/agencies", "/supervise/banks/1"):
                assert c.get(path).status_code == 404, (role, path)
            assert "/supervise/" not in c.get("/account").text, role  # not in their menu either
