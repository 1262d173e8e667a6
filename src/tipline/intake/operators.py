"""Operator tokens: the smallest honest way for tipline's own staff to read reports over the API.

Until real accounts arrive (the "People and their work" issue), an operator token is a bearer
token issued by ``tipline operator token --label WHO`` on the server. It is stored like a
platform token (only the SHA-256 of its secret) but as a credential of kind ``operator`` on
one reporter row of kind ``operator``, so that:

- a platform token never opens an operator route, and an operator token never opens a
  platform route (``Authenticator`` looks up kinds ``basic`` and ``bearer`` only);
- each token names who holds it (``label``) and can be revoked on its own.

An operator token reads every report, as the CLI on the server does; keep it as secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tipline.store.db import transaction
from tipline.store.tables import Credential, Reporter

OPERATOR_TOKEN_PREFIX = "tpo_"
OPERATOR_KIND = "operator"
#: The reporter row that holds operator credentials (it never files reports).
OPERATORS_NAME = "tipline operators"


@dataclass(frozen=True)
class Operator:
    """An authenticated operator: the token's public id and who it was issued to."""

    credential_id: int
    token_id: str
    label: str


class OperatorTokenError(ValueError):
    """A token cannot be issued or revoked (the message says why)."""


def _operators_row(s: Session) -> int:
    rep = s.execute(select(Reporter).where(Reporter.name == OPERATORS_NAME)).scalar_one_or_none()
    if rep is None:
        rep = Reporter(name=OPERATORS_NAME, kind=OPERATOR_KIND, enabled=True, created_at=datetime.now(UTC))
        s.add(rep)
        s.flush()
    elif rep.kind != OPERATOR_KIND:
        # A platform that happens to carry this name must never be given operator tokens.
        raise OperatorTokenError(f"a reporter named {OPERATORS_NAME!r} exists and is not the operators' row")
    return rep.id


def issue_operator_token(sessions: sessionmaker[Session], label: str) -> tuple[str, str]:
    """A new operator token for ``label`` (who holds it): (token, shown once; its public id)."""
    label = " ".join(label.split())
    if not label or len(label) > 255:
        raise OperatorTokenError("the label (who holds the token) must be 1-255 characters")
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    for attempt in range(2):
        try:
            with transaction(sessions) as s:
                rid = _operators_row(s)
                s.add(Credential(reporter_id=rid, kind=OPERATOR_KIND, lookup=f"op-{lookup}",
                                 secret_hash=hashlib.sha256(secret.encode()).hexdigest(), label=label,
                                 created_at=datetime.now(UTC)))
            break
        except IntegrityError:
            if attempt:  # the operators' row was created concurrently: the second try finds it
                raise
    return f"{OPERATOR_TOKEN_PREFIX}{lookup}_{secret}", lookup


def verify_operator_token(sessions: sessionmaker[Session], token: str) -> Operator | None:
    """The operator holding ``token``, or None (unknown, revoked, or not an operator token)."""
    if not token.startswith(OPERATOR_TOKEN_PREFIX):
        return None
    lookup, sep, secret = token[len(OPERATOR_TOKEN_PREFIX):].partition("_")
    if not sep or not lookup or not secret:
        return None
    with sessions() as s:
        cred = s.execute(select(Credential).join(Reporter, Reporter.id == Credential.reporter_id).where(
            Credential.kind == OPERATOR_KIND, Credential.lookup == f"op-{lookup}",
            Reporter.kind == OPERATOR_KIND, Reporter.enabled.is_(True),
        )).scalar_one_or_none()
        if cred is None or cred.disabled_at is not None:
            return None
        if not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), cred.secret_hash):
            return None
        return Operator(cred.id, lookup, cred.label or "")


def list_operator_tokens(sessions: sessionmaker[Session]) -> list[dict[str, str | None]]:
    """Every operator token: id, label, issued, revoked (never the secret)."""
    with sessions() as s:
        rows = s.execute(select(Credential).where(Credential.kind == OPERATOR_KIND).order_by(Credential.id)).scalars()
        return [{"id": c.lookup.removeprefix("op-"), "label": c.label, "issued": c.created_at.isoformat(),
                 "revoked": c.disabled_at.isoformat() if c.disabled_at else None} for c in rows]


def revoke_operator_token(sessions: sessionmaker[Session], token_id: str) -> None:
    """Revoke one operator token by its public id; it stops working at once."""
    with transaction(sessions) as s:
        done = s.execute(update(Credential).where(
            Credential.kind == OPERATOR_KIND, Credential.lookup == f"op-{token_id.removeprefix('op-')}",
            Credential.disabled_at.is_(None)).values(disabled_at=datetime.now(UTC)).returning(Credential.id)
        ).scalar_one_or_none()
    if done is None:
        raise OperatorTokenError(f"no active operator token {token_id!r}")
