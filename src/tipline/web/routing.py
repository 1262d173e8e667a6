"""Routing facts the error handlers need: which methods a path takes."""

from __future__ import annotations

import re
from functools import lru_cache

from fastapi.routing import iter_route_contexts
from starlette.requests import Request
from starlette.routing import compile_path


@lru_cache(maxsize=512)
def _path_regex(path_format: str) -> re.Pattern[str]:
    return compile_path(path_format)[0]


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this request's path, sorted.

    The router's 405 names only the first route that matched the path, so a path served by
    two routes (``GET`` and ``POST /reports``) would advertise one method in ``Allow``.
    """
    path = request.url.path
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        fmt, route_methods = route.path_format, route.methods
        if fmt and route_methods and _path_regex(fmt).match(path):
            methods.update(route_methods)
    return sorted(methods)
