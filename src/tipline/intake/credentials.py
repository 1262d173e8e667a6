"""Reporter credentials: HTTP Basic passwords (argon2id) and API bearer tokens.

argon2id is deliberately slow (~90 ms a check), and ISPWS clients send Basic auth on every
request. ``Authenticator`` therefore memoises *successful* checks: the cache maps
(credential row, stored hash, HMAC of the offered password under a per-process key) to
"verified". It is a pure memo of ``argon2.verify``: a changed or disabled credential changes
the row it is checked against, so it can never admit what the slow path would refuse
(tests compare both paths).

The operator's changes (add a platform, enable/disable it, issue/revoke a token, set a
password) are the functions at the end; the CLI and tests call them, and they raise
``CredentialError`` with a sentence for the operator, never a protocol's code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tipline.store.db import transaction
from tipline.store.tables import Credential, Reporter

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from tipline.runtime import Runtime

TOKEN_PREFIX = "tpl_"
#: The shortest password ``esp add`` and ``esp password`` accept.
MIN_PASSWORD_LENGTH = 8


# argon2 and its dummy hash are made on first use, not at import: hashing the dummy takes
# ~90 ms, which every CLI command paid, including those that never check a password.
@cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4


@cache
def _dummy_hash() -> str:
    """A fixed hash to verify against when the username is unknown, so timing does not tell
    an attacker which usernames exist."""
    return _hasher().hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """An authenticated reporter."""

    reporter_id: int
    reporter_name: str
    credential_id: int
    username: str


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password_slow(stored_hash: str, password: str) -> bool:
    """The reference check: argon2id verification, no cache."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return _hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> tuple[str, str, str]:
    """A new bearer token: (token to show once, lookup id, hash to store)."""
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{lookup}_{secret}", lookup, hashlib.sha256(secret.encode()).hexdigest()


