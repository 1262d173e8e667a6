"""Answers from tipline's own records: the same engine and shape as the published source
(:mod:`tipline.stats.answer`), with figures from the outcome statistics
(:mod:`tipline.stats.outcomes`).

Every figure is cited with a link to ``/api/v1/stats/outcomes?…&snapshot=…#/json/pointer``:
the query returns the document the figure was read from (or 409 once the records change),
and the fragment names where in it the figure is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tipline.stats.answer import Answer, Citations, assemble, fmt, read_as
from tipline.stats.outcomes import Scope, outcome_stats
from tipline.stats.question import MEASURE_WORDS, POPULATION_WORDS, Measure, Population, Question, SliceKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

STATS_API = "/api/v1/stats/outcomes"

_MEASURE = {Measure.ARRESTS: "arrests", Measure.PERSONS_ARRESTED: "arrests", Measure.CHARGES: "charges",
            Measure.CONVICTIONS: "convictions", Measure.CHILDREN_IDENTIFIED: "children_identified",
            Measure.COUNT: "arrests", Measure.ANY_FEEDBACK: "arrests"}
_SLICE_FIELD = {SliceKind.AGENCY_KIND: "agency_kind", SliceKind.AGENCY: "agency", SliceKind.PLATFORM: "platform",
                SliceKind.STATE: "state", SliceKind.COUNTRY: "country", SliceKind.INCIDENT_TYPE: "incident_type",
                SliceKind.PRIORITY: "priority"}


def scope_for(q: Question) -> Scope:
    """The outcome statistics' scope that a question asks about."""
    filters: dict[str, Any] = {}
    if q.slice is not None:
        name = _SLICE_FIELD[q.slice.kind]
        filters[name] = int(q.slice.value) if q.slice.kind is SliceKind.PRIORITY else q.slice.value
    return Scope(q.period.start, q.period.end, escalated_only=q.population is Population.ESCALATIONS,
                 by=q.by, unit="referral" if q.population is Population.REFERRALS else "report",
                 measure=_MEASURE[q.measure], **filters)


def has_records(sessions: sessionmaker[Session]) -> int:
    """How many referrals the store holds (the records source needs some)."""
    from sqlalchemy import func, select

    from tipline.store.tables import Referral

    with sessions() as s:
        return int(s.execute(select(func.count()).select_from(Referral)).scalar_one())


def _pct(x: float | None) -> str:
    return "unknown" if x is None else f"{100 * x:.1f} %"


