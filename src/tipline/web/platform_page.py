"""The platform's view, ``/platform``: a platform's staff see their own reports with their
state, quality score and missing items, the most common gaps month by month (table and
chart), each report's quality items in words, and a CSV export.

Access is the service's (:mod:`tipline.platform_view.service`): anyone else, and any report
of another platform, gets the same 404 page as a report that does not exist. Every page and
export that shows report data writes one audit row in the transaction that read it.
"""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse

from tipline.people.principal import Principal
from tipline.platform_view import service
from tipline.platform_view.chart import gaps_svg
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.web.auth import current_principal
from tipline.web.render import COMMON_HEADERS
from tipline.web.signin import audit, staff_page

CSV_COLUMNS = ("reportId", "state", "source", "openedAt", "finishedAt", "incidentType", "files",
               "assessed", "qualityScore", "disposition", "missingItems", "missing")
_DIGITS = re.compile(r"^[0-9]{1,19}$")

# Filters are checked by the service (a clear message on the page, never a framework 422).
Param = Annotated[str, Query()]
Caller = Annotated[Principal, Depends(current_principal)]


def _not_found(request: Request) -> Response:
    return staff_page(request, "platform/not_found.html", status=404)


def _bad_filter(request: Request, message: str) -> Response:
    return staff_page(request, "platform/bad_filter.html", status=400, message=message)


def _ts(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def csv_line(values: list[str]) -> str:
    """One RFC 4180 record: CRLF at the end, fields with a comma, a quote or a line break
    quoted, quotes doubled."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(values)
    return buf.getvalue()


def csv_record(row: service.ReportRow) -> list[str]:
    # Every column is an id, an enum, a timestamp, a number or the rules' own text: nothing a
    # reporter typed, so no cell can start a spreadsheet formula.
    return [str(row.id), row.state, row.source, _ts(row.opened_at), _ts(row.finished_at), row.incident_type or "",
            str(row.files), "yes" if row.assessed else "no",
            "" if row.score is None else f"{row.score:.4f}", row.disposition or "",
            ";".join(g.item for g in row.missing), "; ".join(g.text for g in row.missing)]


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 10 else 1


def router(rt: Runtime) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/platform")
    async def platform_home(request: Request, principal: Caller, state: Param = "", month: Param = "",
                            gap: Param = "", page: Param = "1", since: Param = "", until: Param = "") -> Response:
        try:
            filters = service.Filters.parse(state, month, gap)
            first, last = service.gap_window(since, until)
        except service.BadFilter as exc:
            return _bad_filter(request, str(exc))

        def load() -> dict[str, Any]:
            with transaction(rt.sessions) as s:
                name = service.platform_name(s, principal)
                listing = service.list_reports(s, principal, filters, page=_page_number(page))
                table = service.gaps_by_month(s, principal, first, last)
                audit(request, s, "platform.reports.list", "reports", None,
                      {"filters": filters.describe(), "page": listing.page,
                       "reports": [r.id for r in listing.rows]})
                return {"name": name, "listing": listing, "table": table}

        try:
            data = await anyio.to_thread.run_sync(load)
        except service.NotFound:
            return _not_found(request)
        table: service.GapTable = data["table"]
        latest = table.latest_with_data()
        this_month = service.Month.of(datetime.now(UTC))
        month_choices = list(reversed(service.months_between(first, last)))
        if filters.month and filters.month not in month_choices:
            month_choices.insert(0, filters.month)

        def link(**changes: Any) -> str:
            query = {**filters.query(), **({"since": since} if since else {}), **({"until": until} if until else {})}
            for k, v in changes.items():
                if v is None or v == "":
                    query.pop(k, None)
                else:
                    query[k] = str(v)
            return "/platform" + ("?" + urllib.parse.urlencode(query) if query else "")

        def cell_link(m: service.Month, item: str) -> str:
            return "/platform?" + urllib.parse.urlencode({"month": str(m), "gap": item, "state": "finished"})

        return staff_page(
            request, "platform/view.html", scope_name=data["name"], listing=data["listing"], table=table,
            latest=latest, latest_ranked=table.ranked(latest) if latest else [],
            latest_is_this_month=bool(latest and latest.month == this_month), chart=gaps_svg(table),
            filters=filters, states=service.STATES, items=service.item_guides(), month_choices=month_choices,
            link=link, cell_link=cell_link,
            export_link="/platform/export.csv" + ("?" + urllib.parse.urlencode(filters.query())
                                                  if filters.query() else ""))

    @api.get("/platform/reports/{report_id}")
    async def platform_report(request: Request, principal: Caller, report_id: str) -> Response:
        # An id that is not a number names no report: the same 404 as a missing one.
        if not _DIGITS.match(report_id) or int(report_id) > 2**63 - 1:
            return _not_found(request)
        rid = int(report_id)

        def load() -> service.ReportDetail:
            with transaction(rt.sessions) as s:
                detail = service.report_detail(s, principal, rid)
                audit(request, s, "platform.report.read", "report", rid)
                return detail

        try:
            detail = await anyio.to_thread.run_sync(load)
        except service.NotFound:
            return _not_found(request)
        return staff_page(request, "platform/report.html", scope_name=detail.platform, report=detail)

    @api.get("/platform/export.csv")
    async def platform_export(request: Request, principal: Caller, state: Param = "", month: Param = "",
                              gap: Param = "") -> Response:
        try:
            filters = service.Filters.parse(state, month, gap)
        except service.BadFilter as exc:
            return _bad_filter(request, str(exc))

        def start() -> str:
            # The audit row commits before the first byte leaves: an export that is cut off
            # midway is still on record.
            with transaction(rt.sessions) as s:
                name = service.platform_name(s, principal)
                audit(request, s, "platform.export", "reports", None,
                      {"format": "csv", "filters": filters.describe()})
                return name

        try:
            name = await anyio.to_thread.run_sync(start)
        except service.NotFound:
            return _not_found(request)

        def body() -> Iterator[bytes]:
            yield csv_line(list(CSV_COLUMNS)).encode()
            with rt.sessions() as s:
                batch: list[str] = []
                for row in service.export_rows(s, principal, filters):
                    batch.append(csv_line(csv_record(row)))
                    if len(batch) >= 500:
                        yield "".join(batch).encode()
                        batch = []
                if batch:
                    yield "".join(batch).encode()

        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "platform"
        stamp = datetime.now(UTC).strftime("%Y%m%d")
        return StreamingResponse(body(), media_type="text/csv; charset=utf-8; header=present", headers={
            **COMMON_HEADERS, "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="tipline-reports-{slug}-{stamp}.csv"'})

    return api


def install(app: FastAPI, rt: Runtime) -> None:
    app.include_router(router(rt))
