"""Demo data: a few sample reports from the demo platform, with generated stand-in images."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from tipline.cybertip.xml import parse_file_details, parse_report
from tipline.intake.credentials import add_esp, set_password
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.tables import Credential, Report, Reporter

DEMO_PLATFORM = "Demo Platform"
DEMO_USERNAME = "demo-platform"

SAMPLES = [
    ("Child Pornography (possession, manufacture, and distribution)", None, "198.51.100.23", 2),
    ("Online Enticement of Children for Sexual Acts",
     "User is arranging to meet a 13-year-old this weekend.", "203.0.113.77", 1),
    ("Unsolicited Obscene Material Sent to a Child", None, "192.0.2.140", 0),
]


def sample_report_xml(i: int, incident_type: str, escalation: str | None, ip: str) -> bytes:
    esc = f"<escalateToHighPriority>{escalation}</escalateToHighPriority>" if escalation else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<report>
  <incidentSummary>
    <incidentType>{incident_type}</incidentType>
    {esc}
    <incidentDateTime>2026-11-0{i + 1}T10:15:00Z</incidentDateTime>
  </incidentSummary>
  <internetDetails>
    <webPageIncident><url>https://example.com/demo/{i}</url></webPageIncident>
  </internetDetails>
  <reporter>
    <reportingPerson><firstName>Dana</firstName><lastName>Demo</lastName>
      <email>trust-safety@example.com</email></reportingPerson>
  </reporter>
  <personOrUserReported>
    <espIdentifier>user-{1000 + i}</espIdentifier>
    <screenName>demo_user_{i}</screenName>
    <ipCaptureEvent><ipAddress>{ip}</ipAddress><eventName>Login</eventName>
      <dateTime>2026-11-0{i + 1}T09:00:00Z</dateTime></ipCaptureEvent>
  </personOrUserReported>
</report>""".encode()


def demo_credentials(rt: Runtime) -> tuple[str, str]:
    """The demo platform's username and a new password (the platform is made the first time)."""
    password = secrets.token_urlsafe(12)
    with rt.sessions() as s:
        exists = s.execute(select(Credential).where(Credential.lookup == DEMO_USERNAME)).first()
    if exists:
        set_password(rt, DEMO_USERNAME, password)
    else:
        add_esp(rt, DEMO_PLATFORM, DEMO_USERNAME, password)
    return DEMO_USERNAME, password


def load_demo(rt: Runtime) -> int:
    """Load the sample reports once; returns how many demo reports exist afterwards."""
    with rt.sessions() as s:
        rep_id = s.execute(select(Reporter.id).where(Reporter.name == DEMO_PLATFORM)).scalar_one()
        have = s.execute(select(func.count()).where(Report.reporter_id == rep_id)).scalar_one()
    if have:
        return int(have)
    for i, (itype, esc, ip, nfiles) in enumerate(SAMPLES):
        body = sample_report_xml(i, itype, esc, ip)
        report_id, _ = rt.intake.open_report(rep_id, parse_report(body), source="ispws",
                                             body=body, content_type="text/xml")
        for j in range(nfiles):
            blob = rt.blobs.put(standin_image(100 * i + j))
            file_id = rt.intake.attach_file(rep_id, report_id, blob, file_name=f"standin-{i}-{j}.png",
                                            media_type="image/png")
            details = (f"<fileDetails><reportId>{report_id}</reportId><fileId>{file_id}</fileId>"
                       f"<fileViewedByEsp>true</fileViewedByEsp></fileDetails>").encode()
            rt.intake.file_info(rep_id, parse_file_details(details), body=details,
                                content_type="text/xml")
        rt.intake.finish(rep_id, report_id)
    return len(SAMPLES)
