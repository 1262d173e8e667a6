"""Why an intake use case refused: one reason, a message, the field it is about.

The use cases speak no protocol. Each adapter turns an :class:`IntakeError` into its own
answer with one table: ``web/ispws.py`` into an ISPWS response code, ``web/api_v1.py`` into a
problem document, ``web/public.py`` into a page for a person. A new reason therefore needs a
row in each table; tests/test_intake_errors.py checks that every table covers every reason.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """What went wrong, in the domain's words (never a protocol's code)."""

    #: No such report for this caller: also another reporter's, or an expired one (so ids
    #: cannot be probed).
    REPORT_NOT_FOUND = "report-not-found"
    #: The report has no such file (a file of another report counts as none).
    FILE_NOT_FOUND = "file-not-found"
    REPORT_RETRACTED = "report-retracted"
    REPORT_FINISHED = "report-finished"
    #: Another request changed the report's state between our read and our write.
    CHANGED_CONCURRENTLY = "changed-concurrently"
    #: The blob store changed under an upload (a purge removed identical content); retry.
    STORAGE_CHANGED = "storage-changed"
    #: The report breaks a rule of the format (the files' details at finish, or a report
    #: as an addendum would leave it).
    RULES_VIOLATED = "rules-violated"
    #: An idempotency key already used for a different body.
    IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused"


class IntakeError(Exception):
    """An intake use case refused; ``message`` says why for a person, ``field`` names what."""

    def __init__(self, reason: Reason, message: str | None = None, *, field: str | None = None) -> None:
        self.reason = reason
        self.message = message
        self.field = field
        super().__init__(f"{reason.value}: {message}" if message else reason.value)
