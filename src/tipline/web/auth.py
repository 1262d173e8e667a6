"""Who is calling, as the web layer hands it to the services.

The sign-in machinery (``tipline.people`` and its middleware) resolves a session cookie or
a bearer token to a :class:`~tipline.people.Principal` and puts it in the request scope
under :data:`SCOPE_KEY`. Routes ask for it with ``Depends(current_principal)``; the
services decide what that principal may see.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from tipline.people.principal import Principal

#: Where the middleware leaves the signed-in caller in the ASGI scope.
SCOPE_KEY = "tipline.principal"


class SignInRequired(Exception):
    """No valid session or token: pages redirect to ``/login``, the API answers 401."""


def optional_principal(request: Request) -> Principal | None:
    principal = request.scope.get(SCOPE_KEY)
    return principal if isinstance(principal, Principal) else None


def current_principal(request: Request) -> Principal:
    principal = optional_principal(request)
    if principal is None:
        raise SignInRequired()
    return principal


#: Where the middleware leaves the session's CSRF token (empty for bearer-token calls).
CSRF_SCOPE_KEY = "tipline.csrf"
#: The form field (and, for scripts, the header) that must echo it on every unsafe request.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CsrfRejected(Exception):
    """An unsafe request from a signed-in browser without the session's CSRF token."""


def csrf_token(request: Request) -> str:
    return str(request.scope.get(CSRF_SCOPE_KEY, ""))


async def require_csrf(request: Request) -> None:
    """Dependency for every route that changes something from a browser form.

    Calls with a bearer token carry no ambient credential a foreign page could borrow, so
    they need no token; a session's call must echo its token in the form or the header.
    """
    principal = optional_principal(request)
    if principal is not None and principal.token_id is not None:
        return
    expected = csrf_token(request)
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.method not in ("GET", "HEAD", "OPTIONS"):
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches it for the route that follows
            value = form.get(CSRF_FIELD, "")
            given = value if isinstance(value, str) else ""
    if not expected or not hmac.compare_digest(expected, given):
        raise CsrfRejected()
