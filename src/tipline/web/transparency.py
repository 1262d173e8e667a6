"""The public transparency report: ``/transparency/YEAR`` (page, CSV, data package, JSON,
PDF, charts) and ``GET /api/v1/stats/transparency/{year}``.

A page view shows the report published from the year's columnar export when there is one
(``tipline stats export --year``: computed from it once, kept under its snapshot id, then read
back), and otherwise computes the report from the records (and keeps it); a ``snapshot=``
parameter shows a kept report instead, so a cited link keeps its figures. The
tables are aggregates of reports — no report content — so the page is public, like NCMEC's.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from tipline.runtime import Runtime
from tipline.stats import transparency as tr
from tipline.web.api_v1 import PREFIX, PROBLEM_BASE, PROBLEM_MEDIA_TYPE, _problems
from tipline.web.render import render

FIRST_YEAR, LAST_YEAR = 1998, 2100  # the CyberTipline opened in 1998
#: Changed figures listed per revision on the page (as in the PDF); the CSV (and the JSON) has them all.
SHOWN_CHANGES = tr.SHOWN_CHANGES
Year = Annotated[int, Path(ge=FIRST_YEAR, le=LAST_YEAR, description="Calendar year (UTC) of receipt.")]
Snapshot = Annotated[str | None, Query(pattern="^[0-9a-f]{16}$",
                                       description="A kept report's snapshot id: the same figures as then.")]


def _not_found(detail: str) -> JSONResponse:
    return JSONResponse({"type": PROBLEM_BASE + "not-found", "title": "Not found", "status": 404,
                         "detail": detail}, status_code=404, media_type=PROBLEM_MEDIA_TYPE)


async def _report(rt: Runtime, year: int, snapshot: str | bool | None) -> tr.Transparency | None:
    def work() -> tr.Transparency | None:
        if isinstance(snapshot, str):
            return tr.recall(rt.settings.data_dir, year, snapshot)
        # A year with a columnar export is served as published from it (computed once, then
        # read back); without one, from the store, the reference, on every view.
        from tipline.stats import columnar

        th = rt.settings.outcome_coverage_threshold
        found = columnar.published(rt.settings.data_dir, year, coverage_threshold=th)
        if found is not None:
            return found
        report = tr.build(rt.sessions, year, coverage_threshold=th)
        tr.keep(report, rt.settings.data_dir)
        return report

    return await anyio.to_thread.run_sync(work)


def _year(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and FIRST_YEAR <= int(raw) <= LAST_YEAR else None


def _snap(raw: str | None) -> str | None | bool:
    """The snapshot parameter of a page route: None when absent, False when malformed."""
    if raw is None or raw == "":
        return None
    return raw if len(raw) == 16 and all(c in "0123456789abcdef" for c in raw) else False


def _suffix(snapshot: str) -> str:
    return f"?snapshot={snapshot}"


def router(rt: Runtime) -> tuple[APIRouter, APIRouter]:
    pages = APIRouter(include_in_schema=False)
    api = APIRouter(prefix=PREFIX, tags=["statistics"])

    @api.get("/stats/transparency/{year}", summary="The transparency report of a year",
             description="Every table of the transparency report (docs/statistics.md), each with "
                         "its query, beside NCMEC's published figure where one exists; `null` where "
                         "a figure is unknown or unpublished, never 0. `snapshot` recalls a kept report.",
             responses={**_problems(404)})
    async def api_report(year: Year, snapshot: Snapshot = None) -> Response:
        report = await _report(rt, year, snapshot)
        if report is None:
            return _not_found(f"no kept transparency report {snapshot} for {year}")
        return JSONResponse(report.as_json())

    @pages.get("/transparency/{year}.pdf")
    async def as_pdf(year: str, snapshot: str | None = None) -> Response:
        y, snap = _year(year), _snap(snapshot)
        report = await _report(rt, y, snap) if y is not None and snap is not False else None
        if report is None:
            return _not_found("no such snapshot")
        data = await anyio.to_thread.run_sync(tr.pdf, report)
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="transparency-{y}.pdf"'})

    @pages.get("/transparency/{year}")
    async def page(request: Request, year: str, snapshot: str | None = None) -> Response:
        y, snap = _year(year), _snap(snapshot)
        report = await _report(rt, y, snap) if y is not None and snap is not False else None
        if report is None:
            return render(request, "not_found.html", status=404, cache="no-store")
        base = f"/transparency/{y}"
        q = _suffix(report.snapshot)
        downloads = [("CSV tables with data package", f"{base}/datapackage.json{q}"),
                     ("JSON", f"/api/v1/stats/transparency/{year}{q}"), ("PDF", f"{base}.pdf{q}")]
        resp: HTMLResponse = render(request, "transparency.html", report=report, fmt=tr.fmt_cell,
                                    chart_base=f"{base}/charts/", chart_q=q, permalink=f"{base}{q}",
                                    downloads=downloads, revisions_csv=f"{base}/revisions.csv{q}",
                                    shown_changes=SHOWN_CHANGES, fmt_rev=tr.fmt_revision, cache="no-cache")
        return resp

    @pages.get("/transparency/{year}/datapackage.json")
    async def package(year: str, snapshot: str | None = None) -> Response:
        y, snap = _year(year), _snap(snapshot)
        report = await _report(rt, y, snap) if y is not None and snap is not False else None
        if report is None:
            return _not_found("no such snapshot")
        doc = tr.datapackage(report)
        for res in doc["resources"]:
            res["path"] = f"{res['path']}{_suffix(report.snapshot)}"
        return JSONResponse(doc)

    @pages.get("/transparency/{year}/{table}.csv")
    async def table_csv(year: str, table: str, snapshot: str | None = None) -> Response:
        y, snap = _year(year), _snap(snapshot)
        report = await _report(rt, y, snap) if y is not None and snap is not False else None
        found = next((t for t in [*report.tables, tr.revision_table(report)] if t.key == table), None) \
            if report else None
        if report is None or found is None:
            return _not_found(f"no table {table!r}")
        return Response(tr.table_csv(found), media_type="text/csv; charset=utf-8; header=present",
                        headers={"Content-Disposition": f'attachment; filename="{y}-{table}.csv"'})

    @pages.get("/transparency/{year}/charts/{name}")
    async def chart(year: str, name: str, snapshot: str | None = None) -> Response:
        y, snap = _year(year), _snap(snapshot)
        report = await _report(rt, y, snap) if y is not None and snap is not False else None
        if report is None:
            return _not_found("no such snapshot")
        if name.rsplit(".", 1)[0] not in tr.chart_names(report) or not name.endswith((".svg", ".png")):
            return _not_found(f"no chart {name!r}")
        made: dict[str, Any] = await anyio.to_thread.run_sync(tr.charts, report, name)
        if name not in made:
            return _not_found(f"no chart {name!r}")
        data, media = made[name]
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    return pages, api


def standalone_html(report: tr.Transparency) -> str:
    """The report as one self-contained page (styles inline, charts beside it) for files."""
    from tipline.web.pages import STATIC_DIR
    from tipline.web.render import env

    css = (STATIC_DIR / "tipline.css").read_text(encoding="utf-8")
    return env.get_template("transparency_file.html").render(
        report=report, fmt=tr.fmt_cell, chart_base="", chart_q="", css=css, permalink=None, downloads=None,
        revisions_csv="revisions.csv", shown_changes=SHOWN_CHANGES, fmt_rev=tr.fmt_revision)


def install(app: FastAPI, rt: Runtime) -> None:
    pages, api = router(rt)
    app.include_router(pages)
    app.include_router(api)
