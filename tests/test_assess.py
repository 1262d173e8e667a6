"""Stage `assess`: quality, disposition, priority and escalation by the rules in triage.toml.

Reports are made through the intake service; upstream stages (matches, links,
jurisdiction) are stood in for by writing their rows and ledger entries directly, so each
case has a known truth whether or not those stages exist.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from helpers import VIEWED, submit_report, user
from tipline.pipeline import core
from tipline.pipeline.core import StageContext, StageDef, run_report
from tipline.pipeline.stages import assess as A
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import (
    Assessment,
    BankEntry,
    File,
    FileMatch,
    HashBank,
    Jurisdiction,
    PipelineRun,
    ReportLink,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
ENTICEMENT = "Online Enticement of Children for Sexual Acts"
@pytest.fixture
def only_assess(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, StageDef]]:
    """A registry holding just `assess`: the case does not depend on other stages' state."""
    reg = {"assess": StageDef("assess", "1", A.assess, A.UPSTREAM, A.assess.__doc__ or "")}
    monkeypatch.setattr(core, "_loaded", True)
    monkeypatch.setattr(core, "_STAGES", reg)
    yield reg


def assess_now(rt: Runtime, rid: int) -> Assessment:
    run_report(StageContext(rt), rid, only=["assess"])
    with rt.sessions() as s:
        err = s.execute(select(PipelineRun.error).where(PipelineRun.report_id == rid,
                                                        PipelineRun.stage == "assess")).scalar_one()
        assert err is None, err
        return s.execute(select(Assessment).where(Assessment.report_id == rid)).scalar_one()


def mark_done(rt: Runtime, rid: int, *stage_names: str) -> None:
    with transaction(rt.sessions) as s:
        for name in stage_names:
            s.add(PipelineRun(report_id=rid, stage=name, done_at=datetime.now(UTC), version="1", error=None))


def rules_of(a: Assessment) -> list[str]:
    return [r["rule"] for r in a.priority_reasons]


@pytest.fixture
def rt(runtime: Runtime, esps: dict[str, tuple[str, str]], only_assess: dict[str, StageDef]) -> Runtime:
    return runtime


def test_complete_report_is_a_referral_with_full_quality(rt: Runtime) -> None:
    rid = submit_report(rt, body=user(), files=[VIEWED, VIEWED])
    a = assess_now(rt, rid)
    assert a.quality == 1.0 and a.missing == []
    assert a.disposition == "referral"
    assert a.rules_version == A.load_rules().version
    # Without `matches`, `links` and `jurisdiction` nothing is claimed about new material,
    # repeats or a known country: priority stays at the default.
    assert a.priority == 3 and rules_of(a) == ["default"] and a.escalate is False


def test_missing_items_are_named_and_make_it_informational(rt: Runtime) -> None:
    rid = submit_report(rt)  # no reported user, no IP, no files
    a = assess_now(rt, rid)
    missing = [m["item"] for m in a.missing]
    assert missing == ["reported_user", "location", "content", "ip_event_times"]
    # files_viewed does not apply without files: weights 3+2+2+1+1 = 9, only the time (1) present.
    assert a.quality == pytest.approx(1 / 9, abs=1e-4)
    assert a.disposition == "informational"
    assert [r["rule"] for r in a.disposition_reasons] == ["no_reported_user", "no_location", "no_content"]
    assert all(r["text"] for r in a.disposition_reasons)


def test_unviewed_file_lowers_quality(rt: Runtime) -> None:
    rid = submit_report(rt, body=user(), files=[VIEWED, "<fileViewedByEsp>false</fileViewedByEsp>"])
    a = assess_now(rt, rid)
    assert [m["item"] for m in a.missing] == ["files_viewed"]
    assert a.quality == pytest.approx(9 / 10)


def test_platform_escalation_is_priority_1_and_escalated(rt: Runtime) -> None:
    summary = "<escalateToHighPriority>Child is in danger now</escalateToHighPriority>"
    rid = submit_report(rt, summary=summary, body=user(), files=[VIEWED])
    a = assess_now(rt, rid)
    assert a.priority == 1 and a.escalate is True
    assert a.priority_reasons[0]["rule"] == "platform_escalation"
    assert "Child is in danger now" in a.priority_reasons[0]["text"]


def test_enticement_with_a_minor_is_priority_1(rt: Runtime) -> None:
    victim = "<victim><victimPerson><firstName>Vic</firstName><age>13</age></victimPerson></victim>"
    rid = submit_report(rt, incident_type=ENTICEMENT, body=user() + victim)
    a = assess_now(rt, rid)
    assert a.priority == 1 and a.escalate
    assert rules_of(a) == ["enticement_sextortion_minor"]


