"""What the browser tests share: Debian's Chromium under Playwright, where screenshots go,
the guard that blocks every request to another host, and the axe-core check.

The ``browser`` and ``guarded`` fixtures themselves are in conftest.py (``guarded`` uses the
test module's own ``server`` fixture). Playwright is imported only inside functions: this
module is imported before :func:`require_chromium` decides whether to skip."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE = os.environ.get("TIPLINE_TEST_REQUIRE_BROWSER") == "1"
# Screenshots go to docs/screenshots only when asked (TIPLINE_SCREENSHOTS=1), so that a test
# run never leaves the working tree changed; otherwise to a temporary directory.
SHOTS = (Path(__file__).resolve().parents[1] / "docs" / "screenshots" if os.environ.get("TIPLINE_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / "tipline-screenshots")
# Without the background-networking flags Chromium calls Google's hosts at every start.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def require_chromium() -> None:
    """Skip the calling test module when Chromium or Playwright is missing, unless CI requires them."""
    if not REQUIRE:
        if not CHROMIUM.exists():
            pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
        pytest.importorskip("playwright.sync_api")


#: axe-core, vendored from npm (tests/vendor/axe-core/README.md).
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


def axe_violations(page: Any, run_only: list[str] | None = None) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it is now (``run_only``: rule
    tags to limit the run to). Injected through the DevTools protocol (``evaluate``), not a
    script tag: the staff pages' CSP refuses inline script, as it should."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    options = {"resultTypes": ["violations"], **({"runOnly": run_only} if run_only else {})}
    result = page.evaluate("async (o) => await axe.run(document, o)", options)
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot of the page under :data:`SHOTS`."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=full_page)


@dataclass
class Guard:
    """Blocks and records every request to another host; records console and request errors."""

    origin: str
    outside: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: The status each navigation may answer with (error pages answer 4xx by design).
    expected_status: dict[str, int] = field(default_factory=dict)

    def is_ours(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True  # no network: inline data the page itself holds
        return f"{parts.scheme}://{parts.netloc}" == self.origin

    def install(self, context: Any) -> None:
        def route(r: Any) -> None:
            if self.is_ours(r.request.url):
                r.continue_()
            else:
                if r.request.url not in self.outside:
                    self.outside.append(r.request.url)
                r.abort("blockedbyclient")

        context.route("**/*", route)
        # Requests that do not pass the router (a web socket) are caught here.
        context.on("request", self._on_request)

    def _on_request(self, request: Any) -> None:
        if not self.is_ours(request.url) and request.url not in self.outside:
            self.outside.append(request.url)

    def watch(self, page: Any) -> None:
        page.on("console", lambda m: self._on_console(m.type, m.text, m.location.get("url", "")))
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))
        page.on("websocket", lambda ws: self.outside.append(ws.url))
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)

    def _on_failed(self, request: Any) -> None:
        # ERR_ABORTED is the browser cancelling a request because the page navigated away
        # (a favicon still loading when a link is followed): not a fault of the server, whose
        # faults show as an HTTP error status (_on_response) or a refused connection.
        if self.is_ours(request.url) and request.failure != "net::ERR_ABORTED":
            self.failed.append(f"{request.url}: {request.failure}")

    def _on_console(self, kind: str, text: str, where: str) -> None:
        if kind != "error":
            return
        # Chromium logs a navigation that answers 4xx as "Failed to load resource"; an error
        # page answering its expected status is not a fault.
        m = re.search(r"status of (\d{3})", text)
        if m and where in self.expected_status and int(m.group(1)) == self.expected_status[where]:
            return
        self.console_errors.append(f"{where}: {text}")

    def _on_response(self, response: Any) -> None:
        if not self.is_ours(response.url) or response.status < 400:
            return
        if self.expected_status.get(response.url) == response.status:
            return
        self.failed.append(f"{response.url}: HTTP {response.status}")

    def assert_clean(self) -> None:
        assert self.outside == [], f"requests to other hosts: {self.outside}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.failed == [], f"failed requests to the server: {self.failed}"
