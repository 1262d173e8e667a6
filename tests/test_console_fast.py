"""The queue's fast paths against their plain references, on random data, on both backends.

- the page: one walk of the read model (``queue_entries``) by page number (OFFSET) and by
  the next / previous keys (``after`` / ``before``) — against one query over the base tables
  that sorts every match (``_page_rows_plain``) and against the Python reference of
  tests/test_console_data.py (tests/test_console_read_model.py keeps the read model in step
  through the pipeline and the console);
- the counts: the pipeline's snapshot plus the reports people touched (``_combos``) —
  against one GROUP BY over every report's values in effect (``_combos_plain``), and each
  filter's counts against the Python reference;
- freshness: people's changes show at once, the pipeline's after the next recount.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from people_helpers import make_user
from test_console_data import reference_filter, reference_rows
from tipline.console import queue_model
from tipline.console import service as svc
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import (
    Assessment,
    BankEntry,
    Blob,
    File,
    FileMatch,
    HashBank,
    Jurisdiction,
    Report,
    Reporter,
)
from tipline.store.tables_people import AssessmentOverride, Claim

TYPES = ["Child Pornography (possession, manufacture, and distribution)", "Child Sex Tourism",
         "Online Enticement of Children for Sexual Acts", None]
PLACES: list[tuple[str | None, str | None] | None] = [None, (None, None), ("US", "TX"), ("US", "OH"), ("US", None),
                                                      ("DE", None), ("IN", None)]


def fill(rt: Runtime, rng: random.Random, n: int = 160) -> tuple[Principal, Principal, list[int]]:
    """Random reports with every kind of row the queue reads; returns two analysts and the
    ids of the assessed reports."""
    ana, bob = make_user(rt, "ana", "analyst"), make_user(rt, "bob", "analyst")
    now = datetime.now(UTC)
    with transaction(rt.sessions) as s:
        platforms = []
        for name in ("Acme Social", "Globex Chat", "Initech"):
            r = Reporter(name=name, kind="esp", enabled=True, created_at=now)
            s.add(r)
            s.flush()
            platforms.append(r.id)
        bank = HashBank(name="b", description=None, enabled=True, pdq_threshold=31, created_at=now)
        s.add(bank)
        s.flush()
        entry = BankEntry(bank_id=bank.id, hash_type="md5", value="0" * 32, label="x", added_at=now)
        s.add(entry)
        s.flush()
        assessed = []
        for _ in range(n):
            state = "open" if rng.random() < 0.05 else "finished"
            rep = Report(reporter_id=rng.choice(platforms), source="api", state=state, opened_at=now,
                         last_change_at=now, finished_at=now if state == "finished" else None,
                         incident_type=rng.choice(TYPES),
                         batched=False, document={}, normalisations=[], file_count=0)
            s.add(rep)
            s.flush()
            for k in range(rng.choice((0, 1, 1, 2, 3))):
                sha = f"{rep.id:032x}{k:032x}"
                s.add(Blob(sha256=sha, size=1, stored_name=None, md5=None, sha1=None, created_at=now))
                s.flush()
                fid = f"{rep.id:028x}{k:04x}"
                s.add(File(id=fid, report_id=rep.id, seq=k, size=1, md5="0" * 32, sha1="0" * 40, sha256=sha,
                           uploaded_at=now, viewed_by_esp=True))
                s.flush()
                x = rng.random()
                if x < 0.15:
                    s.add(FileMatch(file_id=fid, kind="bank", hash_type="md5", distance=0, bank_entry_id=entry.id,
                                    created_at=now))
                elif x < 0.3:
                    s.add(FileMatch(file_id=fid, kind="duplicate", hash_type="sha256", distance=0,
                                    other_file_id=fid, created_at=now))
            if state == "open" or rng.random() < 0.05:
                continue  # not assessed yet: not in the queue
            p = rng.choice((1, 2, 2, 3, 3, 3))
            s.add(Assessment(report_id=rep.id, quality=0.5, missing=[], disposition=rng.choice(("referral",
                             "informational")), disposition_reasons=[], priority=p, priority_reasons=[],
                             escalate=p == 1 and rng.random() < 0.5, rules_version="t", assessed_at=now))
            place = rng.choice(PLACES)
            if place is not None:
                s.add(Jurisdiction(report_id=rep.id, country=place[0], us_state=place[1], source="ip",
                                   confidence=0.5, reason="t", resolved_at=now))
            assessed.append(rep.id)
        s.flush()
        for rid in rng.sample(assessed, len(assessed) // 4):
            for _ in range(rng.choice((1, 1, 2, 3))):
                kind = rng.choice(("priority", "disposition", "escalate", "closed"))
                s.add(AssessmentOverride(
                    report_id=rid, user_id=ana.user_id, reason="t", at=now,
                    priority=rng.choice((1, 2, 3)) if kind == "priority" else None,
                    disposition=rng.choice(("referral", "informational")) if kind == "disposition" else None,
                    escalate=rng.choice((True, False)) if kind == "escalate" else None,
                    closed=rng.choice((True, False)) if kind == "closed" else None))
        for rid in rng.sample(assessed, 24):
            holder = rng.choice((ana, bob))
            live = rng.random() < 0.7
            s.add(Claim(report_id=rid, user_id=holder.user_id, claimed_at=now,
                        expires_at=now + (timedelta(hours=1) if live else -timedelta(hours=1))))
        # Written around the services, as a restore or bulk load would: rebuild the read model.
        queue_model.rebuild(s)
    return (Principal(ana.user_id, ana.username, "analyst"), Principal(bob.user_id, bob.username, "analyst"),
            assessed)


def random_filter(rng: random.Random, platforms: list[int]) -> svc.QueueFilter:
    def maybe(values: list[Any]) -> Any:
        return rng.choice(values) if rng.random() < 0.3 else None

    place = maybe([p for p in PLACES if p is not None])
    return svc.QueueFilter(
        priority=maybe([1, 2, 3]), disposition=maybe(["referral", "informational"]),
        incident_type=maybe([t for t in TYPES if t]), platform=maybe(platforms),
        country=None if place is None else (place[0] or ""), state=place[1] if place and rng.random() < 0.5 else None,
        escalated=maybe([True, False]), bank_match=maybe([True, False]), claim=maybe(["unclaimed", "mine"]),
        status=rng.choice(["open", "open", "closed", "all"]))


def check(rt: Runtime, me: Principal, f: svc.QueueFilter, now: datetime, per_page: int = 7) -> None:
    """Every page and every count of ``f`` against the references."""
    ref = reference_filter(reference_rows(rt, me.user_id, now), f)
    want = [r["report_id"] for r in ref]
    with rt.sessions() as s:
        got: list[int] = []
        pages = max(1, -(-len(want) // per_page))
        for page in range(1, pages + 2):  # and one past the end
            result = svc.queue(s, me, f, page=page, per_page=per_page, now=now)
            plain = svc._page_rows_plain(s, me, f, now, page, per_page)
            assert [r.report_id for r in result.rows] == [r.report_id for r in plain], (f, page)
            assert [(r.priority, r.disposition, r.escalated, r.bank_match, r.holder_id, r.country, r.state)
                    for r in result.rows] == [(r.priority, r.disposition, r.escalated, r.bank_match, r.holder_id,
                                               r.country, r.state) for r in plain], (f, page)
            got += [r.report_id for r in result.rows]
        assert got == want, f
        # The same walk by the next links (keys), then back by the previous links.
        keyed: list[list[int]] = []
        after: tuple[int, int] | None = None
        while True:
            rows = svc.queue(s, me, f, per_page=per_page, now=now, after=after).rows
            if not rows:
                break
            keyed.append([r.report_id for r in rows])
            after = (rows[-1].priority, rows[-1].report_id)
        assert [i for chunk in keyed for i in chunk] == want, f
        by_id = {r["report_id"]: r for r in ref}
        for k in range(len(keyed) - 1, 0, -1):
            first = by_id[keyed[k][0]]
            back = svc.queue(s, me, f, per_page=per_page, now=now,
                             before=(first["priority"], first["report_id"])).rows
            assert [r.report_id for r in back] == keyed[k - 1], (f, k)
        assert result.total == len(want), f
        all_rows = reference_rows(rt, me.user_id, now)
        for facet in svc.FACETS:
            expect = Counter(r[facet] for r in reference_filter(all_rows, f.without(facet)))
            counts = {v.value: v.count for v in result.facets[facet]}
            for value, n in expect.items():
                if facet == "claim" and value is None:
                    value = "unclaimed"
                elif facet == "claim" and value == "other" or value is None:
                    continue  # "held by someone else" and "no US state" are no filter values
                key = ("yes" if value else "no") if isinstance(value, bool) else (
                    "unknown" if facet == "country" and value == "" else str(value))
                assert counts.get(key) == n, (f, facet, key, counts)


def combos_agree(rt: Runtime, me: Principal, now: datetime) -> None:
    with rt.sessions() as s:
        combos = svc._combos(s, me, now)[1]
        assert combos == svc._combos_plain(s, me, now)
    # The vectorised tallies against the loop over combinations, for many filters.
    rng = random.Random(len(combos))
    platforms = sorted({c.platform for c in combos})
    cols = svc._Columns.of(combos)
    for f in [svc.QueueFilter(), svc.QueueFilter(status="all"), svc.QueueFilter(country=""),
              svc.QueueFilter(priority=1, claim="mine")] + [random_filter(rng, platforms) for _ in range(40)]:
        assert svc._tallies(me, f, cols) == svc._tallies_plain(me, f, combos), f


@pytest.mark.parametrize("seed", [11, 12])
def test_pages_and_counts_agree_with_the_references(runtime: Runtime, seed: int) -> None:
    rng = random.Random(seed)
    me, _, _ = fill(runtime, rng)
    svc.drop_counts()
    now = datetime.now(UTC)
    combos_agree(runtime, me, now)
    with runtime.sessions() as s:
        ids = sorted(s.scalars(select(Reporter.id)))
    for f in [svc.QueueFilter(), svc.QueueFilter(status="all"), svc.QueueFilter(status="closed"),
              svc.QueueFilter(claim="mine"), svc.QueueFilter(escalated=True), svc.QueueFilter(country="DE"),
              svc.QueueFilter(country="US", state="TX"), svc.QueueFilter(state="OH"), svc.QueueFilter(country=""),
              svc.QueueFilter(incident_type=TYPES[1])] + [random_filter(rng, ids) for _ in range(30)]:
        check(runtime, me, f, now)


def test_people_show_at_once_the_pipeline_after_a_recount(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    # No recount by age until the test asks for one (a slow machine takes more than 10 s).
    monkeypatch.setattr(svc, "COUNTS_TTL_SECONDS", 1e9)
    rng = random.Random(5)
    me, other, assessed = fill(runtime, rng, n=80)
    svc.drop_counts()
    now = datetime.now(UTC)
    combos_agree(runtime, me, now)  # takes the pipeline snapshot
    # People's changes, from this process's service and straight in the tables as another
    # process would write them: the counts agree at once, with the snapshot kept.
    with runtime.sessions() as s:
        free = [rid for rid in assessed if svc.current_claim(s, rid).holder_id is None]
    with transaction(runtime.sessions) as s:
        svc.claim(s, me, free[0], minutes=30)
        svc.set_priority(s, me, free[0], 1, "synthetic reason")
        svc.close_informational(s, me, free[0], "synthetic reason")
        s.execute(insert(Claim), [{"report_id": free[1], "user_id": other.user_id, "claimed_at": now,
                                   "expires_at": now + timedelta(minutes=30)}])
        s.execute(insert(AssessmentOverride), [{"report_id": free[2], "user_id": other.user_id, "reason": "x",
                                                "at": now, "disposition": "informational"}])
        # Every writer keeps the read model in the same transaction (another process included).
        queue_model.refresh(s, free[1:3])
    now = datetime.now(UTC)
    combos_agree(runtime, me, now)
    check(runtime, me, svc.QueueFilter(status="all"), now)
    # A claim that runs out shows as unclaimed without anyone writing.
    later = now + timedelta(minutes=31)
    combos_agree(runtime, me, later)
    check(runtime, me, svc.QueueFilter(claim="unclaimed"), later)
    # The pipeline re-assesses a report nobody touched: the snapshot still has the old value
    # until the next recount, which a page starts in the background once the snapshot is old.
    while svc._recounting:  # the recount the console's writes asked for
        time.sleep(0.05)
    plain = next(rid for rid in assessed if rid not in free[:3])
    with transaction(runtime.sessions) as s:
        s.execute(update(Assessment).where(Assessment.report_id == plain)
                  .values(priority=Assessment.priority % 3 + 1, disposition="informational"))
        queue_model.refresh(s, [plain])  # as the assess stage does
    with runtime.sessions() as s:
        assert svc._combos(s, me, now)[1] != svc._combos_plain(s, me, now)
    monkeypatch.setattr(svc, "COUNTS_TTL_SECONDS", 0.0)
    with runtime.sessions() as s:
        svc.queue(s, me, now=now)  # serves the old snapshot, starts the recount
    deadline = time.monotonic() + 30
    while True:
        with runtime.sessions() as s:
            if svc._combos(s, me, now)[1] == svc._combos_plain(s, me, now):
                break
        assert time.monotonic() < deadline, "the background recount never came"
        time.sleep(0.1)
    check(runtime, me, svc.QueueFilter(), now)
