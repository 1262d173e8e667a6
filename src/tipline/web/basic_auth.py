"""HTTP Basic credentials (RFC 7617), read the same way by every protocol that takes them.

ISPWS and the JSON API both accept a platform's Basic credentials; they parse the header
here so that they cannot disagree on what counts as one.
"""

from __future__ import annotations

import base64
import binascii


def parse_basic(authorization: str) -> tuple[str, str] | None:
    """(user name, password) from an ``Authorization`` header value, or None if it holds none.

    None for another scheme, bad base64, bytes that are not UTF-8, no ``:`` — and an empty
    user name: no credential has one (``add_esp`` refuses it), so it is answered like no
    credentials at all, without a password check. The password may be empty or hold ``:``.
    """
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep and user else None
