"""Bundles: planted incidents are recovered; the stage agrees with the reference; re-runs are stable."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from helpers import person, report_doc, run, store_report
from tipline.cli import main
from tipline.config import Settings
from tipline.pipeline.core import StageContext, get_stage, run_stage
from tipline.pipeline.stages.bundle import (
    LINK_CHANGES,
    BundlingRules,
    LinkChange,
    counts,
    current_assignments,
    load_bundling,
    plan_all,
)
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Incident, IncidentReport, ReportLink

STAGES = ["identifiers", "links", "bundles"]


def plant(rt: Runtime, seed: int = 7) -> tuple[dict[int, str], dict[int, int]]:
    """Generated reports with a known truth: {report: true incident} and {report: incidents it stands for}."""
    rnd = random.Random(seed)
    specs: list[tuple[str, dict, list[str], int]] = []  # (truth, doc, files, incidents)
    user = itertools.count()
    # 6 offenders, 2-5 reports each, identified by account id, e-mail (various spellings) or device.
    for o in range(6):
        for k in range(rnd.randint(2, 5)):
            how = rnd.choice(["account", "email", "device", "all"])
            p = person(f"off{o}" if how in ("account", "all") else f"alias{next(user)}", service="Instagram",
                       email=f"Off.{o}+{k}@gmail.com" if how in ("email", "all") else None,
                       device=("IMEI", f"35209900176{o:04d}") if how in ("device", "all") else None)
            if how == "email":
                p.pop("espIdentifier")
            specs.append((f"offender{o}", report_doc([p]), [f"own-{o}-{k}"], 1))
        # Offender reports link each other only if at least two share a key: make sure they do.
        specs.append((f"offender{o}", report_doc([person(f"off{o}", service="instagram",
                                                        email=f"off{o}@gmail.com",
                                                        device=("imei", f"35209900176{o:04d}"))]), [], 1))
    # 5 viral items, each reported in 3-8 reports about different users.
    for v in range(5):
        for _ in range(rnd.randint(3, 8)):
            specs.append((f"viral{v}", report_doc([person(f"user{next(user)}")]), [f"meme-{v}"], 1))
    # 4 platform-batched reports listing 2-9 users each (one incident per user, NCMEC-style).
    for b in range(4):
        n = rnd.randint(2, 9)
        persons = [person(f"user{next(user)}") for _ in range(n)]
        specs.append((f"batch{b}", report_doc(persons, batched=True), [f"batchfile-{b}"], n))
    # 10 unrelated reports; two of them share only a CGNAT address (must not bundle).
    for s in range(10):
        ip = "100.64.3.3" if s < 2 else None
        specs.append((f"single{s}", report_doc([person(f"user{next(user)}", ip=ip)]), [f"solo-{s}"], 1))
    rnd.shuffle(specs)
    truth: dict[int, str] = {}
    incidents: dict[int, int] = {}
    for t, doc, files, n in specs:
        rid = store_report(rt, doc, files=files)
        truth[rid], incidents[rid] = t, n
    return truth, incidents


def pair_scores(truth: dict[int, str], got: dict[int, str]) -> tuple[float, float]:
    """Pairwise precision and recall of a grouping against the truth."""
    ids = sorted(truth)
    same_true = {(a, b) for a, b in itertools.combinations(ids, 2) if truth[a] == truth[b]}
    same_got = {(a, b) for a, b in itertools.combinations(ids, 2) if got[a] == got[b]}
    tp = len(same_true & same_got)
    precision = tp / len(same_got) if same_got else 1.0
    recall = tp / len(same_true) if same_true else 1.0
    return precision, recall


def test_planted_incidents_are_recovered(runtime: Runtime) -> None:
    truth, incidents = plant(runtime)
    ids = list(truth)
    random.Random(3).shuffle(ids)  # processing order must not matter
    for rid in ids:
        run(runtime, STAGES, [rid])
    with runtime.sessions() as s:
        got = {r: key for r, (_, key) in current_assignments(s).items()}
        reference = plan_all(s, load_bundling())
        totals = counts(s)
    assert set(got) == set(truth)
    precision, recall = pair_scores(truth, got)
    # Stated target: precision and recall of 1.0 on planted data (every planted link is exact).
    assert (precision, recall) == (1.0, 1.0)
    # The stage's per-report path agrees with the union-find reference.
    assert got == {r: key for r, (_, key) in reference.items()}
    rules = {key.split(":")[0] for key in got.values()}
    assert rules == {"offender", "viral", "batched", "single"}
    # Both counts: reports, and incidents adjusted for bundling (NCMEC 2024).
    assert totals["reports"] == len(truth)
    assert totals["incidents"] == sum(incidents.values()) > len(truth)
    assert totals["bundles"] == len(set(truth.values()))


def test_rerun_is_idempotent_and_keys_are_stable(runtime: Runtime) -> None:
    truth, _ = plant(runtime, seed=11)
    run(runtime, STAGES, sorted(truth))
    with runtime.sessions() as s:
        before = {(i.id, i.key) for i in s.execute(select(Incident)).scalars()}
        members = {(i, r) for i, r in s.execute(select(IncidentReport.incident_id, IncidentReport.report_id))}
    run(runtime, STAGES, sorted(truth, reverse=True))
    with runtime.sessions() as s:
        assert {(i.id, i.key) for i in s.execute(select(Incident)).scalars()} == before
        assert {(i, r) for i, r in s.execute(select(IncidentReport.incident_id, IncidentReport.report_id))} == members


def test_a_bridging_report_merges_two_incidents_into_the_lower_key(runtime: Runtime) -> None:
    a1 = store_report(runtime, report_doc([person("alpha", service="kik")]))
    a2 = store_report(runtime, report_doc([person("alpha", service="kik")]))
    b1 = store_report(runtime, report_doc([person("beta", service="kik")]))
    b2 = store_report(runtime, report_doc([person("beta", service="kik")]))
    run(runtime, STAGES, [a1, a2, b1, b2])
    with runtime.sessions() as s:
        assert {k for _, k in current_assignments(s).values()} == {f"offender:{a1}", f"offender:{b1}"}
    # One report names both accounts (the same person behind both).
    bridge = store_report(runtime, report_doc([person("alpha", service="kik"), person("beta", service="kik")]))
    run(runtime, STAGES, [bridge])
    with runtime.sessions() as s:
        now = current_assignments(s)
        assert {now[r][1] for r in (a1, a2, b1, b2, bridge)} == {f"offender:{a1}"}
        assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == 1
        reasons = {r: why for r, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
    assert "account kik:id:" in (reasons[a2] or "")


def test_preview_is_a_dry_run_showing_what_would_change(settings: Settings, runtime: Runtime,
                                                          tmp_path: Path) -> None:
    v = [store_report(runtime, report_doc([person(f"v{i}")]), files=["meme"]) for i in range(3)]
    run(runtime, STAGES, v)
    stricter = tmp_path / "strict.toml"
    stricter.write_text(
        '[[rule]]\nname = "offender"\nlinks = ["account"]\nmin_reports = 2\n'
        '[[rule]]\nname = "viral"\nlinks = ["content"]\nmin_reports = 4\n')
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    res = CliRunner().invoke(main, ["bundles", "preview", "--rules", str(stricter), "--json"], env=env,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["current"]["byRule"] == {"viral": 1}
    assert out["planned"]["byRule"] == {"single": 3}
    assert out["reportsMoved"] == 3 and out["bundlesCreated"] == 3 and out["bundlesRemoved"] == 1
    with runtime.sessions() as s:  # nothing was written
        assert {k for _, k in current_assignments(s).values()} == {f"viral:{v[0]}"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\n')
    res = CliRunner().invoke(main, ["bundles", "preview", "--rules", str(bad)], env=env)
    assert res.exit_code != 0 and "links" in res.output


# --- the incremental path agrees with the full re-plan -------------------------------------------


def _random_graph(rnd: random.Random, ids: list[int]) -> set[tuple[int, int, str]]:
    """Links with the shapes a year produces: viral stars, offender chains, bridges, stray IP links."""
    edges: set[tuple[int, int, str]] = set()

    def add(a: int, b: int, reason: str) -> None:
        if a != b:
            edges.add((min(a, b), max(a, b), reason))

    for _ in range(4):  # viral items: every copy links to a few anchors (as the links stage does)
        group = rnd.sample(ids, rnd.randint(3, 12))
        anchors = sorted(group)[:3]
        for r in group:
            for a in anchors:
                add(r, a, "content")
    for _ in range(6):  # offenders: chains by account, e-mail or device
        group = rnd.sample(ids, rnd.randint(2, 5))
        for a, b in itertools.pairwise(group):
            add(a, b, rnd.choice(["account", "email", "device"]))
    for _ in range(8):  # bridges between anything, and IP links no rule uses
        a, b = rnd.sample(ids, 2)
        add(a, b, rnd.choice(["content", "account", "ip", "ip"]))
    return edges


def _expected_reasons(s: Session, rules: BundlingRules) -> dict[int, str | None]:
    """Reference reasons: each member's link to the lowest-numbered member of its incident, by rule."""
    assignment = current_assignments(s)
    links = s.execute(select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                             ReportLink.detail)).all()
    out: dict[int, str | None] = {}
    by_rule = {r.name: r for r in rules.rules}
    for rid, (rule_name, key) in assignment.items():
        rule = by_rule.get(rule_name)
        if rule is None:
            out[rid] = (rules.batched_description if rule_name == rules.batched_name
                        else rules.single_description)[:255]
            continue
        cands = sorted(
            (b if a == rid else a, detail or reason) for a, b, reason, weight, detail in links
            if rid in (a, b) and reason in rule.reasons and weight >= rule.min_weight
            and assignment.get(b if a == rid else a, ("", ""))[1] == key)
        out[rid] = f"{rule.name}: {cands[0][1]} (report {cands[0][0]})"[:255] if cands else rule.name
    return out


