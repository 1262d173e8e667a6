"""The queue's read model (``queue_entries``) stays what the base tables give.

An invariant, not examples: a small simulated year is enriched in a random order of
pipeline runs — per-report (``run_report_stepwise``), in groups (``run_reports``, the stages'
set-based forms) and re-runs of single stages — interleaved with random console actions
(claim, release, reassign, priority, disposition, escalate, close) and changes under
enriched reports (a location forgotten, a file banked) followed by a re-run of just the stage
that reads them. After every step the
stored rows equal the rows computed from the base tables; at the end, and an hour later
(every claim expired), every page by number and by key and every count equal the plain
references (``_page_rows_plain``, ``_combos_plain`` and the Python reference).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from people_helpers import make_user
from test_console_fast import check, combos_agree
from test_group_stages import load, year
from tipline.console import queue_model
from tipline.console import service as svc
from tipline.people.principal import Principal
from tipline.pipeline.banks import import_bank
from tipline.pipeline.core import StageContext, run_report_stepwise, run_reports
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import File, Location, Reporter
from tipline.store.tables_console import QueueEntry


def agrees(rt: Runtime) -> None:
    with rt.sessions() as s:
        assert queue_model.differences(s) == (0, [])


def act(rt: Runtime, rng: random.Random, people: list[Principal], rid: int) -> None:
    """One random console action on a report (a refusal is a fine outcome: nothing written)."""
    who = rng.choice(people)
    action = rng.choice(("claim", "claim", "release", "reassign", "priority", "disposition", "escalate", "close",
                         "close"))
    try:
        with transaction(rt.sessions) as s:
            if action == "claim":
                svc.claim(s, who, rid, minutes=rng.choice((1, 30)))
            elif action == "release":
                svc.release(s, who, rid)
            elif action == "reassign":
                svc.reassign(s, people[-1], rid, rng.choice(people[:2]).username, minutes=30)
            elif action == "priority":
                svc.set_priority(s, who, rid, rng.choice(svc.PRIORITIES), "synthetic reason")
            elif action == "disposition":
                svc.set_disposition(s, who, rid, rng.choice(svc.DISPOSITIONS), "synthetic reason")
            elif action == "escalate":
                svc.escalate(s, who, rid, "synthetic reason")
            else:
                svc.close_informational(s, who, rid, "synthetic reason")
    except (svc.Refused, svc.NotFound):
        pass


def test_read_model_follows_every_writer(runtime: Runtime) -> None:
    rng = random.Random(13)
    ids = load(runtime, year(seed=31))
    assert len(ids) >= 30, len(ids)
    with transaction(runtime.sessions) as s:
        # A hash bank holding a few of the year's files, so that some reports match it.
        hashes = list(s.scalars(select(File.sha256).order_by(File.id).limit(40)))[::4]
        import_bank(s, "synthetic", "hash_type,value,label\n" + "".join(f"sha256,{h},x\n" for h in hashes),
                    fmt="csv")
    people = [Principal(u.user_id, u.username, u.role) for u in
              (make_user(runtime, "ana", "analyst"), make_user(runtime, "bob", "analyst"),
               make_user(runtime, "sue", "supervisor"))]
    ctx = StageContext(runtime)
    waiting = list(ids)
    rng.shuffle(waiting)
    done: list[int] = []
    stages = ["matches", "jurisdiction", "assess", "route"]
    step = 0
    changed = {"jurisdiction": 0, "matches": 0}
    while waiting or step < 90:
        step += 1
        x = rng.random()
        if waiting and x < 0.25:
            rid = waiting.pop()
            run_report_stepwise(ctx, rid)
            done.append(rid)
        elif waiting and x < 0.5:
            k = rng.randint(2, 9)
            chunk, waiting = waiting[:k], waiting[k:]
            run_reports(ctx, dict.fromkeys(chunk), group_size=rng.choice((1, 3, 16)))
            done += chunk
        elif done and x < 0.58:
            # The world changes under an enriched report, then only the stage that reads it
            # runs again: its location is forgotten (jurisdiction) or its file is banked (matches).
            rid = rng.choice(done)
            name = rng.choice(["jurisdiction", "matches"])
            with transaction(runtime.sessions) as s:
                if name == "jurisdiction":
                    s.execute(delete(Location).where(Location.report_id == rid))
                else:
                    sha = s.scalars(select(File.sha256).where(File.report_id == rid)).first()
                    if sha is not None:
                        import_bank(s, "synthetic", f"hash_type,value,label\nsha256,{sha},x\n", fmt="csv")
            if rng.random() < 0.5:
                run_report_stepwise(ctx, rid, [name])
            else:
                run_reports(ctx, {rid: [name]}, group_size=4)
            changed[name] += 1
        elif done and x < 0.65:
            # A re-run of single stages, per report and in groups.
            again = rng.sample(done, min(len(done), rng.randint(1, 6)))
            names = rng.sample(stages, rng.randint(1, 2))
            if rng.random() < 0.5:
                for rid in again:
                    run_report_stepwise(ctx, rid, names)
            else:
                run_reports(ctx, dict.fromkeys(again, names), group_size=rng.choice((2, 16)))
        elif done:
            act(runtime, rng, people, rng.choice(done))
        agrees(runtime)
    with runtime.sessions() as s:
        n = s.execute(select(QueueEntry.report_id)).all()
        assert len(n) == len(ids)  # every finished report assessed, one row each
        flags = s.execute(select(QueueEntry.bank_match, QueueEntry.closed, QueueEntry.holder_id.is_not(None),
                                 QueueEntry.priority_overridden)).all()
        platforms = sorted(s.scalars(select(Reporter.id)))
    made = [sum(bool(r[k]) for r in flags) for k in range(4)]
    assert all(made), f"the random steps never made one kind of row (bank, closed, held, overridden): {made}"
    assert min(changed.values()) >= 2, changed
    svc.drop_counts()
    filters = [svc.QueueFilter(), svc.QueueFilter(status="all"), svc.QueueFilter(status="closed"),
               svc.QueueFilter(claim="mine"), svc.QueueFilter(claim="unclaimed"), svc.QueueFilter(bank_match=True),
               svc.QueueFilter(escalated=True), svc.QueueFilter(country=""), svc.QueueFilter(country="US"),
               svc.QueueFilter(platform=platforms[0], status="all"), svc.QueueFilter(priority=2, status="all")]
    for now in (datetime.now(UTC), datetime.now(UTC) + timedelta(hours=1)):
        combos_agree(runtime, people[0], now)
        for f in filters:
            check(runtime, people[0], f, now, per_page=4)
