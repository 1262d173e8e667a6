"""The platform's view in Chromium: a platform user signs in (no one-time code), sees their
reports and the gaps chart, opens a report, exports CSV; axe-core finds no serious or
critical violation on the pages. Screenshots: platform-view.png, platform-report.png."""

from __future__ import annotations

import csv
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from browsers import axe_violations, require_chromium, shot
from test_platform_view import NOV, SEP, doc, enrich, store
from tipline.config import Settings
from tipline.intake.credentials import add_esp
from tipline.runtime import Runtime
from tipline.store.setup import do_init

pytestmark = pytest.mark.browser

require_chromium()

from playwright.sync_api import Browser, expect  # noqa: E402


@dataclass
class Site:
    url: str
    rt: Runtime
    reports: dict[str, int]
    foreign: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import uvicorn

    from people_helpers import make_user
    from tipline.web.app import create_app

    settings = Settings.from_env(tmp_path_factory.mktemp("platform") / "data", database_url="")
    do_init(settings)
    rt = Runtime.open(settings)
    add_esp(rt, "Acme Social", "acme", "acme-secret-1")
    add_esp(rt, "Globex Chat", "globex", "globex-secret-1")
    reports = {
        "full": store(rt, doc(account="u1", ip="8.8.8.8"), filed=SEP, files=[True]),
        "no_ip_time": store(rt, doc(account="u2", ip="8.8.4.4", ip_time=False), filed=SEP, files=[True, False]),
        "bare": store(rt, doc(), filed=SEP),
        "nov_est": store(rt, doc(account="u3", estimate=True), filed=NOV, files=[None]),
        "nov_ip": store(rt, doc(account="u4", ip="1.1.1.1"), filed=NOV, files=[True]),
        "open": store(rt, doc(account="u6"), filed=None, state="open"),
    }
    foreign = store(rt, doc(account="g1"), platform="Globex Chat", filed=NOV)
    enrich(rt, [v for k, v in reports.items() if k != "open"] + [foreign])
    make_user(rt, "pat", "platform", platform="Acme Social", password="platform pass 1")
    app = create_app(runtime=rt)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield Site(f"http://127.0.0.1:{port}", rt, reports, foreign)
    finally:
        srv.should_exit = True
        thread.join(10)
        rt.close()


def test_platform_user_signs_in_sees_reports_and_gaps_opens_one_and_exports(
        browser: Browser, site: Site, tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    outside: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(site.url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort("blockedbyclient")

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(site.url + "/platform?since=2026-08&until=2026-12")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.get_by_label("Username").fill("pat")
        page.get_by_label("Password").fill("platform pass 1")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Our reports")
        expect(page.locator(".whoami")).to_contain_text("Acme Social")
        rows = page.locator("table.platform-reports tbody tr")
        expect(rows).to_have_count(len(site.reports))
        expect(page.locator(f'a[href="/platform/reports/{site.foreign}"]')).to_have_count(0)
        chart = page.get_by_role("img", name=re.compile("Most common gaps by month"))
        expect(chart).to_be_visible()
        expect(page.locator("svg.gaps-chart text", has_text="no reports")).to_have_count(3)  # August, October, December
        expect(page.locator("#headline")).to_contain_text("of the month's reports")
        gaps = page.locator("table.platform-gaps")
        expect(gaps.locator("tr.no-data", has_text="October 2026")).to_contain_text("no reports filed this month")
        assert axe_violations(page) == []
        shot(page, "platform-view.png")

        # A filter from the gaps table: the reports one cell counts.
        page.get_by_label("Missing", exact=True).select_option("ip_event_times")
        page.get_by_label("Filed in", exact=True).select_option("2026-09")
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(re.compile(r"gap=ip_event_times"))
        expect(page.locator("#report-count")).to_contain_text("match these filters")

        # One report, its gaps in words.
        page.goto(site.url + "/platform")
        page.get_by_role("link", name=str(site.reports["no_ip_time"]), exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Report {site.reports['no_ip_time']}")
        missing = page.locator(".quality-item.missing")
        expect(missing).to_have_count(2)
        expect(page.locator("#item-ip_event_times")).to_contain_text("the agency cannot subpoena the ISP")
        expect(page.locator("#item-files_viewed")).to_contain_text("US v. Wilson")
        assert axe_violations(page) == []
        shot(page, "platform-report.png")

        # Another platform's report: not found, as a missing one.
        resp = page.goto(site.url + f"/platform/reports/{site.foreign}")
        assert resp is not None and resp.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        assert axe_violations(page) == []
        errors[:] = [e for e in errors if "404" not in e]  # the navigation's own status

        # Export CSV: the download holds the platform's reports.
        page.goto(site.url + "/platform")
        with page.expect_download() as dl:
            page.get_by_role("link", name="Export CSV").click()
        target = tmp_path / dl.value.suggested_filename
        dl.value.save_as(target)
        assert target.name.startswith("tipline-reports-acme-social-") and target.suffix == ".csv"
        raw = target.read_bytes().decode("utf-8")
        records = list(csv.reader(io.StringIO(raw, newline="")))
        assert records[0][0] == "reportId"
        assert {int(r[0]) for r in records[1:]} == set(site.reports.values())
        assert outside == [] and errors == []
    finally:
        ctx.close()
