"""Operator endpoints: ``/healthz``, ``/readyz``, ``/metrics``, and the request-metrics middleware.

* ``GET /healthz`` — the process is up and answering. Touches nothing else, so a slow or
  lost database never makes an orchestrator kill healthy processes.
* ``GET /readyz`` — this process can do its work: a real query on the database and the blob
  encryption key readable (and the same key the process holds). 503 with a JSON reason when not.
* ``GET /metrics`` — Prometheus text format, from prometheus-client: requests by route
  template and status code, latency histograms per route, enrichment queue depth, stage
  runs and failures (see ``tipline.metrics``).

The answers say what failed in a few words, never the exception text (a database error can
name hosts and users); the details go to the log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tipline import __version__
from tipline.metrics import UNMATCHED, multiprocess_dir, record_request
from tipline.runtime import Runtime
from tipline.store.blobs import load_key
from tipline.store.tables import Report

log = logging.getLogger("tipline.ops")

#: A readiness check that takes longer than this counts as failed (a hung connection).
READY_TIMEOUT_SECONDS = 5.0
_NO_CACHE = {"Cache-Control": "no-store"}


# --- request metrics ------------------------------------------------------------------------


class RouteLabels:
    """Finds the route template that answers a request (``/api/v1/reports/{reportId}``).

    A label must never be the raw path: that would make one time series per report id.
    ``scope["route"]`` alone does not tell the template (FastAPI sets it to the route as
    declared, so ``/ispws/status`` and ``/status`` share one object, and a mount sets
    none), so the request is matched against the app's routes as mounted, prefixes included.
    """

    #: Most (path, method) answers remembered; a client chooses both, so the memo is bounded.
    MEMO_LIMIT = 4096

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._n_routes = -1
        self._table: list[tuple[re.Pattern[str], frozenset[str] | None, str]] = []
        # (path, method) -> template, for paths answered by a route without parameters (the
        # ISPWS calls, health, metrics): a dict lookup instead of a scan of ~200 regexes per
        # request. Paths with ids are not remembered: one entry per report would be unbounded.
        self._memo: dict[tuple[str, str], str] = {}

    def _routes(self) -> list[tuple[re.Pattern[str], frozenset[str] | None, str]]:
        if len(self.app.routes) != self._n_routes:  # routes are added until start-up ends
            from fastapi.routing import iter_route_contexts

            table = []
            for rc in iter_route_contexts(self.app.routes):
                template, regex = rc.path_format, getattr(rc, "path_regex", None)
                if isinstance(template, str) and isinstance(regex, re.Pattern):
                    methods = getattr(rc, "methods", None)
                    table.append((regex, frozenset(methods) if methods else None, template))
            self._table = table
            self._memo = {}
            self._n_routes = len(self.app.routes)
        return self._table

    def label(self, scope: Scope) -> str:
        """``scan``'s answer, remembered for paths that are a route's whole template."""
        path = get_route_path(scope)
        method = str(scope.get("method", ""))
        table = self._routes()  # first: a changed route table empties the memo
        hit = self._memo.get((path, method))
        if hit is not None:
            return hit
        template = self.scan(path, method, table)
        if template == path and len(self._memo) < self.MEMO_LIMIT:
            self._memo[(path, method)] = template
        return template

    def scan(self, path: str, method: str,
             table: list[tuple[re.Pattern[str], frozenset[str] | None, str]] | None = None) -> str:
        """The template of the first route whose path and method match (as the router picks),
        else of the first whose path matches (a wrong method answers 405 under that
        template), else ``UNMATCHED``. The plain reference the memo in ``label`` must agree with."""
        partial = None
        # The router's own regexes, without its full match (which costs 5x as much): the
        # same answer for every route here, which match on path and method alone.
        for regex, methods, template in (table if table is not None else self._routes()):
            if regex.match(path):
                if methods is None or method in methods:
                    return template
                if partial is None:
                    partial = template
        return partial or UNMATCHED


class MetricsMiddleware:
    """Counts every HTTP request by route template, method and status code, with its latency.

    Plain ASGI (like ``RequestIdMiddleware``): BaseHTTPMiddleware would buffer streamed
    uploads. The route is found after the answer, so it costs the request nothing.
    """

    def __init__(self, app: ASGIApp, *, routes_of: FastAPI) -> None:
        self.app = app
        self.labels = RouteLabels(routes_of)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Routing rewrites root_path and path_params in place: match on the scope as it came.
        pristine = dict(scope)
        began = time.perf_counter()
        status = 500  # what the server error middleware answers if the app raises first

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            record_request(self.labels.label(pristine), str(scope.get("method", "")), status,
                           time.perf_counter() - began)


# --- queue depth, computed at scrape time -----------------------------------------------------


class QueueCollector(Collector):
    """Enrichment backlog, read from the database when ``/metrics`` is scraped.

    From the database rather than kept in memory, so every process (and every worker of
    ``--workers N``) reports the same numbers, in multiprocess mode too.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        from tipline.pipeline.queue import PROCRASTINATE_SCHEMA, TASK_NAMES, pending_report_ids, queue_kind

        try:
            kind = queue_kind(self.rt)
        except SystemExit:  # a misconfigured TIPLINE_QUEUE: serve refuses to start anyway
            return
        pending = GaugeMetricFamily(
            "tipline_enrichment_pending_reports",
            "Finished reports with a stage not yet done at its current version (the ledger).")
        depth = GaugeMetricFamily(
            "tipline_queue_depth",
            "Enrichment jobs waiting: Procrastinate jobs in 'todo'; for the in-process queue, "
            "the finished reports the ledger says are pending.", labels=["queue"])
        families: list[Metric] = [pending, depth]
        try:
            n_pending = len(pending_report_ids(self.rt))
            pending.add_metric([], n_pending)
            if kind == "procrastinate":
                jobs = GaugeMetricFamily("tipline_queue_jobs", "Procrastinate enrichment jobs by status.",
                                         labels=["queue", "status"])
                counts = self._procrastinate_counts(PROCRASTINATE_SCHEMA, TASK_NAMES)
                for status in ("todo", "doing"):
                    jobs.add_metric([kind, status], counts.get(status, 0))
                depth.add_metric([kind], counts.get("todo", 0))
                families.append(jobs)
            else:
                depth.add_metric([kind], n_pending)
        except Exception:
            # A scrape must not fail because the database is away; /readyz says why.
            log.warning("queue metrics unavailable", exc_info=True)
            return
        yield from families

    def _procrastinate_counts(self, schema: str, tasks: tuple[str, ...]) -> dict[str, int]:
        with self.rt.engine.connect() as conn:
            present = conn.execute(text("SELECT to_regclass(:t)"),
                                   {"t": f"{schema}.procrastinate_jobs"}).scalar()
            if present is None:  # no worker has created the queue's tables yet: nothing queued
                return {}
            rows = conn.execute(text(
                f"SELECT status::text, count(*) FROM {schema}.procrastinate_jobs "
                "WHERE task_name = ANY(:tasks) GROUP BY 1"), {"tasks": list(tasks)})
            return {str(k): int(v) for k, v in rows}


