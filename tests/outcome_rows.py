"""Rows for outcome statistics tests, written straight to the store: reporters, reports,
assessments, jurisdictions, agencies, referrals and outcome events (the outcome service is
another module's; these tests only need the rows it writes)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import select

from tipline.kinds.outcomes import registry
from tipline.runtime import Runtime
from tipline.store.tables import Agency, Assessment, Jurisdiction, Referral, Report, Reporter
from tipline.store.tables_people import Outcome

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def at(d: date) -> datetime:
    return datetime.combine(d, time(12), UTC)


class Records:
    """Writes rows one session at a time and remembers their ids."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._platforms: dict[str, int] = {}
        self._agencies: dict[str, int] = {}

    def _add(self, row: Any) -> int:
        with self.rt.sessions.begin() as s:
            s.add(row)
            s.flush()
            return int(row.id) if hasattr(row, "id") and row.id is not None else 0

    def platform(self, name: str) -> int:
        if name not in self._platforms:
            with self.rt.sessions() as s:  # a platform the test's fixtures registered already
                found = s.scalar(select(Reporter.id).where(Reporter.name == name))
            self._platforms[name] = found if found is not None else self._add(
                Reporter(name=name, kind="esp", enabled=True, created_at=NOW))
        return self._platforms[name]

    def agency(self, code: str, kind: str = "icac", state: str | None = "TX") -> int:
        if code not in self._agencies:
            self._agencies[code] = self._add(Agency(code=code, name=f"Agency {code}", kind=kind,
                                                    country="US", us_state=state))
        return self._agencies[code]

    def report(self, *, platform: str = "Acme Social", incident_type: str = "Child Pornography",
               priority: int | None = 2, state: str | None = "TX", country: str | None = "US",
               received: date = date(2023, 3, 1)) -> int:
        rid = self._add(Report(reporter_id=self.platform(platform), source="api", state="finished",
                               opened_at=at(received), last_change_at=at(received), finished_at=at(received),
                               incident_type=incident_type))
        with self.rt.sessions.begin() as s:
            if priority is not None:
                s.add(Assessment(report_id=rid, quality=0.5, missing=[], disposition="referral",
                                 disposition_reasons=[], priority=priority, priority_reasons=[],
                                 escalate=priority == 1, rules_version="t", assessed_at=at(received)))
            s.add(Jurisdiction(report_id=rid, country=country, us_state=state, source="ip", confidence=1.0,
                               resolved_at=at(received)))
        return rid

    def refer(self, report_id: int, agency: str, on: date, *, escalated: bool = False) -> int:
        return self._add(Referral(report_id=report_id, agency_id=self.agency(agency), rule="t", reason="t",
                                  made_available_at=at(on), escalated=escalated,
                                  escalated_at=at(on) if escalated else None))

    def outcome(self, referral_id: int, code: str, on: date, *, kind: str = "record",
                supersedes: int | None = None, persons: int | None = None, result: str | None = None,
                reason: str | None = None, recorded: datetime | None = None) -> int:
        with self.rt.sessions() as s:
            agency_id = s.get(Referral, referral_id).agency_id  # type: ignore[union-attr]
        if code == "ARREST" and persons is None:
            persons = 1
        return self._add(Outcome(referral_id=referral_id, agency_id=agency_id, code=code, kind=kind,
                                 supersedes_id=supersedes, occurred_on=on, persons=persons,
                                 arrest_type="T" if code == "ARREST" else None, result=result,
                                 reason=reason or ("no_offence" if code.startswith("CLOSED") else None),
                                 via="api", codes_version=registry().version,
                                 recorded_at=recorded or at(on)))
