"""Reminder mails through a real local SMTP server (aiosmtpd): who gets them, what they
say, one ReminderSent row per kind, no second mail for the same referrals within a day."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from inbox_seed import HOME, Inbox, seed
from tipline.cli import main
from tipline.config import Settings
from tipline.referrals import reminders
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Referral
from tipline.store.tables_people import AuditEvent, ReminderSent


class Inbound:
    """Collects what the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbound, int]]:
    from aiosmtpd.controller import Controller

    inbound = Inbound()
    port = _port()
    ctl = Controller(inbound, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield inbound, port
    finally:
        ctl.stop()


@pytest.fixture
def box(runtime: Runtime) -> Inbox:
    return seed(runtime)


def _mailing(settings: Settings, port: int) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=port, smtp_from="tipline@hotline.example")


def _cli(settings: Settings, port: int | None, *args: str) -> Any:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url,
           "TIPLINE_SMTP_HOST": "127.0.0.1" if port else "", "TIPLINE_SMTP_PORT": str(port or 25),
           "TIPLINE_SMTP_FROM": "tipline@hotline.example" if port else ""}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_overdue_referral_is_mailed_once_a_day(runtime: Runtime, box: Inbox, smtp: tuple[Inbound, int]) -> None:
    inbound, port = smtp
    settings = _mailing(runtime.settings, port)
    with runtime.sessions() as s:
        listed = reminders.due(s, settings, datetime.now(UTC))
    # The FBI's referral of the same priority-1 report is late too, to its officer's address.
    assert [(r.agency_code, [x.referral_id for x in r.acknowledge], r.recipients) for r in listed] == [
        (HOME, [box.referral], ["duty@tx.example", "carlos@tx.example", "olivia@tx.example"]),
        ("FBI", [box.foreign_referral], ["frank@fbi.example"])]
    with transaction(runtime.sessions) as s:
        s.execute(update(Referral).where(Referral.id == box.foreign_referral)
                  .values(acknowledged_at=datetime.now(UTC)))
    result = reminders.send(runtime.sessions, settings)
    assert [r.agency_code for r in result.sent] == [HOME] and not result.failed
    (rcpts, msg), = inbound.messages
    assert sorted(rcpts) == ["carlos@tx.example", "duty@tx.example", "olivia@tx.example"]
    assert msg["From"] == "tipline@hotline.example" and HOME in msg["Subject"]
    body = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert f"referral {box.referral} (report {box.report}, priority 1)" in body and "overdue by 2 h" in body
    assert f"referral {box.calm_referral}" not in body and "suspect1" not in body  # ids only, no content
    with runtime.sessions() as s:
        rows = s.scalars(select(ReminderSent)).all()
        assert [(r.kind, r.referral_ids) for r in rows] == [("acknowledge", [box.referral])]
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "reminder.sent")).scalar_one()
    # Again at once: nothing new, no mail.
    again = reminders.send(runtime.sessions, settings)
    assert not again.sent and again.skipped[0].skip and len(inbound.messages) == 1
    # A new overdue referral is mailed (with the old one still listed), the next day the old one again.
    with transaction(runtime.sessions) as s:
        s.execute(update(Referral).where(Referral.id == box.related_referral)
                  .values(made_available_at=datetime.now(UTC) - timedelta(hours=30)))
    assert len(reminders.send(runtime.sessions, settings).sent) == 1 and len(inbound.messages) == 2
    later = reminders.send(runtime.sessions, settings, now=datetime.now(UTC) + timedelta(days=1, minutes=1))
    assert len(later.sent) == 1 and len(inbound.messages) == 3


def test_acknowledged_referrals_are_not_reminded(runtime: Runtime, box: Inbox, smtp: tuple[Inbound, int]) -> None:
    inbound, port = smtp
    with transaction(runtime.sessions) as s:
        s.execute(update(Referral).values(acknowledged_at=datetime.now(UTC)))
    with runtime.sessions() as s:
        assert reminders.due(s, runtime.settings, datetime.now(UTC)) == []
    assert not reminders.send(runtime.sessions, _mailing(runtime.settings, port)).sent
    assert inbound.messages == []


def test_cli_list_and_send(runtime: Runtime, box: Inbox, smtp: tuple[Inbound, int]) -> None:
    inbound, port = smtp
    with transaction(runtime.sessions) as s:  # only our agency is late
        s.execute(update(Referral).where(Referral.id == box.foreign_referral)
                  .values(acknowledged_at=datetime.now(UTC)))
    out = _cli(runtime.settings, None, "reminders", "list", "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc[0]["agency"] == HOME and doc[0]["acknowledge"][0]["referralId"] == box.referral
    text = _cli(runtime.settings, None, "reminders", "list").output
    assert f"referral {box.referral}" in text and "due now" in text
    refused = _cli(runtime.settings, None, "reminders", "send")
    assert refused.exit_code == 1 and "TIPLINE_SMTP_HOST" in refused.output and inbound.messages == []
    sent = _cli(runtime.settings, port, "reminders", "send")
    assert sent.exit_code == 0 and f"sent to {HOME}" in sent.output and len(inbound.messages) == 1
    with runtime.sessions() as s:
        row = s.execute(select(AuditEvent).where(AuditEvent.action == "reminder.sent")).scalar_one()
        assert row.actor.startswith("cli:")
    unreachable = _cli(runtime.settings, _port(), "reminders", "send")
    # Nothing new to send: it does not even connect. Make something new, then it must fail cleanly.
    assert unreachable.exit_code == 0
    with transaction(runtime.sessions) as s:
        s.execute(update(Referral).where(Referral.id == box.calm_referral)
                  .values(made_available_at=datetime.now(UTC) - timedelta(days=8)))
    failed = _cli(runtime.settings, _port(), "reminders", "send")
    assert failed.exit_code == 1 and "cannot reach the SMTP server" in failed.output
    assert "Traceback" not in failed.output
