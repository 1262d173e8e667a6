"""Stage ``assess``: quality score, referral/informational disposition, priority, escalation.

The rules are data (``tipline/data/triage.toml``, explained in docs/triage.md). This module
computes *facts* about one report from stored records — the parsed report, its files, and
whatever the earlier stages wrote (bank matches, links, jurisdiction) — and evaluates the
rules over them. A fact whose source stage has not run is *unknown* (None) and never
counts as evidence: without the ``matches`` stage no report is called "new material".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, aliased

from tipline.console import queue_model
from tipline.model.report import FileDetails
from tipline.model.report import Report as ReportModel
from tipline.pipeline.core import (
    Outcome,
    StageContext,
    cross_report_lock,
    forget_objects,
    insert_rows,
    report_documents,
    stage,
)
from tipline.store.tables import (
    Assessment,
    File,
    FileMatch,
    Jurisdiction,
    PipelineRun,
    Report,
    ReportLink,
)

ENTICEMENT = "Online Enticement of Children for Sexual Acts"
#: Stages whose output this one reads; a missing stage makes its facts unknown.
UPSTREAM = ("matches", "links", "jurisdiction", "bundles")

Fact = bool | None

#: Every fact the rules may name, with what it means (docs/triage.md is generated from this).
FACTS: dict[str, str] = {
    "reported_user_ids": "a reported person/user carries an account id, screen name, display name, profile URL, "
                         "e-mail, phone or device id",
    "location_possible": "the resolved jurisdiction has a country; before/without the `jurisdiction` stage: the "
                         "report has an IP capture event, an address, coordinates or a platform location estimate",
    "location_known": "the resolved jurisdiction has a country; without the `jurisdiction` stage: a platform "
                      "location estimate or an address names a country",
    "files": "the report has at least one uploaded file",
    "content": "the report has files, or message text (chat, e-mail, newsgroup, gaming incident content)",
    "files_viewed": "every file of the report was viewed by the platform (fileViewedByEsp = true)",
    "incident_time": "the report gives incidentDateTime",
    "ip_event_times": "the report has IP capture events and every one has a time",
    "platform_escalation": "the platform filled in escalateToHighPriority",
    "enticement": "the incident type is online enticement of children",
    "sextortion": "the report is annotated sextortion",
    "minor_victim": "a victim or intended recipient is a minor (age or date of birth under 18 at the incident, "
                    "or a school is named), the report is annotated minor-to-minor interaction, or the escalation "
                    "text or a victim's or recipient's profile names a minor (\"a 13-year-old\", \"aged 15\", "
                    "\"14 y/o\", \"a minor\", \"a child\")",
    "new_material": "the report has files, none matched a hash bank and none is a (near-)duplicate of a file of an "
                    "earlier report (unknown until the `matches` stage ran)",
    "bank_match": "a file matched a hash bank (unknown until the `matches` stage ran)",
    "seen_before": "a file is a (near-)duplicate of a file of an earlier report (unknown until the `matches` stage "
                   "ran)",
    "infant": "a file is flagged infant in its fileAnnotations",
    "repeat_offender": "the reported user cites earlier CyberTipline reports (priorCTReports), or the `links` stage "
                       "linked this report to an earlier one through the same account, e-mail, phone or device",
    "all_viral_meme": "the report is a viral/meme batch, or it has files and every file is flagged viral or "
                      "potential meme",
}


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Condition:
        return cls(tuple(raw.get("all", ())), tuple(raw.get("any", ())), tuple(raw.get("none", ())))

    def names(self) -> set[str]:
        return {*self.all, *self.any, *self.none}

    def holds(self, facts: Mapping[str, Fact]) -> bool:
        # Only a fact that is True satisfies; unknown (None) never does.
        return (all(facts.get(f) is True for f in self.all)
                and (not self.any or any(facts.get(f) is True for f in self.any))
                and not any(facts.get(f) is True for f in self.none))


@dataclass(frozen=True)
class QualityItem:
    id: str
    fact: str
    weight: float
    missing: str
    applies_if: str | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    when: Condition
    text: str
    priority: int | None = None
    points: int = 0


@dataclass(frozen=True)
class Rules:
    version: str
    quality: tuple[QualityItem, ...]
    disposition_default: str
    referral_text: str
    informational: tuple[Rule, ...]
    priority_default: int
    priority_default_text: str
    points_for_2: int
    escalate_at: int
    priority: tuple[Rule, ...]
    repeat_link_reasons: tuple[str, ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Rules:
        def rule(r: Mapping[str, Any]) -> Rule:
            return Rule(id=str(r["id"]), when=Condition.parse(r), text=str(r["text"]),
                        priority=int(r["priority"]) if "priority" in r else None, points=int(r.get("points", 0)))

        disp, prio = raw["disposition"], raw["priority"]
        rules = cls(
            version=str(raw["version"]),
            quality=tuple(QualityItem(id=str(q["id"]), fact=str(q["fact"]), weight=float(q["weight"]),
                                      missing=str(q["missing"]), applies_if=q.get("applies_if"))
                          for q in raw["quality"]),
            disposition_default=str(disp.get("default", "referral")),
            referral_text=str(disp.get("referral_text", "")),
            informational=tuple(rule(r) for r in disp.get("informational", ())),
            priority_default=int(prio.get("default", 3)),
            priority_default_text=str(prio.get("default_text", "no rule raised the priority")),
            points_for_2=int(prio["points_for_2"]),
            escalate_at=int(prio.get("escalate_at", 1)),
            priority=tuple(rule(r) for r in prio.get("rule", ())),
            repeat_link_reasons=tuple(raw.get("repeat", {}).get("link_reasons", ())),
        )
        rules.check()
        return rules

    def check(self) -> None:
        """Refuse rules that name unknown facts or repeat an id (a typo must not pass silently)."""
        ids: list[str] = []
        for q in self.quality:
            ids.append(q.id)
            for f in (q.fact, q.applies_if):
                if f is not None and f not in FACTS:
                    raise ValueError(f"triage rule {q.id!r}: unknown fact {f!r}")
        for r in (*self.informational, *self.priority):
            ids.append(r.id)
            for f in r.when.names():
                if f not in FACTS:
                    raise ValueError(f"triage rule {r.id!r}: unknown fact {f!r}")
            if r.priority is not None and r.priority not in (1, 2, 3):
                raise ValueError(f"triage rule {r.id!r}: priority must be 1, 2 or 3")
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"triage rule ids repeated: {', '.join(sorted(dup))}")
        if self.disposition_default not in ("referral", "informational"):
            raise ValueError("disposition.default must be referral or informational")


def default_rules_path() -> Path:
    return Path(str(resources.files("tipline").joinpath("data/triage.toml")))


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> Rules:
    """The triage rules (the bundled file unless ``path`` names another)."""
    p = Path(path) if path else default_rules_path()
    with p.open("rb") as fh:
        return Rules.parse(tomllib.load(fh))


# --- inputs and facts ---------------------------------------------------------------------------


@dataclass
class Inputs:
    """Everything the assessment reads for one report (gathered from stored records)."""

    report: ReportModel | None
    incident_at: datetime | None
    escalation: str | None
    batched_viral: bool
    files: list[FileDetails | None] = field(default_factory=list)
    files_viewed: list[bool | None] = field(default_factory=list)
    stages_done: set[str] = field(default_factory=set)
    bank_matched_files: int = 0
    seen_before_files: int = 0
    linked_earlier: int = 0
    jurisdiction_country: str | None = None
    jurisdiction_state: str | None = None


def gather(session: Session, report_id: int, rules: Rules) -> Inputs:
    """Read the report, its files and the upstream stages' rows."""
    rep = session.get(Report, report_id)
    if rep is None:
        raise LookupError(f"no report {report_id}")
    model = ReportModel.model_validate(rep.document) if rep.document else None
    files = list(session.execute(select(File).where(File.report_id == report_id).order_by(File.seq)).scalars())
    done = set(session.execute(
        select(PipelineRun.stage).where(PipelineRun.report_id == report_id, PipelineRun.error.is_(None),
                                        PipelineRun.stage.in_(UPSTREAM))
    ).scalars())
    inp = Inputs(
        report=model, incident_at=rep.incident_at, escalation=rep.escalation,
        batched_viral=bool(model and model.batchedReport and model.batchedReport.reason == "VIRAL_POTENTIAL_MEME"),
        files=[FileDetails.model_validate(f.details) if f.details else None for f in files],
        files_viewed=[f.viewed_by_esp for f in files],
        stages_done=done,
    )
    if files and "matches" in done:
        fids = [f.id for f in files]
        inp.bank_matched_files = len(set(session.execute(
            select(FileMatch.file_id).where(FileMatch.file_id.in_(fids), FileMatch.kind == "bank")
        ).scalars()))
        # A duplicate pair is stored under either file; only copies in *earlier* reports make
        # content "seen before", so the answer does not change when later copies arrive.
        other = aliased(File)
        seen: set[str | None] = set(session.execute(
            select(FileMatch.file_id).join(other, other.id == FileMatch.other_file_id).where(
                FileMatch.file_id.in_(fids), FileMatch.kind == "duplicate", other.report_id < report_id)
        ).scalars())
        seen |= set(session.execute(
            select(FileMatch.other_file_id).join(other, other.id == FileMatch.file_id).where(
                FileMatch.other_file_id.in_(fids), FileMatch.kind == "duplicate", other.report_id < report_id)
        ).scalars())
        inp.seen_before_files = len(seen)
    if "links" in done and rules.repeat_link_reasons:
        rows = session.execute(
            select(ReportLink.report_a, ReportLink.report_b).where(
                or_(ReportLink.report_a == report_id, ReportLink.report_b == report_id),
                ReportLink.reason.in_(rules.repeat_link_reasons),
            )
        ).all()
        # Only *earlier* reports count: the answer does not change when later reports arrive.
        others = {a if b == report_id else b for a, b in rows}
        inp.linked_earlier = len({o for o in others if o < report_id})
    if "jurisdiction" in done:
        j = session.get(Jurisdiction, report_id)
        if j is not None:
            inp.jurisdiction_country, inp.jurisdiction_state = j.country, j.us_state
    return inp


