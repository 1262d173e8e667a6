"""What an administrator does on the accounts page: the use cases of ``tipline user …``
(list, add, disable, enable, unlock, set a new password, reset the one-time-code secret, issue
and revoke tokens), each
taking the :class:`Principal` it acts for and calling the same functions of
:mod:`tipline.people.accounts` and :mod:`tipline.people.roster` as the command line.

Access is decided here (:data:`~tipline.kinds.roles.Capability.ACCOUNTS_MANAGE`): anyone
else gets the same :class:`NotFound` as for an account that does not exist. Every change
needs a reason; the web layer writes the audit row (the same action names as the command
line's) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tipline.kinds.roles import ROLES, Capability, Scope, may
from tipline.people import accounts, roster
from tipline.people.principal import Principal
from tipline.store.tables import Agency, Reporter
from tipline.store.tables_people import User

MAX_REASON = 2000


class NotFound(Exception):
    """No such account, or the caller may not manage accounts (the same answer for both)."""


class Refused(Exception):
    """The change cannot be made as asked; the message says why, for the person."""


def _require(principal: Principal) -> None:
    if not may(principal.role, Capability.ACCOUNTS_MANAGE):
        raise NotFound()


def _reason(text: str | None) -> str:
    reason = (text or "").strip()
    if not reason:
        raise Refused("Give a reason: it is kept in the audit trail.")
    if len(reason) > MAX_REASON:
        raise Refused(f"The reason is longer than {MAX_REASON} characters.")
    return reason


def _user(s: Session, user_id: int) -> User:
    user = s.get(User, user_id)
    if user is None:
        raise NotFound()
    return user


@dataclass(frozen=True)
class Choices:
    """What the add form offers: roles, active agencies (officers), registered platforms."""

    roles: list[tuple[str, str, str]]  # name, title, scope
    agencies: list[tuple[str, str]]  # code, name
    platforms: list[str]


def choices(s: Session, principal: Principal) -> Choices:
    _require(principal)
    return Choices(
        [(r.name, r.title, r.scope.value) for r in ROLES.values()],
        [(a.code, a.name) for a in s.scalars(select(Agency).where(Agency.active.is_(True)).order_by(Agency.code))],
        list(s.scalars(select(Reporter.name).where(Reporter.kind == "esp").order_by(Reporter.name))))


def list_users(s: Session, principal: Principal) -> list[tuple[int, roster.Account]]:
    """Every account as ``tipline user list`` shows it, with its id (for its page)."""
    _require(principal)
    ids = dict(s.execute(select(User.username, User.id)).all())
    return [(ids[a.username], a) for a in roster.list_accounts(s)]


@dataclass
class AccountPage:
    user_id: int
    account: roster.Account
    email: str | None
    display_name: str | None
    tokens: list[roster.TokenInfo]
    needs_totp: bool


def account(s: Session, principal: Principal, user_id: int) -> AccountPage:
    _require(principal)
    user = _user(s, user_id)
    row = next(a for a in roster.list_accounts(s) if a.username == user.username)
    return AccountPage(user.id, row, user.email, user.display_name, roster.list_tokens(s, user),
                       ROLES[user.role].needs_totp)


@dataclass(frozen=True)
class Added:
    user_id: int
    username: str
    role: str
    #: Shown once, never stored in the clear: a generated password and the TOTP provisioning URI.
    password: str | None
    totp_uri: str | None
    totp_secret: str | None
    detail: dict[str, object]


def add_user(s: Session, principal: Principal, username: str, role: str, *, password: str | None,
             agency: str | None, platform: str | None, email: str | None, display_name: str | None,
             reason: str | None) -> Added:
    """``tipline user add``: an account; without a password one is generated (shown once)."""
    import secrets

    _require(principal)
    why = _reason(reason)
    spec = ROLES.get(role)
    if spec is None:
        raise Refused("Choose a role.")
    # The form sends both selects; only the one the role uses counts.
    agency = (agency or None) if spec.scope is Scope.AGENCY else None
    platform = (platform or None) if spec.scope is Scope.PLATFORM else None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(15)
    try:
        accounts.check_password_rules(password)
        if agency:
            from tipline.pipeline.stages.route import ensure_directory

            ensure_directory(s)
        new = accounts.create_user(s, username, role, password, agency=agency, platform=platform,
                                   email=(email or "").strip() or None,
                                   display_name=(display_name or "").strip() or None)
    except ValueError as exc:  # AccountError and the password rules
        raise Refused(str(exc)) from None
    detail: dict[str, object] = {"username": new.user.username, "role": role, "agency": agency,
                                 "platform": platform, "reason": why}
    return Added(new.user.id, new.user.username, role, generated, new.totp_uri, new.totp_secret, detail)


def set_disabled(s: Session, principal: Principal, user_id: int, disabled: bool,
                 reason: str | None) -> dict[str, object]:
    """``tipline user disable|enable``: disabling ends every session and revokes every token."""
    _require(principal)
    user = _user(s, user_id)
    why = _reason(reason)
    if disabled and user.id == principal.user_id:
        raise Refused("You cannot disable your own account: ask another administrator.")
    if (user.disabled_at is not None) == disabled:
        raise Refused(f"{user.username} is already {'disabled' if disabled else 'enabled'}.")
    accounts.set_disabled(s, user, disabled)
    return {"username": user.username, "reason": why}


def unlock(s: Session, principal: Principal, user_id: int, reason: str | None) -> dict[str, object]:
    """``tipline user unlock``: a locked account may sign in again before its lock-out ends."""
    _require(principal)
    user = _user(s, user_id)
    why = _reason(reason)
    # Only a current lock: "unlocking" an account that is not locked would put a row on the
    # trail that says something happened when nothing did.
    if roster.state_of(user) != "locked":
        raise Refused(f"{user.username} is not locked.")
    accounts.unlock(user)
    return {"username": user.username, "reason": why}


@dataclass(frozen=True)
class NewPassword:
    username: str
    #: Shown once on the answer, never stored in the clear.
    password: str
    detail: dict[str, object]


def new_password(s: Session, principal: Principal, user_id: int, reason: str | None) -> NewPassword:
    """``tipline user password --generate``: a generated password (shown once) replaces the
    old one and every session of the account ends. The administrator never chooses it, so a
    weak or reused password cannot come in this way, and the page never echoes a typed one."""
    import secrets

    _require(principal)
    user = _user(s, user_id)
    why = _reason(reason)
    password = secrets.token_urlsafe(15)
    accounts.set_password(s, user, password)
    return NewPassword(user.username, password, {"username": user.username, "reason": why})


@dataclass(frozen=True)
class NewSecret:
    username: str
    uri: str
    secret: str
    detail: dict[str, object]


def reset_totp(s: Session, principal: Principal, user_id: int, reason: str | None) -> NewSecret:
    """``tipline user reset-totp``: a new one-time-code secret (shown once); sessions end."""
    _require(principal)
    user = _user(s, user_id)
    why = _reason(reason)
    try:
        uri, secret = accounts.reset_totp(s, user)
    except accounts.AccountError as exc:
        raise Refused(str(exc)) from None
    return NewSecret(user.username, uri, secret, {"username": user.username, "reason": why})


@dataclass(frozen=True)
class NewToken:
    username: str
    token: str
    token_id: str
    detail: dict[str, object]


def issue_token(s: Session, principal: Principal, user_id: int, label: str | None,
                reason: str | None) -> NewToken:
    """``tipline user token``: a bearer token, shown once; only its hash is kept."""
    _require(principal)
    user = _user(s, user_id)
    why = _reason(reason)
    label = (label or "").strip()[:200] or None
    try:
        token, row = accounts.issue_token(s, user, label)
    except accounts.AccountError as exc:
        raise Refused(str(exc)) from None
    return NewToken(user.username, token, row.lookup,
                    {"username": user.username, "token": row.lookup, "label": label, "reason": why})


def revoke_token(s: Session, principal: Principal, user_id: int, token_id: str,
                 reason: str | None) -> dict[str, object]:
    """``tipline user revoke-token``: the token stops authenticating at once."""
    _require(principal)
    user = _user(s, user_id)
    # An unknown token is not found, whatever else the form lacks, like an unknown account.
    if not token_id.isalnum() or len(token_id) > 40 or token_id not in {
            t.id for t in roster.list_tokens(s, user)}:
        raise NotFound()
    why = _reason(reason)
    if not accounts.revoke_token(s, user, token_id):
        raise Refused(f"{user.username} has no unrevoked token {token_id}.")
    return {"username": user.username, "token": token_id, "reason": why}
