"""Credentials: argon2id storage, and the memoised fast path agreeing with the slow one."""

from __future__ import annotations

import random

from sqlalchemy import select, update

from helpers import ManualClock
from tipline.intake.credentials import Authenticator, add_esp, new_token
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Credential, Reporter


def test_password_is_stored_as_argon2id(runtime: Runtime) -> None:
    add_esp(runtime, "P", "p-user", "p-password-1")
    with runtime.sessions() as s:
        h = s.execute(select(Credential.secret_hash).where(Credential.lookup == "p-user")).scalar_one()
    assert h.startswith("$argon2id$") and "p-password-1" not in h


def test_cache_agrees_with_reference(runtime: Runtime) -> None:
    """Random sequences of checks, password changes and disables: cached == uncached, always."""
    add_esp(runtime, "A", "a-user", "a-password-1")
    add_esp(runtime, "B", "b-user", "b-password-1")
    auth = Authenticator(runtime.sessions, cache_seconds=3600, recheck_seconds=0)
    reference = Authenticator(runtime.sessions, cache_seconds=0, recheck_seconds=0)
    rng = random.Random(7)
    passwords = {"a-user": "a-password-1", "b-user": "b-password-1"}
    candidates = ["a-password-1", "b-password-1", "a-password-2", "wrong", ""]
    for step in range(40):
        action = rng.random()
        if action < 0.1:
            user = rng.choice(list(passwords))
            new = rng.choice(candidates[:3])
            from tipline.intake.credentials import hash_password

            with transaction(runtime.sessions) as s:
                s.execute(update(Credential).where(Credential.lookup == user)
                          .values(secret_hash=hash_password(new)))
            passwords[user] = new
        elif action < 0.15:
            with transaction(runtime.sessions) as s:
                s.execute(update(Reporter).where(Reporter.name == rng.choice("AB"))
                          .values(enabled=rng.random() < 0.5))
        user = rng.choice([*passwords, "ghost"])
        pw = rng.choice(candidates)
        fast = auth.basic(user, pw)
        slow = reference.basic(user, pw, use_cache=False)
        assert (fast is None) == (slow is None), (step, user, pw)


def test_bearer_tokens(runtime: Runtime) -> None:
    rid = add_esp(runtime, "T", "t-user", "t-password-1")
    token, lookup, digest = new_token()
    from datetime import UTC, datetime

    with transaction(runtime.sessions) as s:
        s.add(Credential(reporter_id=rid, kind="bearer", lookup=lookup, secret_hash=digest,
                         created_at=datetime.now(UTC)))
    assert runtime.auth.bearer(token) is not None
    assert runtime.auth.bearer(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert runtime.auth.bearer("tpl_nope_nope") is None
    assert runtime.auth.bearer("garbage") is None
    with runtime.sessions() as s:
        stored = s.execute(select(Credential.secret_hash).where(Credential.lookup == lookup)).scalar_one()
    assert token.split("_", 2)[2] not in stored


def test_recent_principal_expires_after_recheck(runtime: Runtime) -> None:
    add_esp(runtime, "R", "r-user", "r-password-1")
    clock = ManualClock()
    auth = Authenticator(runtime.sessions, cache_seconds=3600, recheck_seconds=1.0, clock=clock)
    assert auth.recent_basic("r-user", "r-password-1") is None  # never seen: ask the database
    assert auth.basic("r-user", "r-password-1") is not None
    assert auth.recent_basic("r-user", "r-password-1") is not None
    assert auth.recent_basic("r-user", "wrong") is None  # only the exact credential
    with transaction(runtime.sessions) as s:
        s.execute(update(Reporter).where(Reporter.name == "R").values(enabled=False))
    clock.advance(0.95)
    assert auth.recent_basic("r-user", "r-password-1") is not None  # still within recheck_seconds
    clock.advance(0.1)
    assert auth.recent_basic("r-user", "r-password-1") is None
    assert auth.basic("r-user", "r-password-1") is None
