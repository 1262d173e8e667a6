"""Bundles in bulk: the group form and the whole-store rebuild agree with the per-report stage
(incremental path and full re-plan) and with the reference plan, on random link graphs and on a
simulated set of reports; a second run writes nothing; statements per group do not grow with it."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from click.testing import CliRunner
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from helpers import person, report_doc, store_report
from tipline.cli import main
from tipline.config import Settings
from tipline.pipeline.bundling.bulk import plan_reports, rebuild_all
from tipline.pipeline.bundling.reference import current_assignments, plan_all
from tipline.pipeline.bundling.rules import BundlingRules, load_bundling
from tipline.pipeline.core import Outcome, StageContext, get_stage, run_reports
from tipline.pipeline.linkchanges import LinkChange, record_link_change
from tipline.pipeline.stages.bundles import bundles_group, rebuild_bundles
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Incident, IncidentReport, PipelineRun, Report, ReportIncidentCount, ReportLink

#: (report_a, report_b, reason, detail)
Edge = tuple[int, int, str, str]
BUNDLE_TABLES = ("incidents", "incident_reports", "report_incident_counts")


def snapshot(s: Session) -> dict[str, Any]:
    """What the bundles stage writes, without surrogate ids and timestamps."""
    key = dict(s.execute(select(Incident.id, Incident.key)).all())
    return {
        "members": sorted((key[m.incident_id], m.report_id, m.reason, m.rule, m.via_report_id, m.link_detail)
                          for m in s.execute(select(IncidentReport)).scalars()),
        "incidents": sorted(s.execute(select(Incident.key, Incident.rule, Incident.lowest_report_id)).all()),
        "counts": sorted(s.execute(select(ReportIncidentCount.report_id, ReportIncidentCount.incidents,
                                          ReportIncidentCount.basis)).all()),
    }


def settled(snap: dict[str, Any], arrived: set[int]) -> dict[str, Any]:
    """``snap`` without reports not yet processed that stand alone. The per-report stage leaves
    such a report (reached by a content link before its own run) unbundled, or, when a report
    that took it in moves on within the same group, in an incident of its own: that depends on
    the order inside the group. The group form leaves it to its own run; every other row must
    be the same."""
    alone = {m[1] for m in snap["members"] if m[1] not in arrived and m[3] in ("single", "batched")}
    return {"members": [m for m in snap["members"] if m[1] not in alone],
            "incidents": [i for i in snap["incidents"] if not (i[1] in ("single", "batched") and i[2] in alone)],
            "counts": snap["counts"]}


def expected_reasons(s: Session, rules: BundlingRules) -> dict[int, tuple[str, int | None, str | None]]:
    """Reasons from scratch: each member's link to the lowest-numbered member of its incident
    (ties by detail), or none for batched and single reports."""
    assignment = current_assignments(s)
    by_rule = {r.name: r for r in rules.rules}
    links = s.execute(select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                             ReportLink.detail)).all()
    out: dict[int, tuple[str, int | None, str | None]] = {}
    for rid, (rule_name, k) in assignment.items():
        rule = by_rule.get(rule_name)
        cands = [] if rule is None else sorted(
            (b if a == rid else a, detail or reason) for a, b, reason, weight, detail in links
            if rid in (a, b) and reason in rule.reasons and weight >= rule.min_weight
            and assignment.get(b if a == rid else a, ("", ""))[1] == k)
        out[rid] = (rule_name, cands[0][0], cands[0][1]) if cands else (rule_name, None, None)
    return out


def assert_reference(s: Session, rules: BundlingRules, label: str, arrived: set[int] | None = None) -> None:
    """The stored incidents are the reference plan's: of every report, or (``arrived``) of every
    report bundled so far, which must include those."""
    stored, reference = current_assignments(s), plan_all(s, rules)
    if arrived is not None:
        assert arrived <= set(stored), label
        reference = {r: v for r, v in reference.items() if r in stored}
    assert stored == reference, label
    stored = {int(r): (rule, via, d) for r, rule, via, d in s.execute(
        select(IncidentReport.report_id, IncidentReport.rule, IncidentReport.via_report_id,
               IncidentReport.link_detail))}
    assert stored == expected_reasons(s, rules), label
    for inc in s.execute(select(Incident)).scalars():  # keys name the lowest member
        low = s.execute(select(IncidentReport.report_id).where(IncidentReport.incident_id == inc.id)
                        .order_by(IncidentReport.report_id).limit(1)).scalar()
        assert (inc.lowest_report_id, inc.key) == (low, f"{inc.rule}:{low}"), label


@contextmanager
def statements(rt: Runtime) -> Iterator[list[str]]:
    """Every SQL statement sent while the block runs (an executemany counts once)."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, executemany: bool) -> None:
        seen.append(sql)

    event.listen(rt.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(rt.engine, "before_cursor_execute", before)


def writes_to_bundles(sql: list[str]) -> list[str]:
    """Statements among ``sql`` that change what the bundles stage owns."""
    return [q for q in sql if q.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")
            and any(f" {t}" in q.split("WHERE")[0] or f'"{t}"' in q for t in BUNDLE_TABLES)]


# --- random link graphs -------------------------------------------------------------------------


def random_graph(rnd: random.Random, ids: list[int]) -> set[Edge]:
    """Many small components, a few large ones (viral stars on anchors, as the links stage
    makes them; offender chains), bridges between them, and IP links no rule uses."""
    edges: dict[tuple[int, int, str], Edge] = {}  # one link per (a, b, reason), as stored

    def add(a: int, b: int, reason: str) -> None:
        if a != b:
            a, b = min(a, b), max(a, b)
            edges[(a, b, reason)] = (a, b, reason, f"{reason} detail {(a * 7 + b * 3 + len(edges)) % 5}")

    pool = ids[:]
    rnd.shuffle(pool)
    for _ in range(rnd.randint(1, 3)):  # large viral items
        group, pool = pool[:rnd.randint(12, 30)], pool[12:]
        anchors = sorted(group)[:4]
        for r in group:
            for a in anchors:
                add(r, a, "content")
    for _ in range(rnd.randint(10, 18)):  # small components: pairs and triples
        group = rnd.sample(ids, rnd.randint(2, 3))
        for a, b in itertools.pairwise(group):
            add(a, b, rnd.choice(["content", "account", "email", "device"]))
    for _ in range(rnd.randint(2, 4)):  # offender chains across anything
        group = rnd.sample(ids, rnd.randint(3, 7))
        for a, b in itertools.pairwise(group):
            add(a, b, rnd.choice(["account", "email", "device"]))
    for _ in range(6):  # bridges and IP links
        a, b = rnd.sample(ids, 2)
        add(a, b, rnd.choice(["content", "account", "ip", "ip"]))
    return set(edges.values())


def arrival_groups(rnd: random.Random, ids: list[int], edges: set[Edge]) -> list[list[tuple[int, list[Edge]]]]:
    """Reports arrive in groups, in a random order; each brings its links to reports already
    there, and (content: files are stored first) sometimes to reports not yet processed."""
    order = ids[:]
    rnd.shuffle(order)
    arrived: set[int] = set()
    written: set[Edge] = set()
    groups: list[list[tuple[int, list[Edge]]]] = []
    i = 0
    while i < len(order):
        n = rnd.choice([1, 2, 5, 9, 16])
        group = []
        for rid in order[i:i + n]:
            arrived.add(rid)
            mine = [e for e in sorted(edges - written) if rid in e[:2]
                    and ((e[1] if e[0] == rid else e[0]) in arrived or (e[2] == "content" and rnd.random() < 0.5))]
            written.update(mine)
            group.append((rid, mine))
        groups.append(group)
        i += n
    return groups


def _write(s: Session, rid: int, edges: list[Edge]) -> LinkChange:
    for a, b, reason, detail in edges:
        s.add(ReportLink(report_a=a, report_b=b, reason=reason, weight=1.0, detail=detail))
    s.flush()
    return LinkChange(removed=False, added=frozenset(
        (b if a == rid else a, reason, 1.0, detail) for a, b, reason, detail in edges))


def _remove(s: Session, gone: list[Edge]) -> None:
    for a, b, reason, _ in gone:
        s.execute(delete(ReportLink).where(ReportLink.report_a == a, ReportLink.report_b == b,
                                           ReportLink.reason == reason))
    s.flush()


def _per_report(ctx: StageContext, s: Session, group: list[tuple[int, list[Edge]]],
                removed: dict[int, list[Edge]] | None = None) -> list[Outcome | None]:
    """The per-report stage over a group, as the grouped runner runs it: each report's links
    written and recorded, then its bundles stage, report after report."""
    stage = get_stage("bundles")
    out = []
    for rid, edges in group:
        change = _write(s, rid, edges)
        if removed and removed.get(rid):
            _remove(s, removed[rid])
            change = LinkChange(removed=True, added=change.added)
        record_link_change(s, rid, change)
        out.append(stage.func(ctx, s, rid))
    return out


def _bulk(ctx: StageContext, s: Session, group: list[tuple[int, list[Edge]]],
          removed: dict[int, list[Edge]] | None = None) -> dict[int, Outcome]:
    """The group form over the same group: every report's links written, then one call."""
    for rid, edges in group:
        _write(s, rid, edges)
        if removed and removed.get(rid):
            _remove(s, removed[rid])
    return bundles_group(ctx, s, [rid for rid, _ in group])


def _step(rt: Runtime, ctx: StageContext, rules: BundlingRules, group: list[tuple[int, list[Edge]]],
          label: str, arrived: set[int], removed: dict[int, list[Edge]] | None = None) -> dict[str, int]:
    """One group both ways on the same store: the per-report stage (rolled back), then the group
    form (committed); both must write the same rows, equal to the reference. Then the group form
    again: it must write nothing. Returns how the per-report stage went."""
    arrived.update(rid for rid, _ in group)
    with rt.sessions() as s:
        outcomes = _per_report(ctx, s, group, removed)
        s.flush()
        one_by_one = settled(snapshot(s), arrived)
        s.rollback()
    with transaction(rt.sessions) as s:
        got = _bulk(ctx, s, group, removed)
        assert got == {rid: Outcome.DONE for rid, _ in group}
        s.flush()
        mine = settled(snapshot(s), arrived)
        assert mine == one_by_one, label + "".join(
            f"\n{k}: only per report {sorted(set(one_by_one[k]) - set(mine[k]))[:6]}"
            f" only group {sorted(set(mine[k]) - set(one_by_one[k]))[:6]}" for k in mine if mine[k] != one_by_one[k])
        assert_reference(s, rules, label, arrived)
    with statements(rt) as sql, transaction(rt.sessions) as s:
        bundles_group(ctx, s, [rid for rid, _ in group])
    assert writes_to_bundles(sql) == [], f"{label}: a second run rewrote {writes_to_bundles(sql)[:3]}"
    with rt.sessions() as s:
        assert settled(snapshot(s), arrived) == one_by_one, label
    return {"updated": outcomes.count(Outcome.UPDATED), "recomputed": outcomes.count(Outcome.RECOMPUTED)}


def _wipe(rt: Runtime) -> None:
    with transaction(rt.sessions) as s:
        for table in (ReportLink, IncidentReport, Incident, ReportIncidentCount):
            s.execute(delete(table))


def test_group_form_equals_the_stage_and_the_reference_on_random_graphs(runtime: Runtime) -> None:
    """Random graphs arriving in random groups, then links removed (incidents split) and bridges
    added (incidents merge): at every step the group form writes exactly what the per-report
    stage writes on the same store (incremental path and full re-plan both ran), equal to the
    reference plan; a second run writes nothing; the rebuild of the store changes nothing."""
    rules = load_bundling()
    ids = [store_report(runtime, report_doc([person(f"g{i}")], batched=(i % 11 == 0))) for i in range(90)]
    ctx = StageContext(runtime)
    ran = {"updated": 0, "recomputed": 0}
    for seed in range(5):
        rnd = random.Random(seed)
        _wipe(runtime)
        edges = random_graph(rnd, ids)
        arrived: set[int] = set()
        for n, group in enumerate(arrival_groups(rnd, ids, edges)):
            for k, v in _step(runtime, ctx, rules, group, f"seed {seed} group {n}", arrived).items():
                ran[k] += v
        # Splits: some reports lose links (their links stage re-ran and found less).
        with runtime.sessions() as s:
            present = [(int(a), int(b), str(r), str(d)) for a, b, r, d in s.execute(
                select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.detail))]
        losers = rnd.sample(ids, 8)
        removed = {rid: [e for e in present if rid in e[:2] and rnd.random() < 0.6] for rid in losers}
        for k, v in _step(runtime, ctx, rules, [(rid, []) for rid in losers], f"seed {seed} splits",
                          arrived, removed).items():
            ran[k] += v
        # Merges: bridges between incidents, brought by new reports' links.
        with runtime.sessions() as s:
            keyed = sorted({key: rid for rid, (_, key) in current_assignments(s).items()}.items())
        bridge_ids = [rid for _, rid in keyed]
        taken = {e[:3] for e in present}
        bridges: list[tuple[int, list[Edge]]] = []
        for rid in rnd.sample(ids, 4):
            mine: list[Edge] = []
            for o in rnd.sample(bridge_ids, 3):
                e = (min(rid, o), max(rid, o), "content", "bridge")
                if o != rid and e[:3] not in taken:
                    taken.add(e[:3])
                    mine.append(e)
            bridges.append((rid, mine))
        for k, v in _step(runtime, ctx, rules, bridges, f"seed {seed} merges", arrived).items():
            ran[k] += v
        with statements(runtime) as sql, transaction(runtime.sessions) as s:
            _, written = rebuild_all(s, rules)
        assert not written.changed and writes_to_bundles(sql) == [], f"seed {seed}: rebuild changed a bundled store"
    # Both per-report paths were compared, not only one of them.
    assert ran["updated"] > 50 and ran["recomputed"] > 5, ran


