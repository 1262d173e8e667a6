"""Answers to outcome questions: the public page ``/answer?q=…``, ``GET /api/v1/answer`` and
``GET /api/v1/stats/published`` (NCMEC's published figures, the citation target of answers
from the published record).

All three are public: they show aggregate figures and the published record, never report
content. A question outside the grammar is a clear "cannot answer that" with the closest
questions that can be answered (a problem document on the API, a page otherwise).
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tipline.runtime import Runtime
from tipline.web.api_v1 import PREFIX, PROBLEM_BASE, PROBLEM_MEDIA_TYPE, ProblemRoute, _problems
from tipline.web.render import render

Source = Literal["records", "published"]
#: The longest question accepted; the grammar's questions are one sentence.
MAX_QUESTION = 500


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerFigure(_Out):
    n: int = Field(description="The citation number used in the prose, [n].")
    name: str
    value: int | float | None = Field(description="null when unknown (never 0 for unknown).")
    citation: str = Field(description="A link that returns this same figure.")
    source: str | None = Field(description="Where a published figure comes from (title and address).")


class AnswerSection(_Out):
    number: int
    title: str
    paragraphs: list[str]


class AnswerOut(_Out):
    """An outcome question answered in the shape of a fact-check (docs/answers.md)."""

    question: str
    canonical: str = Field(description="The question as the grammar read it.")
    source: str = Field(description="`published` (NCMEC's published record) or `records`.")
    parse: dict[str, str | None] = Field(description="measure, population, from, to, period, slice, by.")
    summary: str
    sections: list[AnswerSection]
    bottomLine: str
    figures: list[AnswerFigure]
    warnings: list[str]


_CANNOT_ANSWER = {
    "description": "Outside the grammar: the reason, and the closest questions that can be answered",
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {
        "type": "object", "required": ["type", "title", "status", "closest"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"},
            "closest": {"type": "array", "items": {"type": "string"}},
        }}}},
}


def _answer(rt: Runtime, text: str, source: str | None, base: str) -> Any:
    """The Answer, or the Unanswerable result. Without a source: tipline's records when the
    store holds referrals, else NCMEC's published record — and the answer says which."""
    from tipline.stats.answer import from_published
    from tipline.stats.answer_records import from_records, has_records
    from tipline.stats.question import QuestionError, parse

    try:
        question = parse(text, platforms=_platforms(rt), agencies=_agencies(rt))
    except QuestionError as err:
        return err.result
    n = has_records(rt.sessions) if source is None else 0
    chosen = source or ("records" if n else "published")
    if chosen == "published":
        answer = from_published(question, base_url=base)
        if source is None:
            answer.warnings.insert(0, "Answered from NCMEC's published record: this instance holds no referrals.")
        return answer
    answer = from_records(question, rt.sessions, coverage_threshold=rt.settings.outcome_coverage_threshold,
                          base_url=base)
    if source is None:
        answer.warnings.insert(0, f"Answered from tipline's records ({n:,} referrals on record); "
                                  "source=published answers from NCMEC's published figures.")
    return answer


def _platforms(rt: Runtime) -> list[str]:
    from sqlalchemy import select

    from tipline.store.tables import Reporter

    with rt.sessions() as s:
        return [n for n in s.scalars(select(Reporter.name)) if n]