def from_records(q: Question, sessions: sessionmaker[Session], *, coverage_threshold: float | None = None,
                 base_url: str = "") -> Answer:
    scope = scope_for(q)
    data = outcome_stats(sessions, scope, coverage_threshold=coverage_threshold)
    cites = Citations(base_url)
    query = {**scope.params(), "snapshot": data["snapshot"]}
    pop = POPULATION_WORDS[q.population]
    where = f" ({q.slice.label})" if q.slice else ""
    t = data["total"]
    warnings = list(t["warnings"])

    def cite(name: str, value: int | float | None, pointer: str) -> str:
        return cites.add(name, value, STATS_API, query, None, pointer)

    e_ref = cite(f"{pop}{where}, {q.period.label}", t["referrals"], "/total/referrals")
    method = [
        f"Source: tipline's records, snapshot {data['snapshot']} (a content hash of the {data['unit']}s and outcome "
        f"events read), outcome codes version {data['codeListVersion']}, tipline {data['softwareVersion']}.",
        read_as(q),
        f"Each numbered figure links to {STATS_API} with the same query and snapshot; the link's fragment names "
        "the figure in the document it returns. Formulas and assumptions: docs/statistics.md."]
    rows = data["rows"] or []

    if q.measure is Measure.COUNT:
        lines = [f"{fmt(t['referrals'])} {pop}{where} in {q.period.label} {e_ref}."]
        for i, r in enumerate(rows):
            key = r["key"] or "unknown"
            ref = cite(f"{pop}, {key}", r["referrals"], f"/rows/{i}/referrals")
            lines.append(f"{key}: {fmt(r['referrals'])} {ref}.")
        return assemble(
            q, "records", cites, summary=f"tipline's records hold {fmt(t['referrals'])} {pop}{where} in "
                                         f"{q.period.label} {e_ref}.",
            shows=lines, coverage=["Not applicable: the question counts referrals made, not what came of them."],
            can_say=["A count of reports is not a count of incidents or of children: one incident can be "
                     "reported many times."],
            bounds=["The count is exact; no estimate is involved."], method=method,
            bottom=f"{fmt(t['referrals'])} {pop}{where} in {q.period.label}, on record.", warnings=warnings)

    if q.measure is Measure.ANY_FEEDBACK:
        n_ref = cite(f"{pop} with any feedback", t["withAnyEvent"], "/total/withAnyEvent")
        share = t["withAnyEvent"] / t["referrals"] if t["referrals"] else None
        lines = [f"{fmt(t['referrals'])} {pop}{where} in {q.period.label} {e_ref}; "
                 f"{fmt(t['withAnyEvent'])} of them received feedback of any kind {n_ref}."]
        return assemble(
            q, "records", cites,
            summary=f"{fmt(t['withAnyEvent'])} of the {fmt(t['referrals'])} {pop}{where} in {q.period.label} "
                    f"received any feedback {n_ref} {e_ref} ({_pct(share)}).",
            shows=lines,
            coverage=["Any event counts here, an acknowledgement included: whether feedback arrived is on record "
                      "for every referral, so this count has no unknown part."],
            can_say=["Feedback of any kind is not an outcome: an acknowledgement or an open investigation "
                     "leaves open whether an arrest followed."],
            bounds=["The count is exact; no estimate is involved."], method=method,
            bottom=f"{fmt(t['withAnyEvent'])} {pop}{where} received feedback in {q.period.label}.",
            warnings=warnings)

    what = _phrase(q)
    persons = q.measure is Measure.PERSONS_ARRESTED
    a_name, a_val, a_ptr = (("persons arrested", t["personsArrested"], "/total/personsArrested") if persons
                            else (f"{pop} that {what}, confirmed", t["withOutcome"], "/total/withOutcome"))
    a_ref = cite(a_name, a_val, a_ptr)
    f_ref = cite(f"{pop} with feedback that settles the question", t["withFeedback"], "/total/withFeedback")
    cov = t["coverage"]
    c_ref = cite("feedback coverage", cov["value"], "/total/coverage/value")
    rate = t["rateAmongFeedback"]
    r_ref = cite("rate among those with feedback", rate["value"], "/total/rateAmongFeedback/value")
    lo_ref = cite("lower bound", t["bounds"]["low"], "/total/bounds/low")
    hi_ref = cite("upper bound", t["bounds"]["high"], "/total/bounds/high")
    est = t["estimate"]

    lines = [f"{fmt(t['referrals'])} {pop}{where} in {q.period.label} {e_ref}.",
             (f"{fmt(a_val)} persons were arrested after them, on record {a_ref}." if persons
              else f"{fmt(a_val)} of them {what}, on record {a_ref}.")]
    for i, r in enumerate(rows):
        key = r["key"] or "unknown"
        field, value = ("personsArrested", r["personsArrested"]) if persons else ("withOutcome", r["withOutcome"])
        v_ref = cite(f"{a_name}, {key}", value, f"/rows/{i}/{field}")
        h_ref = cite(f"upper bound, {key}", r["bounds"]["high"], f"/rows/{i}/bounds/high")
        lines.append(f"{key}: {fmt(value)} of {fmt(r['referrals'])} {v_ref} — between {fmt(r['bounds']['low'])} "
                     f"and {fmt(r['bounds']['high'])} {h_ref}.")
    coverage = [
        f"Feedback that settles the question (the outcome, or a closing without it) came back for "
        f"{fmt(t['withFeedback'])} of the {fmt(t['referrals'])} {f_ref}: coverage {_pct(cov['value'])} {c_ref}"
        + (f" (95 % Wilson interval {_pct(cov['low'])}–{_pct(cov['high'])})." if cov["value"] is not None else "."),
        f"The other {fmt(t['referrals'] - t['withFeedback'])} are unknown — not \"no\". Feedback of any kind "
        f"(acknowledgements and open investigations included) reached {fmt(t['withAnyEvent'])}."]
    can_say = [
        f"The confirmed count is a floor: every one of the {pop} without feedback may or may not have "
        f"{_past(q)}.",
        (f"Among those with feedback the rate is {_pct(rate['value'])} {r_ref} (95 % Wilson interval "
         f"{_pct(rate['low'])}–{_pct(rate['high'])}); it describes the rest only if they resemble those that "
         "reported back." if rate["value"] is not None else f"No rate can be stated: nobody reported back {r_ref}.")]
    if persons:
        can_say.append("Persons are counted per arrest recorded; one person arrested twice counts twice, and "
                       "persons can outnumber reports, so they have no upper bound.")
    bounds = [f"Without any assumption, the number of {pop} that {what} lies between "
              f"{fmt(t['bounds']['low'])} {lo_ref} and {fmt(t['bounds']['high'])} {hi_ref}."]
    summary = (f"{fmt(t['referrals'])} {pop}{where} in {q.period.label} {e_ref}; {fmt(t['withOutcome'])} of them "
               f"{what} on record {a_ref if not persons else ''}".rstrip() + ". "
               f"Feedback covers {_pct(cov['value'])} {c_ref}, so the number lies between "
               f"{fmt(t['bounds']['low'])} {lo_ref} and {fmt(t['bounds']['high'])} {hi_ref}.")
    if est["value"] is not None:
        e_ref2 = cite("estimate (missing at random within strata)", est["value"], "/total/estimate/value")
        bounds.append(f"If, within each agency × priority × incident type, those without feedback resemble those "
                      f"with it, about {fmt(round(est['value'], 1))} {e_ref2} (95 % interval "
                      f"{fmt(round(est['low']))}–{fmt(round(est['high']))}).")
        summary += f" Under the assumption stated in section 4, about {fmt(round(est['value']))} {e_ref2}."
        if t["tipping"]["conclusion"]:
            bounds.append(f"The conclusion \"{t['tipping']['conclusion']}\" holds as long as those without feedback "
                          f"{_past(q)} at no less than {t['tipping']['delta']:.2f} times the rate of those with it.")
    elif est["withheld"]:
        bounds.append(f"No estimate is given: {est['withheld']}. The bounds are the answer.")
    bottom = (f"The records support this: at least {fmt(t['bounds']['low'])} and at most "
              f"{fmt(t['bounds']['high'])} {pop}{where} {what} in {q.period.label}, with feedback on "
              f"{_pct(cov['value'])} of them.")
    if persons:
        bottom = (f"The records support this: at least {fmt(t['personsArrested'])} persons were arrested after "
                  f"{pop}{where} in {q.period.label}; how many more is not known.")
        bounds = [f"At least {fmt(t['personsArrested'])} {a_ref}; no upper bound can be stated (persons can "
                  "outnumber reports)."]
    return assemble(q, "records", cites, summary=summary, shows=lines, coverage=coverage, can_say=can_say,
                    bounds=bounds, method=method, bottom=bottom, warnings=warnings)


def _phrase(q: Question) -> str:
    return "led to the arrest of a person" if q.measure is Measure.PERSONS_ARRESTED else MEASURE_WORDS[q.measure]


def _past(q: Question) -> str:
    return {Measure.ARRESTS: "led to an arrest", Measure.PERSONS_ARRESTED: "led to an arrest",
            Measure.CHARGES: "led to a charge", Measure.CONVICTIONS: "led to a conviction",
            Measure.CHILDREN_IDENTIFIED: "led to a child being identified"}.get(q.measure, "had the outcome")
