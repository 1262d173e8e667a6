"""Accounts of the people who sign in: passwords (argon2id), one-time codes (TOTP), bearer
tokens for the JSON API, server-side sessions, lock-out and rate limits.

Everything here is a plain function of a database session and a clock, so the CLI, the
pages and the tests call the same code. Secrets are never stored: a password as its argon2id
hash, a token and a session cookie as the SHA-256 of their high-entropy secret (a fast hash is
enough for 256 random bits; argon2 is for what people choose).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tipline.kinds.roles import ROLES, Scope
from tipline.people.principal import Principal
from tipline.store.tables import Agency, Reporter
from tipline.store.tables_people import SignInAttempt, User, UserToken, WebSession

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from tipline.config import Settings

#: User bearer tokens: ``tlu_<lookup>_<secret>`` (platform ISPWS/API credentials are ``tpl_``).
TOKEN_PREFIX = "tlu_"
MIN_PASSWORD_LENGTH = 8
#: The issuer shown in authenticator apps.
TOTP_ISSUER = "tipline"
#: Window over which per-address attempts are counted.
RATE_WINDOW = timedelta(minutes=15)


class AccountError(ValueError):
    """A request to change accounts that cannot be done (message for the operator)."""


class SignInFailure(StrEnum):
    """Why a sign-in failed. The person is told only "wrong username, password or code" (or
    that the account is locked / too many attempts), so usernames cannot be probed."""

    UNKNOWN = "unknown"
    PASSWORD = "password"
    TOTP = "totp"
    TOTP_REUSED = "totp_reused"
    LOCKED = "locked"
    DISABLED = "disabled"
    RATE = "rate"


@dataclass(frozen=True, slots=True)
class SignInResult:
    user: User | None
    failure: SignInFailure | None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def utcnow() -> datetime:
    return datetime.now(UTC)


@cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4 (STACK.md: ~90 ms)


@cache
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so timing does not reveal which exist.
    return _hasher().hash(secrets.token_urlsafe(16))


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher().hash(password)


def _verify_password(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def principal_of(user: User, token_id: int | None = None) -> Principal:
    return Principal(user_id=user.id, username=user.username, role=user.role,
                     agency_id=user.agency_id, reporter_id=user.reporter_id, token_id=token_id)


# --- accounts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewUser:
    user: User
    #: The otpauth:// provisioning URI (shown once), for roles that need a one-time code.
    totp_uri: str | None
    totp_secret: str | None


def create_user(session: Session, username: str, role: str, password: str, *,
                agency: str | None = None, platform: str | None = None,
                email: str | None = None, display_name: str | None = None,
                now: datetime | None = None) -> NewUser:
    """Add an account. Officers name their one agency (directory code), platform staff their
    one registered platform; other roles name neither."""
    import pyotp

    username = username.strip()
    if not username or len(username) > 60 or any(c.isspace() for c in username):
        raise AccountError("a username is 1-60 characters without spaces")
    spec = ROLES.get(role)
    if spec is None:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
        raise AccountError(f"a user named {username!r} exists")
    agency_id = reporter_id = None
    if spec.scope is Scope.AGENCY:
        if not agency:
            raise AccountError(f"a {role} belongs to exactly one agency: give --agency CODE")
        agency_id = session.scalar(select(Agency.id).where(Agency.code == agency))
        if agency_id is None:
            raise AccountError(f"no agency with code {agency!r} (see `tipline agency list`)")
    elif agency:
        raise AccountError(f"a {role} belongs to no agency")
    if spec.scope is Scope.PLATFORM:
        if not platform:
            raise AccountError(f"{role} staff belong to exactly one platform: give --platform NAME")
        reporter_id = session.scalar(select(Reporter.id).where(Reporter.name == platform,
                                                               Reporter.kind == "esp"))
        if reporter_id is None:
            raise AccountError(f"no registered platform named {platform!r} (see `tipline esp list`)")
    elif platform:
        raise AccountError(f"a {role} belongs to no platform")
    when = now or utcnow()
    secret = pyotp.random_base32() if spec.needs_totp else None
    user = User(username=username, role=role, agency_id=agency_id, reporter_id=reporter_id,
                email=email, display_name=display_name, password_hash=hash_password(password),
                password_changed_at=when, totp_secret=secret, created_at=when)
    session.add(user)
    session.flush()
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER) if secret else None
    return NewUser(user, uri, secret)


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def require_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise AccountError(f"no user named {username!r}")
    return user


def set_password(session: Session, user: User, password: str, *, now: datetime | None = None) -> None:
    """A new password ends every session of the account (someone may have known the old one)."""
    user.password_hash = hash_password(password)
    user.password_changed_at = now or utcnow()
    end_all_sessions(session, user.id, now=now)


def set_disabled(session: Session, user: User, disabled: bool, *, now: datetime | None = None) -> None:
    when = now or utcnow()
    user.disabled_at = when if disabled else None
    if disabled:
        end_all_sessions(session, user.id, now=when)
        session.execute(update(UserToken).where(UserToken.user_id == user.id, UserToken.revoked_at.is_(None))
                        .values(revoked_at=when))


def reset_totp(session: Session, user: User, *, now: datetime | None = None) -> tuple[str, str]:
    """A fresh TOTP secret (the old device stops working); returns (uri, secret)."""
    import pyotp

    if not ROLES[user.role].needs_totp:
        raise AccountError(f"a {user.role} signs in without a one-time code")
    secret = pyotp.random_base32()
    user.totp_secret = secret
    user.totp_last_step = None
    end_all_sessions(session, user.id, now=now)
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=TOTP_ISSUER), secret


def unlock(user: User) -> None:
    user.failed_sign_ins = 0
    user.locked_until = None


# --- sign-in ----------------------------------------------------------------------------------


def _totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step ``code`` is valid for (this one or one either side), or None."""
    import pyotp

    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // totp.interval
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def sign_in(session: Session, settings: Settings, username: str, password: str, code: str | None,
            *, address: str | None = None, now: datetime | None = None) -> SignInResult:
    """Check a password (and a one-time code for roles that need one), count the attempt,
    lock the account after too many failures. The caller commits, whatever the result, so
    that failures are counted."""
    when = now or utcnow()
    user = find_user(session, username)

    def fail(reason: SignInFailure, locked_until: datetime | None = None) -> SignInResult:
        session.add(SignInAttempt(username=username[:60], address=address, at=when, ok=False,
                                  failure=reason.value))
        return SignInResult(None, reason, locked_until)

    if address:
        recent = session.scalar(select(func.count()).select_from(SignInAttempt).where(
            SignInAttempt.address == address, SignInAttempt.at > when - RATE_WINDOW))
        if (recent or 0) >= settings.sign_in_rate_per_address:
            return fail(SignInFailure.RATE)
    if user is None:
        _verify_password(_dummy_hash(), password)
        return fail(SignInFailure.UNKNOWN)
    if user.locked_until is not None and user.locked_until > when:
        return fail(SignInFailure.LOCKED, user.locked_until)
    password_ok = _verify_password(user.password_hash, password)
    needs_code = ROLES[user.role].needs_totp
    step = None
    if password_ok and needs_code:
        step = _totp_step(user.totp_secret or "", code or "", when) if user.totp_secret else None
    if not password_ok or (needs_code and step is None):
        user.failed_sign_ins += 1
        if user.failed_sign_ins >= settings.sign_in_max_failures:
            user.locked_until = when + timedelta(minutes=settings.sign_in_lock_minutes)
            user.failed_sign_ins = 0
        return fail(SignInFailure.PASSWORD if not password_ok else SignInFailure.TOTP, user.locked_until
                    if user.locked_until and user.locked_until > when else None)
    if step is not None and user.totp_last_step is not None and step <= user.totp_last_step:
        return fail(SignInFailure.TOTP_REUSED)
    if user.disabled_at is not None:
        return fail(SignInFailure.DISABLED)
    user.failed_sign_ins = 0
    user.locked_until = None
    if step is not None:
        user.totp_last_step = step
    session.add(SignInAttempt(username=user.username, address=address, at=when, ok=True))
    return SignInResult(user, None)


