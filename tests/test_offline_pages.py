"""Every page the app serves, in Chromium, with every request to another host blocked.

A page that tries to reach another host (a CDN script, a font, a favicon, an analytics
beacon) fails the test, as does a console error, a failed request to the server itself, or
an API docs page on which Swagger UI did not render every operation of the OpenAPI document.

The pages are found from the app's routes (every GET route whose answer is HTML), so a new
page is visited without editing this file. Pages that only a form submission reaches (the
receipt, the error pages) are reached by submitting forms; a last check fails when some
template under web/templates was never rendered, so such a page is not forgotten either.

Needs Debian's /usr/bin/chromium. Without it the module is skipped, unless
TIPLINE_TEST_REQUIRE_BROWSER=1 makes that a failure. Screenshots go to docs/screenshots/
with TIPLINE_SCREENSHOTS=1.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Route

from browsers import Guard, require_chromium, shot  # noqa: F401  (re-exported for the other browser tests)
from tipline.cli import do_init
from tipline.config import Settings
from tipline.runtime import Runtime

pytestmark = pytest.mark.browser

TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "tipline" / "web" / "templates"
#: Pages that must be among those found from the routes (guards the discovery itself).
KNOWN_PAGES = {"/", "/api/v1/docs", "/report", "/report/receipt"}
#: Path parameters that need a real value for the page to exist (others get ``1``).
SAMPLE_PARAMS = {"year": "2023"}

require_chromium()

from playwright.sync_api import Page, expect  # noqa: E402


@dataclass
class Server:
    url: str
    app: FastAPI
    rt: Runtime
    rendered: set[str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import uvicorn

    from tipline.web.app import create_app

    # Record every template rendered (extends and imports included) by the server, which
    # runs in this process: the last test compares that with the template files.
    rendered: set[str] = set()
    original = jinja2.Environment.get_template

    def recording(self: jinja2.Environment, name: Any, *args: Any, **kwargs: Any) -> jinja2.Template:
        if isinstance(name, str):
            rendered.add(name)
        return original(self, name, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(jinja2.Environment, "get_template", recording)
    settings = Settings.from_env(tmp_path_factory.mktemp("offline") / "data", database_url="")
    do_init(settings)
    rt = Runtime.open(settings)
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
        yield Server(f"http://127.0.0.1:{port}", app, rt, rendered)
    finally:
        srv.should_exit = True
        thread.join(10)
        rt.close()
        mp.undo()



def html_pages(server: Server) -> list[str]:
    """Every GET route whose answer is an HTML page (path parameters filled with ``1``)."""
    found: list[str] = []
    with httpx.Client(base_url=server.url, headers={"Accept": "text/html"}) as http:
        # As mounted: the routes of included routers with their prefixes.
        for r in iter_route_contexts(server.app.routes):
            if not isinstance(r.original_route, Route) or "GET" not in (r.methods or ()):
                continue
            path = re.sub(r"\{([^}]+)\}", lambda m: SAMPLE_PARAMS.get(m.group(1), "1"), str(r.path_format))
            resp = http.get(path)
            if resp.headers.get("content-type", "").startswith("text/html"):
                found.append(path)
    return sorted(set(found))


# --- the guard itself ------------------------------------------------------------------------


def test_the_guard_catches_outside_requests_and_console_errors(guarded: tuple[Page, Guard],
                                                               server: Server) -> None:
    # Without this, a guard that saw nothing would pass every page below.
    page, guard = guarded
    page.route("**/__probe", lambda r: r.fulfill(content_type="text/html", body=(
        "<title>probe</title><img src='https://cdn.example.net/x.png'>"
        "<script src='http://203.0.113.9/track.js'></script><script>console.error('boom')</script>")))
    page.goto(server.url + "/__probe")
    page.wait_for_load_state("load")
    assert any("cdn.example.net" in u for u in guard.outside)
    assert any("203.0.113.9" in u for u in guard.outside)
    assert any("boom" in e for e in guard.console_errors)
    with pytest.raises(AssertionError):
        guard.assert_clean()


# --- pages found from the routes ---------------------------------------------------------------


def test_pages_are_found_from_the_routes(server: Server) -> None:
    pages = html_pages(server)
    assert set(pages) >= KNOWN_PAGES, pages


def test_every_page_stays_on_this_host(guarded: tuple[Page, Guard], server: Server) -> None:
    page, guard = guarded
    for path in html_pages(server):
        resp = page.goto(server.url + path)
        assert resp is not None and resp.status == 200, path
        page.wait_for_load_state("networkidle")
        assert page.title().strip(), f"{path} has no title"
        assert page.locator("body").inner_text().strip(), f"{path} is blank"
        # The pages of this site carry a CSP that allows only this origin: a later change
        # that adds an outside resource is blocked in every browser, not only here.
        csp = resp.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "http" not in csp, (path, csp)
    guard.assert_clean()


def test_landing_page(guarded: tuple[Page, Guard], server: Server) -> None:
    page, guard = guarded
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("tipline")
    from tipline import __version__

    expect(page.locator("main")).to_contain_text(f"version {__version__}")
    for section in ("#way-public", "#way-ispws", "#way-json"):
        expect(page.locator(section)).to_be_visible()
    expect(page.locator("#way-ispws")).to_contain_text("/ispws")
    shot(page, "landing.png")
    # The three ways in are links that work.
    page.get_by_role("link", name="Read the API documentation").click()
    expect(page).to_have_url(server.url + "/api/v1/docs")
    page.wait_for_load_state("networkidle")  # leaving earlier would abort its scripts
    page.go_back()
    page.get_by_role("link", name="Make a report").first.click()
    expect(page).to_have_url(server.url + "/report")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    guard.assert_clean()


def test_api_docs_render_every_operation_offline(guarded: tuple[Page, Guard], server: Server) -> None:
    page, guard = guarded
    spec = httpx.get(server.url + "/api/v1/openapi.json").json()
    operations = [(method, path) for path, item in spec["paths"].items() for method in item
                  if method in ("get", "put", "post", "delete", "patch", "head", "options")]
    assert operations, "the OpenAPI document lists no operation"
    page.goto(server.url + "/api/v1/docs")
    blocks = page.locator("#swagger-ui .opblock")
    expect(blocks).to_have_count(len(operations), timeout=15000)
    for method, path in operations:
        expect(page.locator(f".opblock-{method} .opblock-summary-path[data-path='{path}']")).to_have_count(1)
    expect(page.locator("#swagger-ui .info .title")).to_contain_text(spec["info"]["title"])
    shot(page, "api-docs.png", full_page=False)
    # Open one operation: its schema renders from the same (local) document.
    blocks.first.locator(".opblock-summary").click()
    expect(blocks.first.locator(".opblock-body")).to_be_visible()
    page.wait_for_load_state("networkidle")
    guard.assert_clean()


# --- pages that only a submission or an error reaches ---------------------------------------------


def test_not_found_page(guarded: tuple[Page, Guard], server: Server) -> None:
    page, guard = guarded
    url = server.url + "/no-such-page"
    guard.expected_status[url] = 404
    resp = page.goto(url)
    assert resp is not None and resp.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    shot(page, "not-found.png")
    # An API client still gets JSON for the same address.
    r = httpx.get(url, headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    guard.assert_clean()


def test_form_results_and_error_pages(guarded: tuple[Page, Guard], server: Server) -> None:
    page, guard = guarded
    report = server.url + "/report"
    receipt = server.url + "/report/receipt"
    guard.expected_status.update({report: 422, receipt: 422})

    # The form with its error summary.
    page.goto(report)
    page.locator("form button[type=submit]").click()
    expect(page.locator(".error-summary")).to_be_visible()

    # A report filed: the receipt page. Its body is kept to send the same form again.
    guard.expected_status.pop(report)
    page.goto(report)
    page.locator("#incident-abuse").check()
    page.locator("#description").fill("A synthetic test report about a made-up person.")
    with page.expect_request(lambda r: r.url == report and r.method == "POST") as sent:
        page.locator("form button[type=submit]").click()
    body = sent.value.post_data_buffer
    headers = sent.value.headers
    code = page.locator("#receipt-code").inner_text().strip()
    assert code.startswith("TPL-")

    # The same form sent twice (a reload): "already received".
    page.goto(report)
    page.route(report, lambda r: r.continue_(post_data=body, headers=headers)
               if r.request.method == "POST" else r.continue_())
    page.locator("form button[type=submit]").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("already")
    page.unroute(report)

    # A body that is no form at all: the "could not be read" error page (400).
    guard.expected_status[report] = 400
    page.goto(report)
    page.route(report, lambda r: r.continue_(
        post_data=b"not a multipart body", headers={**r.request.headers,
                                                   "content-type": "multipart/form-data; boundary=XyZ"})
               if r.request.method == "POST" else r.continue_())
    page.locator("form button[type=submit]").click()
    expect(page.locator(".panel.problem h1")).to_be_visible()
    page.unroute(report)

    # Adding information: a wrong code, then the right one.
    page.goto(receipt)
    page.locator("#code").fill("TPL-0000-0000-0000-0000")
    page.locator("#information").fill("More synthetic details.")
    page.locator("form button[type=submit]").click()
    expect(page.locator("#code-error")).to_be_visible()
    guard.expected_status.pop(receipt)
    page.locator("#code").fill(code)
    page.locator("form button[type=submit]").click()
    expect(page.locator(".panel.success")).to_be_visible()
    guard.assert_clean()


def test_answer_page(guarded: tuple[Page, Guard], server: Server) -> None:
    page, guard = guarded
    page.goto(server.url + "/answer")
    page.get_by_label("Ask a question about reports and what came of them").fill(
        "How many CyberTipline escalations to law enforcement resulted in arrests in 2023–2024?")
    page.get_by_role("button", name="Answer").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("resulted in arrests in 2023–2024")
    for title in ("Summary", "1. What the records show", "2. How much of the picture feedback covers",
                  "3. What the figure can and cannot say", "4. The bounds and the estimate", "5. Method",
                  "Bottom line", "Figures"):
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    expect(page.locator(".bottom-line")).to_contain_text("between 0 and 63,892 for 2023")
    # Each citation in the text jumps to its figure; each figure links to the API that returns it.
    page.locator("a.cite").first.click()
    expect(page).to_have_url(re.compile(r"#fig-1$"))
    shot(page, "answer-seed.png")
    cannot = server.url + "/answer?q=what+is+the+weather"
    guard.expected_status[cannot] = 422
    page.goto(cannot)
    expect(page.get_by_role("heading", name="Cannot answer that")).to_be_visible()
    expect(page.locator(".cannot li a")).to_have_count(3)
    shot(page, "answer-cannot.png")
    guard.assert_clean()


def test_signed_in_pages(guarded: tuple[Page, Guard], server: Server) -> None:
    """Sign-in, the account page (staff layout), an expired form, and sign-out, in Chromium."""
    from people_helpers import make_user

    page, guard = guarded
    from tipline.intake.credentials import add_esp

    add_esp(server.rt, "Offline Platform", "offline-esp", "offline-esp-pass")
    make_user(server.rt, "pia", "platform", platform="Offline Platform", password="offline pass 1")
    page.goto(server.url + "/account")
    expect(page).to_have_url(re.compile(r"/login\?next=/account$"))
    page.get_by_label("Username").fill("pia")
    page.get_by_label("Password").fill("offline pass 1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.locator("main")).to_contain_text("this browser")
    shot(page, "account.png")
    # A form sent without the session's token: the expired-form page, nothing changed.
    guard.expected_status[server.url + "/logout"] = 403
    page.evaluate("""() => { const f = document.querySelector('form[action$="/logout"]');
                              f.querySelector('input[name=csrf_token]').value = 'wrong'; f.submit(); }""")
    expect(page.get_by_role("heading", level=1)).to_have_text("This form has expired")
    page.goto(server.url + "/account")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))
    expect(page.locator("main")).to_contain_text("You are signed out")
    guard.assert_clean()


def test_platform_pages(guarded: tuple[Page, Guard], server: Server) -> None:
    """The platform's view (its list, a report, not found, a filter it cannot read), offline."""
    from people_helpers import make_user
    from test_platform_view import SEP, doc, enrich, store
    from tipline.intake.credentials import add_esp

    page, guard = guarded
    add_esp(server.rt, "Offline Platform B", "offline-esp-b", "offline-esp-pass-b")
    rid = store(server.rt, doc(account="u1", ip="8.8.8.8"), platform="Offline Platform B", filed=SEP, files=[False])
    enrich(server.rt, [rid])
    make_user(server.rt, "pib", "platform", platform="Offline Platform B", password="offline pass 2")
    page.goto(server.url + "/platform")
    page.get_by_label("Username").fill("pib")
    page.get_by_label("Password").fill("offline pass 2")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Our reports")
    page.get_by_role("link", name=str(rid), exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Report {rid}")
    for path, status, heading in ((f"/platform/reports/{rid + 1000}", 404, "Not found"),
                                  ("/platform?state=bogus", 400, "Filter not understood")):
        guard.expected_status[server.url + path] = status
        resp = page.goto(server.url + path)
        assert resp is not None and resp.status == status
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    guard.assert_clean()


def test_transparency_page_and_its_file_export(guarded: tuple[Page, Guard], server: Server,
                                                tmp_path: Path) -> None:
    """The public report page, and the standalone HTML file the CLI writes, call no other host."""
    from tipline.stats import transparency as tr
    from tipline.web.transparency import standalone_html

    page, guard = guarded
    page.goto(server.url + "/transparency/2023")
    expect(page.get_by_role("heading", level=1)).to_have_text("Transparency report 2023")
    page.wait_for_load_state("networkidle")
    shot(page, "transparency.png")
    guard.assert_clean()
    # The file export, as a browser opens it from disk: no host to reach, styles inline.
    html = standalone_html(tr.build(server.rt.sessions, 2023))
    export = tmp_path / "transparency-2023.html"
    export.write_text(html, encoding="utf-8")
    # A context of its own: the guard's routes answer only for the server's origin.
    browser = guarded[0].context.browser
    assert browser is not None
    own = browser.new_context()
    files = own.new_page()
    outside: list[str] = []
    files.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    files.goto(export.as_uri())
    expect(files.get_by_role("heading", level=1)).to_have_text("Transparency report 2023")
    assert outside == [], outside
    own.close()


def test_inbox_pages(guarded: tuple[Page, Guard], server: Server) -> None:
    """The law-enforcement inbox (list, a referral, a closed file) in Chromium; the officer's
    whole path is in tests/test_inbox_browser.py."""
    from inbox_seed import seed

    page, guard = guarded
    box = seed(server.rt, prefix="offline-")
    page.goto(server.url + "/le")
    page.get_by_label("Username").fill(box.officer.username)
    page.get_by_label("Password").fill(box.officer.password)
    page.get_by_label("One-time code").fill(box.officer.code())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Inbox of")
    closed = f"/le/referrals/{box.referral}/files/{box.unviewed_file}"
    guard.expected_status[server.url + closed] = 404
    for path in (f"/le/referrals/{box.referral}", closed):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        assert page.title().strip(), path
    # The CSV upload of outcomes: a file with a bad row is refused whole, line by line.
    from datetime import UTC, datetime

    page.goto(server.url + "/le")
    page.get_by_role("link", name="Import outcomes from a CSV file").click()
    today = datetime.now(UTC).date().isoformat()
    page.get_by_label("CSV file").set_input_files(files=[{
        "name": "outcomes.csv", "mimeType": "text/csv",
        "buffer": f"referralId,code,occurredOn\n{box.referral},ARREST,{today}\n".encode()}])
    guard.expected_status[server.url + "/le/outcomes/import"] = 422
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert")).to_contain_text("line 2")
    shot(page, "le-import.png")
    guard.assert_clean()

def test_audit_page(guarded: tuple[Page, Guard], server: Server) -> None:
    """The auditor's trail (its path end to end, with axe: tests/test_audit_browser.py)."""
    from people_helpers import make_user

    page, guard = guarded
    aud = make_user(server.rt, "offline-auditor", "auditor", password="offline pass 2")
    page.goto(server.url + "/login?next=/audit")
    page.get_by_label("Username").fill("offline-auditor")
    page.get_by_label("Password").fill("offline pass 2")
    page.get_by_label("One-time code").fill(aud.code())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit trail")
    expect(page.locator("table.audit-rows")).to_contain_text("sign_in")


def test_console_pages(guarded: tuple[Page, Guard], server: Server) -> None:
    """The analyst console (queue, a report with blurred thumbnails, workload) in Chromium."""
    from people_helpers import make_user
    from test_console_data import build

    page, guard = guarded
    st = build(server.rt)
    sup = make_user(server.rt, "offline-sup", "supervisor", password="offline pass 2")
    page.goto(server.url + "/console")
    page.get_by_label("Username").fill(sup.username)
    page.get_by_label("Password").fill(sup.password)
    page.get_by_label("One-time code").fill(sup.code())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Queue")
    for path in (f"/console/reports/{st.shared}", "/console/workload"):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        assert page.title().strip(), path
    guard.assert_clean()


def test_settings_and_accounts_pages(guarded: tuple[Page, Guard], server: Server) -> None:
    """The supervisors' settings and the administrator's accounts pages, offline (their paths
    end to end, with axe: tests/test_supervise_browser.py)."""
    from sqlalchemy import select

    from people_helpers import TestUser, make_user
    from tipline.pipeline.banks import import_bank
    from tipline.pipeline.stages.route import ensure_directory
    from tipline.store.db import transaction
    from tipline.store.tables import HashBank

    page, guard = guarded
    with transaction(server.rt.sessions) as s:
        ensure_directory(s)
        import_bank(s, "offline-bank", "hash_type,value,label\nmd5," + "e" * 32 + ",offline\n")
        bank = s.execute(select(HashBank.id).where(HashBank.name == "offline-bank")).scalar_one()

    def sign_in(user: TestUser, start: str) -> None:
        page.goto(server.url + start)
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(user.password)
        page.get_by_label("One-time code").fill(user.code())
        page.get_by_role("button", name="Sign in").click()

    sign_in(make_user(server.rt, "offline-sup2", "supervisor", password="offline pass 3"), "/supervise/banks")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hash banks")
    for path in (f"/supervise/banks/{bank}", "/supervise/routing", "/supervise/agencies"):
        page.goto(server.url + path)
        assert page.title().strip(), path
    # A refused change shows its message on the page it came from.
    page.goto(server.url + f"/supervise/banks/{bank}")
    page.locator("#e-reason").fill(" ")
    guard.expected_status[server.url + f"/supervise/banks/{bank}/enabled"] = 409
    page.get_by_role("button", name="Disable bank offline-bank").click()
    expect(page.locator(".error-summary")).to_contain_text("Give a reason")
    page.get_by_role("button", name="Sign out").click()
    sign_in(make_user(server.rt, "offline-admin", "admin", password="offline pass 4"), "/admin/users")
    expect(page.get_by_role("heading", level=1)).to_have_text("Accounts")
    page.get_by_label("Username (no spaces)").fill("offline-new")
    page.get_by_label("Role").select_option("auditor")
    page.locator("#u-reason").fill("offline test")
    page.get_by_role("button", name="Add account").click()
    expect(page.locator("dl.secret")).to_contain_text("otpauth://")
    page.get_by_role("link", name="Go to account offline-new").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account offline-new")
    guard.assert_clean()


def test_every_template_was_rendered(server: Server, request: pytest.FixtureRequest) -> None:
    # Runs last (file order): a template that no test above reached is a page nobody checked.
    here = request.node.module
    others = {n for n in dir(here) if n.startswith("test_") and n != request.node.name}
    selected = {i.name for i in request.session.items if getattr(i, "module", None) is here}
    if not others <= selected:
        pytest.skip("needs the other page tests of this file in the same run")
    files = {p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.html")}
    missing = files - server.rendered
    assert not missing, f"templates never rendered by the page tests: {sorted(missing)}"