def test_plan_reports_equals_plan_all_on_random_graphs(runtime: Runtime) -> None:
    """The in-memory planner alone, against the reference, over many graphs (no writes)."""
    rules = load_bundling()
    ids = [store_report(runtime, report_doc([person(f"p{i}")], batched=(i % 7 == 0))) for i in range(60)]
    for seed in range(25):
        rnd = random.Random(100 + seed)
        _wipe(runtime)
        with transaction(runtime.sessions) as s:
            for a, b, reason, detail in sorted(random_graph(rnd, ids)):
                s.add(ReportLink(report_a=a, report_b=b, reason=reason, weight=rnd.choice([1.0, 0.95, 0.6, 0.3]),
                                 detail=detail))
        with runtime.sessions() as s:
            finished = {int(r): bool(b) for r, b in s.execute(select(Report.id, Report.batched)
                                                              .where(Report.state == "finished"))}
            links = [(int(a), int(b), str(r), float(w), d) for a, b, r, w, d in s.execute(
                select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                       ReportLink.detail))]
            plan = plan_reports(rules, finished, links)
            got = {m: (p.rule, p.key) for p in plan for m in p.members}
            assert got == plan_all(s, rules), f"seed {seed}"
            assert sorted(m for p in plan for m in p.members) == sorted(finished)  # a partition


