"""The public form in a real browser with JavaScript switched off (Chromium via Playwright).

A real uvicorn server runs the app on a SQLite runtime in a background thread. The tests
fill and send the form with a file, read the receipt code, add information with it, and
check the error summary of an invalid form. They save screenshots to docs/screenshots/ when TIPLINE_SCREENSHOTS=1.

Needs Debian's /usr/bin/chromium (``playwright install`` does not work offline). Without it
the module is skipped, unless TIPLINE_TEST_REQUIRE_BROWSER=1 makes that a failure.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from browsers import SHOTS, require_chromium
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.setup import do_init
from tipline.store.tables import Blob, Document, File, Report

pytestmark = pytest.mark.browser


require_chromium()

from playwright.sync_api import (  # noqa: E402
    Browser,
    FilePayload,
    Page,
    expect,
)


@dataclass
class Server:
    url: str
    rt: Runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import uvicorn

    from tipline.web.app import create_app

    settings = Settings.from_env(tmp_path_factory.mktemp("browser") / "data", database_url="")
    do_init(settings)
    rt = Runtime.open(settings)
    port = _free_port()
    config = uvicorn.Config(create_app(runtime=rt), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", rt)
    finally:
        srv.should_exit = True
        thread.join(10)
        rt.close()



def _page(browser: Browser, **context: Any) -> Iterator[Page]:
    ctx = browser.new_context(java_script_enabled=False, **context)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, viewport={"width": 1000, "height": 1100})


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, viewport={"width": 390, "height": 844}, device_scale_factor=1,
                     is_mobile=True, has_touch=True)


def counts(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        return {t.__tablename__: s.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (Report, Document, File, Blob)}


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=full_page)


def test_scripts_are_really_off(page: Page, server: Server) -> None:
    # Guard for the other tests: a page script must not run in this browser context.
    page.route("**/js-probe", lambda route: route.fulfill(
        content_type="text/html",
        body="<title>before</title><script>document.title='after'</script>"))
    page.goto(server.url + "/js-probe")
    assert page.title() == "before"


def test_report_with_a_file_then_add_information(page: Page, server: Server) -> None:
    page.goto(server.url + "/report")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Report the sexual exploitation of a child")
    shot(page, "public-form.png")

    page.get_by_label("Someone is trying to get a child to meet up or send sexual pictures").check()
    page.get_by_label("Tell us what happened").fill(
        "An account keeps messaging my niece (12) and asks for photos.\nIt started last week.")
    page.get_by_label("Date").fill("2024-03-27")
    page.get_by_label("Web addresses").fill("https://chat.example.com/u/someone")
    page.get_by_label("App, website or game").fill("Example Chat")
    page.get_by_label("User names of the person involved").fill("someone_123")
    page.get_by_label("Links to their profiles").fill("https://chat.example.com/u/someone_123")
    page.select_option("#person_country", "US")
    page.locator("#person_region").fill("Texas")
    page.get_by_label("How old is the child?").fill("12")
    page.select_option("#child_country", "GB")
    page.locator("#child_town").fill("Leeds")
    page.select_option("#incident_timezone", "Europe/London")
    page.select_option("#reporter_country", "IE")
    image = standin_image(2024)
    page.set_input_files("#files", files=[
        FilePayload(name="screenshot.png", mimeType="image/png", buffer=image)])
    page.get_by_role("button", name="Send report").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you. Your report was received.")
    code = page.locator("#receipt-code").inner_text().strip()
    assert re.fullmatch(r"TPL(-[0-9A-Z]{4}){4}", code)
    # Emergency advice for the child's country, at the top and on the receipt.
    expect(page.locator(".emergency")).to_contain_text("call 999 or 112 in United Kingdom")
    shot(page, "public-receipt.png")

    rt = server.rt
    with rt.sessions() as s:
        rep = s.execute(select(Report).where(Report.receipt_hash == hashlib.sha256(
            code.encode()).hexdigest())).scalar_one()
        assert rep.state == "finished" and rep.source == "web"
        assert rep.incident_type == "Online Enticement of Children for Sexual Acts"
        (f,) = s.execute(select(File).where(File.report_id == rep.id)).scalars()
        assert f.sha256 == hashlib.sha256(image).hexdigest()
        assert f.file_name == "screenshot.png" and f.media_type == "image/png"
        report_id = rep.id
    assert rep.document is not None
    assert rep.document["incidentSummary"]["incidentDateTime"] == "2024-03-27T00:00:00Z"  # London in March: UTC
    assert rep.document["victim"] == [{"victimPerson": {"age": 12, "address": [
        {"city": "Leeds", "country": "GB"}]}}]
    assert rep.document["personOrUserReported"][0]["personOrUserReportedPerson"] == {
        "address": [{"state": "TX", "country": "US"}]}
    assert rep.document["reporter"]["reportingPerson"]["address"] == [{"country": "IE"}]
    assert rep.document["additionalInfo"].endswith("It started last week.")

    # Later: add information with the code, typed carelessly.
    page.get_by_role("link", name="add information to your report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Add information to your report")
    page.get_by_label("Receipt code").fill(code.lower().replace("-", " "))
    page.get_by_label("What do you want to add?").fill("Their other name is someone_456.")
    page.get_by_label("More user names of the person involved").fill("someone_456")
    page.locator("#child_region").fill("West Yorkshire")
    page.select_option("#child_country", "GB")
    shot(page, "public-add-information.png")
    page.get_by_role("button", name="Add to my report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you. Your information was added to your report.")
    with rt.sessions() as s:
        (add,) = s.execute(select(Document).where(
            Document.report_id == report_id, Document.kind == "addendum")).scalars()
    assert json.loads(add.body) == {"information": "Their other name is someone_456.", "fields": {
        "usernames": "someone_456", "child_country": "GB", "child_region": "West Yorkshire"}}
    with rt.sessions() as s:
        doc = s.execute(select(Report.document).where(Report.id == report_id)).scalar_one()
    assert [p.get("screenName") for p in doc["personOrUserReported"]] == ["someone_123", "someone_456"]


def test_privacy_notice_is_linked_and_readable(page: Page, server: Server) -> None:
    page.goto(server.url + "/report")
    page.locator("footer").get_by_role("link", name="Privacy notice").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Privacy notice")
    expect(page.locator("#kept")).to_be_visible()
    expect(page.get_by_text("Your IP address:")).to_be_visible()
    shot(page, "public-privacy.png")


def test_invalid_form_shows_summary_and_field_messages(page: Page, server: Server) -> None:
    before = counts(server.rt)
    page.goto(server.url + "/report")
    page.get_by_label("Tell us what happened").fill("Something I saw on a website.")
    page.get_by_label("Web addresses").fill("www.example.com/page")
    page.get_by_label("E-mail address").fill("me-at-example")
    page.set_input_files("#files", files=[
        FilePayload(name="photo.jpg", mimeType="image/jpeg", buffer=b"MZ\x90\x00" + bytes(300))])
    page.get_by_role("button", name="Send report").click()

    summary = page.locator(".error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()  # autofocus: no script needed
    expect(page).to_have_title(re.compile(r"^Error: "))
    links = summary.get_by_role("link")
    expect(links).to_have_count(4)
    expect(links.nth(0)).to_have_text(re.compile("Choose what happened"))
    expect(page.locator("#urls-error")).to_contain_text("must start with http:// or https://")
    expect(page.locator("#email-error")).to_contain_text("like name@example.com")
    expect(page.locator("#files-error")).to_contain_text("is not a picture, video, PDF or text")
    expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#email")).to_have_attribute("aria-describedby", "email-error")
    # What was typed is still there; the files must be chosen again.
    expect(page.get_by_label("Tell us what happened")).to_have_value("Something I saw on a website.")
    expect(page.get_by_label("E-mail address")).to_have_value("me-at-example")
    expect(page.locator("#files-notice")).to_contain_text("choose them again")
    shot(page, "public-form-error.png", full_page=False)
    shot(page, "public-form-error-full.png")

    summary.get_by_role("link", name=re.compile("e-mail address")).click()
    assert page.url.endswith("#email")
    assert counts(server.rt) == before

    # Correct it and send: the same page now files the report.
    page.get_by_label("A child is being, or was, sexually abused in person").check()
    page.get_by_label("Web addresses").fill("https://www.example.com/page")
    page.get_by_label("E-mail address").fill("me@example.org")
    page.get_by_role("button", name="Send report").click()
    expect(page.locator("#receipt-code")).to_be_visible()
    assert counts(server.rt)["reports"] == before["reports"] + 1


def test_wrong_receipt_code(page: Page, server: Server) -> None:
    page.goto(server.url + "/report/receipt")
    page.get_by_label("Receipt code").fill("TPL-0000-0000-0000-0000")
    page.get_by_label("What do you want to add?").fill("More details.")
    page.get_by_role("button", name="Add to my report").click()
    expect(page.locator(".error-summary")).to_be_focused()
    expect(page.locator("#code-error")).to_contain_text("We could not match this receipt code")
    expect(page.get_by_label("What do you want to add?")).to_have_value("More details.")


def test_form_on_a_phone(phone: Page, server: Server) -> None:
    phone.goto(server.url + "/report")
    # No sideways scrolling on a narrow screen.
    shot(phone, "public-form-phone.png", full_page=False)
    box = phone.locator("textarea#description").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    button = phone.get_by_role("button", name="Send report").bounding_box()
    assert button is not None and button["height"] >= 44  # a comfortable touch target
