"""The list of accounts as an operator reads it: who, which role, for which agency or
platform, whether they can sign in now, and their tokens.

Read by ``tipline user list`` and ``tipline user tokens``; a plain function of a database
session and a clock, so tests call the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tipline.people.accounts import TOKEN_PREFIX, utcnow
from tipline.store.tables import Agency, Reporter
from tipline.store.tables_people import SignInAttempt, User, UserToken


def _iso(at: datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") if at else None


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str
    agency: str | None
    platform: str | None
    #: ``active``, ``disabled`` or ``locked`` (too many failed sign-ins, until ``locked_until``).
    state: str
    locked_until: str | None
    totp: bool
    tokens: int
    created: str
    last_sign_in: str | None

    def as_json(self) -> dict[str, object]:
        return {"username": self.username, "role": self.role, "agency": self.agency,
                "platform": self.platform, "state": self.state, "lockedUntil": self.locked_until,
                "totp": self.totp, "activeTokens": self.tokens, "created": self.created,
                "lastSignIn": self.last_sign_in}


def state_of(user: User, now: datetime | None = None) -> str:
    if user.disabled_at is not None:
        return "disabled"
    if user.locked_until is not None and user.locked_until > (now or utcnow()):
        return "locked"
    return "active"


def list_accounts(session: Session, *, role: str | None = None, now: datetime | None = None) -> list[Account]:
    when = now or utcnow()
    query = (select(User, Agency.code, Reporter.name)
             .outerjoin(Agency, Agency.id == User.agency_id)
             .outerjoin(Reporter, Reporter.id == User.reporter_id)
             .order_by(User.username))
    if role:
        query = query.where(User.role == role)
    tokens = dict(session.execute(select(UserToken.user_id, func.count()).where(
        UserToken.revoked_at.is_(None)).group_by(UserToken.user_id)).all())
    # The attempts table keeps the username as typed at sign-in; successes store it as stored.
    last = dict(session.execute(select(SignInAttempt.username, func.max(SignInAttempt.at)).where(
        SignInAttempt.ok.is_(True)).group_by(SignInAttempt.username)).all())
    out = []
    for user, agency, platform in session.execute(query):
        locked = user.locked_until if state_of(user, when) == "locked" else None
        out.append(Account(user.username, user.role, agency, platform, state_of(user, when), _iso(locked),
                           user.totp_secret is not None, int(tokens.get(user.id, 0)),
                           _iso(user.created_at) or "", _iso(last.get(user.username))))
    return out


@dataclass(frozen=True, slots=True)
class TokenInfo:
    #: The public part of the token (``tlu_<id>_…``): what `revoke-token` takes.
    id: str
    label: str | None
    created: str
    last_used: str | None
    revoked: str | None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "label": self.label, "created": self.created, "lastUsed": self.last_used,
                "revoked": self.revoked}


def list_tokens(session: Session, user: User) -> list[TokenInfo]:
    rows = session.scalars(select(UserToken).where(UserToken.user_id == user.id).order_by(UserToken.created_at,
                                                                                          UserToken.id))
    return [TokenInfo(r.lookup, r.label, _iso(r.created_at) or "", _iso(r.last_used_at), _iso(r.revoked_at))
            for r in rows]


def token_display(lookup: str) -> str:
    """How a token is shown once its secret is gone: its prefix and public id."""
    return f"{TOKEN_PREFIX}{lookup}_…"
