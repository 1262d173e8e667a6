"""Law-enforcement behaviour in a simulated year: what truly happens to each referral, and the
part of it the agencies report back.

Parameters come from a profile (``tipline/data/sim/outcomes.toml``, or ``tipline simulate
--outcome-profile FILE`` over it). Three steps, after the year's reports are stored:

1. **Times.** Each report gets a simulated receipt time (its incident time plus a reporting
   lag, inside the year) and, once the pipeline has routed it, each referral a simulated
   made-available (and escalation) time, so that period queries select simulated reports as
   they would real ones.
2. **Truth.** Every referred report gets a true outcome path drawn from its ground truth:
   its priority (a child in imminent danger; contact offences and sextortion; the rest), its
   content (viral, generated), whether a location and an account are known. An arrest (with
   persons, perhaps a child identified, a charge, a disposition) happens on the report's lead
   referral (ICAC or local before federal before international); its other referrals are
   linked as duplicates. Reports without an arrest are investigated and closed, or closed as
   not actionable. The truth of every referral is written to ``outcomes.csv`` beside the
   year's other ground truth.
3. **Feedback.** Each agency has a propensity to report and a reporting delay, drawn from
   the profile by its kind. Only what it reports, and only once its simulated report date
   has passed, enters the store, through :func:`tipline.outcomes.record_outcome` (``via``
   ``sim``, ``now`` the simulated reporting time), so simulated feedback passes the same
   validation as real feedback.

Every draw comes from a generator seeded by (seed, report or agency), so the same seed gives
the same year whatever order the reports are processed in.
"""

from __future__ import annotations

import csv
import math
import random
import tomllib
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from tipline.runtime import Runtime
from tipline.sim.calibration import ENTICEMENT
from tipline.store.db import transaction
from tipline.store.tables import Agency, Referral, Report

#: Incident types (NCMEC's wording) whose reports are priority 2 when no child is in imminent danger.
CONTACT_TYPES = frozenset({ENTICEMENT, "Child Sex Trafficking", "Child Sexual Molestation", "Child Sex Tourism"})
#: The order in which a report's referrals lead: the agency closest to the person acts.
LEAD_ORDER = {"icac": 0, "local": 1, "federal": 2, "international": 3}
OUTCOME_TRUTH = ["sim_seq", "report_id", "referral_id", "agency", "agency_kind", "lead", "made_available_at",
                 "priority", "location_visible", "account_known", "viral", "arrested", "persons", "children",
                 "path", "agency_propensity", "agency_reports", "reported", "reported_events"]


# --- the profile ------------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if k not in base:
            raise ValueError(f"outcome profile: unknown key {where}{k} (see tipline/data/sim/outcomes.toml)")
        if isinstance(base[k], dict) and isinstance(v, Mapping):
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


@dataclass(frozen=True)
class OutcomeProfile:
    """The parameters of ``outcomes.toml`` (a custom file overrides the keys it names)."""

    raw: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def range(self, section: str, key: str) -> tuple[float, float]:
        low, high = self.raw[section][key]
        return float(low), float(high)


def default_profile_text() -> str:
    return resources.files("tipline.data").joinpath("sim/outcomes.toml").read_text("utf-8")


def load_profile(path: str | Path | None = None) -> OutcomeProfile:
    """The default profile, with the keys of ``path`` (a TOML file) laid over it."""
    raw = tomllib.loads(default_profile_text())
    if path is not None:
        try:
            over = tomllib.loads(Path(path).read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"outcome profile {path}: not TOML ({exc})") from None
        raw = _merge(raw, over)
    for kind, (low, high) in raw["feedback"]["propensity"].items():
        if not 0 <= low <= high <= 1:
            raise ValueError(f"outcome profile: feedback.propensity.{kind} must be 0 <= low <= high <= 1")
    return OutcomeProfile(raw)


# --- ground truth -----------------------------------------------------------------------------


def _flag(value: Any) -> bool:
    # Truth rows hold booleans in memory and "True"/"False" once read back from CSV.
    return value is True or str(value).lower() == "true"


def priority_of(truth: Mapping[str, Any]) -> int:
    if _flag(truth.get("child_in_imminent_danger")):
        return 1
    if truth.get("incident_type") in CONTACT_TYPES or _flag(truth.get("sextortion")):
        return 2
    return 3


def account_known(truth: Mapping[str, Any]) -> bool:
    # Simulated public reports name no account (the form's user-name field stays empty).
    return not _flag(truth.get("public"))


def is_viral(truth: Mapping[str, Any]) -> bool:
    return str(truth.get("viral_item", "")) != ""


