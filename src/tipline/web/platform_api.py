"""Platform staff on the JSON API: a ``platform`` user's bearer token (``tlu_…``) reads its
platform's reports on the same routes as the platform's ISPWS credentials
(``GET /api/v1/reports``, ``GET /api/v1/reports/{reportId}``), with the same scope: the
user's platform. Reading is all a user token does there; submitting stays with the
platform's credentials.

``tipline.web.api_v1`` calls :func:`person_caller` from its authentication dependency and
:func:`report_answer` / :func:`list_answer` from its two read routes; everything else of the
platform users' API lives here. Each read by a person is one audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tipline.intake.credentials import Principal as PlatformCaller
from tipline.kinds.roles import Capability, may
from tipline.people.principal import Principal
from tipline.platform_view import service
from tipline.store.db import transaction
from tipline.store.tables import Reporter
from tipline.web.auth import optional_principal

if TYPE_CHECKING:
    from tipline.intake.service import ReportView
    from tipline.runtime import Runtime

#: Methods a user token may use on the platform routes.
READ_METHODS = ("GET", "HEAD")


class QualityGap(BaseModel):
    """One quality item the report lacks."""

    model_config = ConfigDict(extra="forbid")
    item: str = Field(description="The item's id (docs/platforms.md lists them), e.g. `ip_event_times`.")
    text: str = Field(description="What is missing, in the triage rules' words.")
    why: str = Field(description="Why the receiving agency needs it.")


class ReportQuality(BaseModel):
    """How usable the report is to law enforcement, as the pipeline assessed it."""

    model_config = ConfigDict(extra="forbid")
    score: float = Field(ge=0, le=1, description="Weighted share of the applicable quality items present (0..1).")
    disposition: str = Field(description="`referral` (enough for an agency to act) or `informational`.")
    assessedAt: str
    missing: list[QualityGap]


@dataclass(frozen=True)
class PersonCaller(PlatformCaller):
    """The platform a platform user's token acts for, and the person behind it (for the
    audit trail)."""

    person: Principal | None = None


def _forbidden(detail: str) -> Exception:
    from tipline.cybertip.codes import CybertipError, ResponseCode

    return CybertipError(ResponseCode.NOT_AUTHORISED, detail)


async def person_caller(rt: Runtime, request: Request) -> PersonCaller | None:
    """The caller for a ``tlu_`` token the sign-in middleware resolved (None: not a valid
    token, answered 401 like any refused credential). A token of another role, or a write,
    is refused (403 problem)."""
    person = optional_principal(request)
    if person is None or person.token_id is None:
        return None
    if not may(person.role, Capability.PLATFORM_READ_OWN) or person.reporter_id is None:
        raise _forbidden(f"a {person.role}'s token cannot use the platform report API")
    if request.method not in READ_METHODS:
        raise _forbidden("a user token reads reports; submit with the platform's ISPWS credentials or token")
    reporter_id = person.reporter_id

    def name() -> str | None:
        with rt.sessions() as s:
            value = s.get(Reporter, reporter_id)
            return value.name if value is not None else None

    platform = await run_in_threadpool(name)
    if platform is None:
        return None
    return PersonCaller(reporter_id=reporter_id, reporter_name=platform, credential_id=0,
                        username=person.username, person=person)


def _audit(request: Request, session: Any, caller: PlatformCaller, action: str, object_id: int | None,
           detail: dict[str, Any] | None) -> None:
    from tipline.web.signin import audit

    if isinstance(caller, PersonCaller) and caller.person is not None:
        audit(request, session, action, "report" if object_id is not None else "reports", object_id,
              detail, principal=caller.person)


def report_answer(rt: Runtime, request: Request, caller: PlatformCaller, view: ReportView) -> dict[str, Any]:
    """The API's report with its ``quality``; a person's read is audited in the same step."""
    body = view.as_json()
    with transaction(rt.sessions) as s:
        body["quality"] = service.quality_json(s, caller.reporter_id, view.id)
        _audit(request, s, caller, "api.report.read", view.id, None)
    return body


def list_answer(rt: Runtime, request: Request, caller: PlatformCaller, rows: list[dict[str, Any]]) -> None:
    """Audit a person's list read (which reports the page showed)."""
    if not isinstance(caller, PersonCaller):
        return
    with transaction(rt.sessions) as s:
        _audit(request, s, caller, "api.report.list", None,
               {"reports": [int(r["reportId"]) for r in rows], "count": len(rows)})