# --- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartedSession:
    cookie: str
    csrf: str
    row: WebSession


def start_session(session: Session, user: User, *, address: str | None = None,
                  user_agent: str | None = None, now: datetime | None = None) -> StartedSession:
    when = now or utcnow()
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    row = WebSession(id=_sha256(cookie), user_id=user.id, csrf_token=csrf, created_at=when,
                     last_seen_at=when, address=address, user_agent=(user_agent or "")[:255] or None)
    session.add(row)
    return StartedSession(cookie, csrf, row)


@dataclass(frozen=True, slots=True)
class ActiveSession:
    principal: Principal
    csrf: str
    session_id: str


def resolve_session(session: Session, settings: Settings, cookie: str, *,
                    now: datetime | None = None) -> ActiveSession | None:
    """The signed-in person of a session cookie, or None when it ended, idled out or the
    account is disabled. Touches ``last_seen_at`` (at most once a minute, to spare writes)."""
    when = now or utcnow()
    row = session.get(WebSession, _sha256(cookie))
    if row is None or row.ended_at is not None:
        return None
    if when - row.last_seen_at > timedelta(minutes=settings.session_idle_minutes):
        row.ended_at = when
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    if when - row.last_seen_at > timedelta(seconds=60):
        row.last_seen_at = when
    return ActiveSession(principal_of(user), row.csrf_token, row.id)


def end_session(session: Session, cookie: str, *, now: datetime | None = None) -> None:
    row = session.get(WebSession, _sha256(cookie))
    if row is not None and row.ended_at is None:
        row.ended_at = now or utcnow()


def end_all_sessions(session: Session, user_id: int, *, now: datetime | None = None) -> int:
    """Sign out everywhere: every open session of the account ends."""
    result = session.execute(update(WebSession).where(WebSession.user_id == user_id,
                                                      WebSession.ended_at.is_(None))
                             .values(ended_at=now or utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


# --- bearer tokens ----------------------------------------------------------------------------


def issue_token(session: Session, user: User, label: str | None = None, *,
                now: datetime | None = None) -> tuple[str, UserToken]:
    """A new bearer token for the JSON API (printed once; only its hash is kept)."""
    if user.disabled_at is not None:
        raise AccountError(f"{user.username} is disabled")
    lookup = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = UserToken(user_id=user.id, lookup=lookup, secret_hash=_sha256(secret), label=label,
                    created_at=now or utcnow())
    session.add(row)
    session.flush()
    return f"{TOKEN_PREFIX}{lookup}_{secret}", row


def resolve_token(session: Session, token: str, *, now: datetime | None = None) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    lookup, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or not secret:
        return None
    row = session.scalar(select(UserToken).where(UserToken.lookup == lookup))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.secret_hash, _sha256(secret)):
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    when = now or utcnow()
    if row.last_used_at is None or when - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = when
    return principal_of(user, token_id=row.id)


def revoke_token(session: Session, user: User, token_or_lookup: str, *, now: datetime | None = None) -> bool:
    lookup = token_or_lookup
    if lookup.startswith(TOKEN_PREFIX):
        lookup = lookup[len(TOKEN_PREFIX):].partition("_")[0]
    row = session.scalar(select(UserToken).where(UserToken.lookup == lookup, UserToken.user_id == user.id))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now or utcnow()
    return True
