"""What the browser tests share: Debian's Chromium under Playwright, and where screenshots go.

The ``browser`` fixture itself is in conftest.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
