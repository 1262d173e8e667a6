"""Demo accounts: one person of every role, so that ``tipline demo`` can be signed into.

Each run gives every demo account a new random password (printed by the demo, as the demo
platform's is); the one-time-code secret is made once and printed every run, since the
demo has no other way to hand it over. These are demo accounts on a demo instance: a real
instance adds people with ``tipline user add``, which shows a secret only once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select

from tipline.kinds.roles import ROLES
from tipline.people import accounts
from tipline.people.audit import record
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Agency, Referral

#: The demo platform of ``tipline.demo`` (its staff account belongs to it).
DEMO_PLATFORM = "Demo Platform"
#: The officer's agency when no report was routed yet.
FALLBACK_AGENCY = "ICAC-TX-OAG"


@dataclass(frozen=True, slots=True)
class DemoAccount:
    username: str
    role: str
    password: str
    #: Base32 TOTP secret (any authenticator app, or ``oathtool --totp -b SECRET``); None for
    #: platform staff, who sign in without a code.
    totp_secret: str | None
    #: The agency or platform the account belongs to, if any.
    of: str | None


def busiest_agency(rt: Runtime) -> str:
    """The agency the demo's reports were routed to most, so its officer's inbox is full."""
    with rt.sessions() as s:
        code = s.scalar(select(Agency.code).join(Referral, Referral.agency_id == Agency.id)
                        .group_by(Agency.code).order_by(func.count().desc(), Agency.code).limit(1))
    return code or FALLBACK_AGENCY


def demo_people(rt: Runtime, platform: str = DEMO_PLATFORM) -> list[DemoAccount]:
    """Make (or refresh) ``demo-<role>`` for every role; return how to sign in as each."""
    from tipline.pipeline.stages.route import ensure_directory

    agency = busiest_agency(rt)
    out: list[DemoAccount] = []
    with transaction(rt.sessions) as s:
        ensure_directory(s)
        for name, spec in ROLES.items():
            username = f"demo-{name}"
            password = secrets.token_urlsafe(12)
            user = accounts.find_user(s, username)
            of = agency if name == "officer" else platform if name == "platform" else None
            if user is None:
                new = accounts.create_user(s, username, name, password,
                                           agency=of if name == "officer" else None,
                                           platform=of if name == "platform" else None,
                                           display_name=f"Demo {spec.title.lower()}")
                user = new.user
                record(s, action="user_add", actor_name="demo", object_kind="user", object_id=user.id,
                       detail={"username": username, "role": name, "demo": True})
            else:
                accounts.set_password(s, user, password)
                accounts.set_disabled(s, user, False)
                accounts.unlock(user)
                if user.agency_id is not None:  # made on an earlier run, perhaps for another agency
                    of = s.scalar(select(Agency.code).where(Agency.id == user.agency_id))
                record(s, action="user_password", actor_name="demo", object_kind="user", object_id=user.id,
                       detail={"username": username, "demo": True})
            out.append(DemoAccount(username, name, password, user.totp_secret, of))
    return out
