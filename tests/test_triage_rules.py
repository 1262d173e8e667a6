"""Every rule of triage.toml, with a report that fires it and one that just misses it.

Reports are CyberTipline XML (parsed by the real parser), the upstream stages' findings are
given as the stored counts the stage gathers, and facts and rules run exactly as in the
``assess`` stage (``assess_inputs``). A rule added to triage.toml without a case here fails
``test_every_rule_has_cases``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from helpers import INCIDENT, report_xml
from tipline.cybertip.xml import parse_file_details, parse_report
from tipline.pipeline.stages import assess as A

ENTICEMENT = "Online Enticement of Children for Sexual Acts"
ALL_UPSTREAM = set(A.UPSTREAM)


def user(extra: str = "", ids: bool = True) -> str:
    ident = "<espIdentifier>u-1</espIdentifier><screenName>someone</screenName>" if ids else ""
    return f"""<personOrUserReported>{ident}
      <ipCaptureEvent><ipAddress>198.51.100.7</ipAddress><eventName>Login</eventName>
        <dateTime>2026-09-30T10:00:00Z</dateTime></ipCaptureEvent>{extra}</personOrUserReported>"""


def victim(age: int | None = None, bio: str = "") -> str:
    a = f"<age>{age}</age>" if age is not None else ""
    b = f"<profileBio>{bio}</profileBio>" if bio else ""
    return f"<victim><victimPerson><firstName>Synthetic</firstName>{a}</victimPerson>{b}</victim>"


@dataclass
class Case:
    incident_type: str = INCIDENT
    summary: str = ""
    body: str = ""
    files: list[str] = field(default_factory=lambda: ["<fileViewedByEsp>true</fileViewedByEsp>"])
    country: str | None = "US"
    state: str | None = "TX"
    bank: int = 0
    seen: int = 0
    linked: int = 0
    done: set[str] = field(default_factory=lambda: set(ALL_UPSTREAM))


def assess(c: Case) -> A.Result:
    model = parse_report(report_xml(c.incident_type, extra_summary=c.summary, body=c.body or user())).value
    files = [parse_file_details(f"<fileDetails><reportId>1</reportId><fileId>{i:032x}</fileId>{x}</fileDetails>"
                                .encode()).value for i, x in enumerate(c.files)]
    esc = model.incidentSummary.escalateToHighPriority
    inp = A.Inputs(report=model, incident_at=datetime(2026, 10, 1, 12, tzinfo=UTC), escalation=esc,
                   batched_viral=False, files=list(files), files_viewed=[f.fileViewedByEsp for f in files],
                   stages_done=set(c.done), bank_matched_files=c.bank, seen_before_files=c.seen,
                   linked_earlier=c.linked,
                   jurisdiction_country=c.country if "jurisdiction" in c.done else None,
                   jurisdiction_state=c.state if "jurisdiction" in c.done else None)
    return A.assess_inputs(inp, A.load_rules())


def priority_rules(res: A.Result) -> set[str]:
    return {r["rule"] for r in res.priority_reasons}


def disposition_rules(res: A.Result) -> set[str]:
    return {r["rule"] for r in res.disposition_reasons}


ESCALATE = "<escalateToHighPriority>{}</escalateToHighPriority>"
SEXTORTION = "<reportAnnotations><sextortion/></reportAnnotations>"
INFANT = "<fileViewedByEsp>true</fileViewedByEsp><fileAnnotations><infant/></fileAnnotations>"
VIRAL = "<fileViewedByEsp>true</fileViewedByEsp><fileAnnotations><viral/></fileAnnotations>"

#: rule id -> (a report that fires it, one that just misses it)
CASES: dict[str, tuple[Case, Case]] = {
    # -- disposition: informational
    "no_reported_user": (Case(body=user(ids=False)), Case()),
    "no_location": (Case(country=None, state=None), Case(country="FR", state=None)),
    "no_content": (Case(files=[]), Case()),
    "viral_meme": (Case(files=[VIRAL, VIRAL]), Case(files=[VIRAL, "<fileViewedByEsp>true</fileViewedByEsp>"])),
    # -- priority
    "platform_escalation": (Case(summary=ESCALATE.format("Imminent danger to a child.")), Case()),
    "enticement_sextortion_minor": (Case(incident_type=ENTICEMENT, body=user() + victim(age=13)),
                                    Case(incident_type=ENTICEMENT, body=user() + victim(age=18))),
    "infant_new_material": (Case(files=[INFANT]), Case(files=[INFANT], bank=1)),
    "enticement_sextortion": (Case(summary=SEXTORTION, body=user() + victim(age=19)),
                              Case(summary=SEXTORTION, body=user() + victim(bio="I'm 14 y/o"))),
    "new_material": (Case(), Case(seen=1)),
    "infant": (Case(files=[INFANT], bank=1), Case(files=["<fileViewedByEsp>true</fileViewedByEsp>"], bank=1)),
    "repeat_offender": (Case(linked=1), Case(linked=0)),
    "location_known": (Case(country="DE", state=None), Case(country=None, state=None)),
}


def test_every_rule_has_cases() -> None:
    rules = A.load_rules()
    ids = {r.id for r in (*rules.informational, *rules.priority)}
    assert ids == set(CASES), f"rules without a case: {ids - set(CASES)}; cases without a rule: {set(CASES) - ids}"


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_and_just_misses(rule_id: str) -> None:
    fires, misses = CASES[rule_id]
    hit, miss = assess(fires), assess(misses)
    fired = priority_rules(hit) | disposition_rules(hit)
    missed = priority_rules(miss) | disposition_rules(miss)
    assert rule_id in fired, f"{rule_id} did not fire: {hit.priority_reasons} {hit.disposition_reasons}"
    assert rule_id not in missed, f"{rule_id} fired on the near miss: {miss.priority_reasons}"


@pytest.mark.parametrize("text", [
    "User is arranging to meet a 13-year-old this weekend.", "she said she is 14 y/o", "victim aged 15",
    "a fifteen year old", "Minor victim expressed intent to self-harm", "abuse of a child in the household",
    "the user targets underage girls",
])
def test_minor_named_in_escalation_text(text: str) -> None:
    res = assess(Case(incident_type=ENTICEMENT, summary=ESCALATE.format(text)))
    assert res.facts["minor_victim"] is True
    assert "enticement_sextortion_minor" in priority_rules(res)
    assert not any("no minor identified" in r["text"] for r in res.priority_reasons)


@pytest.mark.parametrize("text", ["a 19-year-old adult", "aged 30", "user is 18 years old", "age 25 months?",
                                  "meeting at 13:00", "room 14"])
def test_no_minor_in_text(text: str) -> None:
    assert not A.names_minor([text])


def test_every_priority_has_a_reason() -> None:
    for case in [Case(seen=1, country=None), Case(bank=1), Case(files=[], country=None), Case(done=set())]:
        res = assess(case)
        assert res.priority_reasons, case
    res = assess(Case(bank=1, country=None, state=None))
    assert res.priority == 3 and [r["rule"] for r in res.priority_reasons] == ["default"]
    # Unknown evidence is named, not taken for "no".
    unknown = assess(Case(done=set(), country=None))
    assert "unknown:" in unknown.priority_reasons[-1]["text"] and "new_material" in unknown.priority_reasons[-1]["text"]


def test_location_is_mentioned_only_when_known() -> None:
    known = assess(Case(country="US", state="TX"))
    assert known.disposition == "referral"
    assert any("US-TX" in r["text"] for r in known.disposition_reasons)
    unknown = assess(Case(country=None, state=None))
    assert unknown.disposition == "informational"
    assert not any("location (" in r["text"] or "location known" in r["text"]
                   for r in [*unknown.disposition_reasons, *unknown.priority_reasons])
