"""Setting up an instance's storage: data directory, blob encryption key, database schema."""

from __future__ import annotations

from tipline.config import Settings
from tipline.store.blobs import generate_key_file
from tipline.store.db import upgrade


def do_init(settings: Settings) -> list[str]:
    """Create the data directory and key, and migrate the database. Safe to run again.

    Returns one line per step, for the operator.
    """
    done: list[str] = []
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if generate_key_file(settings.effective_key_file):
        done.append(f"created blob encryption key {settings.effective_key_file} "
                    "(back it up apart from the data: without it no file can be read)")
    else:
        done.append(f"kept existing key {settings.effective_key_file}")
    settings.blob_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    upgrade(settings.effective_database_url)
    done.append(f"database ready: {redact_url(settings.effective_database_url)}")
    return done


def redact_url(url: str) -> str:
    """A database URL with its password replaced by ``***`` (safe to print or log)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
