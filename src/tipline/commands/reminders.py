"""``tipline reminders``: overdue acknowledgements (and missing outcomes), listed per agency
and mailed to the agencies."""

from __future__ import annotations

import getpass
import json

import click

from tipline.commands.context import Ctx, pass_ctx


@click.group("reminders")
def command() -> None:
    """Mail agencies their overdue referrals.

    Overdue: past the acknowledgement deadline, which comes from the report's
    priority (TIPLINE_ACK_DEADLINE_P1_MINUTES and the others). When outcomes are
    installed, referrals with no outcome after TIPLINE_OUTCOME_REMINDER_DAYS are in
    the same mail.
    """


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def reminders_list(c: Ctx, as_json: bool) -> None:
    """List what each agency would be sent.

    Per agency: the referrals a reminder would name, and whether it is due now.
    """
    from datetime import UTC, datetime

    from tipline.referrals.reminders import due

    now = datetime.now(UTC)
    with c.database() as sessions, sessions() as s:
        reminders = due(s, c.settings, now)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in reminders], indent=2))
        return
    if not reminders:
        click.echo("no referral is overdue")
        return
    for r in reminders:
        state = f"not sent now: {r.skip}" if r.skip else "due now"
        click.echo(f"{r.agency_code}: {len(r.acknowledge)} overdue for acknowledgement, "
                   f"{len(r.outcome)} without outcome; to {', '.join(r.recipients) or 'nobody'} ({state})")
        for x in r.acknowledge:
            click.echo(f"  referral {x.referral_id}  report {x.report_id}  priority {x.priority or '-'}  "
                       f"due {x.deadline:%Y-%m-%d %H:%M} UTC")
        for x in r.outcome:
            click.echo(f"  referral {x.referral_id}  report {x.report_id}  no outcome since "
                       f"{x.made_available_at:%Y-%m-%d}")


@command.command("send")
@pass_ctx
def reminders_send(c: Ctx) -> None:
    """Mail each agency that is due.

    Through TIPLINE_SMTP_HOST, at most once a day for the same referrals. Run it from
    cron, e.g. every 15 minutes.
    """
    import smtplib

    from tipline.referrals.reminders import SmtpNotConfigured, send

    with c.database() as sessions:
        try:
            result = send(sessions, c.settings, actor_name=f"cli:{getpass.getuser()}")
        except SmtpNotConfigured as exc:
            raise click.ClickException(str(exc)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise click.ClickException(f"cannot reach the SMTP server {c.settings.smtp_host}:"
                                       f"{c.settings.smtp_port}: {exc}") from exc
    for r in result.sent:
        click.echo(f"sent to {r.agency_code} ({', '.join(r.recipients)}): {len(r.acknowledge)} overdue, "
                   f"{len(r.outcome)} without outcome")
    for r in result.skipped:
        click.echo(f"not sent to {r.agency_code}: {r.skip}")
    for r, why in result.failed:
        click.echo(f"FAILED for {r.agency_code}: {why}", err=True)
    if not result.sent and not result.skipped and not result.failed:
        click.echo("no referral is overdue")
    if result.failed:
        raise SystemExit(1)
