"""The officer's main path in Chromium: sign in with a one-time code, the inbox, a referral
with blurred thumbnails, acknowledge, record legal process, download an export — no request
to another host, no console error, no serious or critical axe-core violation. Screenshots
le-inbox.png and le-referral.png with TIPLINE_SCREENSHOTS=1."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from browsers import Guard, axe_violations, require_chromium, shot
from inbox_seed import seed
from test_offline_pages import Server, server  # noqa: F401  (the module's server fixture)
from tipline.store.tables import Referral
from tipline.store.tables_people import AuditEvent, LegalProcess

pytestmark = pytest.mark.browser

require_chromium()

from playwright.sync_api import Page, expect  # noqa: E402


def test_officer_main_path(guarded: tuple[Page, Guard], server: Server) -> None:  # noqa: F811
    page, guard = guarded
    box = seed(server.rt, prefix="br-")
    page.goto(server.url + "/le")
    expect(page).to_have_url(re.compile(r"/login\?next=/le$"))
    page.get_by_label("Username").fill(box.officer.username)
    page.get_by_label("Password").fill(box.officer.password)
    page.get_by_label("One-time code").fill(box.officer.code())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Inbox of")
    rows = page.locator("table.le-inbox tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("overdue")
    expect(rows.first).to_contain_text("escalated")
    assert axe_violations(page) == []
    shot(page, "le-inbox.png")

    # Filter, then open the escalated referral.
    page.get_by_label("Escalated").select_option("yes")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    page.get_by_role("link", name=f"Referral {box.referral}", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Referral {box.referral}")
    expect(page.locator(".le-gate")).to_contain_text("1 file closed")
    thumb = page.get_by_alt_text("File 1, blurred and greyscale")
    expect(thumb).to_be_visible()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", thumb.element_handle())
    expect(page.locator("#outcomes")).to_be_visible()
    assert axe_violations(page) == []
    shot(page, "le-referral.png")

    # Acknowledge.
    page.get_by_role("button", name="Acknowledge receipt").click()
    expect(page.get_by_role("status")).to_contain_text("Acknowledged.")
    with server.rt.sessions() as s:
        ref = s.get(Referral, box.referral)
        assert ref is not None and ref.acknowledged_at is not None

    # Record legal process: the closed file opens.
    page.get_by_label("Kind").select_option("search_warrant")
    page.get_by_label("Reference (docket or warrant number)").fill("SW-BR-7")
    page.get_by_label("Issued on").fill(datetime.now(UTC).date().isoformat())
    page.get_by_role("button", name="Record legal process").click()
    expect(page.get_by_role("status")).to_contain_text("Legal process recorded")
    expect(page.locator(".le-gate")).to_have_count(0)
    expect(page.get_by_alt_text("File 2, blurred and greyscale")).to_be_visible()
    with server.rt.sessions() as s:
        assert s.execute(select(LegalProcess.reference).where(
            LegalProcess.referral_id == box.referral)).scalar_one() == "SW-BR-7"

    # Unblur one file (audited), then download the JSON export.
    page.get_by_role("link", name="Unblur file 1").click()
    expect(page.get_by_alt_text("File 1, unblurred")).to_be_visible()
    with page.expect_download() as dl:
        page.get_by_role("link", name="JSON").click()
    doc = json.loads(Path(dl.value.path()).read_text(encoding="utf-8"))
    assert doc["schema"] == "tipline.referral/1" and doc["referral"]["acknowledgedAt"]
    assert [p["reference"] for p in doc["legalProcess"]] == ["SW-BR-7"]
    with page.expect_download() as dl:
        page.get_by_role("link", name="PDF (printable)").click()
    assert Path(dl.value.path()).read_bytes().startswith(b"%PDF")
    with server.rt.sessions() as s:
        actions = set(s.scalars(select(AuditEvent.action).where(AuditEvent.actor == box.officer.username)))
    assert {"referral.read", "referral.acknowledge", "referral.legal_process", "referral.file_unblur",
            "referral.export_json", "referral.export_pdf"} <= actions
    guard.assert_clean()
