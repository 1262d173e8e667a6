"""The transparency report: each table against a plain count over the same records, the
published comparison, the snapshot (same records, same id; a kept report comes back
unchanged), CSV/data package/JSON/PDF/HTML output, the page and the API."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tipline.config import Settings
from tipline.pipeline.queue import InProcessQueue
from tipline.runtime import Runtime
from tipline.sim.generate import YearGenerator
from tipline.sim.write import DirectWriter, register_platforms
from tipline.stats import transparency as tr
from tipline.store.db import transaction
from tipline.store.tables import Agency, Assessment, IncidentReport, Jurisdiction, Referral, Report, Reporter


@pytest.fixture
def year_2023(runtime: Runtime) -> Runtime:
    gen = YearGenerator(2023, 2.5e-6, seed=5, files="hashes")
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=32).write(gen, lambda r, i: None)
    q = InProcessQueue(runtime, concurrency=1, group=32)
    q.run_worker(once=True)
    q.close()
    # The year as received in 2023: the same day and time of year, whatever today's year is
    # (the direct writer stamps reports with the time they were written).
    with transaction(runtime.sessions) as s:
        for r in s.scalars(select(Report)):
            r.opened_at = r.opened_at.replace(year=2023, day=min(r.opened_at.day, 28))
    return runtime


def _reference(rt: Runtime, year: int) -> dict[str, object]:
    """The same figures by plain Python over all rows (no GROUP BY, no SQL filters)."""
    with rt.sessions() as s:
        reports = [r for r in s.scalars(select(Report)) if r.state == "finished" and r.opened_at.year == year]
        ids = {r.id for r in reports}
        juris = {j.report_id: j for j in s.scalars(select(Jurisdiction))}
        platform = {p.id: p.name for p in s.scalars(select(Reporter))}
        kind = {a.id: a.kind for a in s.scalars(select(Agency))}
        disp = {a.report_id: a.disposition for a in s.scalars(select(Assessment))}
        refs = [r for r in s.scalars(select(Referral)) if r.report_id in ids]
        members = [m for m in s.scalars(select(IncidentReport)) if m.report_id in ids]
    where = Counter("unknown" if (j := juris.get(r.id)) is None or j.country is None
                    else "U.S." if j.country == "US" else "international" for r in reports)
    countries = Counter((juris[r.id].country if r.id in juris and juris[r.id].country else "unknown")
                        for r in reports)
    recipients = Counter()
    for k, d in {(kind[r.agency_id], r.report_id) for r in refs}:
        recipients[(k, "actionable" if disp.get(d) == "referral" else "informational")] += 1
    bundled = {m.report_id for m in members}
    return {
        "total": len(reports), "where": where, "countries": countries,
        "platforms": Counter(platform[r.reporter_id] for r in reports),
        "types": Counter(r.incident_type or "not stated" for r in reports),
        "recipients": recipients,
        "escalated": len({r.report_id for r in refs if r.escalated}),
        "incidents": len({m.incident_id for m in members}) + len(ids - bundled),
        "months": Counter(r.opened_at.month for r in reports),
    }


def _rows(t: tr.Table) -> list[dict[str, object]]:
    return [dict(zip([c.name for c in t.columns], r, strict=True)) for r in t.rows]


def test_tables_agree_with_a_plain_count(year_2023: Runtime) -> None:
    rt = year_2023
    rep = tr.build(rt.sessions, 2023)
    ref = _reference(rt, 2023)
    assert ref["total"] and rep.records["reports"] == ref["total"]
    reports = {r["measure"]: r for r in _rows(rep.table("reports"))}
    assert reports["total"]["tipline"] == ref["total"]
    assert reports["total"]["published"] == 36_210_368
    assert reports["total"]["ratio"] == pytest.approx(ref["total"] / 36_210_368, rel=1e-5)
    loc = {r["where"]: r["tipline"] for r in _rows(rep.table("userLocation"))}
    assert loc == {k: ref["where"].get(k, 0) for k in ("U.S.", "international", "unknown")}  # type: ignore[attr-defined]
    for r in _rows(rep.table("countries")):
        assert r["tipline"] == ref["countries"][r["country"]]  # type: ignore[index]
    for r in _rows(rep.table("platforms")):
        assert r["reports"] == ref["platforms"][r["platform"]]  # type: ignore[index]
    types = {r["incidentType"]: r["tipline"] for r in _rows(rep.table("incidentTypes"))}
    assert {k: v for k, v in types.items() if v} == dict(ref["types"])  # type: ignore[call-overload]
    rec = {(r["recipient"], r["detail"]): r["tipline"] for r in _rows(rep.table("recipients"))}
    for (k, d), n in ref["recipients"].items():  # type: ignore[attr-defined]
        assert rec[(tr.RECIPIENT_LABELS[k], d)] == n
    esc = _rows(rep.table("escalations"))[0]
    assert esc["tipline"] == ref["escalated"] and esc["published"] == 63_892
    inc = {r["measure"]: r["count"] for r in _rows(rep.table("incidents"))}
    assert inc["incidents after bundling (incidents + reports alone)"] == ref["incidents"]
    months = {r["month"]: r["reports"] for r in _rows(rep.table("months"))}
    assert months == {f"2023-{m:02d}": ref["months"].get(m, 0) for m in range(1, 13)}  # type: ignore[attr-defined]


def test_unpublished_figures_are_null_not_zero(year_2023: Runtime) -> None:
    rep = tr.build(year_2023.sessions, 2024)
    esc = _rows(rep.table("escalations"))[0]
    assert esc["published"] is None and esc["ratio"] is None
    assert any("not published" in n for n in rep.table("escalations").notes)
    reports = {r["measure"]: r for r in _rows(rep.table("reports"))}
    assert reports["with photos/videos"]["published"] is None


def test_snapshot_is_stable_and_changes_with_the_records(year_2023: Runtime, tmp_path: Path) -> None:
    rt = year_2023
    a, b = tr.build(rt.sessions, 2023), tr.build(rt.sessions, 2023)
    assert a.snapshot == b.snapshot
    kept = tr.keep(a, tmp_path)
    with transaction(rt.sessions) as s:
        j = s.scalars(select(Jurisdiction).limit(1)).one()
        j.country = "ZZ" if j.country != "ZZ" else "YY"
    c = tr.build(rt.sessions, 2023)
    assert c.snapshot != a.snapshot
    back = tr.recall(tmp_path, 2023, a.snapshot)
    assert back is not None and back.as_json() == a.as_json() and kept.exists()
    assert tr.recall(tmp_path, 2023, "../../etc") is None


def test_files_csv_datapackage_json_pdf_html(year_2023: Runtime, tmp_path: Path) -> None:
    rep = tr.build(year_2023.sessions, 2023)
    from tipline.web.transparency import standalone_html

    for fmt in ("csv", "json", "pdf", "html"):
        tr.write(rep, tmp_path / fmt, fmt, html=standalone_html)
    pkg = json.loads((tmp_path / "csv" / "datapackage.json").read_text())
    # Every table, and the revision log (empty here: the report was not kept).
    assert {r["path"] for r in pkg["resources"]} == {f"{t.key}.csv" for t in rep.tables} | {"revisions.csv"}
    for res in pkg["resources"]:
        raw = (tmp_path / "csv" / res["path"]).read_bytes()
        assert raw.endswith(b"\r\n") and not raw.startswith(b"\xef\xbb\xbf")
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
        assert rows[0] == [f["name"] for f in res["schema"]["fields"]]
        assert res["schema"]["missingValues"] == [""]
    # A null is an empty field, never a 0.
    esc = (tmp_path / "csv" / "escalations.csv").read_text()
    assert esc.splitlines()[1].split(",")[2] == "63892"
    doc = json.loads((tmp_path / "json" / "transparency-2023.json").read_text())
    assert doc["schema"] == tr.SCHEMA and doc["snapshot"] == rep.snapshot
    assert (tmp_path / "pdf" / "transparency-2023.pdf").read_bytes().startswith(b"%PDF")
    html = (tmp_path / "html" / "transparency-2023.html").read_text()
    assert "Transparency report 2023" in html and rep.snapshot in html
    assert (tmp_path / "html" / "months.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "html" / "months.svg").read_bytes()


def test_page_api_and_citations(year_2023: Runtime) -> None:
    from tipline.web.app import create_app

    with TestClient(create_app(runtime=year_2023), raise_server_exceptions=False) as c:
        page = c.get("/transparency/2023")
        assert page.status_code == 200 and "Transparency report 2023" in page.text
        api = c.get("/api/v1/stats/transparency/2023").json()
        snap = api["snapshot"]
        assert f"/transparency/2023?snapshot={snap}" in page.text
        again = c.get(f"/api/v1/stats/transparency/2023?snapshot={snap}").json()
        assert again["tables"] == api["tables"]
        assert c.get("/api/v1/stats/transparency/2023?snapshot=0123456789abcdef").status_code == 404
        assert c.get("/api/v1/stats/transparency/1900").status_code == 400  # a problem document
        assert c.get("/transparency/abc").status_code == 404
        assert c.get("/transparency/2023?snapshot=nothex").status_code == 404
        csv_resp = c.get(f"/transparency/2023/countries.csv?snapshot={snap}")
        assert csv_resp.status_code == 200 and csv_resp.text.startswith("country,")
        assert c.get("/transparency/2023/nosuch.csv").status_code == 404
        assert c.get(f"/transparency/2023.pdf?snapshot={snap}").content.startswith(b"%PDF")
        svg = c.get(f"/transparency/2023/charts/months.svg?snapshot={snap}")
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        pkg = c.get(f"/transparency/2023/datapackage.json?snapshot={snap}").json()
        assert all(r["path"].endswith(f"?snapshot={snap}") for r in pkg["resources"])


def test_cli_writes_the_report(year_2023: Runtime, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tipline.cli import main

    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["--data-dir", str(year_2023.settings.data_dir), "transparency", "2023",
                                    "--format", "csv", "--out", str(out)],
                             env={"TIPLINE_DATABASE_URL": year_2023.settings.database_url})
    assert res.exit_code == 0, res.output
    assert "snapshot" in res.output and (out / "datapackage.json").exists()


def test_outcome_tables_from_feedback(runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    """Eight referred reports with every kind of feedback (tests/test_outcome_stats.py): the
    outcome table counts 2 confirmed, bounds 2-6, and withholds the estimate (4 with feedback)."""
    from test_outcome_stats import _world

    _world(runtime)
    rep = tr.build(runtime.sessions, 2023)
    total = _rows(rep.table("outcomes"))[0]
    assert total["group"] == "total" and total["referrals"] == 8 and total["withArrest"] == 2
    assert (total["boundsLow"], total["boundsHigh"]) == (2, 6)
    assert total["estimate"] is None and total["flag"] == "u"
    assert rep.table("outcomes").query.startswith("/api/v1/stats/outcomes?")
    assert {"outcomesEscalated", "outcomesByPriority", "outcomesByMonth", "outcomesByAgency"} <= {
        t.key for t in rep.tables}
    tr.write(rep, tmp_path, "csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "outcomes.csv").read_text(encoding="utf-8"))))
    assert rows[0]["estimate"] == "" and rows[0]["withArrest"] == "2"
