"""Hash types: the file hashes tipline computes, banks hold and matches compare.

Bank imports validate against it (name, length in hex digits, the aliases of
python-threatexchange / HMA exports), the hashes stage checks the cryptographic ones intake
computed, and matches and links treat the cryptographic ones as exact.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HashType:
    name: str
    #: Length of a value in hex digits.
    hex_length: int
    #: A cryptographic digest: equal values are the same bytes (PDQ is a perceptual hash).
    crypto: bool
    #: Other names for it in bank exports (ThreatExchange signal types), lower case.
    aliases: tuple[str, ...] = ()


HASH_TYPES: dict[str, HashType] = {h.name: h for h in (
    HashType("md5", 32, True, ("video_md5", "hash_md5", "photo_md5")),
    HashType("sha1", 40, True),
    HashType("sha256", 64, True),
    HashType("pdq", 64, False, ("hash_pdq",)),
)}

HASH_NAMES: tuple[str, ...] = tuple(HASH_TYPES)
#: The cryptographic ones, in registry order (also the ``File`` columns that hold them).
CRYPTO_NAMES: tuple[str, ...] = tuple(h.name for h in HASH_TYPES.values() if h.crypto)
#: Every name and alias -> the hash type's name.
BY_NAME_OR_ALIAS: dict[str, str] = {n: h.name for h in HASH_TYPES.values() for n in (h.name, *h.aliases)}
