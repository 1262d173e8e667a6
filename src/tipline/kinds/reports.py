"""Report states: where a report stands in its life (``reports.state``).

Intake moves a report between them, enrichment reads only ``finished`` ones, the CLI's
``--state`` choices, the JSON API's ``state`` field and the platform's view all read this
registry; nothing else lists the states.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class ReportState(StrEnum):
    #: Submitted, files may still be added (ISPWS ``submit`` without ``finish``).
    OPEN = "open"
    #: Closed by its reporter: acknowledged, kept, and enriched.
    FINISHED = "finished"
    #: Withdrawn by its reporter before it was finished (ISPWS ``retract``).
    RETRACTED = "retracted"
    #: Left open past its deadline; kept for the record, never enriched, hidden from its reporter.
    EXPIRED = "expired"


@dataclass(frozen=True)
class StateInfo:
    description: str
    #: Whether the report's reporter still sees it (an expired report answers "not found").
    reporter_visible: bool
    #: Whether the pipeline enriches it.
    enriched: bool


REPORT_STATES: dict[ReportState, StateInfo] = {
    ReportState.OPEN: StateInfo("submitted, files may still be added", True, False),
    ReportState.FINISHED: StateInfo("finished by its reporter; enriched", True, True),
    ReportState.RETRACTED: StateInfo("withdrawn by its reporter before it was finished", True, False),
    ReportState.EXPIRED: StateInfo("left open past its deadline; kept, never enriched", False, False),
}
STATE_NAMES: tuple[str, ...] = tuple(s.value for s in ReportState)
#: The states a reporter (a platform, over the API or its page) can list and read.
REPORTER_STATES: tuple[str, ...] = tuple(s.value for s, i in REPORT_STATES.items() if i.reporter_visible)
#: The same set as a type, for the JSON API's schema (pydantic needs a Literal to publish an
#: enum of strings); tests/test_kinds.py checks it equals ``REPORTER_STATES``.
ReporterStateName = Literal["open", "finished", "retracted"]
