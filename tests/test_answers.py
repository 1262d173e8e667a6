"""Answers to outcome questions: the grammar, the published record as a source, citations that
return the figure they cite, and "cannot answer that" for anything else."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tipline.stats.answer import from_published, to_markdown
from tipline.stats.published import load
from tipline.stats.question import EXAMPLES, Measure, Population, QuestionError, SliceKind, parse

SEED = "How many CyberTipline escalations to law enforcement resulted in arrests in 2023–2024?"

# (question, measure, population, from, to, slice, by)
PARSES = [
    (SEED, "arrests", "escalations", "2023-01-01", "2024-12-31", None, None),
    ("How many CyberTipline escalations resulted in arrests in 2023?",
     "arrests", "escalations", "2023-01-01", "2023-12-31", None, None),
    ("How many CyberTipline escalations resulted in arrests per year in 2023-2024?",
     "arrests", "escalations", "2023-01-01", "2024-12-31", None, "year"),
    ("How many CyberTipline reports resulted in arrests in Texas in 2023?",
     "arrests", "reports", "2023-01-01", "2023-12-31", "state=TX", None),
    ("How many reports in TX resulted in arrests in March 2024?",
     "arrests", "reports", "2024-03-01", "2024-03-31", "state=TX", None),
    ("How many CyberTipline reports from Instagram resulted in arrests in 2023?",
     "arrests", "reports", "2023-01-01", "2023-12-31", "platform=Instagram", None),
    ("How many CyberTipline escalations to law enforcement resulted in a child being identified in 2023–2024?",
     "children_identified", "escalations", "2023-01-01", "2024-12-31", None, None),
    ("How many persons were arrested after CyberTipline referrals in 2024?",
     "persons_arrested", "referrals", "2024-01-01", "2024-12-31", None, None),
    ("How many referrals to ICAC task forces resulted in a conviction in 2023?",
     "convictions", "referrals", "2023-01-01", "2023-12-31", "agency_kind=icac", None),
    ("How many priority 1 reports received any feedback in Q1 2024?",
     "any_feedback", "reports", "2024-01-01", "2024-03-31", "priority=1", None),
    ("How many reports about sextortion resulted in charges in the second quarter of 2024?",
     "charges", "reports", "2024-04-01", "2024-06-30",
     "incident_type=Online Enticement of Children for Sexual Acts", None),
    ("How many CyberTipline reports from Germany were there in 2023?",
     "count", "reports", "2023-01-01", "2023-12-31", "country=DE", None),
    ("How many CyberTipline reports resulted in arrests per state in 2023?",
     "arrests", "reports", "2023-01-01", "2023-12-31", None, "state"),
    ("How many escalations resulted in an arrest between 2022 and 2024?",
     "arrests", "escalations", "2022-01-01", "2024-12-31", None, None),
]


@pytest.mark.parametrize(("text", "measure", "population", "start", "end", "where", "by"), PARSES)
def test_the_grammar_reads_each_part(text: str, measure: str, population: str, start: str, end: str,
                                     where: str | None, by: str | None) -> None:
    q = parse(text, platforms=["Instagram", "Facebook"])
    assert (q.measure.value, q.population.value) == (measure, population)
    assert (q.period.start.isoformat(), q.period.end.isoformat()) == (start, end)
    assert (f"{q.slice.kind.value}={q.slice.value}" if q.slice else None) == where
    assert q.by == by


def test_every_example_offered_parses() -> None:
    for text in EXAMPLES:
        parse(text, platforms=["Instagram"])


@pytest.mark.parametrize("text", [
    "", "What is the weather in Texas?", "How many reports led to an arrest?",
    "How many arrests were there in 2023?", "Tell me about escalations in 2023",
    "How many escalations resulted in arrests between 2024 and 2023?",
])
def test_outside_the_grammar_is_refused_with_closest_questions(text: str) -> None:
    with pytest.raises(QuestionError) as err:
        parse(text)
    assert err.value.result.reason
    closest = err.value.result.closest
    assert len(closest) == 3 and all(c in EXAMPLES for c in closest)


def test_codes_that_are_words_are_not_countries() -> None:
    # "in it", "from me", "in an": two-letter words that are also ISO codes (IT, ME, AN).
    q = parse("How many reports resulted in an arrest in 2023 from me in it?")
    assert q.slice is None


# --- the published record ----------------------------------------------------------------------


def test_the_published_record_holds_what_domain_md_states() -> None:
    rec = load()
    assert rec.count(Population.REPORTS, 2023).value == 36_210_368
    assert rec.count(Population.REPORTS, 2024).value == 20_512_803
    assert rec.count(Population.ESCALATIONS, 2023).value == 63_892
    missing = rec.count(Population.ESCALATIONS, 2024)
    assert missing.value is None and not missing.published
    for m in Measure:
        if m is not Measure.COUNT:
            assert rec.outcome(m, Population.ESCALATIONS, 2023).value is None, m
    # Every figure names a source with an address.
    assert all(f.source.url.startswith("https://") for f in rec.figures)


def test_seed_question_from_the_published_record_says_only_what_it_supports() -> None:
    a = from_published(parse(SEED))
    values = {f.name: f.value for f in a.figures}
    assert values["escalations to law enforcement, 2023"] == 63_892
    assert values["escalations to law enforcement, 2024"] is None  # unknown, never 0
    assert values["resulted in an arrest (escalations to law enforcement)"] is None
    assert "between 0 and 63,892" in a.summary and "No rate can be stated" in a.summary
    assert "2024 not even an upper bound" in a.summary
    assert "between 0 and 63,892 for 2023" in a.bottom_line and "no rate can be stated" in a.bottom_line
    assert [s.title for s in a.sections] == [
        "What the records show", "How much of the picture feedback covers",
        "What the figure can and cannot say", "The bounds and the estimate", "Method"]
    text = to_markdown(a)
    # The 5-8 % in circulation is named as an outside estimate and never counted.
    assert "5–8 %" in text and "outside estimate" in text
    assert not any(isinstance(f.value, float) for f in a.figures)
    assert all(not re.fullmatch(r"[5-8]", str(f.value)) for f in a.figures)
    # Every [n] in the prose is a figure of the list, and every figure is cited.
    prose = a.summary + " ".join(p for s in a.sections for p in s.paragraphs)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", prose)}
    assert cited == {f.n for f in a.figures}


def test_persons_have_no_upper_bound_from_a_count_of_reports() -> None:
    a = from_published(parse("How many persons were arrested after CyberTipline escalations in 2023?"))
    assert "no upper bound can be stated" in " ".join(a.sections[3].paragraphs)


def test_a_quarter_has_no_published_figure() -> None:
    a = from_published(parse("How many CyberTipline escalations resulted in arrests in Q1 2023?"))
    assert any("yearly figures only" in w for w in a.warnings)
    assert all(f.value is None for f in a.figures if "escalations to law enforcement," in f.name)


def test_a_published_count_by_state() -> None:
    a = from_published(parse("How many CyberTipline reports in Texas were there in 2023?"))
    assert a.figures[0].value == 110_385
    assert "110,385" in a.bottom_line


# --- the API: every citation returns the figure it cites -----------------------------------------


def test_every_citation_returns_the_figure_it_cites(client: TestClient) -> None:
    for text in (SEED, "How many CyberTipline reports in Texas were there in 2023?",
                 "How many CyberTipline reports from Germany were there in 2022?"):
        body = client.get("/api/v1/answer", params={"q": text}).json()
        assert body["figures"], text
        for fig in body["figures"]:
            url = urlsplit(fig["citation"])
            res = client.get(url.path, params=dict(parse_qsl(url.query)))
            assert res.status_code == 200, fig
            got = res.json()
            value = got["figure"]["value"] if "figure" in got else got["context"][0]["value"]
            assert value == fig["value"], fig


def test_the_api_refuses_what_it_cannot_answer(client: TestClient) -> None:
    res = client.get("/api/v1/answer", params={"q": "What is the weather?"})
    assert res.status_code == 422
    assert res.headers["content-type"].startswith("application/problem+json")
    body = res.json()
    assert body["title"] == "Cannot answer that" and len(body["closest"]) == 3
    assert client.get("/api/v1/answer").status_code == 400  # no question at all: a bad request
    assert client.get("/api/v1/answer", params={"q": "x" * 501}).status_code == 400
    assert client.get("/api/v1/stats/published", params={"measure": "count", "population": "nope",
                                                         "year": 2023}).status_code == 404


def test_unpublished_figures_are_null_not_zero(client: TestClient) -> None:
    body = client.get("/api/v1/stats/published").json()
    for f in body["figures"]:
        assert (f["value"] is None) == (not f["published"])
        assert f["value"] != 0


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_answers_and_refuses() -> None:
    from tipline.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["answer", SEED])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"# {SEED}")
    res = runner.invoke(main, ["answer", SEED, "--source", "published", "--format", "json"])
    assert res.exit_code == 0 and '"bottomLine"' in res.output
    res = runner.invoke(main, ["answer", "How is the weather?"])
    assert res.exit_code == 2
    assert "Cannot answer that" in res.output and "closest first" in res.output


def test_slice_kinds_are_all_reachable() -> None:
    kinds = {parse(t, platforms=["Instagram"], agencies=["ICAC-TX-DAL"]).slice.kind  # type: ignore[union-attr]
             for t, *_ in PARSES if parse(t, platforms=["Instagram"]).slice}
    kinds.add(parse("How many referrals to agency ICAC-TX-DAL resulted in arrests in 2023?",
                    agencies=["ICAC-TX-DAL"]).slice.kind)  # type: ignore[union-attr]
    assert kinds == set(SliceKind)