def _age_at(dob: date, when: datetime | None) -> int:
    ref = (when or datetime.now(UTC)).date()
    return ref.year - dob.year - ((ref.month, ref.day) < (dob.month, dob.day))


def _is_minor(age: int | None, dob: date | None, when: datetime | None) -> bool:
    if age is not None and age < 18:
        return True
    return dob is not None and _age_at(dob, when) < 18


_AGE = r"(?:1[0-7]|[1-9])"
_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                 "sixteen|seventeen")
#: Phrases that name a person under 18 in free text (escalation text, profile bios). Ages are
#: 1-17 only: "a 19-year-old" or "aged 30" is not a minor, and a bare number never counts.
_MINOR_TEXT = re.compile(
    rf"\b(?:{_AGE}|{_NUMBER_WORDS})[\s-]*(?:years?|yrs?)[\s-]*old\b"
    rf"|\baged?\s*:?\s*(?:{_AGE}|{_NUMBER_WORDS})\b(?![\s-]*(?:months?|weeks?|days?)\b)(?!\d)"
    rf"|\b{_AGE}\s*(?:yo|y/o|y\.o\.)(?!\w)"
    r"|\bminor\s+(?:victim|child|user|girl|boy)\b"
    r"|\b(?:a|the|his|her|their)\s+(?:minor|child|kid|girl|boy|teen|teenager|pre-?teen|toddler|infant|baby)\b"
    r"|\bunder\s*-?\s*age(?:d)?\b|\bunder\s+18\b",
    re.IGNORECASE,
)


