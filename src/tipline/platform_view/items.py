"""What each quality item means to a platform: what is missing, in words, and why it matters
to the agency that receives the report.

The items themselves (ids, weights, the facts they test) are the triage rules'
(``data/triage.toml``); this module only explains them. An item the rules name but this
guide does not know (an operator added one) is still shown, with the rules' own text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ItemGuide:
    id: str
    #: A short name for tables and the chart legend.
    title: str
    #: The gap in a few words, e.g. "no IP capture event with its time".
    headline: str
    #: Completes "N % of this month's reports …".
    lacking: str
    #: Why an agency needs it: what it cannot do without it (follows "headline: ").
    why: str
    #: What the platform sends to fill the gap (ISPWS / JSON field names).
    fix: str


GUIDE: dict[str, ItemGuide] = {g.id: g for g in (
    ItemGuide(
        "reported_user", "Reported user's identifiers", "no identifier of the reported user",
        "name no identifier of the reported user",
        "the agency cannot ask you (or anyone else) for the account's records, nor link this report "
        "to other reports about the same person; the report is informational, not a referral",
        "personOrUserReported with espIdentifier, screenName, profileUrl, or an e-mail or phone",
    ),
    ItemGuide(
        "location", "Location", "no location",
        "give no location",
        "nobody can tell which agency has jurisdiction: the report cannot go to the local task force, "
        "it goes to federal agencies and waits longer for someone to act on it",
        "ipCaptureEvent, an address, or estimatedLocation (countryCode, region, city)",
    ),
    ItemGuide(
        "content", "Content", "no files and no message text",
        "carry no files and no message text",
        "the agency has nothing to establish that a crime happened; a hash-only report is informational",
        "upload the files, or send the chat, e-mail or message text in internetDetails",
    ),
    ItemGuide(
        "files_viewed", "Files viewed by you", "a file you did not mark as viewed",
        "have a file you did not mark as viewed",
        "the agency may not open a file your staff did not view until it obtains legal process "
        "(US v. Wilson, 9th Cir. 2021): a warrant first, which delays the investigation by days or weeks",
        "fileViewedByEsp = true in a file's fileDetails when a person at your company saw it (only then: "
        "a file nobody saw must say false)",
    ),
    ItemGuide(
        "incident_time", "Incident time", "no incident time",
        "give no incident time",
        "the agency cannot tell whether a child may be in danger now, nor ask other companies for "
        "records before they are deleted",
        "incidentSummary/incidentDateTime",
    ),
    ItemGuide(
        "ip_event_times", "IP capture events with times", "no IP capture event with its time",
        "have no IP capture event with its time",
        "the agency cannot subpoena the ISP: an IP address names a subscriber only together with the "
        "moment it was used",
        "ipCaptureEvent with ipAddress and dateTime (and eventName, possibleProxy) for the reported user",
    ),
)}


def guide(item: str, rules_text: str | None = None) -> ItemGuide:
    """The guide for ``item``; for an item this module does not know, one built from the
    rules' own text (never an error: the rules may be newer than this guide)."""
    known = GUIDE.get(item)
    if known is not None:
        return known
    text = rules_text or item.replace("_", " ")
    return ItemGuide(item, text[:1].upper() + text[1:], f"missing: {text}", f"lack {text}",
                     "the triage rules count it as something an investigator needs", "see docs/triage.md")
