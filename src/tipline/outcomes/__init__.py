"""Outcomes: law-enforcement feedback on referrals, one service for every way in.

The officer's page, ``POST /api/v1/referrals/{referralId}/outcomes``, the CSV import and the
simulator all go through :func:`tipline.outcomes.service.record_outcome`, so they share one
validation and one audit trail. See docs/outcomes.md.
"""

from tipline.outcomes.service import (
    Conflict,
    EffectiveEvent,
    Forbidden,
    Invalid,
    NotFound,
    OutcomeError,
    OutcomeView,
    Recorded,
    acknowledge,
    codes_json,
    effective_outcomes,
    list_outcomes,
    open_terminal,
    overdue_outcomes,
    record_outcome,
)

__all__ = [
    "Conflict", "EffectiveEvent", "Forbidden", "Invalid", "NotFound", "OutcomeError", "OutcomeView",
    "Recorded", "acknowledge", "codes_json", "effective_outcomes", "list_outcomes", "open_terminal",
    "overdue_outcomes", "record_outcome",
]
