"""Site pages that are not the public form: the landing page ``/``, the API docs page, the
favicon, and the HTML page for an unknown address.

Every page here is served from the package alone: the docs page loads Swagger UI from the
vendored copy under ``static/swagger-ui`` (not a CDN), so it works offline and no visitor's
browser is sent to another host. Each page carries a Content-Security-Policy that allows
nothing but this origin, which is also what keeps that true as the pages change.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tipline.web.render import render, root_of

STATIC_DIR = Path(__file__).with_name("static")
#: The vendored swagger-ui-dist (see static/swagger-ui/README.md).
SWAGGER_UI_VERSION = "5.35.0"
DOCS_URL = "/api/v1/docs"
OPENAPI_URL = "/api/v1/openapi.json"

# The docs page runs Swagger UI from this origin and fetches the OpenAPI document (and, with
# "Try it out", the API) from it. Swagger UI's stylesheet draws its icons as data: SVGs.
_DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


_root = root_of


def _wants_html(request: Request) -> bool:
    """A browser asking for a page (not an API client, not an ISPWS integration)."""
    path = request.url.path
    if path.startswith(("/api/", "/ispws")):
        return False
    return "text/html" in request.headers.get("accept", "")


def install(app: FastAPI) -> None:
    """Add ``/``, the docs page and ``/favicon.ico``, and the HTML 404 page for browsers.

    Call before the JSON API installs its error handlers: they pass what is not theirs on
    to the handler registered here.
    """

    @app.get("/", include_in_schema=False)
    async def landing(request: Request) -> HTMLResponse:
        return render(request, "landing.html", docs_url=DOCS_URL, openapi_url=OPENAPI_URL)

    @app.get(DOCS_URL, include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        # Not FastAPI's get_swagger_ui_html: it writes the Swagger UI set-up as an inline
        # script, which a CSP without 'unsafe-inline' blocks. Ours is static/docs-init.js.
        return render(request, "docs.html", csp=_DOCS_CSP, openapi_url=f"{_root(request)}{OPENAPI_URL}",
                       swagger_version=SWAGGER_UI_VERSION)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        # Browsers ask for it on every page; answer from the package instead of a 404.
        return FileResponse(STATIC_DIR / "favicon.png", media_type="image/png",
                            headers={"Cache-Control": "public, max-age=86400"})

    previous = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StarletteHTTPException) and exc.status_code == 404 and _wants_html(request):
            return render(request, "not_found.html", status=404, cache="no-store")
        result = previous(request, exc)
        return await result if isinstance(result, Awaitable) else result

    app.add_exception_handler(StarletteHTTPException, on_http_exception)
