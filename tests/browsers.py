"""What the browser tests share: Debian's Chromium under Playwright, and where screenshots go.

The ``browser`` fixture itself is in conftest.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

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
