"""Roles of the people who sign in, and what each may do (DESIGN.md, "People and what they
may touch").

The service layer asks :func:`may` before it reads or writes; templates and routes never
decide access themselves. Scope narrows further: an officer sees only what was made
available to their one agency, platform staff only their own platform's reports, and an
object outside scope answers "not found" exactly as a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Capability(StrEnum):
    """Things a role may do; each service call names the one it needs."""

    #: Read any report, its files' hashes and matches (not legally gated files' bytes).
    REPORT_READ = "report.read"
    #: Label files, change priority or disposition, escalate, route by hand, close, claim.
    REPORT_TRIAGE = "report.triage"
    #: See the workload of every analyst and reassign claims.
    QUEUE_SUPERVISE = "queue.supervise"
    #: Manage hash banks, routing rules and the agency directory.
    CONFIG_MANAGE = "config.manage"
    #: Read referrals made available to the caller's own agency, and their reports.
    REFERRAL_READ_OWN = "referral.read_own"
    #: Acknowledge, assign, transfer, record legal process and outcomes, export.
    REFERRAL_ACT = "referral.act"
    #: Read the caller's own platform's reports and their quality.
    PLATFORM_READ_OWN = "platform.read_own"
    #: Read, filter, export and verify the audit trail.
    AUDIT_READ = "audit.read"
    #: Add, disable and reset accounts; manage agencies and platform credentials.
    ACCOUNTS_MANAGE = "accounts.manage"
    #: Sign in and see one's own account (sessions, tokens); every role has it.
    SIGN_IN = "sign_in"


class Scope(StrEnum):
    """What narrows a role's reach: nothing, one agency, or one platform."""

    ALL = "all"
    AGENCY = "agency"
    PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    title: str
    scope: Scope
    #: Sign-in asks for a one-time code (TOTP) besides the password.
    needs_totp: bool
    capabilities: frozenset[Capability]
    #: The page a person of this role lands on after signing in.
    home: str


_C = Capability


def _caps(*granted: Capability) -> frozenset[Capability]:
    # Every role signs in and sees its own account.
    return frozenset({Capability.SIGN_IN, *granted})


ROLES: dict[str, Role] = {r.name: r for r in (
    Role("analyst", "Hotline analyst", Scope.ALL, True,
         _caps(_C.REPORT_READ, _C.REPORT_TRIAGE), "/console"),
    Role("supervisor", "Supervisor", Scope.ALL, True,
         _caps(_C.REPORT_READ, _C.REPORT_TRIAGE, _C.QUEUE_SUPERVISE, _C.CONFIG_MANAGE),
         "/console"),
    Role("officer", "Law-enforcement officer", Scope.AGENCY, True,
         _caps(_C.REFERRAL_READ_OWN, _C.REFERRAL_ACT), "/le"),
    Role("platform", "Platform staff", Scope.PLATFORM, False,
         _caps(_C.PLATFORM_READ_OWN), "/platform"),
    Role("auditor", "Auditor", Scope.ALL, True, _caps(_C.AUDIT_READ), "/audit"),
    # No report content by default (DESIGN.md).
    Role("admin", "Administrator", Scope.ALL, True, _caps(_C.ACCOUNTS_MANAGE), "/admin/users"),
)}

ROLE_NAMES: tuple[str, ...] = tuple(ROLES)


def role(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r} (one of {', '.join(ROLE_NAMES)})") from None


def may(role_name: str, capability: Capability) -> bool:
    r = ROLES.get(role_name)
    return r is not None and capability in r.capabilities
