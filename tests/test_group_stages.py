"""The group path (each stage once over a group of reports) writes what the per-report path writes.

The per-report path is the reference: every stage of every report in its own transaction,
through the stage's per-report function (``run_report_stepwise``). The same simulated year is
loaded into two stores of one backend; one is enriched report by report, the other in groups
(``run_reports``: stage by stage, set-based forms); every stored result must be equal. Then a
re-run of every stage over the groups must change nothing, and the statements a group costs
must not grow with the group's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from helpers import enrichment_results as results
from helpers import result_diff as diff
from tipline.config import Settings
from tipline.pipeline.core import StageContext, run_report_stepwise, run_reports, stages
from tipline.pipeline.stages.assess import gather, gather_many, load_rules
from tipline.pipeline.stages.links import compute_links, compute_links_group
from tipline.runtime import Runtime
from tipline.sim.calibration import PUBLIC
from tipline.sim.generate import YearGenerator
from tipline.sim.write import DirectWriter, register_platforms
from tipline.store.setup import do_init
from tipline.store.tables import Identifier, Report, ReportIdentifier

#: The stages with a set-based form owned by this module's tests (hashes and bundles have
#: theirs tested beside them).
GROUP_STAGES = ["identifiers", "location", "jurisdiction", "matches", "links", "assess", "route"]


def year(scale: float = 1.7e-6, seed: int = 21, files: str = "images") -> YearGenerator:
    """A small simulated year with repeats, shared accounts, viral batches and public reports."""
    gen = YearGenerator(2023, scale, seed=seed, files=files)  # type: ignore[arg-type]
    public = next(i for i, p in enumerate(gen.platforms) if p.name == PUBLIC)
    gen._platform_of[[3, 17]] = public  # a year this small rarely draws the public's share
    return gen


def load(rt: Runtime, gen: YearGenerator) -> list[int]:
    DirectWriter(rt, register_platforms(rt, gen.platforms_used()), batch=64).write(gen, lambda r, i: None)
    with rt.sessions() as s:
        return sorted(int(r) for r in s.execute(select(Report.id).where(Report.state == "finished")).scalars())


def identifiers(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.sessions() as s:
        return sorted(s.execute(
            select(ReportIdentifier.report_id, ReportIdentifier.role, ReportIdentifier.source, Identifier.kind,
                   Identifier.scope, Identifier.value, Identifier.shared)
            .join(Identifier, Identifier.id == ReportIdentifier.identifier_id)).all())


def everything(rt: Runtime) -> dict[str, Any]:
    out = results(rt)
    out["identifiers"] = identifiers(rt)
    return out


@pytest.fixture
def twin(settings: Settings, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A second, empty store on the same backend."""
    url = ""
    if backend == "postgresql":
        url = request.getfixturevalue("pg_cluster").new_database()
    s = Settings.from_env(tmp_path / "twin", database_url=url)
    do_init(s)
    rt = Runtime.open(s)
    yield rt
    rt.close()


def test_group_path_equals_per_report_path(runtime: Runtime, twin: Runtime) -> None:
    gen_a, gen_b = year(), year()
    ids = load(runtime, gen_a)
    assert load(twin, gen_b) == ids
    per_report = StageContext(runtime)
    for rid in ids:
        run_report_stepwise(per_report, rid)
    grouped = StageContext(twin)
    # Groups of 16: pairs within a group and across groups both occur.
    run_reports(grouped, dict.fromkeys(ids), group_size=16)
    reference, got = everything(runtime), everything(twin)
    assert reference["assessment"] and reference["links"] and reference["referrals"] and reference["identifiers"]
    changed = diff(reference, got)
    assert not changed, "the group path differs from the per-report path:\n" + "\n".join(changed)

    # Re-running every stage over the groups changes nothing.
    run_reports(grouped, {rid: [st.name for st in stages()] for rid in ids}, group_size=16)
    changed = diff(got, everything(twin))
    assert not changed, "re-running every stage over the groups changed:\n" + "\n".join(changed)
    # And one group of everything ends there too.
    run_reports(grouped, dict.fromkeys(ids, GROUP_STAGES), group_size=len(ids))
    changed = diff(got, everything(twin))
    assert not changed, "one group over all reports changed:\n" + "\n".join(changed)


