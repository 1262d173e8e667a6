"""The analyst's main path in Chromium, from sign-in with a one-time code: filter the queue,
claim a report, unblur one file, label it, change the priority; axe-core on every console
page (no serious or critical violation). Screenshots: console-queue.png, console-report.png,
console-workload.png (docs/screenshots with TIPLINE_SCREENSHOTS=1)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from browsers import axe_violations, require_chromium, shot
from people_helpers import TestUser, make_user
from test_console_data import Store, build
from tipline.config import Settings
from tipline.intake.credentials import add_esp
from tipline.runtime import Runtime
from tipline.store.setup import do_init

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402


@dataclass
class Server:
    url: str
    rt: Runtime
    store: Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import uvicorn

    from tipline.web.app import create_app

    settings = Settings.from_env(tmp_path_factory.mktemp("console") / "data", database_url="")
    do_init(settings)
    rt = Runtime.open(settings)
    add_esp(rt, "Acme Social", "acme", "acme-secret-1")
    add_esp(rt, "Globex Chat", "globex", "globex-secret-1")
    store = build(rt)
    srv = uvicorn.Server(uvicorn.Config(create_app(runtime=rt), host="127.0.0.1", port=(port := _free_port()),
                                        log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", rt, store)
    finally:
        srv.should_exit = True
        thread.join(10)
        rt.close()


def axe(page: Page) -> None:
    """No serious or critical accessibility violation (axe-core, WCAG 2 A/AA rules)."""
    bad = axe_violations(page, ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"])
    assert not bad, bad


def sign_in(page: Page, url: str, user: TestUser) -> None:
    page.goto(url + "/console")
    expect(page).to_have_url(re.compile(r"/login\?next=/console$"))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_label("One-time code").fill(user.code())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Queue")


def test_analyst_main_path(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    user = make_user(server.rt, "alma", "analyst")
    sign_in(page, server.url, user)
    axe(page)
    # Filter the queue: United States, Texas.
    page.get_by_label("Country").select_option("US")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"country=US"))
    page.get_by_label("US state").select_option("TX")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.lede")).to_contain_text("4 reports match")
    shot(page, "console-queue.png")
    # Open the report whose files have copies in its incident, and claim it.
    page.get_by_role("link", name=str(server.store.shared), exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Report {server.store.shared}")
    page.get_by_role("button", name="Claim this report").click()
    expect(page.locator(".notice")).to_contain_text("You hold this report now")
    # The pictures are blurred thumbnails until one is unblurred.
    first = page.locator(".console-file").first
    expect(first.locator("img.blurred")).to_be_visible()
    assert page.evaluate("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    axe(page)
    shot(page, "console-report.png")
    first.get_by_role("button", name="Unblur file 1").click()
    first = page.locator(".console-file").first
    expect(first.locator("img.clear")).to_be_visible()
    page.wait_for_function("() => { const i = document.querySelector('img.clear'); return i && i.complete && "
                           "i.naturalWidth > 0; }")
    # Only that one: the other file stays blurred.
    expect(page.locator("img.clear")).to_have_count(1)
    expect(page.locator(".console-file").nth(1).locator("img.blurred")).to_be_visible()
    # Label it: its exact copies in the incident get it too, and the page says so.
    first.get_by_label("Classification").select_option("B2")
    first.get_by_label("Estimated age range").select_option("13-15")
    first.get_by_label("Apparent minor").check()
    first.get_by_role("button", name="Save label").click()
    expect(page.locator(".notice")).to_contain_text(re.compile(r"also applied to 2 copies in incident \d+"))
    # Change the priority with a reason; the pipeline's stays beside it.
    page.locator("#d-priority").select_option("1")
    page.locator("#d-reason").fill("Synthetic test: the analyst judged it more urgent.")
    page.get_by_role("button", name="Set priority", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("Priority changed")
    expect(page.locator("#assessment + table")).to_contain_text("Synthetic test: the analyst judged it more urgent.")
    assert not errors, errors
    ctx.close()


def test_supervisor_workload_page(browser: Browser, server: Server) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    sup = make_user(server.rt, "sven", "supervisor")
    sign_in(page, server.url, sup)
    page.get_by_role("link", name="Workload").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Workload")
    axe(page)
    shot(page, "console-workload.png")
    # Everything unclaimed waits somewhere; the oldest report of each priority is a link.
    expect(page.locator("table.data").first).to_contain_text("P3")
    page.goto(server.url + f"/console/reports/{server.store.gated}")
    expect(page.locator(".gated")).to_have_count(2)
    expect(page.locator(".gated").first).to_contain_text("United States v. Wilson")
    axe(page)
    ctx.close()