def test_rebuild_of_the_whole_store_equals_the_incremental_result(runtime: Runtime) -> None:
    """Reports bundled one by one by the stage (incrementally where it can); then the incidents
    are wiped, or scrambled, and rebuilt in one pass: the same rows; rebuilt twice: no write."""
    rules = load_bundling()
    ids = [store_report(runtime, report_doc([person(f"r{i}")], batched=(i % 9 == 0))) for i in range(70)]
    ctx = StageContext(runtime)
    rnd = random.Random(42)
    for group in arrival_groups(rnd, ids, random_graph(rnd, ids)):
        with transaction(runtime.sessions) as s:
            _per_report(ctx, s, group)
    with runtime.sessions() as s:
        incremental = snapshot(s)
        assert_reference(s, rules, "incremental")
    # Wiped: every incident is made again.
    with transaction(runtime.sessions) as s:
        s.execute(delete(IncidentReport))
        s.execute(delete(Incident))
        s.execute(delete(ReportIncidentCount))
    with transaction(runtime.sessions) as s:
        written = rebuild_bundles(s)
    assert written.incidents_created == len(incremental["incidents"])
    with runtime.sessions() as s:
        assert snapshot(s) == incremental
        runs = dict(s.execute(select(PipelineRun.report_id, PipelineRun.version)
                              .where(PipelineRun.stage == "bundles")).all())
        assert runs == {rid: get_stage("bundles").version for rid in ids}
    # Scrambled: members moved between incidents, a key off its lowest member, a stray empty incident.
    with transaction(runtime.sessions) as s:
        incs = list(s.execute(select(Incident).order_by(Incident.id)).scalars())
        big = max(incs, key=lambda i: len(s.execute(select(IncidentReport.report_id)
                                                    .where(IncidentReport.incident_id == i.id)).all()))
        victims = [m for m in s.execute(select(IncidentReport).where(IncidentReport.incident_id == big.id))
                   .scalars()][:3]
        for m in victims:
            m.incident_id = incs[0].id if incs[0].id != big.id else incs[1].id
        s.add(Incident(rule="viral", key="viral:999999", lowest_report_id=999999, created_at=incs[0].created_at,
                       updated_at=incs[0].created_at))
    with statements(runtime) as sql, transaction(runtime.sessions) as s:
        assert rebuild_bundles(s).changed
    assert writes_to_bundles(sql)  # the helper sees writes when there are some
    with runtime.sessions() as s:
        assert snapshot(s) == incremental
    with statements(runtime) as sql, transaction(runtime.sessions) as s:
        assert not rebuild_bundles(s).changed
    assert writes_to_bundles(sql) == []


