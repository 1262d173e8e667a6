"""Agency kinds: what sort of law-enforcement agency the directory lists (``agencies.csv``).

The directory import validates against it, ``tipline agency list --kind`` offers it, and
routing reads it; nothing else lists the kinds.
"""

from __future__ import annotations

AGENCY_KINDS: dict[str, str] = {
    "icac": "ICAC task force (one or more per US state)",
    "federal": "US federal agency (FBI, HSI, …)",
    "international": "international liaison for a country",
    "local": "local agency",
}
KIND_NAMES: tuple[str, ...] = tuple(AGENCY_KINDS)
