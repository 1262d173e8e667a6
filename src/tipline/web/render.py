"""One Jinja environment for every HTML page, and the headers every page carries.

Pages come in three families, each with its own Content-Security-Policy: site pages and the
public form (no script at all), the API docs page (Swagger UI from this origin), and the
signed-in staff pages (scripts from this origin only, never inline). Every page is served
from the package alone, so it works offline and sends no visitor's browser to another host.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from tipline import __version__

env = Environment(
    loader=PackageLoader("tipline.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

COMMON_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
#: Plain pages and the public form: no script at all.
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
#: Staff pages (console, inbox, platform view, audit): scripts (vendored htmx and our own)
#: from this origin only, never inline; images (blurred thumbnails) from this origin.
STAFF_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
             "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, template: str, *, status: int = 200, csp: str = PAGE_CSP,
           cache: str = "no-cache", **context: Any) -> HTMLResponse:
    """Render ``template`` with the context every layout needs (root, static, version)."""
    root = root_of(request)
    html = env.get_template(template).render(
        root=root, version=__version__, static=f"{root}/static", v=__version__,
        css=f"{root}/static/tipline.css?v={__version__}", **context)
    return HTMLResponse(html, status_code=status, headers={
        **COMMON_HEADERS, "Content-Security-Policy": csp, "Cache-Control": cache})
