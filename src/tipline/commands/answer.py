"""``tipline answer``: an outcome question answered in the shape of a fact-check."""

from __future__ import annotations

import json
from typing import Any

import click

from tipline.commands.context import Ctx, pass_ctx


@click.command("answer")
@click.argument("question")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True,
              help="Markdown for reading, HTML for a page, JSON for tools.")
@click.option("--source", type=click.Choice(["published"]), default="published", show_default=True,
              help="Where the figures come from: NCMEC's published record (shipped with tipline).")
@pass_ctx
def command(c: Ctx, question: str, fmt: str, source: str) -> None:
    """Answer QUESTION, e.g. "How many CyberTipline escalations resulted in arrests in 2023?".

    The question is read by a small grammar (docs/answers.md): a measure, a population, a
    period and an optional slice. A question outside it exits 2 with the closest questions
    that can be answered; nothing is guessed.
    """
    from tipline.stats.answer import from_published, to_html_fragment, to_markdown
    from tipline.stats.question import QuestionError, parse

    try:
        q = parse(question)
    except QuestionError as err:
        r = err.result
        if fmt == "json":
            click.echo(json.dumps({"question": question, "answerable": False, "reason": r.reason,
                                   "closest": r.closest}, indent=2))
        else:
            click.echo(f"Cannot answer that: {r.reason}.", err=True)
            click.echo("Questions that can be answered, closest first:", err=True)
            for text in r.closest:
                click.echo(f"  {text}", err=True)
        raise SystemExit(2) from None
    answer = from_published(q)
    out: Any
    if fmt == "json":
        out = json.dumps(answer.as_json(), indent=2, ensure_ascii=False)
    elif fmt == "html":
        out = to_html_fragment(answer)
    else:
        out = to_markdown(answer)
    click.echo(out)
