"""The auditor's path end to end in Chromium: sign in with a one-time code, filter the trail,
verify the chain, export it; every page with no request to another host, no console error,
and no serious or critical axe-core violation. Screenshots with TIPLINE_SCREENSHOTS=1."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from browsers import Guard, axe_violations, require_chromium, shot
from people_helpers import make_user
from test_offline_pages import Server, server  # noqa: F401  (the module's server fixture)
from tipline.people import audit
from tipline.people.principal import Principal
from tipline.store.db import transaction

pytestmark = pytest.mark.browser

require_chromium()

from playwright.sync_api import Page, expect  # noqa: E402


def test_auditor_filters_verifies_and_exports(guarded: tuple[Page, Guard], server: Server) -> None:  # noqa: F811
    page, guard = guarded
    aud = make_user(server.rt, "audrey", "auditor", password="auditor pass 1")
    t0 = datetime.now(UTC) - timedelta(days=2)
    with transaction(server.rt.sessions) as s:
        for i, (who, action, kind) in enumerate([("ana", "report_view", "report"), ("ana", "file_unblur", "file"),
                                                 ("olive", "referral_export", "referral"),
                                                 ("olive", "referral_acknowledge", "referral"),
                                                 ("ana", "report_view", "report")]):
            audit.record(s, action=action, actor=Principal(900 + i, who, "analyst" if who == "ana" else "officer"),
                         object_kind=kind, object_id=1000 + i, address="192.0.2.10", request_id=f"demo{i}",
                         detail={"reason": "synthetic demo row"}, at=t0 + timedelta(minutes=7 * i))

    page.goto(server.url + "/audit")
    expect(page).to_have_url(re.compile(r"/login\?next=/audit$"))
    page.get_by_label("Username").fill("audrey")
    page.get_by_label("Password").fill("auditor pass 1")
    page.get_by_label("One-time code").fill(aud.code())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit trail")
    expect(page.locator("table.audit-rows tbody tr").first).to_contain_text("sign_in")
    assert axe_violations(page) == []
    shot(page, "audit-trail.png")

    # Filter by actor and action.
    page.get_by_label("Actor").fill("ana")
    page.get_by_label("Action").select_option("report_view")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.audit-rows tbody tr")).to_have_count(2)
    expect(page.locator("main")).to_contain_text("2 matching row(s)")

    # Export what is shown: a CSV with the hashes.
    with page.expect_download() as dl:
        page.get_by_role("link", name="CSV").click()
    body = Path(dl.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["actor"] for r in rows] == ["ana", "ana"] and all(len(r["hash"]) == 64 for r in rows)

    # Verify the chain on demand.
    page.get_by_role("button", name="Verify the whole chain").click()
    expect(page.locator(".verdict h2")).to_have_text("The trail is intact")
    expect(page.locator("table.audit-rows tbody tr")).to_have_count(2)  # the filters stayed
    assert axe_violations(page) == []
    shot(page, "audit-verified.png")

    # A filter that cannot be read: a message that names the field, and the page still works.
    bad = server.url + "/audit?since=not-a-date"
    guard.expected_status[bad] = 400
    page.goto(bad)
    expect(page.locator(".error-summary")).to_contain_text("From: a date")
    assert axe_violations(page) == []
    shot(page, "audit-bad-filter.png")
    page.locator(".error-summary a").first.click()
    expect(page.locator("#f-since")).to_be_focused()
    guard.assert_clean()


def test_the_axe_check_can_fail(guarded: tuple[Page, Guard], server: Server) -> None:  # noqa: F811
    # Without this, an axe run that found nothing (not injected, wrong result shape) would pass.
    page, _ = guarded
    page.route("**/__axe_probe", lambda r: r.fulfill(content_type="text/html", body=(
        "<html><head><title>probe</title></head><body><main><img src='/static/favicon.png'>"
        "<button></button></main></body></html>")))
    page.goto(server.url + "/__axe_probe")
    ids = {v["id"] for v in axe_violations(page)}
    assert {"image-alt", "button-name"} <= ids