def test_enticement_without_a_minor_named_earns_points_only(rt: Runtime) -> None:
    adult = "<victim><victimPerson><firstName>Ad</firstName><age>30</age></victimPerson></victim>"
    rid = submit_report(rt, incident_type=ENTICEMENT, body=user() + adult)
    a = assess_now(rt, rid)
    assert rules_of(a) == ["enticement_sextortion", "default"]
    assert a.priority == 3  # 2 points < 3; a known location would make it 2
    mark_done(rt, rid, "jurisdiction")
    with transaction(rt.sessions) as s:
        s.add(Jurisdiction(report_id=rid, country="US", us_state="TX", source="ip", confidence=0.8,
                           resolved_at=datetime.now(UTC)))
    a = assess_now(rt, rid)
    assert rules_of(a) == ["enticement_sextortion", "location_known"] and a.priority == 2
    assert "US-TX" in a.priority_reasons[1]["text"]


def test_sextortion_with_minor_by_date_of_birth(rt: Runtime) -> None:
    summary = "<reportAnnotations><sextortion/></reportAnnotations>"
    victim = ("<victim><victimPerson><firstName>V</firstName><dateOfBirth>2012-02-01</dateOfBirth>"
              "</victimPerson></victim>")
    rid = submit_report(rt, summary=summary, body=user() + victim)
    assert assess_now(rt, rid).priority == 1


def _bank_match(rt: Runtime, rid: int) -> None:
    with transaction(rt.sessions) as s:
        f = s.execute(select(File).where(File.report_id == rid)).scalars().first()
        assert f is not None
        bank = HashBank(name=f"known-{rid}", enabled=True, pdq_threshold=31, created_at=datetime.now(UTC))
        s.add(bank)
        s.flush()
        entry = BankEntry(bank_id=bank.id, hash_type="md5", value=f.md5, label="known", added_at=datetime.now(UTC))
        s.add(entry)
        s.flush()
        s.add(FileMatch(file_id=f.id, kind="bank", hash_type="md5", distance=0, bank_entry_id=entry.id,
                        created_at=datetime.now(UTC)))


def test_new_material_needs_the_matches_stage(rt: Runtime) -> None:
    loc = "<estimatedLocation><countryCode>PH</countryCode></estimatedLocation>"
    rid = submit_report(rt, body=user(extra=loc), files=[VIEWED])
    a = assess_now(rt, rid)
    assert rules_of(a) == ["location_known", "default"] and a.priority == 3  # matching unknown: no claim
    assert "unknown: infant_new_material" not in a.priority_reasons[-1]["text"]
    assert "new_material" in a.priority_reasons[-1]["text"]
    mark_done(rt, rid, "matches")
    a = assess_now(rt, rid)
    assert rules_of(a) == ["new_material", "location_known"] and a.priority == 2
    _bank_match(rt, rid)
    a = assess_now(rt, rid)
    assert rules_of(a) == ["location_known", "default"] and a.priority == 3


def test_content_seen_in_an_earlier_report_is_not_new(rt: Runtime) -> None:
    first = submit_report(rt, body=user(), files=[VIEWED])
    second = submit_report(rt, body=user(), files=[VIEWED])
    mark_done(rt, first, "matches")
    mark_done(rt, second, "matches")
    with transaction(rt.sessions) as s:
        f1 = s.execute(select(File).where(File.report_id == first)).scalars().one()
        f2 = s.execute(select(File).where(File.report_id == second)).scalars().one()
        # Stored under the earlier file, as the matches stage may do: read both directions.
        s.add(FileMatch(file_id=f1.id, kind="duplicate", hash_type="pdq", distance=6, other_file_id=f2.id,
                        created_at=datetime.now(UTC)))
    assert rules_of(assess_now(rt, second)) == ["default"]
    # The first copy was new when it came in, and stays so.
    assert rules_of(assess_now(rt, first)) == ["new_material", "default"]


def test_infant_flag_on_new_material_is_priority_1(rt: Runtime) -> None:
    infant = VIEWED + "<fileAnnotations><infant/></fileAnnotations>"
    rid = submit_report(rt, body=user(), files=[infant])
    a = assess_now(rt, rid)
    assert rules_of(a) == ["infant", "default"] and a.priority == 3
    mark_done(rt, rid, "matches")
    a = assess_now(rt, rid)
    assert a.priority == 1 and rules_of(a)[0] == "infant_new_material" and a.escalate