def arrest_probability(truth: Mapping[str, Any], profile: OutcomeProfile) -> float:
    a = profile["truth"]["arrest"]
    p = float(a["base"][str(priority_of(truth))])
    if is_viral(truth):
        p *= float(a["viral"])
    if _flag(truth.get("generative_ai")):
        p *= float(a["generative_ai"])
    p *= float(a["location"].get(str(truth.get("location_visible", "none")), a["location"]["none"]))
    if not account_known(truth):
        p *= float(a["no_account"])
    return min(p, float(a["max"]))


@dataclass(frozen=True, slots=True)
class Event:
    code: str
    #: Days after the referral was made available.
    day: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TruePath:
    arrested: bool
    persons: int
    children: int
    events: tuple[Event, ...]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: the means here are small.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _days(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def report_rng(seed: int, sim_seq: int) -> random.Random:
    return random.Random(f"outcomes:{seed}:report:{sim_seq}")


def draw_arrest(truth: Mapping[str, Any], profile: OutcomeProfile, rng: random.Random) -> tuple[bool, int, int]:
    """Whether the report truly led to an arrest, how many persons, how many children identified."""
    p = profile["truth"]["path"]
    if rng.random() >= arrest_probability(truth, profile):
        return False, 0, 0
    persons = 1 + _poisson(rng, float(p["extra_persons_mean"]))
    children = 1 + _poisson(rng, float(p["extra_children_mean"])) if rng.random() < float(p["child_identified"]) else 0
    return True, persons, children


def true_path(truth: Mapping[str, Any], profile: OutcomeProfile, rng: random.Random, *, lead: bool,
              arrested: bool, persons: int, children: int) -> TruePath:
    """The events that truly happen on one referral (days after it was made available)."""
    p = profile["truth"]["path"]
    sigma = float(p["days_sigma"])
    median = p["days"]
    day = 0

    def at(stage: str) -> int:
        nonlocal day
        day = max(day + (1 if day else 0), round(_days(rng, float(median[stage]), sigma)))
        return day

    events = [Event("ACKNOWLEDGED", at("acknowledged"))]
    if not lead:
        # Another agency has the report too: deconfliction links it to the lead's case.
        events.append(Event("LINKED_DUPLICATE", at("investigation")))
        return TruePath(False, 0, 0, tuple(events))
    if arrested:
        events.append(Event("INVESTIGATION_OPENED", at("investigation")))
        events.append(Event("LEGAL_PROCESS", at("legal_process")))
        events.append(Event("SUSPECT_IDENTIFIED", at("suspect"), {"persons": persons}))
        arrest_type = rng.choices(["T", "S", "O"], weights=[0.8, 0.15, 0.05])[0]
        events.append(Event("ARREST", at("arrest"), {"persons": persons, "arrestType": arrest_type}))
        if children:
            events.append(Event("CHILD_IDENTIFIED", day, {"children": children}))
        if rng.random() < float(p["charged"]):
            events.append(Event("CHARGED", at("charged"), {"persons": persons,
                                                            "result": rng.choice(["state", "federal"])}))
            if rng.random() < float(p["disposition"]):
                result = "convicted" if rng.random() < float(p["convicted"]) else rng.choice(["acquitted", "dismissed"])
                events.append(Event("DISPOSITION", at("disposition"), {"persons": persons, "result": result}))
        return TruePath(True, persons, children, tuple(events))
    investigated = min(1.0, float(p["investigated_per_arrest"]) * arrest_probability(truth, profile)
                       + float(p["investigated_floor"]))
    if rng.random() < investigated:
        events.append(Event("INVESTIGATION_OPENED", at("investigation")))
        if rng.random() < 0.5:
            events.append(Event("LEGAL_PROCESS", at("legal_process")))
        if rng.random() < float(p["cleared_exceptionally"]):
            events.append(Event("CLEARED_EXCEPTIONALLY", at("closed"), {"nibrsCode": rng.choice("BCDE")}))
        else:
            events.append(Event("CLOSED_NOT_PURSUED", at("closed"),
                                {"reason": rng.choice(["evidential", "public_interest"])}))
    else:
        reason = ("cannot_locate" if truth.get("location_visible") == "none"
                  else rng.choice(["insufficient_information", "no_offence", "insufficient_information"]))
        events.append(Event("CLOSED_NOT_ACTIONABLE", at("closed"), {"reason": reason}))
    return TruePath(False, 0, 0, tuple(events))


# --- agencies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Behaviour:
    propensity: float
    delay_median_days: float


def agency_behaviour(code: str, kind: str, profile: OutcomeProfile, seed: int) -> Behaviour:
    f = profile["feedback"]
    rng = random.Random(f"outcomes:{seed}:agency:{zlib.crc32(code.encode())}:{code}")
    low, high = f["propensity"].get(kind, f["propensity"]["international"])
    d_low, d_high = f["delay_days"]
    return Behaviour(rng.uniform(float(low), float(high)), rng.uniform(float(d_low), float(d_high)))


def reported_events(path: TruePath, behaviour: Behaviour, profile: OutcomeProfile, rng: random.Random,
                    made_available: datetime, now: datetime) -> tuple[bool, list[tuple[Event, datetime]]]:
    """Whether the agency reports on this referral at all, and the events (with the simulated time
    of each report) that have been reported by ``now``."""
    f = profile["feedback"]
    p = behaviour.propensity * (float(f["arrest_report_boost"]) if path.arrested else 1.0)
    if rng.random() >= min(1.0, p):
        return False, []
    out: list[tuple[Event, datetime]] = []
    for e in path.events:
        always = e.code == "ARREST" or e is path.events[-1]
        if not always and rng.random() >= float(f["events_reported"]):
            continue
        delay = _days(rng, behaviour.delay_median_days, float(f["delay_sigma"]))
        occurred = made_available + timedelta(days=e.day)
        when = occurred + timedelta(days=delay)
        if when <= now:
            out.append((e, when))
    return True, out


# --- times ------------------------------------------------------------------------------------


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def received_at(incident_at: datetime, sim_seq: int, profile: OutcomeProfile, seed: int,
                year_end: datetime) -> datetime:
    t = profile["timing"]
    rng = random.Random(f"outcomes:{seed}:received:{sim_seq}")
    lag = timedelta(hours=_days(rng, float(t["received_hours"]), float(t["received_sigma"])))
    # Inside the simulated year, so that "2023" selects the 2023 year's reports.
    return max(_aware(incident_at), min(_aware(incident_at) + lag, year_end - timedelta(seconds=1)))


def available_at(received: datetime, escalated: bool, sim_seq: int, agency_code: str, profile: OutcomeProfile,
                 seed: int) -> datetime:
    t = profile["timing"]
    rng = random.Random(f"outcomes:{seed}:available:{sim_seq}:{agency_code}")
    minutes = float(t["escalated_minutes"] if escalated else t["available_minutes"])
    return _aware(received) + timedelta(minutes=_days(rng, minutes, float(t["available_sigma"])))


def receipt_times(profile: OutcomeProfile, seed: int, year: int) -> Callable[[int, datetime], datetime]:
    """The simulated receipt time of report ``sim_seq`` whose incident was at ``incident_at``.

    What ``stamp_report_times`` stamps, as a function a loader can apply to a row before it
    is written (``PreparedReport.backdate``): the same time either way.
    """
    year_end = datetime(year + 1, 1, 1, tzinfo=UTC)

    def at(sim_seq: int, incident_at: datetime) -> datetime:
        return received_at(incident_at, sim_seq, profile, seed, year_end)

    return at


def stamp_report_times(rt: Runtime, truths: Mapping[int, Mapping[str, Any]], profile: OutcomeProfile, seed: int,
                       year: int) -> None:
    """Give each simulated report its simulated receipt time (opened, last change, finished).

    The stored reports' rows are updated after the load; ``DirectWriter(received=...)`` gives
    the same times in the rows as they are written, and then this pass is not needed.
    """
    when_of = receipt_times(profile, seed, year)
    ids = sorted(truths)
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        with transaction(rt.sessions) as s:
            rows = []
            for rid, incident in s.execute(select(Report.id, Report.incident_at).where(Report.id.in_(chunk))):
                if incident is None:
                    continue
                when = when_of(int(truths[rid]["sim_seq"]), incident)
                rows.append({"id": rid, "opened_at": when, "last_change_at": when, "finished_at": when,
                             "expires_at": None})
            if rows:
                # One UPDATE by primary key run over the chunk (executemany), not a statement
                # built per report: a year's 362,104 of those took longer than its load.
                s.execute(update(Report), rows)


def stamp_referral_times(rt: Runtime, truths: Mapping[int, Mapping[str, Any]], profile: OutcomeProfile,
                         seed: int) -> None:
    """Give each referral of a simulated report its simulated made-available (and escalation) time."""
    ids = sorted(truths)
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        with transaction(rt.sessions) as s:
            rows = s.execute(
                select(Referral.id, Referral.report_id, Referral.escalated, Report.finished_at, Agency.code)
                .join(Report, Report.id == Referral.report_id).join(Agency, Agency.id == Referral.agency_id)
                .where(Referral.report_id.in_(chunk))).all()
            stamps = []
            for ref_id, rid, escalated, finished, code in rows:
                if finished is None:
                    continue
                when = available_at(finished, bool(escalated), int(truths[rid]["sim_seq"]), code, profile, seed)
                stamps.append({"id": ref_id, "made_available_at": when, "escalated_at": when if escalated else None})
            if stamps:
                s.execute(update(Referral), stamps)  # by primary key, over the chunk (see above)


# --- the year's outcomes ------------------------------------------------------------------------


@dataclass
class OutcomeTally:
    referrals: int = 0
    reports: int = 0
    arrested_reports: int = 0
    persons_arrested: int = 0
    referrals_with_feedback: int = 0
    agencies_reporting_on: int = 0
    events_reported: int = 0
    arrests_reported: int = 0

    def summary(self, profile: OutcomeProfile) -> dict[str, Any]:
        return {
            "profile": profile.version, "referrals": self.referrals, "reports_referred": self.reports,
            "true_arrest_reports": self.arrested_reports, "true_persons_arrested": self.persons_arrested,
            "true_arrest_share": round(self.arrested_reports / self.reports, 4) if self.reports else None,
            "referrals_with_feedback": self.referrals_with_feedback,
            "feedback_share": round(self.referrals_with_feedback / self.referrals, 4) if self.referrals else None,
            "events_reported": self.events_reported, "arrests_reported": self.arrests_reported,
        }


def _payload(e: Event, occurred: date) -> dict[str, Any]:
    return {"code": e.code, "occurredOn": occurred.isoformat(), **e.details}


def simulate_outcomes(rt: Runtime, truths: Mapping[int, Mapping[str, Any]], profile: OutcomeProfile, seed: int,
                      out: Path, *, now: datetime | None = None, batch: int = 200) -> OutcomeTally:
    """Draw every referral's true path, record what agencies report, write ``out/outcomes.csv``."""
    from tipline.outcomes import OutcomeError, record_outcome

    now = _aware(now or datetime.now(UTC))
    refs: dict[int, list[tuple[int, str, str, datetime]]] = defaultdict(list)
    ids = sorted(truths)
    with rt.sessions() as s:
        for i in range(0, len(ids), 1000):
            for ref_id, rid, code, kind, made in s.execute(
                    select(Referral.id, Referral.report_id, Agency.code, Agency.kind, Referral.made_available_at)
                    .join(Agency, Agency.id == Referral.agency_id).where(Referral.report_id.in_(ids[i:i + 1000]))):
                refs[rid].append((ref_id, code, kind, _aware(made)))
    behaviours: dict[str, Behaviour] = {}
    tally = OutcomeTally()
    jobs: list[tuple[int, list[tuple[dict[str, Any], datetime]]]] = []
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "outcomes.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, OUTCOME_TRUTH)
        w.writeheader()
        for rid in ids:
            report_refs = sorted(refs.get(rid, []), key=lambda r: (LEAD_ORDER.get(r[2], 9), r[0]))
            if not report_refs:
                continue
            truth = truths[rid]
            rng = report_rng(seed, int(truth["sim_seq"]))
            arrested, persons, children = draw_arrest(truth, profile, rng)
            tally.reports += 1
            tally.arrested_reports += arrested
            tally.persons_arrested += persons
            for n, (ref_id, code, kind, made) in enumerate(report_refs):
                lead = n == 0
                path = true_path(truth, profile, rng, lead=lead, arrested=arrested and lead, persons=persons,
                                 children=children)
                b = behaviours.get(code) or behaviours.setdefault(code, agency_behaviour(code, kind, profile, seed))
                reports, reported = reported_events(path, b, profile, rng, made, now)
                tally.referrals += 1
                tally.agencies_reporting_on += reports
                tally.referrals_with_feedback += bool(reported)
                tally.events_reported += len(reported)
                tally.arrests_reported += sum(e.code == "ARREST" for e, _ in reported)
                jobs.append((ref_id, [(_payload(e, (made + timedelta(days=e.day)).date()), when)
                                      for e, when in reported]))
                w.writerow({
                    "sim_seq": truth["sim_seq"], "report_id": rid, "referral_id": ref_id, "agency": code,
                    "agency_kind": kind, "lead": lead, "made_available_at": made.isoformat(),
                    "priority": priority_of(truth), "location_visible": truth.get("location_visible", ""),
                    "account_known": account_known(truth), "viral": is_viral(truth),
                    "arrested": arrested, "persons": persons, "children": children,
                    "path": " ".join(f"{e.code}@{e.day}" for e in path.events),
                    "agency_propensity": round(b.propensity, 4), "agency_reports": reports,
                    "reported": bool(reported), "reported_events": " ".join(e.code for e, _ in reported),
                })
    for i in range(0, len(jobs), batch):
        with transaction(rt.sessions) as s:
            for ref_id, events in jobs[i:i + batch]:
                for payload, when in events:
                    try:
                        record_outcome(s, None, ref_id, payload, via="sim", now=when, actor_name="sim")
                    except OutcomeError as exc:
                        # The simulator only draws valid paths: a refusal is a bug to see, not to skip.
                        raise RuntimeError(f"simulated outcome refused on referral {ref_id}: {payload}: "
                                           f"{exc.field}: {exc.message}") from exc
    return tally