def _groups_of(ids: list[int], n: int) -> list[list[int]]:
    return [ids[i:i + n] for i in range(0, len(ids), n)]


def test_simulated_reports_bulk_rebuild_and_incremental_agree(runtime: Runtime) -> None:
    """A simulated year through the real stages, bundled by the per-report stage as the worker
    runs it; the group form over every report writes nothing; wiped and redone by groups, and
    rebuilt in one pass, the incidents are the same rows; all equal the reference plan."""
    from tipline.sim.generate import YearGenerator
    from tipline.sim.write import DirectWriter, register_platforms

    rules = load_bundling()
    gen = YearGenerator(2023, 6e-6, seed=21)
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=64).write(gen, lambda r, i: None)
    with runtime.sessions() as s:
        ids = sorted(int(r) for r in s.execute(select(Report.id).where(Report.state == "finished")).scalars())
    ctx = StageContext(runtime)
    run_reports(ctx, {rid: ["hashes", "matches", "identifiers", "links", "bundles"] for rid in ids})
    with runtime.sessions() as s:
        incremental = snapshot(s)
        assert_reference(s, rules, "simulated, incremental")
        assert s.execute(select(ReportLink)).first() is not None
    assert any(m[0].split(":")[0] not in ("single", "batched") for m in incremental["members"]), \
        "the simulated reports formed no incident of a graph rule: the comparison would be vacuous"
    with statements(runtime) as sql:
        for group in _groups_of(ids, 16):
            with transaction(runtime.sessions) as s:
                bundles_group(ctx, s, group)
    assert writes_to_bundles(sql) == []
    for how in ("groups", "rebuild"):
        with transaction(runtime.sessions) as s:
            s.execute(delete(IncidentReport))
            s.execute(delete(Incident))
        if how == "groups":
            for group in _groups_of(ids[::-1], 23):  # newest first: order must not matter
                with transaction(runtime.sessions) as s:
                    bundles_group(ctx, s, group)
        else:
            with transaction(runtime.sessions) as s:
                rebuild_bundles(s)
        with runtime.sessions() as s:
            assert snapshot(s) == incremental, how