def _agencies(rt: Runtime) -> list[str]:
    from sqlalchemy import select

    from tipline.store.tables import Agency

    with rt.sessions() as s:
        return list(s.scalars(select(Agency.code)))


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(prefix=PREFIX, route_class=ProblemRoute, tags=["statistics"])

    @api.get("/answer", summary="Answer an outcome question",
             description="Parses a question such as \"How many CyberTipline escalations to law "
                         "enforcement resulted in arrests in 2023–2024?\" by a small grammar "
                         "(docs/answers.md) and answers it in the shape of a fact-check. Every "
                         "figure in `figures` has a `citation` link that returns that figure.",
             response_model=AnswerOut, responses={**_problems(400), 422: _CANNOT_ANSWER})
    async def answer_api(request: Request,
                         q: Annotated[str, Query(min_length=1, max_length=MAX_QUESTION)],
                         source: Annotated[Source | None, Query(
                             description="records (tipline's own) or published (NCMEC's); default: records "
                                         "when the store holds referrals")] = None) -> JSONResponse:
        from tipline.stats.question import Unanswerable

        result = await run_in_threadpool(_answer, rt, q, source, "")
        if isinstance(result, Unanswerable):
            return JSONResponse({
                "type": PROBLEM_BASE + "cannot-answer", "title": "Cannot answer that",
                "status": 422, "detail": result.reason, "instance": request.url.path,
                "closest": result.closest,
            }, status_code=422, media_type=PROBLEM_MEDIA_TYPE)
        return JSONResponse(result.as_json())

    @api.get("/stats/published", summary="NCMEC's published figures",
             description="Each published figure with its source; a figure that no source "
                         "publishes is returned with `value: null` and `published: false`, never 0. "
                         "Without parameters: every figure that is not a table row.",
             responses={**_problems(404)})
    async def published(measure: str | None = None, population: str | None = None,
                        year: int | None = None, state: str | None = None,
                        country: str | None = None, context: str | None = None) -> JSONResponse:
        from tipline.stats.published import load

        rec = load()
        body: dict[str, Any] = {"version": rec.version}
        if context is not None:
            found = [c for c in rec.context if c.name == context]
            body["context"] = [{"name": c.name, "value": c.value, "lowerBound": c.lower_bound,
                                "note": c.note, "source": {"title": c.source.title, "url": c.source.url,
                                                           "status": c.source.status}} for c in found]
            if not found:
                return JSONResponse({"type": PROBLEM_BASE + "not-found", "title": "Not found",
                                     "status": 404, "detail": f"no context figure named {context!r} "
                                     "(GET without parameters lists them)"}, status_code=404,
                                    media_type=PROBLEM_MEDIA_TYPE)
            return JSONResponse(body)
        if measure and population:
            kind, value = ("state", state) if state else ("country", country) if country else (None, None)
            fig = rec.find(measure, population, year, kind, value)
            if fig is None:
                return JSONResponse({"type": PROBLEM_BASE + "not-found", "title": "Not found",
                                     "status": 404, "detail": "no such figure: give measure, population "
                                     "and year (see docs/answers.md)"}, status_code=404,
                                    media_type=PROBLEM_MEDIA_TYPE)
            body["figure"] = fig.as_json()
            return JSONResponse(body)
        body["figures"] = [f.as_json() for f in rec.figures if f.slice_kind is None]
        body["outsideEstimates"] = [{"name": o.name, "attributedTo": o.attributed_to, "note": o.note,
                                     "source": {"title": o.source.title, "url": o.source.url}}
                                    for o in rec.outside_estimates]
        return JSONResponse(body)

    return api


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))

    @app.get("/answer", include_in_schema=False)
    async def answer_page(request: Request, q: str = "", source: str = "") -> HTMLResponse:
        from tipline.stats.answer import EXAMPLES_FOR_PAGE, to_html_fragment
        from tipline.stats.question import Unanswerable

        q = q.strip()[:MAX_QUESTION]
        if not q:
            return render(request, "answer.html", q="", answer=None, unanswerable=None,
                          examples=EXAMPLES_FOR_PAGE, source=source)
        root = str(request.scope.get("root_path", "")).rstrip("/")
        chosen = source if source in ("records", "published") else None
        result = await run_in_threadpool(_answer, rt, q, chosen, root)
        if isinstance(result, Unanswerable):
            return render(request, "answer.html", status=422, q=q, answer=None, unanswerable=result,
                          examples=EXAMPLES_FOR_PAGE, source=chosen)
        return render(request, "answer.html", q=q, answer=Markup(to_html_fragment(result)),  # noqa: S704
                      unanswerable=None, examples=EXAMPLES_FOR_PAGE, source=chosen)