class Authenticator:
    """Checks Basic credentials and bearer tokens against the database."""

    def __init__(
        self, sessions: sessionmaker[Session], cache_seconds: int = 300, recheck_seconds: float = 2.0,
        *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        # Where the memos read the time; tests move a manual clock instead of sleeping.
        self.clock = clock
        self._ttl = cache_seconds
        self._recheck = recheck_seconds
        self._pepper = secrets.token_bytes(32)  # per process: the cache never leaves memory
        self._cache: dict[tuple[int, str, bytes], float] = {}
        # The second, shorter memo: a principal accepted a moment ago is accepted again without
        # a database round trip. It is what lets a credential be disabled in another process
        # take up to ``recheck_seconds`` to bite; at ISPWS's four requests per report it saves
        # a quarter of the request time.
        self._recent: dict[tuple[str, bytes], tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._pepper, password.encode("utf-8", "surrogatepass"), "sha256").digest()

    def recent_basic(self, username: str, password: str) -> Principal | None:
        """The principal if this exact credential was accepted within ``recheck_seconds``.

        No database access: safe to call on the event loop. ``None`` means "ask ``basic``".
        """
        if self._recheck <= 0:
            return None
        hit = self._recent.get((username, self._mac(password)))
        if hit is not None and self.clock() - hit[1] < self._recheck:
            return hit[0]
        return None

    def forget(self) -> None:
        """Drop every remembered check (after a credential change in this process)."""
        with self._lock:
            self._cache.clear()
            self._recent.clear()

    def _lookup(self, kind: str, lookup: str) -> tuple[Credential, Reporter] | None:
        with self._sessions() as s:
            row = s.execute(
                select(Credential, Reporter)
                .join(Reporter, Reporter.id == Credential.reporter_id)
                .where(Credential.kind == kind, Credential.lookup == lookup)
            ).first()
            if row is None:
                return None
            cred, rep = row
            if cred.disabled_at is not None or not rep.enabled:
                return None
            return cred, rep

    def basic(self, username: str, password: str, *, use_cache: bool = True) -> Principal | None:
        found = self._lookup("basic", username)
        if found is None:
            verify_password_slow(_dummy_hash(), password)
            return None
        cred, rep = found
        mac = self._mac(password)
        key = (cred.id, cred.secret_hash, mac)
        now = self.clock()
        principal = Principal(rep.id, rep.name, cred.id, username)
        if use_cache:
            with self._lock:
                seen = self._cache.get(key)
            if seen is not None and now - seen < self._ttl:
                self._remember(username, mac, principal, now)
                return principal
        if not verify_password_slow(cred.secret_hash, password):
            return None
        if use_cache and self._ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = now
            # Remembered from now, not from before the (slow) verification.
            self._remember(username, mac, principal, self.clock())
        return principal

    def _remember(self, username: str, mac: bytes, principal: Principal, now: float) -> None:
        if self._recheck > 0:
            with self._lock:
                if len(self._recent) > 10_000:
                    self._recent.clear()
                self._recent[(username, mac)] = (principal, now)

    def bearer(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            return None
        lookup, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
        found = self._lookup("bearer", lookup)
        if found is None:
            return None
        cred, rep = found
        offered = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(offered, cred.secret_hash):
            return None
        return Principal(rep.id, rep.name, cred.id, f"token:{lookup}")


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- the operator's changes -----------------------------------------------------------------


class CredentialError(ValueError):
    """A credential change that cannot be made; the message is meant for the operator."""


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CredentialError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")


def _platform(s: Session, name: str) -> Reporter:
    rep = s.execute(select(Reporter).where(Reporter.name == name, Reporter.kind == "esp")).scalar_one_or_none()
    if rep is None:
        raise CredentialError(f"no platform named {name!r}")
    return rep


def check_username(username: str) -> None:
    """A Basic user name must be one HTTP Basic can carry: not empty, no ``:``.

    ``tipline.web.basic_auth`` reads an empty user name as no credentials, and splits at the
    first ``:``; a name either way could be stored but never used.
    """
    if not username:
        raise CredentialError("the username must not be empty")
    if ":" in username:
        raise CredentialError("the username must not contain ':' (HTTP Basic cannot carry it)")


def add_esp(rt: Runtime, name: str, username: str, password: str) -> int:
    """Register platform ``name`` (when new) with a Basic credential; returns the reporter id."""
    check_username(username)
    check_password(password)
    now = utcnow()
    with transaction(rt.sessions) as s:
        if s.execute(select(Credential).where(Credential.lookup == username)).first():
            raise CredentialError(f"username {username!r} is already taken")
        rep = s.execute(select(Reporter).where(Reporter.name == name)).scalar_one_or_none()
        if rep is None:
            rep = Reporter(name=name, kind="esp", enabled=True, created_at=now)
            s.add(rep)
            s.flush()
        s.add(Credential(reporter_id=rep.id, kind="basic", lookup=username,
                         secret_hash=hash_password(password), created_at=now))
        return rep.id


def set_platform_enabled(rt: Runtime, name: str, enabled: bool) -> bool:
    """Enable or disable platform ``name`` (all its credentials at once); returns whether it changed."""
    with transaction(rt.sessions) as s:
        rep = _platform(s, name)
        changed = rep.enabled != enabled
        rep.enabled = enabled
    rt.auth.forget()
    return changed


def set_password(rt: Runtime, username: str, password: str) -> None:
    """Replace the password of Basic credential ``username``; the old one stops working.

    Other processes drop the old password within ``TIPLINE_AUTH_RECHECK_SECONDS`` (their memo of
    recent checks); their argon2 cache is keyed by the stored hash, which changes here.
    """
    check_password(password)
    with transaction(rt.sessions) as s:
        cred = s.execute(select(Credential).where(Credential.kind == "basic", Credential.lookup == username)
                         ).scalar_one_or_none()
        if cred is None:
            raise CredentialError(f"no username {username!r}")
        cred.secret_hash = hash_password(password)
    rt.auth.forget()


def issue_token(rt: Runtime, name: str, label: str | None = None) -> tuple[str, str]:
    """A new bearer token for platform ``name``: (the token, shown once; its id)."""
    token, lookup, digest = new_token()
    with transaction(rt.sessions) as s:
        rep = _platform(s, name)
        s.add(Credential(reporter_id=rep.id, kind="bearer", lookup=lookup, secret_hash=digest,
                         label=label, created_at=utcnow()))
    return token, lookup


def token_id(token: str) -> str | None:
    """The public id of a bearer token (``tpl_<id>_<secret>``), or None if it is not one."""
    if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
        return None
    return token[len(TOKEN_PREFIX):].partition("_")[0]


def revoke_token(rt: Runtime, name: str, token: str) -> datetime:
    """Revoke one bearer token of platform ``name``, named by its id (or given whole).

    Returns when it was revoked (earlier, if it already was). The row is kept, as a record.
    """
    lookup = token_id(token) or token
    with transaction(rt.sessions) as s:
        rep = _platform(s, name)
        cred = s.execute(select(Credential).where(Credential.kind == "bearer", Credential.lookup == lookup,
                                                  Credential.reporter_id == rep.id)).scalar_one_or_none()
        if cred is None:
            raise CredentialError(f"platform {name!r} has no token {lookup!r} (see `tipline esp tokens {name}`)")
        if cred.disabled_at is None:
            cred.disabled_at = utcnow()
        when = cred.disabled_at
    rt.auth.forget()
    return when


def list_platforms(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Every platform with its credentials (never a secret or a hash)."""
    rows: list[dict[str, Any]] = []
    with sessions() as s:
        reps = s.execute(select(Reporter).where(Reporter.kind == "esp").order_by(Reporter.name)).scalars()
        for rep in reps:
            rows.append({
                "name": rep.name, "enabled": rep.enabled, "created": rep.created_at.isoformat(),
                "credentials": [
                    {"kind": cr.kind, "id": cr.lookup, "label": cr.label, "created": cr.created_at.isoformat(),
                     "disabled": cr.disabled_at.isoformat() if cr.disabled_at else None}
                    for cr in sorted(rep.credentials, key=lambda c: c.id)
                ],
            })
    return rows