def _fresh_group(rt: Runtime, ids: list[int], seed: int) -> int:
    """Statements the group form sends for ``ids`` arriving at once with star and pair links."""
    rnd = random.Random(seed)
    _wipe(rt)
    with transaction(rt.sessions) as s:
        pool = ids[:]
        rnd.shuffle(pool)
        while pool:
            n = rnd.choice([2, 3, 8, 20])
            group, pool = pool[:n], pool[n:]
            anchors = sorted(group)[:3]
            for r in group:
                for a in anchors:
                    if a != r:
                        s.merge(ReportLink(report_a=min(a, r), report_b=max(a, r),
                                           reason=rnd.choice(["content", "account"]), weight=1.0, detail="d"))
    ctx = StageContext(rt)
    with statements(rt) as sql, transaction(rt.sessions) as s:
        bundles_group(ctx, s, ids)
    with rt.sessions() as s:
        assert_reference(s, load_bundling(), f"{len(ids)} reports", set(ids))
    return len(sql)


def test_statements_per_group_do_not_grow_with_the_group(runtime: Runtime) -> None:
    """A group of 200 sends at most a constant more statements than a group of 50."""
    ids = [store_report(runtime, report_doc([person(f"s{i}")])) for i in range(200)]
    small, large = _fresh_group(runtime, ids[:50], 1), _fresh_group(runtime, ids, 1)
    assert large <= small + 6, (small, large)
    assert large < 50, large  # far below one per report


