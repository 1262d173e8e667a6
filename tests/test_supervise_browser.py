"""The supervisor's and the administrator's pages in Chromium, from sign-in with a one-time
code: hash banks (import a file, disable with a reason), routing rules, the agency
directory; accounts (add an officer and see the one-time setup once, issue a token, disable).
Every page with no request to another host, no console error and no serious or critical
axe-core violation. Screenshots: supervise-banks.png, supervise-bank.png,
supervise-routing.png, supervise-agencies.png, admin-users.png, admin-secret.png,
admin-user.png (docs/screenshots with TIPLINE_SCREENSHOTS=1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from browsers import Guard, axe_violations, require_chromium, shot
from people_helpers import TestUser, make_user
from test_offline_pages import Server, server  # noqa: F401  (the module's server fixture)
from tipline.pipeline.stages.route import ensure_directory
from tipline.store.db import transaction

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Page, expect  # noqa: E402

RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe(page: Page) -> None:
    bad = axe_violations(page, RULES)
    assert not bad, bad


def sign_in(page: Page, url: str, user: TestUser, start: str) -> None:
    page.goto(url + start)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_label("One-time code").fill(user.code())
    page.get_by_role("button", name="Sign in").click()


def test_supervisor_manages_banks_and_reads_routing_and_directory(  # noqa: F811
        guarded: tuple[Page, Guard], server: Server, tmp_path: Path) -> None:  # noqa: F811
    page, guard = guarded
    with transaction(server.rt.sessions) as s:
        ensure_directory(s)
    sup = make_user(server.rt, "sabine", "supervisor")
    sign_in(page, server.url, sup, "/supervise/banks")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hash banks")
    expect(page.get_by_role("link", name="Hash banks", exact=True)).to_have_attribute("aria-current", "page")
    axe(page)
    # Import a bank file with a reason.
    bank_file = tmp_path / "known-series.csv"
    bank_file.write_text("hash_type,value,label\n" + "".join(
        f"md5,{i:032x},synthetic series {i % 3}\n" for i in range(1, 25)) + f"pdq,{'ab' * 32},\n")
    page.get_by_label("Bank name (created when new)").fill("hotline-known")
    page.get_by_label("File").set_input_files(str(bank_file))
    page.get_by_label("What the bank holds and where it came from").fill("Synthetic test list (generated)")
    page.locator("#b-reason").fill("Quarterly list from the hotline's own labels (synthetic)")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hash bank hotline-known")
    expect(page.locator(".notice")).to_contain_text("Imported")
    expect(page.locator("dl.facts")).to_contain_text("import 1")
    expect(page.locator("dl.facts")).to_contain_text("md5 24, pdq 1")
    expect(page.locator("table.data").last).to_contain_text("known-series.csv")
    axe(page)
    shot(page, "supervise-bank.png")
    # Disable it with a reason.
    page.locator("#e-reason").fill("Source under review (synthetic)")
    page.get_by_role("button", name="Disable bank hotline-known").click()
    expect(page.locator(".notice")).to_contain_text("no longer matched")
    expect(page.get_by_role("heading", level=1)).to_contain_text("disabled")
    page.get_by_role("link", name="Hash banks", exact=True).click()
    expect(page.locator("table.data tbody tr")).to_have_count(1)
    expect(page.locator("table.data tbody")).to_contain_text("bank.disable by sabine")
    shot(page, "supervise-banks.png")
    # Routing: read-only, and says where it is changed.
    page.get_by_role("link", name="Routing", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Routing rules")
    expect(page.get_by_role("note")).to_contain_text("tipline pipeline rerun --stage route")
    expect(page.locator("table.data").nth(1)).to_contain_text("us-state-icac")
    axe(page)
    shot(page, "supervise-routing.png")
    # The directory.
    page.get_by_role("link", name="Agencies", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Agency directory")
    expect(page.locator("table.data").first).to_contain_text("ICAC-TX-OAG")
    axe(page)
    shot(page, "supervise-agencies.png", full_page=False)
    guard.assert_clean()


def test_admin_adds_an_officer_issues_a_token_and_disables(  # noqa: F811
        guarded: tuple[Page, Guard], server: Server) -> None:  # noqa: F811
    page, guard = guarded
    with transaction(server.rt.sessions) as s:
        ensure_directory(s)
    adm = make_user(server.rt, "adele", "admin")
    sign_in(page, server.url, adm, "/admin/users")
    expect(page.get_by_role("heading", level=1)).to_have_text("Accounts")
    axe(page)
    page.get_by_label("Username (no spaces)").fill("oscar")
    page.get_by_label("Role").select_option("officer")
    page.get_by_label("Agency (officers only)").select_option("ICAC-TX-OAG")
    page.get_by_label("E-mail, where reminders reach the person (optional)").fill("oscar@example.test")
    page.locator("#u-reason").fill("Joined the Texas task force (synthetic)")
    shot(page, "admin-users.png")
    page.get_by_role("button", name="Add account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account oscar added")
    expect(page.locator("dl.secret")).to_contain_text("otpauth://totp/")
    expect(page.locator("dl.secret")).to_contain_text("Password")
    axe(page)
    shot(page, "admin-secret.png")
    page.get_by_role("link", name="Go to account oscar").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account oscar")
    expect(page.locator("main")).not_to_contain_text("otpauth://")  # shown once
    page.get_by_label("What the token is for (label)").fill("case system sync")
    page.locator("#t-reason").fill("The agency's case system reads its referrals (synthetic)")
    page.get_by_role("button", name="Issue a token").click()
    expect(page.locator("dl.secret")).to_contain_text("tlu_")
    page.get_by_role("link", name="Go to account oscar").click()
    expect(page.locator("table.data")).to_contain_text("case system sync")
    page.locator("#d-reason").fill("Left the task force (synthetic)")
    page.get_by_role("button", name="Disable account").click()
    expect(page.locator(".notice")).to_contain_text("sessions ended and its tokens were revoked")
    axe(page)
    shot(page, "admin-user.png")
    page.get_by_role("link", name="Accounts", exact=True).click()
    expect(page.locator("table.data tr", has_text="oscar")).to_contain_text("disabled")
    guard.assert_clean()
