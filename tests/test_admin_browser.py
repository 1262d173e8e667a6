"""The administrator unlocks an account locked by failed sign-ins and sets a new password, in
Chromium from sign-in with a one-time code: the lock shown with its end, the new password
shown once and working, no request to another host, no console error and no serious or
critical axe-core violation. Screenshots: admin-locked.png, admin-password.png (docs/screenshots with
TIPLINE_SCREENSHOTS=1)."""

from __future__ import annotations

import re

import pytest

from browsers import Guard, require_chromium, shot
from people_helpers import make_user
from test_offline_pages import Server, server  # noqa: F401  (the module's server fixture)
from test_supervise_browser import axe, sign_in
from tipline.people import accounts
from tipline.store.db import transaction

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Page, expect  # noqa: E402


def test_admin_unlocks_an_account_and_sets_a_new_password(  # noqa: F811
        guarded: tuple[Page, Guard], server: Server) -> None:  # noqa: F811
    page, guard = guarded
    rt = server.rt
    adm = make_user(rt, "aurelia", "admin")
    ana = make_user(rt, "annika", "analyst")
    # Someone guesses: the real sign-in, wrong each time, until the account locks.
    for _ in range(rt.settings.sign_in_max_failures):
        with transaction(rt.sessions) as s:
            assert not accounts.sign_in(s, rt.settings, "annika", "not her password", "000000").ok
    sign_in(page, server.url, adm, f"/admin/users/{ana.user_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account annika")
    expect(page.locator("dl.facts")).to_contain_text(re.compile(r"locked until \d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    axe(page)
    page.locator("#l-reason").fill("Locked out after a holiday; identity checked by phone (synthetic)")
    shot(page, "admin-locked.png")
    page.locator("#l-reason").fill("Locked out after a holiday; identity checked by phone (synthetic)")
    page.get_by_role("button", name="Unlock account").click()
    expect(page.locator(".notice")).to_contain_text("is unlocked")
    expect(page.locator("dl.facts")).to_contain_text("active")
    expect(page.get_by_role("button", name="Unlock account")).to_have_count(0)
    axe(page)
    # A new password, shown once.
    page.locator("#p-reason").fill("The old password may have been seen (synthetic)")
    page.get_by_role("button", name="Set a new password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New password for annika")
    expect(page.locator(".notice")).to_contain_text("shown once")
    password = page.locator("dl.secret dd code").inner_text()
    assert len(password) >= 8
    axe(page)
    shot(page, "admin-password.png")
    page.get_by_role("link", name="Go to account annika").click()
    expect(page.locator("main")).not_to_contain_text(password)
    guard.assert_clean()
    # The new password works, the old one does not.
    with transaction(rt.sessions) as s:
        assert accounts.sign_in(s, rt.settings, "annika", ana.password, ana.code()).failure is not None
    with transaction(rt.sessions) as s:
        assert accounts.sign_in(s, rt.settings, "annika", password, ana.next_code()).ok
