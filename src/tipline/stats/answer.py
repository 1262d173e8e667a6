"""Answers to outcome questions, in the shape of a careful fact-check.

An answer has the question as its title, an executive summary, numbered sections (what the
records show; how much of the picture feedback covers; what the figure can and cannot say;
the bounds and the estimate with its assumption; method) and a bottom line that states only
what the records support. Every figure carries a numbered citation whose link returns that
same figure. Two sources use the same engine and the same shape: tipline's own records
(:mod:`tipline.stats.answer_records`) and NCMEC's published figures (here).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tipline.stats.published import Figure, PublishedRecord, load
from tipline.stats.question import (
    EXAMPLES,
    MEASURE_WORDS,
    POPULATION_WORDS,
    Measure,
    Population,
    Question,
    SliceKind,
    describe,
)

PUBLISHED_API = "/api/v1/stats/published"


@dataclass(slots=True)
class Cited:
    n: int
    name: str
    value: int | float | None
    citation: str
    source: str | None = None  # where a published figure comes from (title and URL)

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "name": self.name, "value": self.value, "citation": self.citation,
                "source": self.source}


@dataclass(slots=True)
class Section:
    title: str
    paragraphs: list[str]


@dataclass(slots=True)
class Answer:
    question: str
    canonical: str
    source: str  # "records" | "published"
    parse: dict[str, str | None]
    summary: str
    sections: list[Section]
    bottom_line: str
    figures: list[Cited]
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "question": self.question, "canonical": self.canonical, "source": self.source,
            "parse": self.parse, "summary": self.summary,
            "sections": [{"number": i, "title": s.title, "paragraphs": s.paragraphs}
                         for i, s in enumerate(self.sections, 1)],
            "bottomLine": self.bottom_line,
            "figures": [f.as_json() for f in self.figures],
            "warnings": self.warnings,
        }


class Citations:
    """Numbers the figures an answer cites, once each, in order of first use."""

    def __init__(self, base_url: str = "") -> None:
        self.base = base_url.rstrip("/")
        self.items: list[Cited] = []
        self._by_key: dict[tuple[str, str], int] = {}

    def add(self, name: str, value: int | float | None, path: str, query: dict[str, str],
            source: str | None = None, pointer: str | None = None) -> str:
        """Cite a figure; ``pointer`` (a JSON pointer such as ``/total/withArrest``) names where in
        the linked document the figure is, as the link's fragment."""
        link = f"{self.base}{path}?{urlencode(query)}" + (f"#{pointer}" if pointer else "")
        key = (name, link)
        if key not in self._by_key:
            self.items.append(Cited(len(self.items) + 1, name, value, link, source))
            self._by_key[key] = len(self.items)
        return f"[{self._by_key[key]}]"

    def published(self, fig: Figure, name: str) -> str:
        src = f"{fig.source.title} — {fig.source.url}"
        return self.add(name, fig.value, PUBLISHED_API, fig.query(), src)


#: The numbered sections every answer has, in this order, whatever its source.
SECTION_TITLES = ("What the records show", "How much of the picture feedback covers",
                  "What the figure can and cannot say", "The bounds and the estimate", "Method")


def assemble(q: Question, source: str, cites: Citations, *, summary: str, shows: list[str], coverage: list[str],
             can_say: list[str], bounds: list[str], method: list[str], bottom: str,
             warnings: list[str]) -> Answer:
    """An answer in the fact-check shape: the five sections of SECTION_TITLES, in order (both
    sources build their answers through this, so their shape cannot drift apart)."""
    bodies = (shows, coverage, can_say, bounds, method)
    sections = [Section(t, list(b)) for t, b in zip(SECTION_TITLES, bodies, strict=True)]
    return Answer(q.text, q.canonical(), source, describe(q), summary, sections, bottom, cites.items, warnings)


def read_as(q: Question) -> str:
    """The method section's sentence saying how the grammar read the question."""
    return "The question was read as: " + ", ".join(f"{k} = {v}" for k, v in describe(q).items() if v) + "."