def names_minor(texts: Iterable[str | None]) -> bool:
    """Whether free text names a person under 18 ("meet a 13-year-old", "she is 14 y/o")."""
    return any(t and _MINOR_TEXT.search(t) for t in texts)


def compute_facts(inp: Inputs) -> dict[str, Fact]:
    """The facts of one report (True / False / None = unknown)."""
    r = inp.report
    f: dict[str, Fact] = dict.fromkeys(FACTS)
    has_files = bool(inp.files)
    f["files"] = has_files
    ip_events: list[Any] = []
    ids = False
    place = False
    place_country = False
    text = False
    minor = False
    if r is not None:
        for p in r.personOrUserReported:
            person = p.personOrUserReportedPerson
            if (p.espIdentifier or p.screenName or p.displayName or p.profileUrl or p.deviceId
                    or (person is not None and (person.email or person.phone))):
                ids = True
            ip_events += p.ipCaptureEvent
            if p.estimatedLocation is not None and (p.estimatedLocation.countryCode or p.estimatedLocation.region
                                                    or p.estimatedLocation.city):
                place = True
                place_country = place_country or bool(p.estimatedLocation.countryCode)
            if person is not None:
                for a in person.address:
                    place = True
                    place_country = place_country or bool(a.country or a.state)
        for d in r.internetDetails:
            for inc in (d.chatImIncident, d.emailIncident, d.newsgroupIncident, d.onlineGamingIncident):
                if inc is not None and inc.content:
                    text = True
            if d.peer2peerIncident is not None:
                ip_events += d.peer2peerIncident.ipCaptureEvent
            if d.cellPhoneIncident is not None and d.cellPhoneIncident.latitude is not None:
                place = True
            if d.nonInternetIncident is not None and d.nonInternetIncident.incidentAddress:
                place = True
                place_country = place_country or any(a.country or a.state
                                                     for a in d.nonInternetIncident.incidentAddress)
        for v in r.victim:
            vp = v.victimPerson
            if (_is_minor(vp.age, vp.dateOfBirth, inp.incident_at) or v.schoolName
                    or names_minor([v.profileBio, *v.displayName])):
                minor = True
        for ir in r.intendedRecipient:
            rp = ir.intendedRecipientPerson
            if ((rp is not None and _is_minor(rp.age, rp.dateOfBirth, inp.incident_at))
                    or names_minor([ir.profileBio, *ir.displayName])):
                minor = True
        ann = r.incidentSummary.reportAnnotations
        if ann is not None and ann.minorToMinorInteraction:
            minor = True
        f["enticement"] = r.incident_type == ENTICEMENT
        f["sextortion"] = bool(ann and ann.sextortion)
        prior = sum(len(p.priorCTReports) for p in r.personOrUserReported)
    else:
        # A purged document: only what the report row itself keeps.
        f["enticement"] = None
        f["sextortion"] = None
        prior = 0
    for fd in inp.files:
        if fd is not None and fd.ipCaptureEvent is not None:
            ip_events.append(fd.ipCaptureEvent)
    if ip_events:
        place = True
    f["reported_user_ids"] = ids if r is not None else None
    if "jurisdiction" in inp.stages_done:
        f["location_possible"] = inp.jurisdiction_country is not None
        f["location_known"] = inp.jurisdiction_country is not None
    else:
        f["location_possible"] = place
        f["location_known"] = place_country
    f["content"] = has_files or text
    f["files_viewed"] = has_files and all(v is True for v in inp.files_viewed)
    f["incident_time"] = inp.incident_at is not None
    f["ip_event_times"] = bool(ip_events) and all(e.dateTime is not None for e in ip_events)
    f["platform_escalation"] = inp.escalation is not None
    # The platform's own words count: "arranging to meet a 13-year-old" names a minor even
    # when no victim field was filled in.
    f["minor_victim"] = minor or names_minor([inp.escalation])
    if "matches" in inp.stages_done:
        f["bank_match"] = inp.bank_matched_files > 0
        f["seen_before"] = inp.seen_before_files > 0
        f["new_material"] = has_files and inp.bank_matched_files == 0 and inp.seen_before_files == 0
    f["infant"] = any(fd is not None and fd.fileAnnotations is not None and fd.fileAnnotations.infant
                      for fd in inp.files)
    if prior or inp.linked_earlier:
        f["repeat_offender"] = True
    elif "links" in inp.stages_done:
        f["repeat_offender"] = False
    # else unknown: without links we cannot say the user is *not* a repeat.

    def viral(fd: FileDetails | None) -> bool:
        if fd is None:
            return False
        a = fd.fileAnnotations
        return bool(fd.potentialMeme or (a is not None and (a.viral or a.potentialMeme)))

    f["all_viral_meme"] = inp.batched_viral or (has_files and all(viral(fd) for fd in inp.files))
    return f


