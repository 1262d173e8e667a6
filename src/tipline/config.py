"""Settings: one dataclass, every field overridable by a ``TIPLINE_``-prefixed environment variable.

The registry below is the single list of settings; docs/operations.md is checked against it
by a test, so a new setting cannot ship undocumented.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "tipline"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Runtime configuration of a tipline instance."""

    #: Directory holding the SQLite database, the encrypted blob store and the key file.
    data_dir: Path = field(default=DEFAULT_DATA_DIR)
    #: SQLAlchemy URL; empty means SQLite at ``<data_dir>/tipline.db``.
    database_url: str = ""
    #: Path of the 32-byte blob encryption key; empty means ``<data_dir>/keys/blob.key``.
    key_file: str = ""
    #: Largest accepted upload, in bytes (default 8 GiB: long videos must fit).
    max_upload_bytes: int = 8 * 1024**3
    #: Uploads up to this size keep their ciphertext in the database row instead of a file
    #: (one fsync per upload instead of three); 0 stores every upload as a file.
    inline_blob_bytes: int = 512 * 1024
    #: Largest accepted XML or JSON document body, in bytes, checked before parsing.
    max_document_bytes: int = 10 * 1024**2
    #: An unfinished report expires this many seconds after it was opened ...
    open_ttl_seconds: int = 24 * 3600
    #: ... or this many seconds after its last change, whichever is later.
    idle_ttl_seconds: int = 3600
    #: How often ``tipline serve`` purges expired unfinished reports, in seconds.
    purge_interval_seconds: int = 300
    #: Seconds a successful password check is remembered (argon2id costs ~90 ms).
    auth_cache_seconds: int = 300
    #: Seconds an accepted credential is trusted without a database lookup; a platform
    #: disabled from another process is refused within this time (0: look up every request).
    auth_recheck_seconds: int = 2
    #: Number of uvicorn worker processes for ``tipline serve``.
    workers: int = 1
    #: 1: with several workers, each has its own listening socket (``SO_REUSEPORT``, Linux),
    #: so the kernel spreads connections evenly; 0: one shared socket, which under a burst of
    #: new keep-alive connections lets one worker accept nearly all of them.
    reuse_port: int = 1
    #: Threads per serving process for blocking work (database, parsing): the size of the
    #: ASGI server's thread pool (anyio's default is 40).
    serve_threads: int = 40
    #: Database connections each process keeps open; 0: as many as ``serve_threads``, so no
    #: request thread waits for a connection or opens one of its own.
    db_pool_size: int = 0
    #: GeoIP database (mmdb); empty means the bundled DB-IP City Lite database (CC BY 4.0).
    geoip_db: str = ""
    #: Job queue for enrichment: ``auto`` (Procrastinate on PostgreSQL, in-process otherwise),
    #: ``inprocess`` or ``procrastinate``.
    queue: str = "auto"
    #: 1: ``tipline serve`` hooks enrichment to every finish (and, with the in-process queue,
    #: runs its workers); 0: serve only takes reports in, and ``tipline pipeline worker``
    #: processes pick finished reports up through the reconciler.
    serve_enrichment: int = 1
    #: Worker threads (in-process) or concurrent jobs (Procrastinate) for enrichment.
    pipeline_concurrency: int = 2
    #: Who runs this service: named on the public privacy notice (``/privacy``).
    operator_name: str = ""
    #: How the public reaches the operator about their data (e-mail, postal or web address),
    #: shown on the privacy notice; empty: not shown.
    operator_contact: str = ""
    #: Minutes a signed-in session lasts without a request before it ends.
    session_idle_minutes: int = 30
    #: Failed sign-ins in a row after which an account is locked ...
    sign_in_max_failures: int = 5
    #: ... for this many minutes.
    sign_in_lock_minutes: int = 15
    #: Sign-in attempts accepted from one address per 15 minutes (any usernames).
    sign_in_rate_per_address: int = 30
    #: 1: mark session cookies ``Secure`` even on plain HTTP (behind a TLS proxy that does
    #: not forward the scheme); otherwise they are ``Secure`` whenever the request is HTTPS.
    secure_cookies: int = 0
    #: Minutes an agency has to acknowledge a referral of priority 1 (child in imminent danger) ...
    ack_deadline_p1_minutes: int = 60
    #: ... of priority 2 ...
    ack_deadline_p2_minutes: int = 24 * 60
    #: ... and of priority 3 (or not yet assessed).
    ack_deadline_p3_minutes: int = 7 * 24 * 60
    #: SMTP server the reminder mails go through; empty: reminders are listed, never sent.
    smtp_host: str = ""
    smtp_port: int = 25
    #: The reminder mails' From address.
    smtp_from: str = ""
    #: 1: upgrade the SMTP connection with STARTTLS before sending (and before signing in).
    smtp_starttls: int = 0
    #: SMTP sign-in, when the server wants one (both empty: none).
    smtp_username: str = ""
    smtp_password: str = ""
    #: Minutes an analyst's claim on a report lasts before it is released by itself.
    claim_minutes: int = 30
    #: Outcome statistics withhold the point estimate (the bounds are the answer) when the
    #: share of referrals whose feedback settles the question is below this (0..1).
    outcome_coverage_threshold: float = 0.5
    #: Days after a referral was made available with no outcome recorded (an acknowledgement
    #: alone is not one) before it is listed in the agency's outcome reminders.
    outcome_reminder_days: int = 90

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``TIPLINE_*`` variables; explicit arguments win."""
        base = Path(data_dir or os.environ.get("TIPLINE_DATA_DIR") or DEFAULT_DATA_DIR)
        values: dict[str, object] = {
            "data_dir": base.expanduser().resolve(),
            "database_url": os.environ.get("TIPLINE_DATABASE_URL", ""),
            "key_file": os.environ.get("TIPLINE_KEY_FILE", ""),
            "geoip_db": os.environ.get("TIPLINE_GEOIP_DB", ""),
            "queue": os.environ.get("TIPLINE_QUEUE", "auto"),
            "operator_name": os.environ.get("TIPLINE_OPERATOR_NAME", "").strip(),
            "operator_contact": os.environ.get("TIPLINE_OPERATOR_CONTACT", "").strip(),
            "smtp_host": os.environ.get("TIPLINE_SMTP_HOST", "").strip(),
            "smtp_from": os.environ.get("TIPLINE_SMTP_FROM", "").strip(),
            "smtp_username": os.environ.get("TIPLINE_SMTP_USERNAME", ""),
            "smtp_password": os.environ.get("TIPLINE_SMTP_PASSWORD", ""),
        }
        for f in fields(cls):
            if f.type == "int" or f.type is int:
                values[f.name] = _int(f"TIPLINE_{f.name.upper()}", f.default)  # type: ignore[arg-type]
            elif f.type == "float" or f.type is float:
                values[f.name] = _float(f"TIPLINE_{f.name.upper()}", f.default)  # type: ignore[arg-type]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def effective_pool_size(self) -> int:
        return self.db_pool_size if self.db_pool_size > 0 else max(1, self.serve_threads)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'tipline.db'}"

    @property
    def effective_key_file(self) -> Path:
        return Path(self.key_file) if self.key_file else self.data_dir / "keys" / "blob.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


def setting_env_names() -> list[str]:
    """Every environment variable tipline reads (used by the docs test)."""
    return [f"TIPLINE_{f.name.upper()}" for f in fields(Settings)]
