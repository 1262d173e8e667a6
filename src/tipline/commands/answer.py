"""``tipline answer``: an outcome question answered in the shape of a fact-check."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click

from tipline.commands.context import Ctx, pass_ctx


@click.command("answer")
@click.argument("question")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True,
              help="Markdown for reading, HTML for a page, JSON for tools.")
@click.option("--source", type=click.Choice(["records", "published"]), default=None,
              help="Where the figures come from: tipline's own records, or NCMEC's published record (shipped "
                   "with tipline). Default: records when the store holds referrals, else published; the answer "
                   "says which.")
@pass_ctx
def command(c: Ctx, question: str, fmt: str, source: str | None) -> None:
    """Answer QUESTION, e.g. "How many CyberTipline escalations resulted in arrests in 2023?".

    The question is read by a small grammar (docs/answers.md): a measure, a population, a
    period and an optional slice. A question outside it exits 2 with the closest questions
    that can be answered; nothing is guessed.
    """
    from tipline.stats.answer import from_published, to_html_fragment, to_markdown
    from tipline.stats.question import QuestionError, parse

    try:
        with c.database() as sessions:
            answer = _answer(c, sessions, question, source)
    except click.ClickException:
        if source == "records":
            raise
        # No instance here (never initialised): the published record needs none.
        answer = None
    except QuestionError as err:
        _refuse(question, fmt, err.result.reason, err.result.closest)
    if answer is None:
        try:
            answer = from_published(parse(question))
        except QuestionError as err:
            _refuse(question, fmt, err.result.reason, err.result.closest)
        if source is None:
            answer.warnings.insert(0, "Answered from NCMEC's published record: there is no tipline instance here.")
    out: Any
    if fmt == "json":
        out = json.dumps(answer.as_json(), indent=2, ensure_ascii=False)
    elif fmt == "html":
        out = to_html_fragment(answer)
    else:
        out = to_markdown(answer)
    click.echo(out)


def _answer(c: Ctx, sessions: Any, question: str, source: str | None) -> Any:
    """The answer from the source asked for, or chosen: records when the store holds referrals."""
    from sqlalchemy import select

    from tipline.stats.answer import from_published
    from tipline.stats.answer_records import from_records, has_records
    from tipline.stats.question import parse
    from tipline.store.tables import Agency, Reporter

    with sessions() as s:
        platforms = [n for n in s.scalars(select(Reporter.name)) if n]
        agencies = list(s.scalars(select(Agency.code)))
    q = parse(question, platforms=platforms, agencies=agencies)
    chosen = source
    n = has_records(sessions) if source is None else 0
    if chosen is None:
        chosen = "records" if n else "published"
    if chosen == "published":
        answer = from_published(q)
        if source is None:
            answer.warnings.insert(0, "Answered from NCMEC's published record: this instance holds no referrals "
                                      "(--source records to answer from them anyway).")
        return answer
    answer = from_records(q, sessions, coverage_threshold=c.settings.outcome_coverage_threshold)
    if source is None:
        answer.warnings.insert(0, f"Answered from tipline's records ({n:,} referrals on record); --source "
                                  "published answers from NCMEC's published figures.")
    return answer


def _refuse(question: str, fmt: str, reason: str, closest: list[str]) -> NoReturn:
    if fmt == "json":
        click.echo(json.dumps({"question": question, "answerable": False, "reason": reason,
                               "closest": closest}, indent=2))
    else:
        click.echo(f"Cannot answer that: {reason}.", err=True)
        click.echo("Questions that can be answered, closest first:", err=True)
        for text in closest:
            click.echo(f"  {text}", err=True)
    raise SystemExit(2)
