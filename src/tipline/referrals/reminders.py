"""Reminder mails to agencies: referrals past their acknowledgement deadline, and (when the
outcomes service is installed) referrals with no outcome long after they were made
available — one mail per agency holding both lists.

A mail goes to the agency's ``contact_email`` and to the e-mail addresses of its active
officers, through the SMTP server of the settings (``TIPLINE_SMTP_*``). It names referrals
by id, deadline and priority only, never report content: mail is not a safe channel for it.
Each mail sent leaves one ``ReminderSent`` row per kind it held (and an audit row); an
agency is not mailed again within a day unless a referral that was not in a mail of the
last day has become overdue.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tipline.config import Settings
from tipline.people.audit import record
from tipline.referrals import service as svc
from tipline.store.db import transaction
from tipline.store.tables import Agency, Referral
from tipline.store.tables_people import ReminderSent, User

#: No second mail for the same referrals within this time.
QUIET = timedelta(days=1)


@dataclass(slots=True)
class Late:
    referral_id: int
    report_id: int
    priority: int | None
    deadline: datetime
    made_available_at: datetime


@dataclass(slots=True)
class Reminder:
    """What one agency's mail would hold."""

    agency_id: int
    agency_code: str
    agency_name: str
    recipients: list[str]
    acknowledge: list[Late] = field(default_factory=list)
    outcome: list[Late] = field(default_factory=list)
    #: Why it will not be sent now (None: it will).
    skip: str | None = None

    def as_json(self) -> dict[str, Any]:
        def rows(items: Sequence[Late]) -> list[dict[str, Any]]:
            return [{"referralId": x.referral_id, "reportId": x.report_id, "priority": x.priority,
                     "deadline": svc.iso(x.deadline), "madeAvailableAt": svc.iso(x.made_available_at)}
                    for x in items]
        return {"agency": self.agency_code, "recipients": self.recipients, "acknowledge": rows(self.acknowledge),
                "outcome": rows(self.outcome), "skip": self.skip}


def due(session: Session, settings: Settings, now: datetime) -> list[Reminder]:
    """Every agency with overdue acknowledgements or outcomes, and whether it is mailed now."""
    now = now.astimezone(UTC)
    ack = svc.overdue_acknowledgements(session, settings, now)
    outcomes = svc.outcomes_service()
    missing: dict[int, list[int]] = outcomes.overdue_outcomes(session, now) if outcomes is not None else {}
    agency_ids = sorted(set(ack) | set(missing))
    if not agency_ids:
        return []
    ref_ids = {i for v in ack.values() for i in v} | {i for v in missing.values() for i in v}
    refs = {r.id: r for r in session.scalars(select(Referral).where(Referral.id.in_(ref_ids)))}
    prio = svc._priorities(session, [r.report_id for r in refs.values()])
    agencies = {a.id: a for a in session.scalars(select(Agency).where(Agency.id.in_(agency_ids)))}
    since = now - QUIET
    recent: dict[tuple[int, str], set[int]] = {}
    for row in session.scalars(select(ReminderSent).where(ReminderSent.sent_at >= since,
                                                          ReminderSent.agency_id.in_(agency_ids))):
        recent.setdefault((row.agency_id, row.kind), set()).update(int(x) for x in row.referral_ids)

    def late(ids: Sequence[int]) -> list[Late]:
        out = []
        for i in ids:
            r = refs[i]
            p = prio.get(r.report_id)
            out.append(Late(i, r.report_id, p, svc.deadline_of(settings, r.made_available_at, p),
                            r.made_available_at if r.made_available_at.tzinfo
                            else r.made_available_at.replace(tzinfo=UTC)))
        return out

    reminders = []
    for aid in agency_ids:
        a = agencies[aid]
        emails = [a.contact_email] if a.contact_email else []
        emails += [e for e in session.scalars(select(User.email).where(
            User.agency_id == aid, User.role == "officer", User.disabled_at.is_(None), User.email.is_not(None))
            .order_by(User.username)) if e]
        rem = Reminder(aid, a.code, a.name, list(dict.fromkeys(emails)), late(ack.get(aid, [])),
                       late(missing.get(aid, [])))
        new_ack = {x.referral_id for x in rem.acknowledge} - recent.get((aid, "acknowledge"), set())
        new_out = {x.referral_id for x in rem.outcome} - recent.get((aid, "outcome"), set())
        if not rem.recipients:
            rem.skip = "no e-mail address (set the agency's contact_email or its officers' e-mail)"
        elif not new_ack and not new_out:
            rem.skip = "already reminded of these referrals within the last day"
        reminders.append(rem)
    return reminders


