"""Console-area indexes (migration 0010) on tables defined elsewhere.

The analyst queue walks assessments in priority order, then report id (oldest first), and
stops after one page: an index in that order lets both backends read only that page instead
of sorting every open report. The reports with a hash-bank match are found from the bank
matches alone (a small share of all matches) rather than by a probe per queue row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tipline.store.tables import Assessment, Base, FileMatch, Jurisdiction, Report, UTCDateTime

Index("ix_assessments_priority_report", Assessment.priority, Assessment.report_id)
Index("ix_file_matches_kind_file", FileMatch.kind, FileMatch.file_id)

# Migration 0012: a narrow queue filter (a rare country or US state, incident type, an
# escalation) is read by sorting just its reports, found from these, instead of walking the
# queue's whole order (tipline.console.service._driver).
Index("ix_jurisdictions_country_state", Jurisdiction.country, Jurisdiction.us_state)
Index("ix_jurisdictions_state", Jurisdiction.us_state)
Index("ix_reports_incident_type", Report.incident_type)
Index("ix_assessments_escalate", Assessment.escalate)


# --- migration 0013: the analyst queue's read model -------------------------------------------


class QueueEntry(Base):
    """One row per assessed, finished report: the values in effect that the analyst queue
    filters, sorts and counts on (tipline.console.queue_model keeps it).

    They are derived — the pipeline's assessment with the latest analyst overrides, the
    jurisdiction, whether a file matched a hash bank, the claim — and are rewritten from
    those base tables in the same transaction as every change of them, so that a queue page
    is one indexed walk of this narrow table instead of a six-way join over every report.
    The claim is kept with its expiry: an expired claim is no claim, decided at read time
    (claims expire without anyone writing). ``tipline console rebuild-queue`` rewrites it
    from the base tables."""

    __tablename__ = "queue_entries"
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    priority: Mapped[int] = mapped_column(Integer)
    pipeline_priority: Mapped[int] = mapped_column(Integer)
    # Whether an analyst set the priority (the queue's counts start from the pipeline's values).
    priority_overridden: Mapped[bool] = mapped_column(Boolean)
    disposition: Mapped[str] = mapped_column(String(20))
    pipeline_disposition: Mapped[str] = mapped_column(String(20))
    escalated: Mapped[bool] = mapped_column(Boolean)
    pipeline_escalated: Mapped[bool] = mapped_column(Boolean)
    closed: Mapped[bool] = mapped_column(Boolean)
    incident_type: Mapped[str | None] = mapped_column(String(100))
    reporter_id: Mapped[int] = mapped_column(Integer)
    country: Mapped[str | None] = mapped_column(String(2))
    us_state: Mapped[str | None] = mapped_column(String(2))
    bank_match: Mapped[bool] = mapped_column(Boolean)
    holder_id: Mapped[int | None] = mapped_column(Integer)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The walks: open/closed in (priority, report id) order, and "all" without the flag.
        # The claim's columns ride along so that "unclaimed" is decided from the index: a
        # deep page skips its OFFSET there without reading a table row per skipped report.
        Index("ix_queue_entries_walk", "closed", "priority", "report_id", "holder_id", "claim_expires_at"),
        Index("ix_queue_entries_order", "priority", "report_id", "holder_id", "claim_expires_at"),
        # One per filter, each ending in the walk's order so that a filtered page is still an
        # ordered index walk that stops after one page (a rare value reads only its own rows).
        *(Index(f"ix_queue_entries_{c}", c, "closed", "priority", "report_id")
          for c in ("disposition", "escalated", "bank_match", "incident_type", "reporter_id", "country",
                    "us_state")),
        # "mine": the expiry in it too, or SQLite (no statistics) prefers walking the covering
        # ix_queue_entries_walk past every open report to find an analyst's few.
        Index("ix_queue_entries_holder", "holder_id", "closed", "priority", "report_id", "claim_expires_at"),
        # The counts' GROUP BY of the pipeline's values, read in this order from the index
        # alone (no sort of every row: tipline.console.service._pipeline_combos_query).
        Index("ix_queue_entries_combo", "pipeline_priority", "pipeline_disposition", "pipeline_escalated",
              "bank_match", "incident_type", "reporter_id", "country", "us_state"),
    )