def test_bulk_readers_equal_the_per_report_readers(runtime: Runtime) -> None:
    """``gather_many`` is ``gather`` and ``compute_links_group`` is ``compute_links``, report by report."""
    ids = load(runtime, year(seed=22))
    run_reports(StageContext(runtime), dict.fromkeys(ids), group_size=32)
    rules = load_rules()
    with runtime.sessions() as s:
        many = gather_many(s, ids, rules)
        assert many == {rid: gather(s, rid, rules) for rid in ids}
        group_links = compute_links_group(s, ids)
        assert group_links == {rid: compute_links(s, rid) for rid in ids}
        assert any(group_links.values())


class StatementCounter:
    """Statements sent to the database while counting (SQLAlchemy ``before_cursor_execute``)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._n = 0
        self._driver = 0

    @property
    def n(self) -> int:
        """What SQLAlchemy sent plus what ``insert_rows`` sent to the driver past it."""
        return self._n + self._driver

    def _count(self, *_args: Any) -> None:
        self._n += 1

    def __enter__(self) -> StatementCounter:
        from tipline.pipeline import core

        self._driver = -core.DRIVER_STATEMENTS
        event.listen(self.rt.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc: object) -> None:
        from tipline.pipeline import core

        self._driver += core.DRIVER_STATEMENTS
        event.remove(self.rt.engine, "before_cursor_execute", self._count)


def test_statements_per_group_do_not_grow_with_the_group(runtime: Runtime) -> None:
    ids = load(runtime, year(scale=8e-6, seed=23, files="hashes"))
    assert len(ids) >= 270, len(ids)
    ctx = StageContext(runtime)
    run_reports(ctx, dict.fromkeys(ids[:20], ["hashes"]), group_size=20)
    run_reports(ctx, dict.fromkeys(ids[:20], GROUP_STAGES), group_size=20)  # warm: caches, directory, indexes
    counts: dict[int, int] = {}
    for size, chunk in ((50, ids[20:70]), (200, ids[70:270])):
        run_reports(ctx, dict.fromkeys(chunk, ["hashes"]), group_size=size)
        with StatementCounter(runtime) as c:
            run_reports(ctx, dict.fromkeys(chunk, GROUP_STAGES), group_size=size)
        counts[size] = c.n
    # A few statements per stage for the whole group (and a few more when a key turns up in
    # the bigger group only): not 4x as many for 4x the reports.
    assert counts[200] <= counts[50] + 12, counts
    assert counts[50] < 16 * len(GROUP_STAGES), counts


def test_group_matches_choose_the_kept_duplicates_from_the_index(runtime: Runtime,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With the duplicates kept per file cut to 2, the group form's choice from the index
    (``FileIndex.nearest``: nearest, then earliest, ties to the end, checked against the
    database) keeps exactly what the same stage keeps when it reads and re-checks every
    candidate (``nearest`` answering "cannot tell" for every hash), run again over the same
    group; and files with more candidates than kept occur (the choice mattered). One group of
    every report, so that both runs see the same candidates. (The per-report form is no oracle
    here: with a binding limit, a report matched alone does not see later reports' copies.)"""
    from tipline.pipeline.stages import matches as matches_module
    from tipline.store.tables import FileMatch

    monkeypatch.setattr(matches_module, "DUPLICATE_LIMIT", 2)
    ids = load(runtime, year(scale=6e-6, seed=5))
    asked: list[int] = []
    real = matches_module.FileIndex.nearest

    def counted(self: Any, pdqs: list[bytes], *args: Any, **kwargs: Any) -> Any:
        got = real(self, pdqs, *args, **kwargs)
        asked.extend(len(p[0]) for p in got if p is not None)
        return got

    def pdq_duplicates() -> list[tuple[Any, ...]]:
        with runtime.sessions() as s:
            return sorted(s.execute(select(FileMatch.file_id, FileMatch.other_file_id, FileMatch.distance)
                                    .where(FileMatch.kind == "duplicate", FileMatch.hash_type == "pdq")).all())

    monkeypatch.setattr(matches_module.FileIndex, "nearest", counted)
    run_reports(StageContext(runtime), dict.fromkeys(ids), group_size=len(ids))
    chosen = pdq_duplicates()
    monkeypatch.setattr(matches_module.FileIndex, "nearest",
                        lambda self, pdqs, *args, **kwargs: [None] * len(pdqs))
    run_reports(StageContext(runtime), dict.fromkeys(ids, ["matches"]), group_size=len(ids))
    assert pdq_duplicates() == chosen
    per_file: dict[str, int] = {}
    for fid, _, _ in chosen:
        per_file[fid] = per_file.get(fid, 0) + 1
    assert per_file and max(per_file.values()) == 2, per_file  # the limit bound for some files
    assert asked and max(asked) >= 2, asked  # chosen from the index, not read in full