def _minutes(delta: timedelta) -> str:
    m = int(delta.total_seconds() // 60)
    return f"{m // 1440} d {m % 1440 // 60} h" if m >= 1440 else f"{m // 60} h {m % 60} min"


def message(settings: Settings, rem: Reminder, now: datetime) -> EmailMessage:
    parts = []
    if rem.acknowledge:
        parts.append(f"{len(rem.acknowledge)} overdue for acknowledgement")
    if rem.outcome:
        parts.append(f"{len(rem.outcome)} with no outcome recorded")
    msg = EmailMessage()
    msg["Subject"] = f"tipline: referrals to {rem.agency_code}: " + ", ".join(parts)
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(rem.recipients)
    lines = [f"Referrals made available to {rem.agency_name} ({rem.agency_code}) need attention.", ""]
    if rem.acknowledge:
        lines.append("Past their acknowledgement deadline:")
        for x in rem.acknowledge:
            lines.append(f"  referral {x.referral_id} (report {x.report_id}, priority {x.priority or '-'}): "
                         f"due {x.deadline:%Y-%m-%d %H:%M} UTC, overdue by {_minutes(now - x.deadline)}"
                         f"  -> /le/referrals/{x.referral_id}")
        lines.append("")
    if rem.outcome:
        lines.append("No outcome recorded yet (record what happened, even 'closed, not pursued'):")
        for x in rem.outcome:
            lines.append(f"  referral {x.referral_id} (report {x.report_id}): made available "
                         f"{x.made_available_at:%Y-%m-%d}  -> /le/referrals/{x.referral_id}")
        lines.append("")
    lines += ["Sign in to the law-enforcement inbox to act on them. This mail names referrals only;",
              "their content is in the inbox."]
    msg.set_content("\n".join(lines))
    return msg


class SmtpNotConfigured(Exception):
    pass


def _smtp(settings: Settings) -> smtplib.SMTP:
    if not settings.smtp_host or not settings.smtp_from:
        raise SmtpNotConfigured("set TIPLINE_SMTP_HOST and TIPLINE_SMTP_FROM to send reminders")
    conn = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
    try:
        if settings.smtp_starttls:
            conn.starttls()
        if settings.smtp_username:
            conn.login(settings.smtp_username, settings.smtp_password)
    except Exception:
        conn.close()
        raise
    return conn


@dataclass(slots=True)
class SendResult:
    sent: list[Reminder]
    skipped: list[Reminder]
    failed: list[tuple[Reminder, str]]


def send(sessions: sessionmaker[Session], settings: Settings, now: datetime | None = None, *,
         actor_name: str = "system") -> SendResult:
    """Mail every agency that is due; a row per kind of each mail sent, committed per mail
    (a failure for one agency neither loses the record of the others nor stops them)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with sessions() as s:
        reminders = due(s, settings, now)
    result = SendResult([], [r for r in reminders if r.skip], [])
    todo = [r for r in reminders if not r.skip]
    if not todo:
        return result
    conn = _smtp(settings)
    try:
        for rem in todo:
            try:
                conn.send_message(message(settings, rem, now))
            except smtplib.SMTPException as exc:
                result.failed.append((rem, str(exc)))
                continue
            with transaction(sessions) as s:
                for kind, items in (("acknowledge", rem.acknowledge), ("outcome", rem.outcome)):
                    if items:
                        s.add(ReminderSent(agency_id=rem.agency_id, kind=kind,
                                           referral_ids=[x.referral_id for x in items],
                                           recipients=rem.recipients, sent_at=now))
                record(s, action="reminder.sent", actor_name=actor_name, object_kind="agency",
                       object_id=rem.agency_id, detail={"acknowledge": [x.referral_id for x in rem.acknowledge],
                                                        "outcome": [x.referral_id for x in rem.outcome],
                                                        "recipients": rem.recipients})
            result.sent.append(rem)
    finally:
        try:
            conn.quit()
        except smtplib.SMTPException:
            conn.close()
    return result
