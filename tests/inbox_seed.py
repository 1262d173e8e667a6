"""A small inbox for the law-enforcement tests: two agencies' referrals, files with real
encrypted stand-in images (one the platform viewed, one it did not), an incident with two
reports made available to the same agency, and officers of both agencies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from helpers import person, report_doc, store_report
from people_helpers import TestUser, make_user
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.db import transaction
from tipline.store.tables import (
    Agency,
    Assessment,
    BankEntry,
    Blob,
    File,
    FileMatch,
    HashBank,
    Incident,
    IncidentReport,
    Referral,
)

HOME, OTHER = "ICAC-TX-OAG", "FBI"


@dataclass
class Inbox:
    officer: TestUser
    colleague: TestUser
    foreign_officer: TestUser
    analyst: TestUser
    #: The main referral (escalated, priority 1, overdue), its report and files.
    referral: int
    report: int
    viewed_file: str
    unviewed_file: str
    #: The same incident's other report, made available to HOME too.
    related_referral: int
    related_report: int
    #: A priority-3 referral of HOME, not overdue.
    calm_referral: int
    #: OTHER's referral of the main report (never visible to HOME's officers).
    foreign_referral: int
    image: bytes


def _blob(rt: Runtime, s: object, data: bytes) -> str:
    stored = rt.blobs.put(data)
    sha = stored.sha256
    if s.get(Blob, sha) is None:  # type: ignore[attr-defined]
        s.add(Blob(sha256=sha, size=stored.size, stored_name=stored.stored_name, data=stored.inline,  # type: ignore[attr-defined]
                   md5=stored.md5, sha1=stored.sha1, created_at=datetime.now(UTC)))
        s.flush()  # type: ignore[attr-defined]
    return sha


def seed(rt: Runtime, now: datetime | None = None, prefix: str = "") -> Inbox:
    """``prefix`` names the users and the bank apart, to seed one instance twice."""
    now = now or datetime.now(UTC)
    officer = make_user(rt, f"{prefix}olivia", "officer", agency=HOME, email=f"{prefix}olivia@tx.example")
    colleague = make_user(rt, f"{prefix}carlos", "officer", agency=HOME, email=f"{prefix}carlos@tx.example")
    foreign = make_user(rt, f"{prefix}frank", "officer", agency=OTHER, email=f"{prefix}frank@fbi.example")
    analyst = make_user(rt, f"{prefix}ana", "analyst")
    main = store_report(rt, report_doc([person("suspect1", estimate={"countryCode": "US", "region": "TX",
                                                                     "verified": True})]))
    related = store_report(rt, report_doc([person("suspect1")]))
    calm = store_report(rt, report_doc([person("other")]))
    image = standin_image(11, size=(320, 240))
    with transaction(rt.sessions) as s:
        agencies = {a.code: a.id for a in s.scalars(select(Agency).where(Agency.code.in_([HOME, OTHER])))}
        s.execute(Agency.__table__.update().where(Agency.code == HOME).values(contact_email="duty@tx.example"))
        sha_a = _blob(rt, s, image)
        sha_b = _blob(rt, s, standin_image(12))
        files = []
        for seq, (sha, data, viewed) in enumerate([(sha_a, image, True), (sha_b, standin_image(12), False)], 1):
            fid = hashlib.sha256(f"f{main}-{seq}".encode()).hexdigest()[:32]
            s.add(File(id=fid, report_id=main, seq=seq, file_name=f"upload-{seq}.png", media_type="image/png",
                       size=len(data), md5=hashlib.md5(data).hexdigest(), sha1=hashlib.sha1(data).hexdigest(),
                       sha256=sha, uploaded_at=now, viewed_by_esp=viewed))
            files.append(fid)
        bank = HashBank(name=f"{prefix}known-series", description="test bank", enabled=True, pdq_threshold=31,
                        created_at=now)
        s.add(bank)
        s.flush()
        entry = BankEntry(bank_id=bank.id, hash_type="sha256", value=sha_a, label="series X", added_at=now)
        s.add(entry)
        s.flush()
        s.add(FileMatch(file_id=files[0], kind="bank", hash_type="sha256", distance=0, bank_entry_id=entry.id,
                        created_at=now))
        for rid, prio in ((main, 1), (related, 2), (calm, 3)):
            s.add(Assessment(report_id=rid, quality=0.8, missing=["ip capture event"], disposition="referral",
                             disposition_reasons=["content"], priority=prio, priority_reasons=[f"p{prio} rule"],
                             escalate=prio == 1, rules_version="test", assessed_at=now))
        inc = Incident(rule="account", key=f"acct:suspect1:{main}", lowest_report_id=min(main, related),
                       created_at=now, updated_at=now)
        s.add(inc)
        s.flush()
        s.add_all([IncidentReport(incident_id=inc.id, report_id=main, reason="same account", rule="account"),
                   IncidentReport(incident_id=inc.id, report_id=related, reason="same account", rule="account")])
        ref = Referral(report_id=main, agency_id=agencies[HOME], rule="us-state-icac", reason="state TX",
                       made_available_at=now - timedelta(hours=3), escalated=True,
                       escalated_at=now - timedelta(hours=3))
        rel = Referral(report_id=related, agency_id=agencies[HOME], rule="incident", reason="same incident",
                       made_available_at=now - timedelta(hours=2))
        quiet = Referral(report_id=calm, agency_id=agencies[HOME], rule="us-state-icac", reason="state TX",
                         made_available_at=now - timedelta(hours=1))
        foreign_ref = Referral(report_id=main, agency_id=agencies[OTHER], rule="federal", reason="federal",
                               made_available_at=now - timedelta(hours=3))
        s.add_all([ref, rel, quiet, foreign_ref])
        s.flush()
        return Inbox(officer, colleague, foreign, analyst, ref.id, main, files[0], files[1], rel.id, related,
                     quiet.id, foreign_ref.id, image)
