"""Who is calling: the person (or their bearer token) a service call acts for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a service, as the service layer sees it.

    ``role`` is a member of ``tipline.kinds.roles``; ``agency_id`` is set for officers (their
    one agency of the directory), ``reporter_id`` for platform staff (their one registered
    platform). ``token_id`` is set when the call came with a bearer token rather than a
    signed-in session, so the audit trail can say which.
    """

    user_id: int
    username: str
    role: str
    agency_id: int | None = None
    reporter_id: int | None = None
    token_id: int | None = None
