"""``GET /api/v1/stats/outcomes``: outcome statistics from the records, as public aggregates.

Read-only and public: counts, shares, intervals and bounds — never report content. Every
answer names the snapshot (a content hash of the records it read); a request that names a
snapshot the records no longer match answers 409, so that a cited link never silently shows
another figure than the one cited.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tipline.runtime import Runtime
from tipline.web.api_v1 import PREFIX, PROBLEM_MEDIA_TYPE, ApiProblem, ProblemRoute, _problems

By = Literal["agency", "platform", "incident-type", "priority", "state", "country", "month", "year"]
UnitName = Literal["report", "referral"]
MeasureName = Literal["arrests", "charges", "convictions", "children_identified"]
#: Free-text filters are names and codes: a bounded, printable string.
Name = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Proportion(_Out):
    value: float | None = Field(description="null when there is nothing to divide (never 0 for unknown)")
    low: float | None
    high: float | None


class Bounds(_Out):
    low: int = Field(description="A: confirmed")
    high: int = Field(description="A + (E − F): as if every one without feedback had led to the outcome")
    lowRate: float | None
    highRate: float | None


class Estimate(_Out):
    value: float | None = Field(description="The total under missing at random within strata; null when withheld")
    low: float | None
    high: float | None
    rate: float | None
    withheld: str | None = Field(description="Why the point estimate is withheld, in words; null when shown")
    assumption: str


class WeightedEstimate(_Out):
    value: float | None = Field(description="The total weighting those with feedback by their odds of not "
                                            "reporting, from a logistic model of who reports back; null when withheld")
    low: float | None
    high: float | None
    rate: float | None
    withheld: str | None = Field(description="Why it is withheld, in words; null when shown")
    assumption: str
    covariates: list[str] = Field(description="What the logistic model of feedback conditions on")
    smallestPropensity: float | None = Field(description="The smallest fitted probability of feedback")


class SensitivityPoint(_Out):
    delta: float
    total: float | None


class Tipping(_Out):
    conclusion: str | None
    delta: float | None


class CurvePoint(_Out):
    days: int
    survival: float
    atRisk: int


class Delay(_Out):
    units: int
    events: int
    censored: int
    median: float | None = Field(description="Median days; null when fewer than half had the event by the end")
    curve: list[CurvePoint]


class Delays(_Out):
    toFirstFeedback: Delay
    toArrest: Delay


class OutcomeRow(_Out):
    key: str | None = Field(description="The group (with `by`); null for the total or an unknown group")
    referrals: int = Field(description="E: reports (or referrals) in scope")
    withFeedback: int = Field(description="F: feedback settles the question (the outcome, or a closing without it)")
    withAnyEvent: int
    withOutcome: int = Field(description="A for the measure asked (equals withArrest for arrests)")
    withArrest: int
    personsArrested: int
    coverage: Proportion
    rateAmongFeedback: Proportion
    bounds: Bounds
    estimate: Estimate
    estimateWeighted: WeightedEstimate
    sensitivity: list[SensitivityPoint]
    tipping: Tipping
    delay: Delays
    warnings: list[str]


class Thresholds(_Out):
    coverage: float
    minFeedback: int
    confidence: float


class OutcomeStats(_Out):
    """Outcome statistics for a period (docs/statistics.md)."""

    query: dict[str, str]
    snapshot: str = Field(description="Content hash of the records read")
    codeListVersion: str
    softwareVersion: str
    citation: str = Field(description="A link that returns these same figures (or 409 once the records change)")
    unit: str
    measure: str
    by: str | None
    thresholds: Thresholds
    total: OutcomeRow
    rows: list[OutcomeRow] | None
    censoredAt: str


_RECORDS_CHANGED = {
    "description": "The records changed since the snapshot named: the cited figure cannot be reproduced",
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {
        "type": "object", "required": ["type", "title", "status", "currentSnapshot"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"}, "requestId": {"type": "string"},
            "currentSnapshot": {"type": "string", "description": "The snapshot of the records as they are now"},
        }}}},
}


def _stats(rt: Runtime, scope: Any, snapshot: str | None) -> dict[str, Any]:
    from tipline.stats.outcomes import SnapshotChanged, outcome_stats

    try:
        return outcome_stats(rt.sessions, scope, coverage_threshold=rt.settings.outcome_coverage_threshold,
                             expect_snapshot=snapshot)
    except SnapshotChanged as err:
        raise ApiProblem(409, "records-changed", "The records changed",
                         f"the records in scope no longer match snapshot {err.expected}; the current snapshot is "
                         f"{err.current}. A figure cited with the old snapshot cannot be reproduced from them.",
                         extra={"currentSnapshot": err.current}) from None


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(prefix=PREFIX, route_class=ProblemRoute, tags=["statistics"])

    @api.get("/stats/outcomes", summary="Outcome statistics",
             description="How many reports (or referrals) in the period led to an arrest (or a charge, a "
                         "conviction, a child identified): the confirmed count, feedback coverage with a Wilson "
                         "interval, the rate among those with feedback, an estimate under missing at random "
                         "within strata with a bootstrap interval (withheld below the coverage threshold or with "
                         "fewer than 30 with feedback), the assumption-free bounds, a sensitivity line and delays. "
                         "An unknown is null, never 0. With `snapshot`, answers 409 if the records changed.",
             response_model=OutcomeStats, responses={**_problems(400), 409: _RECORDS_CHANGED})
    async def outcomes(
        request: Request,
        from_: Annotated[date, Query(alias="from", description="First day (UTC) a referral was made available")],
        to: Annotated[date, Query(description="Last day, inclusive")],
        escalatedOnly: bool = False,  # noqa: N803 - the API's own parameter name
        by: By | None = None,
        unit: UnitName = "report",
        measure: MeasureName = "arrests",
        snapshot: Annotated[str | None, Query(max_length=100)] = None,
        agencyKind: Name = None,  # noqa: N803
        agency: Name = None,
        platform: Name = None,
        state: Name = None,
        country: Name = None,
        incidentType: Name = None,  # noqa: N803
        priority: Annotated[int | None, Query(ge=1, le=3)] = None,
    ) -> JSONResponse:
        from tipline.stats.outcomes import Scope

        scope = Scope(from_, to, escalatedOnly, by, unit, measure, agencyKind, agency, platform, state, country,
                      incidentType, priority)
        body = await run_in_threadpool(_stats, rt, scope, snapshot)
        return JSONResponse(body)

    return api


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