def fmt(n: int | float | None, approximate: bool = False) -> str:
    if n is None:
        return "unknown"
    text = f"{n:,}" if isinstance(n, int) else f"{n:,.1f}"
    return f"about {text}" if approximate else text


# --- the published record as a source ---------------------------------------------------------

def from_published(q: Question, record: PublishedRecord | None = None, base_url: str = "") -> Answer:
    rec = record or load()
    cites = Citations(base_url)
    pop = POPULATION_WORDS[q.population]
    where = f" ({q.slice.label})" if q.slice else ""
    warnings: list[str] = []
    if not q.period.whole_years:
        warnings.append(f"NCMEC publishes yearly figures only; none is for {q.period.label} alone.")
    if q.by and q.by != "year" and not (q.by in ("state", "country") and q.population is Population.REPORTS):
        warnings.append(f"No published figure is broken down by {q.by}; the answer is for the total.")
    if q.slice and not (q.population is Population.REPORTS
                        and q.slice.kind in (SliceKind.STATE, SliceKind.COUNTRY)):
        warnings.append(f"NCMEC publishes no count of {pop} for {q.slice.label}.")

    counts: dict[int, Figure] = {}
    for year in q.period.years:
        counts[year] = rec.count(q.population, year, q.slice)
    if not q.period.whole_years:
        counts = {y: Figure(f.measure, f.population, y, None, f.source,
                            f"no published count of {pop} for {q.period.label}")
                  for y, f in counts.items()}
    count_refs = {y: cites.published(f, f"{pop}{where}, {y}") for y, f in counts.items()}

    lines = []
    for y, f in counts.items():
        if f.published:
            lines.append(f"{y}: {fmt(f.value, f.approximate)} {pop}{where} {count_refs[y]}.")
        else:
            lines.append(f"{y}: no published count of {pop}{where} {count_refs[y]} ({f.note}).")
    known = [f for f in counts.values() if f.published]
    missing = [y for y, f in counts.items() if not f.published]
    total = sum(f.value or 0 for f in known) if not missing else None

    if q.measure is Measure.COUNT:
        return _published_count(q, rec, cites, counts, count_refs, lines, total, missing, warnings)

    outcome = rec.outcome(q.measure, q.population, q.period.years[0])
    out_ref = cites.published(outcome, f"{MEASURE_WORDS[q.measure]} ({pop})")
    feedback = rec.outcome(Measure.ANY_FEEDBACK, q.population, q.period.years[0])
    fb_ref = cites.published(feedback, f"feedback coverage ({pop})")
    lines.append(f"Outcomes: {outcome.note} {out_ref}." if not outcome.published
                 else f"Outcomes: {fmt(outcome.value)} {out_ref}.")

    # Assumption-free bounds: with no outcome on record the count lies in [0, N] when it counts
    # reports (each report at most once); persons can outnumber reports, so they have no cap.
    capped = q.measure is not Measure.PERSONS_ARRESTED
    bounds: dict[int, tuple[int, int | None]] = {}
    for y, f in counts.items():
        bounds[y] = (0, f.value if (capped and f.published) else None)
    bound_lines = []
    for y, (lo, hi) in bounds.items():
        if hi is None:
            why = ("persons arrested can outnumber the reports" if not capped
                   else f"there is no published count of {pop} to bound it")
            bound_lines.append(f"{y}: at least {lo}; no upper bound can be stated ({why}).")
        else:
            bound_lines.append(f"{y}: between {lo} and {fmt(hi)} {count_refs[y]}.")
    measure_phrase = _measure_phrase(q)
    ctx_lines = []
    for c in rec.context:
        ref = cites.add(c.name, c.value, PUBLISHED_API, {"context": c.name}, f"{c.source.title} — {c.source.url}")
        more = "more than " if c.lower_bound else ""
        ctx_lines.append(f"{c.name}: {more}{fmt(c.value)} {ref} — {c.note}. It is neither a count nor a "
                         f"bound of the {pop} that {measure_phrase}.")
    for o in rec.outside_estimates:
        ctx_lines.append(f"The figure {o.name}, attributed to {o.attributed_to}, is an outside estimate of "
                         f"unclear base ({o.note}). It is named here and not counted.")

    known_years = [y for y, (_, hi) in bounds.items() if hi is not None]
    unknown_years = [y for y, (_, hi) in bounds.items() if hi is None]
    summary_parts = []
    if known:
        summary_parts.append("NCMEC's published record holds " + "; ".join(
            f"{fmt(f.value, f.approximate)} {pop}{where} in {y} {count_refs[y]}" for y, f in counts.items()
            if f.published) + ".")
    if missing:
        summary_parts.append(f"It holds no count of {pop}{where} for {_years(missing)} "
                             f"{' '.join(count_refs[y] for y in missing)}.")
    span = ("either year" if len(counts) == 2 else "any year asked" if len(counts) > 2
            else _years(list(counts)))
    summary_parts.append(f"No count of the {pop} that {measure_phrase} has been published for {span} {out_ref}.")
    if known_years:
        summary_parts.append("On the record, the number lies " + "; ".join(
            f"between 0 and {fmt(bounds[y][1])} in {y}" for y in known_years) + ".")
    if unknown_years:
        summary_parts.append(f"For {_years(unknown_years)} not even an upper bound can be given.")
    summary_parts.append("No rate can be stated.")
    summary = " ".join(summary_parts)

    coverage = [
        f"None that is published: {feedback.note} {fb_ref}. Coverage is unknown — not zero — so the "
        f"share of {pop} that {measure_phrase} cannot be read from it."]
    bounds_text = [
        "With no outcome on record, the assumption-free bounds are the whole answer:", *bound_lines,
        "An estimate would need outcomes for at least part of them and an assumption about the rest "
        "(for instance, that those without feedback resemble those with it); none is published, so no "
        "estimate is given."]
    method = [
        f"Source: the published record shipped with tipline (data/published.toml, version {rec.version}, "
        "and NCMEC's transparency tables as transcribed by the open-data project diaphanous).",
        read_as(q), f"Each numbered figure links to {PUBLISHED_API}, which returns it with its source."]
    supported = []
    for y, f in counts.items():
        supported.append(f"{fmt(f.value, f.approximate)} {pop}{where} in {y}" if f.published
                         else f"no published count for {y}")
    hi_text = "; ".join(f"between 0 and {fmt(bounds[y][1])} for {y}" for y in known_years)
    bottom = (f"The published record supports only this: {'; '.join(supported)}; no outcome on record. "
              f"How many {pop} {measure_phrase} is not known"
              + (f": {hi_text}" if hi_text else "") + ", and no rate can be stated.")
    return assemble(q, "published", cites, summary=summary, shows=lines, coverage=coverage,
                    can_say=ctx_lines or ["No other published figure bears on the question."], bounds=bounds_text,
                    method=method, bottom=bottom, warnings=warnings)