def test_copies_of_the_same_bytes_are_listed_once_by_sha256(runtime: Runtime,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A viral file with more copies than are kept lists its earliest copies by SHA-256 and
    nothing more: no PDQ duplicate of the same bytes and no MD5 duplicate (version 1 listed the
    next copies again by MD5 and then by PDQ at distance 0, three times the rows). PDQ
    duplicates still name files of other bytes. Both forms: the group form over every report
    at once, then the per-report form over every report again."""
    from sqlalchemy.orm import aliased

    from tipline.pipeline.stages import matches as matches_module
    from tipline.store.tables import File, FileMatch

    monkeypatch.setattr(matches_module, "DUPLICATE_LIMIT", 2)
    ids = load(runtime, year(scale=6e-6, seed=5))
    mine, other = aliased(File), aliased(File)

    def rows() -> list[tuple[str, bool, int]]:
        with runtime.sessions() as s:
            return [(h, a == b, int(n)) for h, a, b, n in s.execute(
                select(FileMatch.hash_type, mine.sha256, other.sha256, func.count())
                .join(mine, mine.id == FileMatch.file_id).join(other, other.id == FileMatch.other_file_id)
                .where(FileMatch.kind == "duplicate").group_by(FileMatch.hash_type, mine.sha256, other.sha256))]

    with runtime.sessions() as s:  # the case: some bytes stored more often than copies are kept
        most = max(s.execute(select(func.count()).select_from(File).group_by(File.sha256)).scalars())
    assert most > 3, most
    run_reports(StageContext(runtime), dict.fromkeys(ids), group_size=len(ids))
    grouped = rows()
    for rid in ids:
        run_report_stepwise(StageContext(runtime), rid, ["matches"])
    for found in (grouped, rows()):
        assert {h for h, same, _ in found if same} == {"sha256"}, found
        assert {h for h, same, _ in found if not same} == {"pdq"}, found  # near-duplicates remain
        per_sha = [n for h, same, n in found if same]
        assert per_sha and max(per_sha) >= 2, per_sha


def test_an_md5_collision_is_no_duplicate_in_either_form(runtime: Runtime) -> None:
    """Files with one MD5 and two SHA-256s (a collision: other bytes) are not listed as copies
    of each other; copies of the same bytes are, by SHA-256; the group form writes what the
    per-report form writes, whether the colliding files share a group or not."""
    import hashlib

    from sqlalchemy import update

    from helpers import person, report_doc, store_report
    from tipline.store.db import transaction
    from tipline.store.tables import File, FileMatch

    keys = ["x", "x", "y", "z", "y"]
    ids = [store_report(runtime, report_doc([person(f"c{i}")]), files=[key]) for i, key in enumerate(keys)]
    with transaction(runtime.sessions) as s:
        s.execute(update(File).where(File.sha256 == hashlib.sha256(b"y").hexdigest())
                  .values(md5=hashlib.md5(b"x").hexdigest()))
        names = {fid: keys[ids.index(int(rid))] for fid, rid in s.execute(select(File.id, File.report_id))}

    def rows() -> list[tuple[str, str, str]]:
        with runtime.sessions() as s:
            return sorted((names[f], h, names[o]) for f, h, o in s.execute(
                select(FileMatch.file_id, FileMatch.hash_type, FileMatch.other_file_id)
                .where(FileMatch.kind == "duplicate")))

    for rid in ids:
        run_report_stepwise(StageContext(runtime), rid, ["matches"])
    reference = rows()
    assert reference == [("x", "sha256", "x")] * 2 + [("y", "sha256", "y")] * 2, reference
    for size in (len(ids), 1, 2):
        run_reports(StageContext(runtime), dict.fromkeys(ids, ["matches"]), group_size=size)
        assert rows() == reference, size