def test_rerun_all_rebuilds_the_bundles_from_the_links(settings: Settings, runtime: Runtime) -> None:
    """`tipline pipeline rerun --stage bundles --all`: incidents wiped behind the stage's back
    come back from the links in one pass; --all with another stage or --report is refused."""
    ids = [store_report(runtime, report_doc([person(f"c{i}")])) for i in range(6)]
    with transaction(runtime.sessions) as s:
        for a, b in ((ids[0], ids[1]), (ids[1], ids[2]), (ids[4], ids[5])):
            s.add(ReportLink(report_a=a, report_b=b, reason="content", weight=1.0, detail="same file"))
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    res = CliRunner().invoke(main, ["pipeline", "rerun", "--stage", "bundles", "--all"], env=env,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "3 incident(s) created" in res.output and "6 membership(s) written" in res.output, res.output
    with runtime.sessions() as s:
        assert {k for _, k in current_assignments(s).values()} == {
            f"viral:{ids[0]}", f"single:{ids[3]}", f"viral:{ids[4]}"}
        assert_reference(s, load_bundling(), "cli")
    res = CliRunner().invoke(main, ["pipeline", "rerun", "--stage", "bundles", "--all"], env=env)
    assert res.exit_code == 0 and "0 incident(s) created, 0 updated, 0 removed" in res.output, res.output
    for args in (["--stage", "links", "--all"], ["--all"], ["--stage", "bundles", "--all", "--report", str(ids[0])]):
        res = CliRunner().invoke(main, ["pipeline", "rerun", *args], env=env)
        assert res.exit_code != 0 and "--all" in res.output, (args, res.output)
