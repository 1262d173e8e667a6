"""Console-area indexes (migration 0010) on tables defined elsewhere.

The analyst queue walks assessments in priority order, then report id (oldest first), and
stops after one page: an index in that order lets both backends read only that page instead
of sorting every open report. The reports with a hash-bank match are found from the bank
matches alone (a small share of all matches) rather than by a probe per queue row.
"""

from __future__ import annotations

from sqlalchemy import Index

from tipline.store.tables import Assessment, FileMatch, Jurisdiction, Report

Index("ix_assessments_priority_report", Assessment.priority, Assessment.report_id)
Index("ix_file_matches_kind_file", FileMatch.kind, FileMatch.file_id)

# Migration 0012: a narrow queue filter (a rare country or US state, incident type, an
# escalation) is read by sorting just its reports, found from these, instead of walking the
# queue's whole order (tipline.console.service._driver).
Index("ix_jurisdictions_country_state", Jurisdiction.country, Jurisdiction.us_state)
Index("ix_jurisdictions_state", Jurisdiction.us_state)
Index("ix_reports_incident_type", Report.incident_type)
Index("ix_assessments_escalate", Assessment.escalate)