def _published_count(q: Question, rec: PublishedRecord, cites: Citations, counts: dict[int, Figure],
                     refs: dict[int, str], lines: list[str], total: int | None, missing: list[int],
                     warnings: list[str]) -> Answer:
    pop = POPULATION_WORDS[q.population]
    where = f" ({q.slice.label})" if q.slice else ""
    approx = any(f.approximate for f in counts.values())
    if len(counts) > 1:
        lines.append(f"Total {q.period.label}: " + (fmt(total, approx) if total is not None
                                                     else f"unknown ({_years(missing)} not published)") + ".")
    if total is not None:
        summary = (f"NCMEC published {fmt(total, approx)} {pop}{where} in {q.period.label} "
                   + " ".join(refs.values()) + ".")
    else:
        summary = (f"NCMEC's published record holds no count of {pop}{where} for {_years(missing)} "
                   + " ".join(refs[y] for y in missing) + "."
                   + ("" if len(missing) == len(counts) else " " + " ".join(
                       f"For {y}: {fmt(f.value, f.approximate)} {refs[y]}." for y, f in counts.items() if f.published)))
    bottom = (f"{fmt(total, approx)} {pop}{where} in {q.period.label}, as published." if total is not None
              else f"The published record has no count of {pop}{where} for {_years(missing)}.")
    return assemble(
        q, "published", cites, summary=summary, shows=lines,
        coverage=["Not applicable: the question counts reports, not what came of them."],
        can_say=["A count of reports is not a count of incidents or of children: one incident can be reported "
                 "many times (since 2024 NCMEC also counts bundled reports apart), and published counts are "
                 "revised."],
        bounds=["The published count is the answer; no estimate is involved."],
        method=[f"Source: the published record shipped with tipline (data/published.toml, version {rec.version}).",
                read_as(q)],
        bottom=bottom, warnings=warnings)


