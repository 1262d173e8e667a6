"""Synthetic people, accounts and identifiers: deterministic functions of a person id.

Nothing here resembles a real person: handles are word pairs with numbers, e-mail
addresses use the reserved ``example.*`` domains (RFC 2606), phone numbers the fictional
555-01xx range. The same person gets the same e-mail, phone and device on every platform,
which is what lets reports be linked across platforms.
"""

from __future__ import annotations

import hashlib
import re

_ADJ = ("amber", "brisk", "cobalt", "dusty", "eager", "fuzzy", "gentle", "hollow", "ivory", "jolly",
        "kind", "lunar", "misty", "noble", "olive", "plain", "quiet", "rapid", "silver", "tidy",
        "urban", "vivid", "windy", "young", "zesty")
_NOUN = ("otter", "falcon", "maple", "comet", "harbor", "pebble", "canyon", "meadow", "lantern", "ember",
         "willow", "glacier", "sparrow", "cedar", "breeze", "orbit", "prairie", "quartz", "ripple", "summit")
_FIRST = ("Alex", "Sam", "Robin", "Jordan", "Casey", "Morgan", "Taylor", "Jamie", "Avery", "Riley")
_LAST = ("Example", "Sample", "Placeholder", "Testperson", "Fictional", "Madeup", "Synthetic", "Standin")
_MAIL = ("example.com", "example.net", "example.org")
MESSAGING = {"WhatsApp", "Discord", "Snapchat", "Kik", "Omegle"}


def h64(*parts: object) -> int:
    """A stable 64-bit integer of ``parts`` (never Python's salted ``hash``)."""
    return int.from_bytes(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def handle(seed: int, person: int) -> str:
    h = h64("handle", seed, person)
    return f"{_ADJ[h % 25]}_{_NOUN[(h >> 8) % 20]}{(h >> 16) % 10000}"


def email(seed: int, person: int) -> str:
    h = h64("email", seed, person)
    return f"{handle(seed, person).replace('_', '.')}@{_MAIL[h % 3]}"


def phone(seed: int, person: int) -> str:
    h = h64("phone", seed, person)
    return f"+1555{(h % 90) + 10:02d}{h % 10000:04d}"


def device(seed: int, person: int) -> tuple[str, str]:
    h = h64("device", seed, person)
    hexd = f"{h:016x}{h64('device2', seed, person):016x}"
    if h % 2:
        return "IDFA", f"{hexd[:8]}-{hexd[8:12]}-{hexd[12:16]}-{hexd[16:20]}-{hexd[20:32]}".upper()
    return "Android Advertising ID", f"{hexd[:8]}-{hexd[8:12]}-{hexd[12:16]}-{hexd[16:20]}-{hexd[20:32]}"


def account_id(seed: int, person: int, platform: str) -> str:
    """The person's user id on ``platform`` (numeric, as most platforms issue them)."""
    return str(10**11 + h64("acct", seed, person, platform) % (9 * 10**11))


def screen_name(seed: int, person: int, platform: str) -> str:
    # Most people keep their handle across platforms; some vary it.
    if h64("sn", seed, person, platform) % 10 < 7:
        return handle(seed, person)
    return f"{handle(seed, person)}_{slug(platform)[:3]}"


def display_name(seed: int, person: int) -> str:
    h = h64("display", seed, person)
    return f"{_ADJ[h % 25].title()} {_NOUN[(h >> 8) % 20].title()}"


def real_name(seed: int, person: int) -> tuple[str, str]:
    h = h64("name", seed, person)
    return _FIRST[h % 10], _LAST[(h >> 8) % 8]


def child_account(seed: int, key: int) -> str:
    """A (synthetic) child's account handle for intendedRecipient."""
    return f"kid_{handle(seed, -1 - key)}"
