"""Bundling-area table: how many incidents (NCMEC's 2024 sense) each report stands for.

NCMEC counts both reports and incidents from 2024: a platform may put many incidents (one
per user involved in a viral item) into one bundled report. ``incidents`` is that count for
one report (1 for an ordinary report); ``Incident``/``IncidentReport`` in tables.py are the
other direction, the bundles grouping reports about the same thing.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tipline.store.tables import Base, ReportId


class ReportIncidentCount(Base):
    """Incidents one report stands for (batched reports: one per reported user listed)."""

    __tablename__ = "report_incident_counts"
    report_id: Mapped[int] = mapped_column(ReportId, ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    incidents: Mapped[int] = mapped_column(Integer)
    basis: Mapped[str] = mapped_column(String(60))  # e.g. "batched: 7 reported users" | "single report"