def test_incremental_bundling_agrees_with_the_full_plan(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports arrive in random orders, links to those already there; the stored incidents, keys and
    reasons equal the reference partition (``plan_all``) and reasons computed from scratch, and
    the incremental path did most of the work."""
    from tipline.pipeline.stages import bundle as bundle_mod

    calls = {"fast": 0, "full": 0}
    real_add = bundle_mod.add_report

    def counting_add(*args: object, **kw: object) -> bool:
        ok = real_add(*args, **kw)  # type: ignore[arg-type]
        calls["fast" if ok else "full"] += 1
        return ok

    monkeypatch.setattr(bundle_mod, "add_report", counting_add)
    rules = load_bundling()
    ids = [store_report(runtime, report_doc([person(f"u{i}")], batched=(i % 9 == 0))) for i in range(40)]
    ctx = StageContext(runtime)
    stage = get_stage("bundles")
    for seed in range(12):
        rnd = random.Random(seed)
        edges = _random_graph(rnd, ids)
        order = ids[:]
        rnd.shuffle(order)
        with transaction(runtime.sessions) as s:
            s.execute(delete(ReportLink))
            s.execute(delete(IncidentReport))
            s.execute(delete(Incident))
        arrived: set[int] = set()
        written: set[tuple[int, int, str]] = set()
        for rid in order:
            arrived.add(rid)
            with transaction(runtime.sessions) as s:
                added = set()
                for a, b, reason in sorted(edges - written):
                    if rid not in (a, b):
                        continue
                    other = b if a == rid else a
                    # Content links also reach reports not processed yet (their files are stored).
                    if other in arrived or (reason == "content" and rnd.random() < 0.5):
                        detail = f"{reason} detail {(a * 7 + b) % 5}"
                        s.add(ReportLink(report_a=a, report_b=b, reason=reason, weight=1.0, detail=detail))
                        written.add((a, b, reason))
                        added.add((other, reason, 1.0, detail))
                if seed % 2:
                    # As the links stage does in the same transaction: say what changed.
                    s.flush()
                    s.info[LINK_CHANGES] = {rid: LinkChange(removed=False, added=frozenset(added))}
                    stage.func(ctx, s, rid)
            if not seed % 2:
                run_stage(ctx, stage, rid)  # its own transaction: no word from the links stage
        with runtime.sessions() as s:
            stored = current_assignments(s)
            assert stored == plan_all(s, rules), f"seed {seed}"
            reasons = {int(r): why for r, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
            assert reasons == _expected_reasons(s, rules), f"seed {seed}"
            # No incident is left empty or duplicated.
            assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == len(
                {k for _, k in stored.values()})
    assert calls["fast"] > calls["full"] > 0
    # Every incremental case was exercised.
    assert {"grow", "new group", "alone", "extend, joined", "extend, reasons", "extend, unchanged",
            "left an incident", "merge", "split", "extend, merged"} <= {
        k for k, v in bundle_mod.INCREMENTAL.items() if v > 0}


def test_grouped_pipeline_bundles_like_the_full_plan(runtime: Runtime) -> None:
    """Through the real links stage, grouped as the worker runs it (the links stage tells the
    bundles stage what changed): the same partition and reasons as the reference."""
    from tipline.pipeline.core import run_reports
    from tipline.pipeline.stages.bundle import FALLBACKS

    truth, _ = plant(runtime, seed=5)
    before = sum(FALLBACKS.values())
    run_reports(StageContext(runtime), {rid: STAGES for rid in sorted(truth)})
    with runtime.sessions() as s:
        assert current_assignments(s) == plan_all(s, load_bundling())
        reasons = {int(r): why for r, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
        assert reasons == _expected_reasons(s, load_bundling())
    # Most reports took the incremental path.
    assert sum(FALLBACKS.values()) - before < len(truth) / 2


def _arrive(runtime: Runtime, rid: int, links: list[tuple[int, int, str]]) -> None:
    """Report ``rid`` is processed: its links are written and the bundles stage runs in the same
    transaction, told what was added (as the links stage tells it)."""
    with transaction(runtime.sessions) as s:
        added = set()
        for x, y, reason in links:
            detail = f"{reason} {x}-{y}"
            s.add(ReportLink(report_a=min(x, y), report_b=max(x, y), reason=reason, weight=1.0, detail=detail))
            added.add((y if x == rid else x, reason, 1.0, detail))
        s.flush()
        s.info[LINK_CHANGES] = {rid: LinkChange(removed=False, added=frozenset(added))}
        get_stage("bundles").func(StageContext(runtime), s, rid)


def test_a_report_already_grouped_brings_in_a_lower_lone_report(runtime: Runtime) -> None:
    """Report R was pulled into {C, R} by C's content link; lone report A (lowest id) then gains
    a link from R: A joins, the key becomes A's, and R's reason names A — as the full plan says."""
    rules = load_bundling()
    a, c, r = (store_report(runtime, report_doc([person(f"p{i}")])) for i in range(3))

    from tipline.pipeline.stages.bundle import INCREMENTAL

    before = INCREMENTAL["extend, joined"]
    _arrive(runtime, c, [(c, r, "content")])  # C links to R, which has not been processed yet
    _arrive(runtime, a, [])
    _arrive(runtime, r, [(r, a, "content")])  # R already in {C, R}; A stood alone
    assert INCREMENTAL["extend, joined"] == before + 1
    with runtime.sessions() as s:
        assert current_assignments(s) == plan_all(s, rules)
        assert {k for _, k in current_assignments(s).values()} == {f"viral:{a}"}
        reasons = {int(x): why for x, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
        assert reasons == _expected_reasons(s, rules)
        assert reasons[r] == f"viral: content {r}-{a} (report {a})"


def test_a_report_leaving_an_incident_that_would_split_it_is_replanned(runtime: Runtime) -> None:
    """Viral incident A-B, B-C, A-D, C-E; a new report R shares an account with B, so B moves to
    R's offender incident. Without B, {A, D} and {C, E} are not connected (though A and C each
    still have a neighbour to name): they must end up as two incidents, as the full plan says."""
    rules = load_bundling()
    a, b, c, d, e, r = (store_report(runtime, report_doc([person(f"q{i}")])) for i in range(6))
    arrivals = ((a, []), (b, [(a, b, "content")]), (c, [(b, c, "content")]), (d, [(a, d, "content")]),
                (e, [(c, e, "content")]), (r, [(b, r, "account")]))
    for rid, links in arrivals:
        _arrive(runtime, rid, links)
    with runtime.sessions() as s:
        got = current_assignments(s)
        assert got == plan_all(s, rules)
        assert got[a] == got[d] == ("viral", f"viral:{a}") and got[c] == got[e] == ("viral", f"viral:{c}")
        assert got[b] == got[r] == ("offender", f"offender:{b}")
        reasons = {int(x): why for x, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
        assert reasons == _expected_reasons(s, rules)


def _leave_case(runtime: Runtime, tag: str, n: int,
                arrivals: Callable[[list[int]], list[tuple[int, list[tuple[int, int, str]]]]],
                ) -> tuple[list[int], dict[int, tuple[str, str]], dict[int, str | None], int, int]:
    """Make ``n`` reports, let them arrive with ``arrivals(ids)``'s links, and check the result
    against the reference (partition and reasons). Returns the ids, the stored assignment and
    reasons, and how many splits and full re-plans the arrivals took."""
    from tipline.pipeline.stages.bundle import FALLBACKS, INCREMENTAL

    rules = load_bundling()
    ids = [store_report(runtime, report_doc([person(f"{tag}{i}")])) for i in range(n)]
    splits, fallbacks = INCREMENTAL["split"], sum(FALLBACKS.values())
    for rid, links in arrivals(ids):
        _arrive(runtime, rid, links)
    with runtime.sessions() as s:
        got = current_assignments(s)
        assert got == plan_all(s, rules)
        reasons = {int(x): why for x, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
        assert reasons == _expected_reasons(s, rules)
    return ids, got, reasons, INCREMENTAL["split"] - splits, sum(FALLBACKS.values()) - fallbacks


def test_the_last_other_member_of_a_pair_left_behind_stands_alone(runtime: Runtime) -> None:
    """Viral pair {A, B}; R shares an account with B, so B moves to R's offender incident: A is
    left alone and becomes a single-report incident, not a viral incident of one (incrementally)."""
    (a, _, _), got, _, _, fallbacks = _leave_case(runtime, "l", 3, lambda i: [
        (i[0], []), (i[1], [(i[0], i[1], "content")]), (i[2], [(i[1], i[2], "account")])])
    assert fallbacks == 0
    assert got[a] == ("single", f"single:{a}")


def test_the_first_sharer_leaving_keeps_the_rest_together_without_reading_it_all(runtime: Runtime) -> None:
    """Viral incident keyed by A, the first sharer: A-B, A-C, B-C (first sharers link to one
    another) and followers D, E linked to A and B. R shares an account with A, which moves to R's
    offender incident: the rest stays one incident, re-keyed by B, and every reason that named A
    names another member, as the full plan says. No split and no full re-plan was needed."""
    def arrivals(i: list[int]) -> list[tuple[int, list[tuple[int, int, str]]]]:
        a, b, c, d, e, r = i
        return [(a, []), (b, [(a, b, "content")]), (c, [(a, c, "content"), (b, c, "content")]),
                (d, [(a, d, "content"), (b, d, "content")]), (e, [(a, e, "content"), (b, e, "content")]),
                (r, [(a, r, "account")])]

    (a, b, c, d, e, _), got, reasons, splits, fallbacks = _leave_case(runtime, "f", 6, arrivals)
    assert splits == 0 and fallbacks == 0
    assert {got[x] for x in (b, c, d, e)} == {("viral", f"viral:{b}")}
    assert not any(f"(report {a})" in (reasons[x] or "") for x in (b, c, d, e))


def test_a_split_leaves_the_larger_piece_unread_and_re_keys_it(runtime: Runtime) -> None:
    """Viral incident keyed by A: A-X, X-B, B-C, B-D. R shares an account with X, which moves to
    R's offender incident: A (only tied by X) becomes single, {B, C, D} stays one incident whose
    key becomes B's, incrementally (the larger piece is found without reading all of it)."""
    def arrivals(i: list[int]) -> list[tuple[int, list[tuple[int, int, str]]]]:
        a, x, b, c, d, r = i
        return [(a, []), (x, [(a, x, "content")]), (b, [(x, b, "content")]), (c, [(b, c, "content")]),
                (d, [(b, d, "content")]), (r, [(x, r, "account")])]

    (a, _, b, c, d, _), got, _, splits, fallbacks = _leave_case(runtime, "s", 6, arrivals)
    assert splits == 1 and fallbacks == 0
    assert got[a] == ("single", f"single:{a}")
    assert {got[n] for n in (b, c, d)} == {("viral", f"viral:{b}")}


