"""Sample CyberTipline documents for tests (synthetic people, example domains only)."""

from __future__ import annotations

INCIDENT = "Child Pornography (possession, manufacture, and distribution)"


def report_xml(
    incident_type: str = INCIDENT,
    when: str = "2026-10-01T12:00:00Z",
    extra_summary: str = "",
    decl: str = '<?xml version="1.0" encoding="UTF-8"?>',
    body: str = "",
) -> bytes:
    return f"""{decl}
<report xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xsi:noNamespaceSchemaLocation="https://report.cybertip.org/ispws/xsd">
  <incidentSummary>
    <incidentType>{incident_type}</incidentType>
    {extra_summary}
    <incidentDateTime>{when}</incidentDateTime>
  </incidentSummary>
  <internetDetails><webPageIncident><url>https://example.com/p/1</url></webPageIncident></internetDetails>
  <reporter>
    <reportingPerson><firstName>Rita</firstName><lastName>Reporter</lastName>
      <email>safety@example.com</email></reportingPerson>
  </reporter>
  {body}
</report>""".encode()


def file_details_xml(report_id: int, file_id: str, extra: str = "") -> bytes:
    return (
        f"<fileDetails><reportId>{report_id}</reportId><fileId>{file_id}</fileId>"
        f"<fileName>a.png</fileName>{extra}</fileDetails>"
    ).encode()