class _ProcessMetrics(Collector):
    """This process's metrics from the default registry (single-process mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def metrics_registry(rt: Runtime) -> CollectorRegistry:
    """A registry for one scrape: the recorded metrics (summed over processes in multiprocess
    mode) plus the queue gauges of this runtime."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(QueueCollector(rt))
    return registry


# --- readiness ------------------------------------------------------------------------------


def check_database(rt: Runtime) -> None:
    """A real query on a tipline table (also proves the schema is there)."""
    with rt.engine.connect() as conn:
        conn.execute(select(func.count()).select_from(select(Report.id).limit(1).subquery())).scalar_one()


def check_key(rt: Runtime) -> str | None:
    """None if the blob key file is readable and is the key this process encrypts with."""
    path = rt.settings.effective_key_file
    try:
        key = load_key(path)
    except FileNotFoundError:
        return "blob encryption key missing"
    except (OSError, ValueError):
        log.warning("blob key at %s unreadable", path, exc_info=True)
        return "blob encryption key unreadable"
    if key != rt.blobs.key:
        return "blob encryption key changed since the process started"
    return None


async def readiness(rt: Runtime) -> tuple[bool, dict[str, Any]]:
    """(ready, JSON body) for ``/readyz``."""
    checks: dict[str, str] = {}
    reasons: list[str] = []
    try:
        await asyncio.wait_for(asyncio.to_thread(check_database, rt), READY_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = "failed"
        reasons.append(f"database did not answer within {READY_TIMEOUT_SECONDS:g} s")
    except Exception:
        log.warning("readiness: database check failed", exc_info=True)
        checks["database"] = "failed"
        reasons.append("database unreachable")
    problem = await asyncio.to_thread(check_key, rt)
    checks["blobKey"] = "ok" if problem is None else "failed"
    if problem is not None:
        reasons.append(problem)
    body: dict[str, Any] = {"status": "ready" if not reasons else "unavailable", "checks": checks}
    if reasons:
        body["reason"] = "; ".join(reasons)
    return not reasons, body


# --- wiring ---------------------------------------------------------------------------------


def install(app: FastAPI, rt: Runtime) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` (the middleware is added by ``create_app``)."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__}, headers=_NO_CACHE)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready, body = await readiness(rt)
        return JSONResponse(body, status_code=200 if ready else 503, headers=_NO_CACHE)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # The queue gauges query the database: off the event loop.
        data = await asyncio.to_thread(generate_latest, metrics_registry(rt))
        return Response(data, media_type=CONTENT_TYPE_LATEST, headers=_NO_CACHE)
