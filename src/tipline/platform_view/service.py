"""The platform's view as a service: a platform's own reports, each report's quality, the
most common gaps per month, and the rows of a CSV export.

Every function takes the caller (:class:`~tipline.people.Principal`) and decides access
itself: the caller needs ``Capability.PLATFORM_READ_OWN`` and a platform
(``reporter_id``); a report of another platform, an expired one, or one that does not exist
raise the same :class:`NotFound`. Routes and templates never decide access.

A report's *month* is the month (UTC) it was filed (``finished_at``): the gaps table counts
filed reports, and a list filtered by month and gap shows exactly the reports one cell of
that table counts. Reports still open or retracted have no month.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select, text
from sqlalchemy.orm import Session

from tipline.kinds.reports import REPORTER_STATES
from tipline.kinds.roles import Capability, may
from tipline.people.principal import Principal
from tipline.pipeline.stages.assess import load_rules
from tipline.platform_view.items import ItemGuide, guide
from tipline.store.tables import Assessment, File, Report, Reporter

#: States a platform sees (an expired report was never filed and is gone, as on the API).
STATES: tuple[str, ...] = REPORTER_STATES
PAGE_SIZE = 50
#: The longest window the gaps table covers, in months.
MAX_MONTHS = 60
DEFAULT_MONTHS = 12
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class NotFound(LookupError):
    """No such report for this caller: missing, expired, another platform's, or a caller
    who may not read platform reports at all. Always the same answer."""


class BadFilter(ValueError):
    """A filter value that is not one of the allowed ones (the message says which are)."""


# --- access ----------------------------------------------------------------------------------


def platform_of(principal: Principal) -> int:
    """The one platform (reporter id) the caller may read; NotFound for anyone else."""
    if not may(principal.role, Capability.PLATFORM_READ_OWN) or principal.reporter_id is None:
        raise NotFound("no platform reports for this caller")
    return principal.reporter_id


def platform_name(session: Session, principal: Principal) -> str:
    rid = platform_of(principal)
    name = session.scalar(select(Reporter.name).where(Reporter.id == rid))
    if name is None:
        raise NotFound("the caller's platform does not exist")
    return str(name)


# --- months and filters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, value: str) -> Month:
        m = _MONTH.match(value.strip())
        if m is None or int(m.group(1)) < 1:
            raise BadFilter(f"a month is written YYYY-MM, e.g. 2026-11 (not {value[:20]!r})")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, when: datetime) -> Month:
        when = when.astimezone(UTC)
        return cls(when.year, when.month)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def prev(self) -> Month:
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def end(self) -> datetime:
        """The start of the next month (exclusive bound)."""
        if self.year == 9999 and self.month == 12:
            return datetime.max.replace(tzinfo=UTC)
        return self.next().start()

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def label(self) -> str:
        return self.start().strftime("%B %Y")

    def short(self) -> str:
        return self.start().strftime("%b %Y")


def months_between(first: Month, last: Month) -> list[Month]:
    out = [first]
    while out[-1] < last:
        out.append(out[-1].next())
    return out


@dataclass(frozen=True, slots=True)
class Filters:
    """What the report list (and the export) is narrowed to; every field optional."""

    state: str | None = None
    month: Month | None = None
    gap: str | None = None

    @classmethod
    def parse(cls, state: str | None = None, month: str | None = None, gap: str | None = None) -> Filters:
        """From query parameters; an empty value means "any". BadFilter names what is allowed."""
        st = (state or "").strip() or None
        if st is not None and st not in STATES:
            raise BadFilter(f"state is one of {', '.join(STATES)} (not {st[:20]!r})")
        mo = Month.parse(month) if month and month.strip() else None
        g = (gap or "").strip() or None
        if g is not None and g not in item_ids():
            raise BadFilter(f"gap is one of {', '.join(item_ids())} (not {g[:40]!r})")
        return cls(st, mo, g)

    def query(self) -> dict[str, str]:
        """As query parameters (for links that keep the filters)."""
        out = {}
        if self.state:
            out["state"] = self.state
        if self.month:
            out["month"] = str(self.month)
        if self.gap:
            out["gap"] = self.gap
        return out

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.query().items()}


def item_ids() -> list[str]:
    return [q.id for q in load_rules().quality]


def item_guides() -> list[ItemGuide]:
    return [guide(q.id, q.missing) for q in load_rules().quality]


# --- the report list ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gap:
    item: str
    #: The rules' words for what is missing.
    text: str
    guide: ItemGuide


@dataclass(frozen=True, slots=True)
class ReportRow:
    id: int
    state: str
    source: str
    opened_at: datetime
    finished_at: datetime | None
    incident_type: str | None
    files: int
    #: None until the pipeline assessed the report (never shown as a score of 0).
    score: float | None
    disposition: str | None
    missing: tuple[Gap, ...]

    @property
    def assessed(self) -> bool:
        return self.score is not None


@dataclass(frozen=True, slots=True)
class ReportPage:
    rows: list[ReportRow]
    total: int
    page: int
    pages: int
    filters: Filters


def _gaps(missing: list[Any] | None) -> tuple[Gap, ...]:
    out = []
    for m in missing or []:
        item = str(m.get("item", "")) if isinstance(m, dict) else str(m)
        words = str(m.get("text", "")) if isinstance(m, dict) else ""
        out.append(Gap(item, words or item, guide(item, words or None)))
    return tuple(out)


def _missing_has(session: Session, item: str) -> ColumnElement[bool]:
    """Assessment.missing (a JSON list of {item, text}) names ``item``: per dialect, since
    JSON functions differ; the value is a bound parameter either way."""
    if session.get_bind().dialect.name == "postgresql":
        clause = text("EXISTS (SELECT 1 FROM json_array_elements(assessments.missing) AS gap_e "
                      "WHERE gap_e->>'item' = :gap_item)")
    else:
        clause = text("EXISTS (SELECT 1 FROM json_each(assessments.missing) AS gap_e "
                      "WHERE json_extract(gap_e.value, '$.item') = :gap_item)")
    return clause.bindparams(gap_item=item)  # type: ignore[return-value]


def _files_count() -> Any:
    return select(func.count(File.id)).where(File.report_id == Report.id).scalar_subquery()


def _scoped(session: Session, reporter_id: int, filters: Filters, q: Select[Any]) -> Select[Any]:
    q = q.where(Report.reporter_id == reporter_id, Report.state.in_(STATES))
    if filters.state:
        q = q.where(Report.state == filters.state)
    if filters.month:
        q = q.where(Report.finished_at >= filters.month.start(), Report.finished_at < filters.month.end())
    if filters.gap:
        q = q.where(_missing_has(session, filters.gap))
    return q


def _row_query() -> Select[Any]:
    return (select(Report.id, Report.state, Report.source, Report.opened_at, Report.finished_at,
                   Report.incident_type, _files_count().label("files"), Assessment.quality,
                   Assessment.disposition, Assessment.missing)
            .outerjoin(Assessment, Assessment.report_id == Report.id))


def _row(r: Any) -> ReportRow:
    return ReportRow(id=int(r.id), state=r.state, source=r.source, opened_at=r.opened_at,
                     finished_at=r.finished_at, incident_type=r.incident_type, files=int(r.files or 0),
                     score=r.quality, disposition=r.disposition,
                     missing=_gaps(r.missing) if r.quality is not None else ())


def list_reports(session: Session, principal: Principal, filters: Filters | None = None, *,
                 page: int = 1, per_page: int = PAGE_SIZE) -> ReportPage:
    """One page of the caller's platform's reports, newest first."""
    rid = platform_of(principal)
    filters = filters or Filters()
    per_page = max(1, min(per_page, 500))
    count_q = _scoped(session, rid, filters, select(func.count(Report.id))
                      .outerjoin(Assessment, Assessment.report_id == Report.id))
    total = int(session.scalar(count_q) or 0)
    pages = max(1, -(-total // per_page))
    page = max(1, min(page, pages))
    q = _scoped(session, rid, filters, _row_query()).order_by(Report.id.desc()) \
        .limit(per_page).offset((page - 1) * per_page)
    rows = [_row(r) for r in session.execute(q)]
    return ReportPage(rows, total, page, pages, filters)


def export_rows(session: Session, principal: Principal, filters: Filters | None = None) -> Iterator[ReportRow]:
    """Every report the filters select, newest first, read in batches (for the CSV export)."""
    rid = platform_of(principal)
    q = _scoped(session, rid, filters or Filters(), _row_query()).order_by(Report.id.desc())
    for r in session.execute(q.execution_options(yield_per=1000)):
        yield _row(r)


# --- one report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QualityLine:
    """One quality item of one report: present, missing, or not applicable (e.g. "files
    viewed" for a report without files)."""

    item: str
    status: str  # present | missing | not_applicable
    text: str
    guide: ItemGuide


@dataclass(frozen=True, slots=True)
class FileLine:
    id: str
    name: str | None
    media_type: str | None
    size: int
    uploaded_at: datetime
    viewed_by_esp: bool | None
    sha256: str


@dataclass(frozen=True, slots=True)
class ReportDetail:
    id: int
    platform: str
    state: str
    source: str
    opened_at: datetime
    finished_at: datetime | None
    retracted_at: datetime | None
    incident_type: str | None
    incident_at: datetime | None
    files: list[FileLine]
    score: float | None
    disposition: str | None
    disposition_reasons: list[str]
    assessed_at: datetime | None
    rules_version: str | None
    lines: list[QualityLine]

    @property
    def assessed(self) -> bool:
        return self.score is not None

    @property
    def missing(self) -> list[QualityLine]:
        return [line for line in self.lines if line.status == "missing"]


#: Facts of ``applies_if`` this module can tell from stored rows without re-running the
#: assessment: whether an item applied to a report.
def _applies(applies_if: str | None, files: int) -> bool | None:
    if applies_if is None:
        return True
    if applies_if == "files":
        return files > 0
    return None  # unknown to this view: the item is counted wherever it could apply


def report_detail(session: Session, principal: Principal, report_id: int) -> ReportDetail:
    rid = platform_of(principal)
    row = session.execute(
        select(Report, Reporter.name).join(Reporter, Reporter.id == Report.reporter_id)
        .where(Report.id == report_id, Report.reporter_id == rid, Report.state.in_(STATES))
    ).first()
    if row is None:
        raise NotFound(f"no report {report_id}")
    rep, name = row
    files = [FileLine(f.id, f.file_name, f.media_type, int(f.size), f.uploaded_at, f.viewed_by_esp, f.sha256)
             for f in session.scalars(select(File).where(File.report_id == rep.id).order_by(File.seq))]
    a = session.get(Assessment, rep.id)
    lines: list[QualityLine] = []
    if a is not None:
        gaps = {g.item: g for g in _gaps(a.missing)}
        for q in load_rules().quality:
            g = guide(q.id, q.missing)
            if q.id in gaps:
                lines.append(QualityLine(q.id, "missing", gaps.pop(q.id).text, g))
            elif _applies(q.applies_if, len(files)) is False:
                lines.append(QualityLine(q.id, "not_applicable", q.missing, g))
            else:
                lines.append(QualityLine(q.id, "present", q.missing, g))
        # Items of older rules, no longer in the current file: still what was found missing.
        lines += [QualityLine(g.item, "missing", g.text, g.guide) for g in gaps.values()]
    reasons = [str(r.get("text", "")) if isinstance(r, dict) else str(r) for r in (a.disposition_reasons if a else [])]
    return ReportDetail(
        id=int(rep.id), platform=str(name), state=rep.state, source=rep.source, opened_at=rep.opened_at,
        finished_at=rep.finished_at, retracted_at=rep.retracted_at, incident_type=rep.incident_type,
        incident_at=rep.incident_at, files=files, score=a.quality if a else None,
        disposition=a.disposition if a else None, disposition_reasons=[r for r in reasons if r],
        assessed_at=a.assessed_at if a else None, rules_version=a.rules_version if a else None, lines=lines)


def quality_json(session: Session, reporter_id: int, report_id: int) -> dict[str, Any] | None:
    """The ``quality`` object of the API's report (None until assessed, or when the report
    is not ``reporter_id``'s: the route has found it in that scope already, this checks again)."""
    a = session.scalar(select(Assessment).join(Report, Report.id == Assessment.report_id)
                       .where(Assessment.report_id == report_id, Report.reporter_id == reporter_id))
    if a is None:
        return None
    return {
        "score": a.quality,
        "disposition": a.disposition,
        "assessedAt": a.assessed_at.isoformat(),
        "missing": [{"item": g.item, "text": g.text, "why": g.guide.why} for g in _gaps(a.missing)],
    }


# --- the gaps over time ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Share:
    """Of ``of`` assessed reports the item applied to, ``missing`` lacked it."""

    missing: int
    of: int

    @property
    def share(self) -> float | None:
        # No report to count is no data, never 0 %.
        return self.missing / self.of if self.of else None

    @property
    def percent(self) -> str:
        s = self.share
        return "no data" if s is None else f"{round(100 * s)} %"


@dataclass(frozen=True, slots=True)
class MonthGaps:
    month: Month
    filed: int
    assessed: int
    shares: dict[str, Share]

    @property
    def has_data(self) -> bool:
        return self.assessed > 0

    @property
    def not_yet_assessed(self) -> int:
        return self.filed - self.assessed


@dataclass(frozen=True, slots=True)
class GapTable:
    first: Month
    last: Month
    items: list[ItemGuide]
    months: list[MonthGaps] = field(default_factory=list)

    def latest_with_data(self) -> MonthGaps | None:
        return next((m for m in reversed(self.months) if m.has_data), None)

    def ranked(self, month: MonthGaps) -> list[tuple[ItemGuide, Share]]:
        """The items of one month, most often missing first (items with no data left out)."""
        out = [(g, month.shares[g.id]) for g in self.items if month.shares[g.id].share is not None]
        return sorted(out, key=lambda gs: (-(gs[1].share or 0.0), gs[0].id))


def gap_window(since: str | None, until: str | None, *, now: datetime | None = None) -> tuple[Month, Month]:
    """The months of the gaps table: ``until`` (default this month) and the 11 before it,
    or from ``since``; at most MAX_MONTHS."""
    last = Month.parse(until) if until and until.strip() else Month.of(now or datetime.now(UTC))
    if since and since.strip():
        first = Month.parse(since)
    else:
        first = last
        for _ in range(DEFAULT_MONTHS - 1):
            if first == Month(1, 1):
                break
            first = first.prev()
    if first > last:
        raise BadFilter(f"the first month ({first}) is after the last ({last})")
    if (last.year - first.year) * 12 + last.month - first.month >= MAX_MONTHS:
        raise BadFilter(f"the table covers at most {MAX_MONTHS} months")
    return first, last


def gaps_by_month(session: Session, principal: Principal, first: Month, last: Month) -> GapTable:
    """For each month from ``first`` to ``last``: reports filed, assessed, and for each quality
    item the share of assessed reports it applied to that lacked it, with its denominator.
    A month without assessed reports has no shares (``None``), never 0 %."""
    rid = platform_of(principal)
    rules = load_rules()
    items = [guide(q.id, q.missing) for q in rules.quality]
    applies_if = {q.id: q.applies_if for q in rules.quality}
    counts: dict[Month, dict[str, Any]] = {
        m: {"filed": 0, "assessed": 0, "missing": dict.fromkeys(applies_if, 0), "of": dict.fromkeys(applies_if, 0)}
        for m in months_between(first, last)}
    q = (select(Report.finished_at, Assessment.quality, Assessment.missing, _files_count().label("files"))
         .outerjoin(Assessment, Assessment.report_id == Report.id)
         .where(Report.reporter_id == rid, Report.state == "finished",
                and_(Report.finished_at >= first.start(), Report.finished_at < last.end())))
    extra: dict[str, ItemGuide] = {}
    for fin, quality, missing, files in session.execute(q.execution_options(yield_per=5000)):
        c = counts.get(Month.of(fin))
        if c is None:
            continue
        c["filed"] += 1
        if quality is None:
            continue  # filed, not yet assessed: counted apart, in no denominator
        c["assessed"] += 1
        lacking = {g.item: g for g in _gaps(missing)}
        for item, cond in applies_if.items():
            applies = _applies(cond, int(files or 0))
            if item in lacking:
                c["missing"][item] += 1
                c["of"][item] += 1
            elif applies is not False:
                c["of"][item] += 1
        for item, g in lacking.items():
            if item not in applies_if:  # an item of older rules: counted over every assessed report
                extra.setdefault(item, g.guide)
                c["missing"][item] = c["missing"].get(item, 0) + 1
    items += list(extra.values())
    months = [MonthGaps(m, c["filed"], c["assessed"],
                        {g.id: Share(c["missing"].get(g.id, 0),
                                     c["of"][g.id] if g.id in applies_if else c["assessed"]) for g in items})
              for m, c in counts.items()]
    return GapTable(first, last, items, months)
