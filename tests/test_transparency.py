"""``tipline transparency YEAR``: tables with snapshot, query and versions; RFC 4180 CSV with a
datapackage.json that declares missing values and checksums; HTML with rendered charts; an
unknown is an empty cell, never 0."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from click.testing import CliRunner

from test_outcome_stats import _world
from tipline.config import Settings
from tipline.runtime import Runtime


def _run(settings: Settings, *args: str) -> str:
    from tipline.cli import main

    res = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "transparency", "2023", *args],
                             env={"TIPLINE_DATABASE_URL": settings.database_url})
    assert res.exit_code == 0, res.output
    return res.output


def test_csv_tables_and_their_datapackage(runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    _world(runtime)
    _run(settings, "--format", "csv", "--out", str(tmp_path))
    package = json.loads((tmp_path / "datapackage.json").read_text())
    names = {r["name"] for r in package["resources"]}
    assert {"reports", "reports_by_platform", "outcomes", "outcomes_escalated", "outcomes_by_priority"} <= names
    for res in package["resources"]:
        data = (tmp_path / res["path"]).read_bytes()
        assert res["hash"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert res["schema"]["missingValues"] == [""] and res["tipline"]["snapshot"].startswith("s")
        assert data.count(b"\r\n") == data.count(b"\n")  # RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO((tmp_path / "outcomes.csv").read_text(encoding="utf-8"))))
    total = rows[0]
    assert total["group"] == "total" and total["referrals"] == "8" and total["with arrest (confirmed)"] == "2"
    assert (total["bounds low"], total["bounds high"]) == ("2", "6")
    # Four with feedback: the estimate is withheld — empty, flagged, never 0.
    assert total["estimate"] == "" and total["flag"] == "u"
    reports = list(csv.DictReader(io.StringIO((tmp_path / "reports.csv").read_text())))
    assert reports == [{"year": "2023", "reports": "8"}]


def test_json_and_html(runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    _world(runtime)
    doc = json.loads(_run(settings))
    assert doc["year"] == 2023 and doc["codeListVersion"] and doc["softwareVersion"]
    outcomes = next(t for t in doc["tables"] if t["name"] == "outcomes")
    assert outcomes["rows"][0]["estimate"] is None and outcomes["query"].startswith("/api/v1/stats/outcomes?")
    _run(settings, "--format", "html", "--out", str(tmp_path))
    page = (tmp_path / "index.html").read_text()
    assert "<svg" in page and "Outcomes of escalated reports" in page
    assert (tmp_path / "referrals_by_month.png").read_bytes().startswith(b"\x89PNG")