def _measure_phrase(q: Question) -> str:
    if q.measure is Measure.PERSONS_ARRESTED:
        return "led to the arrest of a person"
    return MEASURE_WORDS[q.measure]


def _years(years: Sequence[int]) -> str:
    ys = [str(y) for y in years]
    return ys[0] if len(ys) == 1 else ", ".join(ys[:-1]) + " and " + ys[-1]


# --- renderers -------------------------------------------------------------------------------

def to_markdown(a: Answer) -> str:
    out = [f"# {a.question}", "", f"*Answered from {_source_words(a.source)}; read as: {a.canonical}*", ""]
    for w in a.warnings:
        out += [f"> **Note.** {w}", ""]
    out += ["## Summary", "", a.summary, ""]
    for i, s in enumerate(a.sections, 1):
        out += [f"## {i}. {s.title}", ""]
        out += [f"- {p}" if len(s.paragraphs) > 1 else p for p in s.paragraphs]
        out.append("")
    out += ["## Bottom line", "", a.bottom_line, "", "## Figures", ""]
    for f in a.figures:
        src = f" — {f.source}" if f.source else ""
        out.append(f"{f.n}. {f.name}: {fmt(f.value)} — <{f.citation}>{src}")
    return "\n".join(out) + "\n"


def to_html_fragment(a: Answer) -> str:
    """The answer as an HTML fragment (for the page and for ``--format html``)."""
    e = html.escape
    parts = [f"<article class=\"answer\"><h1>{e(a.question)}</h1>",
             f"<p class=\"read-as\">Answered from {e(_source_words(a.source))}; read as: {e(a.canonical)}</p>"]
    for w in a.warnings:
        parts.append(f"<p class=\"note\"><strong>Note.</strong> {e(w)}</p>")
    parts.append(f"<section><h2>Summary</h2><p>{_linked(a.summary, a)}</p></section>")
    for i, s in enumerate(a.sections, 1):
        body = "".join(f"<p>{_linked(p, a)}</p>" for p in s.paragraphs)
        parts.append(f"<section><h2>{i}. {e(s.title)}</h2>{body}</section>")
    parts.append(f"<section class=\"bottom-line\"><h2>Bottom line</h2><p>{e(a.bottom_line)}</p></section>")
    items = "".join(
        f"<li id=\"fig-{f.n}\">{e(f.name)}: <strong>{e(fmt(f.value))}</strong> — "
        f"<a href=\"{e(f.citation)}\">{e(f.citation)}</a>{(' — ' + e(f.source)) if f.source else ''}</li>"
        for f in a.figures)
    parts.append(f"<section><h2>Figures</h2><ol class=\"figures\">{items}</ol></section></article>")
    return "".join(parts)


def _linked(text: str, a: Answer) -> str:
    out = html.escape(text)
    for f in a.figures:
        out = out.replace(f"[{f.n}]", f"<a class=\"cite\" href=\"#fig-{f.n}\">[{f.n}]</a>")
    return out


def _source_words(source: str) -> str:
    return "NCMEC's published figures" if source == "published" else "tipline's records"


#: The questions the answer page offers as examples.
EXAMPLES_FOR_PAGE: tuple[str, ...] = EXAMPLES[:6]