def test_a_leave_whose_neighbours_meet_three_hops_away_splits_nothing(runtime: Runtime) -> None:
    """Viral incident A-X, X-B, A-C, C-D, D-B. R shares an account with X, which moves to R's
    offender incident. X's neighbours A and B share no link and no common neighbour; the
    searches from them meet at C-D, so {A, B, C, D} stays one incident, incrementally."""
    def arrivals(i: list[int]) -> list[tuple[int, list[tuple[int, int, str]]]]:
        a, x, b, c, d, r = i
        return [(a, []), (x, [(a, x, "content")]), (b, [(x, b, "content")]), (c, [(a, c, "content")]),
                (d, [(c, d, "content"), (b, d, "content")]), (r, [(x, r, "account")])]

    (a, _, b, c, d, _), got, _, splits, fallbacks = _leave_case(runtime, "h", 6, arrivals)
    assert splits == 0 and fallbacks == 0
    assert {got[n] for n in (a, b, c, d)} == {("viral", f"viral:{a}")}


def test_a_grouped_report_linking_another_incident_merges_into_the_lower_key(runtime: Runtime) -> None:
    """{A, B} and {C, R} (R pulled in by C before it was processed); R then links to B: one
    incident keyed by A, with the reasons the full plan gives."""
    rules = load_bundling()
    from tipline.pipeline.stages.bundle import INCREMENTAL

    merged_before = INCREMENTAL["extend, merged"]
    a, b, c, r = (store_report(runtime, report_doc([person(f"m{i}")])) for i in range(4))
    for rid, links in ((a, []), (b, [(a, b, "content")]), (c, [(c, r, "content")]), (r, [(r, b, "content")])):
        _arrive(runtime, rid, links)
    with runtime.sessions() as s:
        got = current_assignments(s)
        assert got == plan_all(s, rules)
        assert {k for _, k in got.values()} == {f"viral:{a}"}
        reasons = {int(x): why for x, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
        assert reasons == _expected_reasons(s, rules)
        assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == 1
    assert INCREMENTAL["extend, merged"] == merged_before + 1  # the incremental path did it


def test_a_link_reworded_by_the_other_side_updates_reasons_not_membership(runtime: Runtime) -> None:
    """C linked to R (not yet processed) with C's wording; R's own links stage rewrites the same
    link with its wording: no re-plan, and the reasons use the new wording, as the full plan does."""
    rules = load_bundling()
    c, r = (store_report(runtime, report_doc([person(f"w{i}")])) for i in range(2))
    ctx = StageContext(runtime)
    stage = get_stage("bundles")
    from tipline.pipeline.stages.bundle import FALLBACKS

    with transaction(runtime.sessions) as s:
        s.add(ReportLink(report_a=c, report_b=r, reason="content", weight=1.0, detail="zz seen from C"))
        s.flush()
        s.info[LINK_CHANGES] = {c: LinkChange(removed=False, added=frozenset({(r, "content", 1.0, "zz seen from C")}))}
        stage.func(ctx, s, c)
    full_before = sum(FALLBACKS.values())
    with transaction(runtime.sessions) as s:
        s.execute(update(ReportLink).where(ReportLink.report_a == c).values(detail="aa seen from R"))
        s.info[LINK_CHANGES] = {r: LinkChange(removed=False, added=frozenset(), redetailed=frozenset({c}))}
        stage.func(ctx, s, r)
    assert sum(FALLBACKS.values()) == full_before
    with runtime.sessions() as s:
        assert current_assignments(s) == plan_all(s, rules)
        reasons = {int(x): why for x, why in s.execute(select(IncidentReport.report_id, IncidentReport.reason))}
        assert reasons == _expected_reasons(s, rules)
        assert reasons[c] == f"viral: aa seen from R (report {r})"
