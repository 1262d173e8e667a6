"""The ASGI application: ISPWS compatibility, the JSON API, the public pages, the landing and
docs pages, and the operator endpoints (health, readiness, metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tipline import __version__
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.web import ispws, ops, pages
from tipline.web.ops import MetricsMiddleware

log = logging.getLogger("tipline")


class RequestIdMiddleware:
    """Adds a ``Request-ID`` header to every response (clients quote it to support).

    Plain ASGI rather than BaseHTTPMiddleware, which would buffer streamed uploads.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(12)
        scope["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


async def _purge_loop(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(rt.settings.purge_interval_seconds)
        try:
            n = await asyncio.to_thread(rt.intake.purge_expired)
            if n:
                log.info("purged %d expired unfinished reports", n)
            # Partial uploads cut off by a crash were never acknowledged: drop their ciphertext.
            await asyncio.to_thread(rt.blobs.sweep_tmp)
        except Exception:
            log.exception("purge of expired reports failed; will retry")


def create_app(settings: Settings | None = None, runtime: Runtime | None = None, *,
               enrich: bool = False) -> FastAPI:
    """Build the app for ``settings`` (or an already open ``runtime``).

    ``enrich`` hooks the enrichment queue to every finish and, for the embedded queue, runs
    its workers in this process (``tipline serve`` does; tests that only exercise intake
    don't).
    """
    rt = runtime or Runtime.open(settings or Settings.from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The thread pool that runs every blocking request step (run_in_threadpool); the
        # database pool is sized to match it (Runtime.open), so no thread waits for a connection.
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = max(1, rt.settings.serve_threads)
        task = asyncio.create_task(_purge_loop(rt))
        installed = None
        if enrich:
            from tipline.pipeline.queue import install

            installed = await asyncio.to_thread(install, rt)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if installed is not None:
                await asyncio.to_thread(installed.close)

    app = FastAPI(
        title="tipline",
        version=__version__,
        summary="CyberTipline-compatible intake: ISPWS XML, JSON API and a public report form.",
        lifespan=lifespan,
        # The docs page is our own (tipline.web.pages): FastAPI's loads Swagger UI from a CDN.
        # No ReDoc: it would need a second vendored bundle for the same document.
        docs_url=None,
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.runtime = rt
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    # Before the JSON API: its error handlers hand non-API errors on to the HTML 404 page.
    pages.install(app)
    ops.install(app, rt)
    ispws_router = ispws.router(rt)
    app.include_router(ispws_router, prefix="/ispws", include_in_schema=False)
    # Some integrations are configured with a bare host as base URL.
    app.include_router(ispws_router, include_in_schema=False)
    ispws.install_errors(app)  # unknown /ispws paths and wrong methods answer in ISPWS XML
    _include_optional(app, rt)
    from tipline.web.signin import PeopleMiddleware

    # Inside the request id (the audit trail quotes it), outside every route.
    app.add_middleware(PeopleMiddleware, runtime=rt)
    app.add_middleware(RequestIdMiddleware)
    # Outermost: times the whole answer, and sees the route the router chose.
    app.add_middleware(MetricsMiddleware, routes_of=app)
    return app


def _include_optional(app: FastAPI, rt: Runtime) -> None:
    """Routers for the JSON API and the public pages."""
    from tipline.web import answers, api_operator, api_outcomes, api_stats, api_v1, public, signin, transparency

    api_v1.install(app, rt)
    # Operators' read route: its own module (credentials, schema) built on api_v1's problems,
    # installed here so that api_v1 does not import it back.
    api_operator.install(app, rt)
    api_outcomes.install(app, rt)
    public.install(app, rt)
    answers.install(app, rt)
    signin.install(app, rt)
    from tipline.web import api_referrals, inbox

    inbox.install(app, rt)
    api_referrals.install(app, rt)
    from tipline.web import console

    console.install(app, rt)
    transparency.install(app, rt)
    api_stats.install(app, rt)
    from tipline.web import platform_page

    platform_page.install(app, rt)
    from tipline.web import audit_pages

    audit_pages.install(app, rt)
    from tipline.web import admin_pages, supervise

    supervise.install(app, rt)
    admin_pages.install(app, rt)


def app_factory() -> Any:
    """Entry point for ``uvicorn --factory tipline.web.app:app_factory`` (settings from env)."""
    logging.basicConfig(level=logging.INFO)
    settings = Settings.from_env()
    return create_app(settings, enrich=bool(settings.serve_enrichment))