def test_unresolved_jurisdiction_means_no_location(rt: Runtime) -> None:
    rid = submit_report(rt, body=user(), files=[VIEWED])
    mark_done(rt, rid, "jurisdiction")
    with transaction(rt.sessions) as s:
        s.add(Jurisdiction(report_id=rid, country=None, us_state=None, source=None, confidence=0.0,
                           reason="IP not found", resolved_at=datetime.now(UTC)))
    a = assess_now(rt, rid)
    assert a.disposition == "informational"
    assert [r["rule"] for r in a.disposition_reasons] == ["no_location"]


def test_viral_meme_files_are_informational(rt: Runtime) -> None:
    meme = VIEWED + "<fileAnnotations><potentialMeme/><viral/></fileAnnotations>"
    rid = submit_report(rt, body=user(), files=[meme, meme])
    a = assess_now(rt, rid)
    assert a.disposition == "informational" and [r["rule"] for r in a.disposition_reasons] == ["viral_meme"]
    rid2 = submit_report(rt, body=user(), files=[meme, VIEWED])
    assert assess_now(rt, rid2).disposition == "referral"


def test_repeat_offender_from_prior_reports_and_links(rt: Runtime) -> None:
    rid = submit_report(rt, body=user(extra="<priorCTReports>123456</priorCTReports>"))
    a = assess_now(rt, rid)
    assert rules_of(a) == ["repeat_offender", "default"] and "1 cited" in a.priority_reasons[0]["text"]

    first = submit_report(rt, body=user(8))
    second = submit_report(rt, body=user(8))
    mark_done(rt, first, "links")
    mark_done(rt, second, "links")
    with transaction(rt.sessions) as s:
        s.add(ReportLink(report_a=first, report_b=second, reason="account", detail="u-8", weight=1.0))
        s.add(ReportLink(report_a=first, report_b=second, reason="ip", detail="198.51.100.8", weight=0.3))
    assert rules_of(assess_now(rt, second)) == ["repeat_offender", "default"]
    # Only earlier reports count, so the first report's assessment never depends on later ones.
    assert rules_of(assess_now(rt, first)) == ["default"]


def test_rerun_replaces_the_assessment(rt: Runtime) -> None:
    rid = submit_report(rt, body=user(), files=[VIEWED])
    a1 = assess_now(rt, rid)
    a2 = assess_now(rt, rid)
    with rt.sessions() as s:
        assert len(s.execute(select(Assessment).where(Assessment.report_id == rid)).all()) == 1
    keys = ("quality", "missing", "disposition", "disposition_reasons", "priority", "priority_reasons", "escalate")
    assert {k: getattr(a1, k) for k in keys} == {k: getattr(a2, k) for k in keys}


# --- rules as data -------------------------------------------------------------------------


def _raw() -> dict[str, Any]:
    with A.default_rules_path().open("rb") as fh:
        return tomllib.load(fh)


def test_rules_reject_unknown_facts_and_duplicate_ids() -> None:
    raw = _raw()
    raw["priority"]["rule"][0]["all"] = ["no_such_fact"]
    with pytest.raises(ValueError, match="unknown fact"):
        A.Rules.parse(raw)
    raw = _raw()
    raw["priority"]["rule"].append(dict(raw["priority"]["rule"][0]))
    with pytest.raises(ValueError, match="repeated"):
        A.Rules.parse(raw)


def test_unknown_facts_never_fire() -> None:
    rules = A.load_rules()
    facts: dict[str, A.Fact] = dict.fromkeys(A.FACTS)
    facts.update(reported_user_ids=True, location_possible=True, content=True, files=True, files_viewed=True,
                 incident_time=True, ip_event_times=True)
    res = A.evaluate(facts, rules)
    assert res.priority == 3 and [r["rule"] for r in res.priority_reasons] == ["default"]
    assert res.disposition == "referral"


def test_docs_hold_the_generated_rule_tables() -> None:
    doc = (DOCS / "triage.md").read_text()
    m = re.search(r"<!-- rules:begin -->\n(.*)<!-- rules:end -->", doc, re.S)
    assert m, "docs/triage.md lacks the <!-- rules:begin/end --> block"
    assert m.group(1) == A.rules_markdown(), (
        "docs/triage.md is stale: python -c 'from tipline.pipeline.stages.assess import rules_markdown; "
        "print(rules_markdown(), end=\"\")' and paste between the markers")
    raw = _raw()
    ids = [q["id"] for q in raw["quality"]] + [r["id"] for r in raw["disposition"]["informational"]] + [
        r["id"] for r in raw["priority"]["rule"]]
    prose = doc[: m.start()] + doc[m.end():]
    for rule_id in ids:
        assert f"`{rule_id}`" in prose, f"rule {rule_id} is not explained in the prose of docs/triage.md"
