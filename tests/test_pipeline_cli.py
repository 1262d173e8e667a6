"""`tipline pipeline ...`, `tipline stats pipeline|quality`, and the operator view of a report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpers import VIEWED, submit_report, user
from tipline.cli import main
from tipline.pipeline import core
from tipline.pipeline.core import StageContext, StageDef
from tipline.pipeline.stages import assess as A
from tipline.pipeline.view import DBIP_CREDIT, enrichment_view, platform_quality, render_enrichment
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import (
    Agency,
    BankEntry,
    File,
    FileMatch,
    HashBank,
    Incident,
    IncidentReport,
    Jurisdiction,
    Location,
    PipelineRun,
    Referral,
    ReportLink,
)


def noop(ctx: StageContext, session: object, report_id: int) -> None:
    """Does nothing (stands in for an upstream stage)."""


def broken(ctx: StageContext, session: object, report_id: int) -> None:
    """Always fails."""
    raise ValueError("no luck")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, StageDef]]:
    reg = {
        "matches": StageDef("matches", "1", noop, (), "Stand-in for matching."),
        "assess": StageDef("assess", "1", A.assess, A.UPSTREAM, A.assess.__doc__ or ""),
    }
    monkeypatch.setattr(core, "_loaded", True)
    monkeypatch.setattr(core, "_STAGES", reg)
    yield reg


@pytest.fixture
def rt(runtime: Runtime, esps: dict[str, tuple[str, str]], registry: dict[str, StageDef]) -> Runtime:
    return runtime


def cli(rt: Runtime, *args: str, ok: bool = True) -> str:
    env = {"TIPLINE_DATA_DIR": str(rt.settings.data_dir), "TIPLINE_DATABASE_URL": rt.settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_stages_lists_in_order_with_docs(rt: Runtime) -> None:
    out = cli(rt, "pipeline", "stages")
    assert out.index("matches") < out.index("assess")
    assert "Quality score" in out
    rows = json.loads(cli(rt, "pipeline", "stages", "--json"))
    assert [r["name"] for r in rows] == ["matches", "assess"]
    assert rows[1]["after"] == list(A.UPSTREAM)


def test_run_rerun_and_stats(rt: Runtime, registry: dict[str, StageDef]) -> None:
    a = submit_report(rt, body=user(), files=[VIEWED])
    submit_report(rt)  # informational: nothing an investigator needs
    stats = json.loads(cli(rt, "stats", "pipeline", "--json"))
    assert stats["finishedReports"] == 2
    assert stats["notYetAssessed"] == 2 and stats["assessed"] == 0
    assert {s["stage"]: s["pending"] for s in stats["stages"]} == {"matches": 2, "assess": 2}
    text = cli(rt, "stats", "pipeline")
    assert "not yet assessed" in text

    out = cli(rt, "pipeline", "run", "--stage", "matches")
    assert "2 report(s), 2 enriched, 2 stage run(s), 0 failed" in out
    out = cli(rt, "pipeline", "run")
    assert "2 report(s), 2 enriched, 2 stage run(s)" in out
    assert "nothing pending" in cli(rt, "pipeline", "run")

    stats = json.loads(cli(rt, "stats", "pipeline", "--json"))
    assert stats["notYetAssessed"] == 0
    assert stats["disposition"] == {"referral": 1, "informational": 1}
    # a: new material (matches ran, no bank hit) = 2 points, location only possible: priority 3.
    assert stats["priority"] == {"1": 0, "2": 0, "3": 2} and stats["escalated"] == 0
    assert all(s["done"] == 2 and s["pending"] == 0 for s in stats["stages"])

    out = cli(rt, "pipeline", "rerun", "--stage", "matches", "--report", str(a), "--report", "999")
    assert "1 report(s), 1 enriched, 2 stage run(s)" in out  # matches and assess, which reads it
    out = cli(rt, "pipeline", "rerun", "--stage", "matches", "--no-downstream")
    assert "2 report(s), 2 enriched, 2 stage run(s)" in out
    cli(rt, "pipeline", "rerun", "--stage", "nosuch", ok=False)

    registry["matches"] = StageDef("matches", "2", broken, (), "Broken.")
    out = cli(rt, "pipeline", "run", ok=False)
    assert "failed: report" in out and "no luck" in out
    stats = json.loads(cli(rt, "stats", "pipeline", "--json"))
    assert {s["stage"]: (s["done"], s["failed"], s["pending"]) for s in stats["stages"]} == {
        "matches": (0, 2, 0), "assess": (2, 0, 0)}


def test_worker_once_drains_the_embedded_queue(rt: Runtime) -> None:
    rid = submit_report(rt, body=user())
    cli(rt, "pipeline", "worker", "--queue", "inprocess", "--once")
    with rt.sessions() as s:
        assert set(s.execute(select(PipelineRun.stage).where(PipelineRun.report_id == rid)).scalars()) == {
            "matches", "assess"}


def test_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """A real worker process (as systemd or a benchmark stops it): SIGTERM, even with SIGINT
    ignored as in a shell's background job, makes it finish, say how bundling went, and exit 0."""
    env = {**os.environ, "TIPLINE_DATA_DIR": str(tmp_path), "TIPLINE_DATABASE_URL": ""}
    tipline = str(Path(sys.executable).parent / "tipline")
    subprocess.run([tipline, "init"], env=env, check=True, capture_output=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([tipline, "pipeline", "worker", "--queue", "inprocess"], env=env,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        assert proc.stderr is not None
        assert "tipline pipeline worker: queue inprocess" in proc.stderr.readline()  # it is running
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "bundles: 0 report(s) updated incrementally" in err


def test_quality_per_platform(rt: Runtime) -> None:
    submit_report(rt, body=user(), files=[VIEWED])
    submit_report(rt, reporter="Globex Chat")
    rows = platform_quality(rt, by="month")
    assert {r["platform"] for r in rows} == {"Acme Social", "Globex Chat"}
    # Nothing assessed yet: the mean is unknown, not zero.
    assert all(r["meanQuality"] is None and r["notYetAssessed"] == r["reports"] for r in rows)
    assert "-" in cli(rt, "stats", "quality")
    cli(rt, "pipeline", "run")
    rows = {r["platform"]: r for r in json.loads(cli(rt, "stats", "quality", "--json", "--by", "year"))}
    assert rows["Acme Social"]["meanQuality"] == 1.0 and rows["Acme Social"]["referralShare"] == 1.0
    assert rows["Globex Chat"]["meanQuality"] == pytest.approx(1 / 9, abs=1e-3)
    assert rows["Globex Chat"]["missing"] == {"content": 1, "ip_event_times": 1, "location": 1, "reported_user": 1}
    assert rows["Acme Social"]["period"] == str(datetime.now(UTC).year)
    text = cli(rt, "stats", "quality")
    assert "Globex Chat" in text and "content 100%" in text


def test_enrichment_view_shape_and_text(rt: Runtime) -> None:
    rid = submit_report(rt, body=user(), files=[VIEWED])
    other = submit_report(rt, body=user(), files=[VIEWED])
    view = enrichment_view(rt, rid)
    assert view["assessed"] is False and view["priority"] is None and view["jurisdiction"] is None
    assert [s["status"] for s in view["stages"]] == ["pending", "pending"]
    text = "\n".join(render_enrichment(view))
    assert "not yet assessed" in text and "jurisdiction not yet resolved" in text

    now = datetime.now(UTC)
    with transaction(rt.sessions) as s:
        f = s.execute(select(File).where(File.report_id == rid)).scalars().one()
        g = s.execute(select(File).where(File.report_id == other)).scalars().one()
        bank = HashBank(name="known", enabled=True, pdq_threshold=31, created_at=now)
        s.add(bank)
        s.flush()
        entry = BankEntry(bank_id=bank.id, hash_type="md5", value=f.md5, label="series-x", added_at=now)
        s.add(entry)
        s.flush()
        s.add(FileMatch(file_id=f.id, kind="bank", hash_type="md5", distance=0, bank_entry_id=entry.id,
                        created_at=now))
        s.add(FileMatch(file_id=g.id, kind="duplicate", hash_type="pdq", distance=4, other_file_id=f.id,
                        created_at=now))
        s.add(ReportLink(report_a=rid, report_b=other, reason="account", detail="u-7", weight=1.0))
        inc = Incident(rule="same_account", key=f"acct:u-7:{rid}", created_at=now, updated_at=now)
        s.add(inc)
        s.flush()
        s.add(IncidentReport(incident_id=inc.id, report_id=rid, reason="same reported account"))
        s.add(IncidentReport(incident_id=inc.id, report_id=other, reason="same reported account"))
        s.add(Location(report_id=rid, source="ip", detail="198.51.100.7 Login", country="US", region="TX",
                       city="Austin", confidence=0.7))
        s.add(Jurisdiction(report_id=rid, country="US", us_state="TX", source="ip", confidence=0.7,
                           reason="IP geolocation", resolved_at=now))
        s.add(PipelineRun(report_id=rid, stage="jurisdiction", version="1", done_at=now))
        ag = Agency(code="icac-tx-test", name="Texas ICAC (test)", kind="icac", country="US", us_state="TX")
        s.add(ag)
        s.flush()
        s.add(Referral(report_id=rid, agency_id=ag.id, rule="us_state", reason="US-TX -> state task force",
                       made_available_at=now))
    cli(rt, "pipeline", "run", "--concurrency", "1")
    view = enrichment_view(rt, rid)
    assert json.loads(json.dumps(view)) == view  # JSON-ready
    assert set(view) == {
        "reportId", "stages", "matches", "links", "incidents", "locations", "jurisdiction", "agencies", "assessed",
        "quality", "missing", "disposition", "dispositionReasons", "priority", "priorityReasons", "escalate",
        "rulesVersion", "assessedAt", "attribution"}
    assert [(m["kind"], m["bank"], m["label"]) for m in view["matches"]] == [
        ("bank", "known", "series-x"), ("duplicate", None, None)]
    dup = view["matches"][1]
    assert dup["fileId"] == f.id and dup["otherFileId"] == g.id and dup["otherReportId"] == other
    assert view["links"] == [{"reportId": other, "reason": "account", "detail": "u-7", "weight": 1.0}]
    assert view["incidents"][0]["reports"] == 2
    assert view["jurisdiction"]["usState"] == "TX" and view["agencies"][0]["code"] == "icac-tx-test"
    assert view["assessed"] and view["disposition"] == "referral" and view["quality"] == 1.0
    assert [r["rule"] for r in view["priorityReasons"]] == ["location_known", "default"]  # known material, TX
    assert view["attribution"] == DBIP_CREDIT
    text = "\n".join(render_enrichment(view))
    for needle in ("priority   3", "location known (US-TX)", "disposition referral", "jurisdiction US-TX",
                   "Texas ICAC (test)", "in bank known", f"of report {other}", f"report {other} by account",
                   "db-ip.com"):
        assert needle in text, needle