# --- the assessment -------------------------------------------------------------------------------


@dataclass
class Result:
    quality: float
    missing: list[dict[str, str]]
    disposition: str
    disposition_reasons: list[dict[str, str]]
    priority: int
    priority_reasons: list[dict[str, Any]]
    escalate: bool
    facts: dict[str, Fact]


class _SafeFormat(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def evaluate(facts: Mapping[str, Fact], rules: Rules, context: Mapping[str, Any] | None = None) -> Result:
    """Apply the rules to a report's facts (pure: no database)."""
    ctx = _SafeFormat(context or {})
    total = got = 0.0
    missing: list[dict[str, str]] = []
    for q in rules.quality:
        if q.applies_if is not None and facts.get(q.applies_if) is not True:
            continue
        total += q.weight
        if facts.get(q.fact) is True:
            got += q.weight
        else:
            missing.append({"item": q.id, "text": q.missing})
    quality = round(got / total, 4) if total else 0.0

    fired = [r for r in rules.informational if r.when.holds(facts)]
    if fired:
        disposition = "informational"
        disp_reasons = [{"rule": r.id, "text": r.text.format_map(ctx)} for r in fired]
    else:
        disposition = rules.disposition_default
        disp_reasons = ([{"rule": "referral", "text": rules.referral_text.format_map(ctx)}]
                        if disposition == "referral" else [])

    priority = rules.priority_default
    points = 0
    reasons: list[dict[str, Any]] = []
    for r in rules.priority:
        if not r.when.holds(facts):
            continue
        if r.priority is not None:
            priority = min(priority, r.priority)
        points += r.points
        reason: dict[str, Any] = {"rule": r.id, "text": r.text.format_map(ctx)}
        if r.priority is not None:
            reason["priority"] = r.priority
        if r.points:
            reason["points"] = r.points
        reasons.append(reason)
    if priority > 2 and points >= rules.points_for_2:
        priority = 2
    # Most decisive first: the rules that set the priority, then the largest point values.
    reasons.sort(key=lambda x: (x.get("priority", 9), -x.get("points", 0)))
    if priority == rules.priority_default and not any("priority" in r for r in reasons) \
            and points < rules.points_for_2:
        # Every priority says why, the default too; the rules that could not fire for want of
        # evidence are part of the answer ("unknown" is not "no").
        named = sorted({f for r in rules.priority for f in r.when.names() if facts.get(f) is None})
        text = rules.priority_default_text.format_map(_SafeFormat({**ctx, "points": points,
                                                                   "points_for_2": rules.points_for_2}))
        if named:
            text += "; unknown: " + ", ".join(named)
        reasons.append({"rule": "default", "text": text, "priority": rules.priority_default})
    return Result(quality=quality, missing=missing, disposition=disposition, disposition_reasons=disp_reasons,
                  priority=priority, priority_reasons=reasons, escalate=priority <= rules.escalate_at,
                  facts=dict(facts))


def assess_inputs(inp: Inputs, rules: Rules) -> Result:
    """Facts and rules for one gathered report."""
    facts = compute_facts(inp)
    prior = sum(len(p.priorCTReports) for p in inp.report.personOrUserReported) if inp.report else 0
    country = inp.jurisdiction_country
    if country and inp.jurisdiction_state:
        country = f"{country}-{inp.jurisdiction_state}"
    context = {"escalation": inp.escalation or "", "prior_reports": prior, "linked_reports": inp.linked_earlier,
               "country": country or "platform/user-supplied location"}
    return evaluate(facts, rules, context)


def gather_many(session: Session, report_ids: list[int], rules: Rules) -> dict[int, Inputs]:
    """``gather`` for many reports: a fixed number of statements per 500 reports, not per report.

    Equal to ``gather`` report by report (tests/test_group_stages.py compares them).
    """
    out: dict[int, Inputs] = {}
    other = aliased(File)
    mine = aliased(File)
    for i in range(0, len(report_ids), 500):
        chunk = report_ids[i:i + 500]
        reps = {int(r.id): r for r in session.execute(
            select(Report.id, Report.incident_at, Report.escalation).where(Report.id.in_(chunk)))}
        missing = [rid for rid in chunk if rid not in reps]
        if missing:
            raise LookupError(f"no report {missing[0]}")
        docs = report_documents(session, chunk)  # decoded once for the group's stages
        viewed: dict[str, bool | None] = {}
        owner: dict[str, int] = {}
        for fid, rid, seen_by_esp in session.execute(select(File.id, File.report_id, File.viewed_by_esp)
                                                    .where(File.report_id.in_(chunk))):
            viewed[fid] = seen_by_esp
            owner[fid] = int(rid)
        done: dict[int, set[str]] = {}
        for rid, name in session.execute(
                select(PipelineRun.report_id, PipelineRun.stage).where(
                    PipelineRun.report_id.in_(chunk), PipelineRun.error.is_(None), PipelineRun.stage.in_(UPSTREAM))):
            done.setdefault(int(rid), set()).add(str(name))
        for rid in chunk:
            rep = reps[rid]
            doc = docs.get(rid)
            model = doc.model() if doc is not None and doc.document else None
            fl = doc.files if doc is not None else []
            out[rid] = Inputs(
                report=model, incident_at=rep.incident_at, escalation=rep.escalation,
                batched_viral=bool(model and model.batchedReport
                                   and model.batchedReport.reason == "VIRAL_POTENTIAL_MEME"),
                files=[f.model() for f in fl],
                files_viewed=[viewed.get(f.id) for f in fl],
                stages_done=done.get(rid, set()),
            )
        with_matches = [fid for fid, rid in owner.items() if "matches" in out[rid].stages_done]
        if with_matches:
            banked: dict[int, set[str]] = {}
            for (fid,) in session.execute(select(FileMatch.file_id).where(
                    FileMatch.file_id.in_(with_matches), FileMatch.kind == "bank").distinct()):
                banked.setdefault(owner[fid], set()).add(fid)
            # A duplicate pair is stored under either file; only copies in *earlier* reports
            # make content "seen before" (as in ``gather``).
            seen: dict[int, set[str]] = {}
            for fid in session.execute(
                    select(FileMatch.file_id).join(other, other.id == FileMatch.other_file_id)
                    .join(mine, mine.id == FileMatch.file_id)
                    .where(FileMatch.file_id.in_(with_matches), FileMatch.kind == "duplicate",
                           other.report_id < mine.report_id).distinct()).scalars():
                # DISTINCT: a viral file has hundreds of pairs; only whether it has one counts.
                seen.setdefault(owner[fid], set()).add(fid)
            for ofid in session.execute(
                    select(FileMatch.other_file_id).join(other, other.id == FileMatch.file_id)
                    .join(mine, mine.id == FileMatch.other_file_id)
                    .where(FileMatch.other_file_id.in_(with_matches), FileMatch.kind == "duplicate",
                           other.report_id < mine.report_id).distinct()).scalars():
                if ofid is not None:
                    seen.setdefault(owner[ofid], set()).add(ofid)
            for rid, fids in banked.items():
                out[rid].bank_matched_files = len(fids)
            for rid, fids in seen.items():
                out[rid].seen_before_files = len(fids)
        with_links = [rid for rid in chunk if "links" in out[rid].stages_done]
        if with_links and rules.repeat_link_reasons:
            earlier: dict[int, set[int]] = {}
            wanted = set(with_links)
            for a, b in session.execute(select(ReportLink.report_a, ReportLink.report_b).where(
                    or_(ReportLink.report_a.in_(with_links), ReportLink.report_b.in_(with_links)),
                    ReportLink.reason.in_(rules.repeat_link_reasons))):
                a, b = int(a), int(b)
                # Only *earlier* reports count: the answer does not change when later ones arrive.
                if b in wanted and a < b:
                    earlier.setdefault(b, set()).add(a)
            for rid, others in earlier.items():
                out[rid].linked_earlier = len(others)
        with_jur = [rid for rid in chunk if "jurisdiction" in out[rid].stages_done]
        if with_jur:
            for rid, country, state in session.execute(
                    select(Jurisdiction.report_id, Jurisdiction.country, Jurisdiction.us_state)
                    .where(Jurisdiction.report_id.in_(with_jur))):
                out[int(rid)].jurisdiction_country, out[int(rid)].jurisdiction_state = country, state
    return out


def assess_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The assess stage over a group: gathered with ``gather_many``, written with two statements."""
    cross_report_lock(session)  # reads earlier reports' matches and links (see store.db)
    rules: Rules = ctx.service("triage_rules", load_rules)
    ids = list(report_ids)
    inputs = gather_many(session, ids, rules)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for rid in ids:
        res = assess_inputs(inputs[rid], rules)
        rows.append({"report_id": rid, "quality": res.quality, "missing": res.missing,
                     "disposition": res.disposition, "disposition_reasons": res.disposition_reasons,
                     "priority": res.priority, "priority_reasons": res.priority_reasons, "escalate": res.escalate,
                     "rules_version": rules.version, "assessed_at": now})
    for i in range(0, len(ids), 500):
        session.execute(delete(Assessment).where(Assessment.report_id.in_(ids[i:i + 500]))
                        .execution_options(synchronize_session=False))
    insert_rows(session, Assessment, rows)
    forget_objects(session, Assessment)
    # The analyst queue's read model follows its inputs in this transaction (tipline.console.queue_model).
    queue_model.refresh(session, ids)
    return dict.fromkeys(ids, Outcome.DONE)


@stage("assess", version="1", after=UPSTREAM, group=assess_group, reads_others=True)
def assess(ctx: StageContext, session: Session, report_id: int) -> None:
    """Quality score with missing items, referral/informational disposition, priority 1-3 with
    reasons and escalation, by the rules in data/triage.toml (docs/triage.md)."""
    assess_group(ctx, session, [report_id])


def rules_markdown(rules: Rules | None = None) -> str:
    """The rules as Markdown tables (the generated part of docs/triage.md)."""
    rules = rules or load_rules()
    out = [f"Rules version `{rules.version}`.", "", "### Quality items", "",
           "| id | fact | weight | applies if | named as missing |", "|---|---|---|---|---|"]
    for q in rules.quality:
        out.append(f"| `{q.id}` | `{q.fact}` | {q.weight:g} | {f'`{q.applies_if}`' if q.applies_if else 'always'} "
                   f"| {q.missing} |")

    def cond(c: Condition) -> str:
        parts = []
        if c.all:
            parts.append("all of " + ", ".join(f"`{x}`" for x in c.all))
        if c.any:
            parts.append("any of " + ", ".join(f"`{x}`" for x in c.any))
        if c.none:
            parts.append("none of " + ", ".join(f"`{x}`" for x in c.none))
        return "; ".join(parts)

    out += ["", "### Disposition", "",
            f"Default **{rules.disposition_default}** ({rules.referral_text}), unless a rule below fires.", "",
            "| id | fires when | result | reason text |", "|---|---|---|---|"]
    for r in rules.informational:
        out.append(f"| `{r.id}` | {cond(r.when)} | informational | {r.text} |")
    out += ["", "### Priority", "",
            f"Default {rules.priority_default} (reason: \"{rules.priority_default_text}\", with the facts that were "
            f"unknown); {rules.points_for_2} or more points give priority 2; "
            f"a report at priority {rules.escalate_at} (or a smaller, more urgent number) is escalated.", "",
            "| id | fires when | effect | reason text |", "|---|---|---|---|"]
    for r in rules.priority:
        effect = f"priority {r.priority}" if r.priority is not None else f"+{r.points} points"
        out.append(f"| `{r.id}` | {cond(r.when)} | {effect} | {r.text.replace('|', '/')} |")
    out += ["", "Link reasons that mean the same reported user: "
            + ", ".join(f"`{x}`" for x in rules.repeat_link_reasons) + ".", "", "### Facts", "",
            "| fact | true when |", "|---|---|"]
    for name, doc in FACTS.items():
        out.append(f"| `{name}` | {doc} |")
    return "\n".join(out) + "\n"
