"""Receipt codes of the public form: made, read back as people type them, and hashed.

A person who reports through the form gets a code, shown once; only its SHA-256 is stored
(``reports.receipt_hash``). With the code they can add information later.
"""

from __future__ import annotations

import hashlib
import re
import secrets

# Crockford base32: no I, L, O or U, so nothing is confused with 1, 0 or V when read aloud.
RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RECEIPT_CHARS = 16  # 16 x 5 bits = 80 bits of randomness
RECEIPT_PREFIX = "TPL"
_RECEIPT_SEPARATORS = re.compile(r"[\s\-_.\u2010-\u2015]+")
RECEIPT_IN_TEXT = re.compile(
    r"TPL[\s\-]*(?:[0-9A-Z]{4}[\s\-]*){3}[0-9A-Z]{4}", re.IGNORECASE
)


def new_receipt_code() -> str:
    """A fresh receipt code such as ``TPL-7KQ4-M9XD-2HPR-W3CT`` (80 random bits)."""
    raw = "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(RECEIPT_CHARS))
    return format_receipt_code(raw)


def format_receipt_code(raw: str) -> str:
    """``TPL-`` plus the 16 code characters in groups of four."""
    return RECEIPT_PREFIX + "-" + "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalise_receipt_code(entered: str) -> str | None:
    """The canonical code for what a person typed, or None if it cannot be a code.

    Case, spaces, dashes and the ``TPL`` prefix are optional; O is read as 0 and I or L as 1
    (Crockford's rule), since people copy codes by hand.
    """
    compact = _RECEIPT_SEPARATORS.sub("", entered).upper()
    if len(compact) == RECEIPT_CHARS + len(RECEIPT_PREFIX) and compact.startswith(RECEIPT_PREFIX):
        compact = compact[len(RECEIPT_PREFIX) :]
    compact = compact.translate(str.maketrans("OIL", "011"))
    if len(compact) != RECEIPT_CHARS or any(ch not in RECEIPT_ALPHABET for ch in compact):
        return None
    return format_receipt_code(compact)


def receipt_hash(code: str) -> str:
    """SHA-256 (hex) of the canonical code: the only form of the code that is stored.

    No salt is needed: 80 random bits cannot be found by hashing guesses.
    """
    return hashlib.sha256(code.encode("ascii")).hexdigest()
