"""NCMEC's published CyberTipline figures as a source, each with where it comes from.

Two kinds of data ship with the package: ``data/published.toml`` (headline figures the
tables do not hold, the outcome figures that are *not* published, context figures and the
outside estimates in circulation) and NCMEC's transparency tables in ``data/sim/ocse-*.csv``
(reports per year, 2023 reports by US state, reports per country). A figure that no source
publishes is returned as such — ``value is None`` with the note that says so — never as 0.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from tipline.stats.question import Measure, Population, Slice, SliceKind


@dataclass(frozen=True, slots=True)
class Source:
    key: str
    title: str
    url: str
    status: str  # P primary, S secondary, U unverified


@dataclass(frozen=True, slots=True)
class Figure:
    """One published figure (or the record that it is not published: ``value is None``)."""

    measure: str
    population: str
    year: int | None
    value: int | None
    source: Source
    note: str = ""
    approximate: bool = False
    slice_kind: str | None = None
    slice_value: str | None = None

    @property
    def published(self) -> bool:
        return self.value is not None

    def query(self) -> dict[str, str]:
        """The query parameters of ``/api/v1/stats/published`` that return this figure."""
        q = {"measure": self.measure, "population": self.population}
        if self.year is not None:
            q["year"] = str(self.year)
        if self.slice_kind:
            q[self.slice_kind] = str(self.slice_value)
        return q

    def as_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure, "population": self.population, "year": self.year,
            "slice": {"kind": self.slice_kind, "value": self.slice_value} if self.slice_kind else None,
            "value": self.value, "published": self.published, "approximate": self.approximate,
            "note": self.note,
            "source": {"title": self.source.title, "url": self.source.url, "status": self.source.status},
        }


@dataclass(frozen=True, slots=True)
class Context:
    name: str
    value: int
    lower_bound: bool
    source: Source
    note: str


@dataclass(frozen=True, slots=True)
class OutsideEstimate:
    name: str
    attributed_to: str
    source: Source
    note: str


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    version: str
    figures: tuple[Figure, ...]
    context: tuple[Context, ...]
    outside_estimates: tuple[OutsideEstimate, ...]
    sources: dict[str, Source]

    def count(self, population: Population, year: int, where: Slice | None = None) -> Figure:
        """The published count of ``population`` in ``year`` (for the slice), or the record of
        its absence."""
        kind = where.kind.value if where else None
        value = where.value if where else None
        for f in self.figures:
            if (f.measure == Measure.COUNT.value and f.population == population.value
                    and f.year == year and f.slice_kind == kind and f.slice_value == value):
                return f
        what = f"{population.value}" + (f" for {where.label}" if where else "")
        return Figure(Measure.COUNT.value, population.value, year, None, self.sources["transparency"],
                      note=f"no published count of {what} in {year} in the record this package carries",
                      slice_kind=kind, slice_value=value)

    def outcome(self, measure: Measure, population: Population, year: int) -> Figure:
        for f in self.figures:
            if f.measure == measure.value and f.population in ("*", population.value) and f.year in (None, year):
                return Figure(f.measure, population.value, year, f.value, f.source, f.note, f.approximate)
        return Figure(measure.value, population.value, year, None, self.sources["feedback"],
                      note=f"no published figure of {measure.value} for {population.value}")

    def find(self, measure: str, population: str, year: int | None,
             slice_kind: str | None = None, slice_value: str | None = None) -> Figure | None:
        """Lookup for the API: the figure these query parameters name."""
        try:
            m, p = Measure(measure), Population(population)
        except ValueError:
            return None
        if year is None:
            return None
        if m is Measure.COUNT:
            where = None
            if slice_kind and slice_value:
                try:
                    where = Slice(SliceKind(slice_kind), slice_value, slice_value)
                except ValueError:
                    return None
            return self.count(p, year, where)
        return self.outcome(m, p, year)


def _int(text: str) -> int:
    return int(text.replace(",", "").strip())


@cache
def load() -> PublishedRecord:
    data = resources.files("tipline.data")
    raw = tomllib.loads(data.joinpath("published.toml").read_text(encoding="utf-8"))
    sources = {k: Source(k, v["title"], v["url"], v["status"]) for k, v in raw["sources"].items()}
    figures: list[Figure] = []
    for f in raw["figures"]:
        year = f.get("year")
        figures.append(Figure(f["measure"], f["population"], None if year == "*" else int(year),
                              f.get("value"), sources[f["source"]], f.get("note", ""),
                              bool(f.get("approximate", False))))
    table = sources["transparency"]
    sim = data.joinpath("sim")
    with sim.joinpath("ocse-reports-per-year.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            figures.append(Figure("count", "reports", int(row["year"]), _int(row["reports"]), table,
                                  "reports received"))
    with sim.joinpath("ocse-reports-by-state.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            figures.append(Figure("count", "reports", int(row["year"]), _int(row["reports"]), table,
                                  "reports with this US state as the user's location",
                                  slice_kind="state", slice_value=row["state"]))
    iso2 = _iso3_to_iso2()
    with sim.joinpath("ocse-reports-per-country.csv").open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        years = [c for c in (reader.fieldnames or []) if c.isdigit()]
        for row in reader:
            code = iso2.get(row["iso3"])
            if not code:
                continue
            for y in years:
                if row[y].strip():
                    figures.append(Figure("count", "reports", int(y), _int(row[y]), table,
                                          "reports with this country as the user's location",
                                          slice_kind="country", slice_value=code))
    context = tuple(Context(c["name"], int(c["value"]), bool(c.get("lower_bound", False)),
                            sources[c["source"]], c.get("note", "")) for c in raw.get("context", []))
    outside = tuple(OutsideEstimate(o["name"], o["attributed_to"], sources[o["source"]], o.get("note", ""))
                    for o in raw.get("outside_estimates", []))
    return PublishedRecord(raw["version"], tuple(figures), context, outside, sources)


def _iso3_to_iso2() -> dict[str, str]:
    path = resources.files("tipline.data").joinpath("sim").joinpath("iso3-to-iso2.csv")
    with path.open(encoding="utf-8") as fh:
        return {row["iso3"]: row["iso2"] for row in csv.DictReader(fh)}
