"""The set-based ``hashes`` stage (``hashes_group``) writes exactly what the per-report stage
writes, in a number of statements that does not grow with the group (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import String, cast, event, select
from sqlalchemy.orm import Session

from test_hashing import add_report
from tipline.pipeline.core import Outcome, StageContext, get_stage
from tipline.pipeline.stages.hashes import hashes, hashes_group
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.db import transaction
from tipline.store.tables import File, FileSignal
from tipline.store.tables_hashing import FileSignalSource

SIG_COLS = ("media_kind", "pdq", "pdq_quality", "width", "height", "video_frames")
SRC_COLS = ("source", "media_format", "detail")


def mixed_reports(rt: Runtime, n: int) -> list[int]:
    """``n`` reports covering every branch: PNG, JPEG misnamed, text, platform PDQ, nothing held,
    an undecodable "image", and content shared by several reports (hashed once by the group)."""
    shared = standin_image(900, (96, 64))
    rids: list[int] = []
    for i in range(n):
        files: list[tuple[bytes | None, dict[str, Any]]] = [
            (standin_image(i, (64 + i % 7, 48), fmt="JPEG" if i % 2 else "PNG"), {"file_name": f"{i}.png"}),
            (shared, {})]
        if i % 4 == 0:
            files.append((b"just some text " + str(i).encode(), {"media_type": "image/jpeg"}))
        if i % 4 == 1:
            files.append((None, {"media_type": "video/mp4", "details": {"details": [
                {"type": "HASH", "nameValuePair": [{"name": "pdq", "value": f"{i:02x}" * 32},
                                                   {"name": "PDQ_QUALITY", "value": "77"}]}]}}))
        if i % 4 == 2:
            files.append((None, {}))
        if i % 4 == 3:
            # Magic bytes of a PNG, then garbage: held, sniffed as an image, not decodable.
            files.append((b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3 + str(i).encode(), {}))
        rids.append(add_report(rt, files)[0])
    return rids


def signals(rt: Runtime) -> dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """Every file's stored signal columns as the database holds them (JSON as text, so that
    JSON 'null' and SQL NULL differ), without the run's timestamp."""
    sig_t, src_t = FileSignal.__table__, FileSignalSource.__table__
    frames = cast(sig_t.c.video_frames, String)
    with rt.sessions() as s:
        src = {r[0]: tuple(r[1:]) for r in s.execute(select(src_t.c.file_id, *(src_t.c[c] for c in SRC_COLS)))}
        return {r[0]: (tuple(r[1:]), src[r[0]])
                for r in s.execute(select(sig_t.c.file_id, *(sig_t.c[c] for c in SIG_COLS[:-1]), frames))}


def clear(rt: Runtime) -> None:
    with transaction(rt.sessions) as s:
        s.query(FileSignalSource).delete()
        s.query(FileSignal).delete()


def test_group_writes_what_the_per_report_stage_writes(runtime: Runtime) -> None:
    rids = mixed_reports(runtime, 12)
    ctx = StageContext(runtime)
    for rid in rids:
        with transaction(runtime.sessions) as s:
            hashes(ctx, s, rid)
    per_report = signals(runtime)
    with runtime.sessions() as s:
        n_files = len(s.execute(select(File.id)).all())
    assert len(per_report) == n_files and n_files >= 12 * 3
    kinds = {sig[0] for sig, _ in per_report.values()}
    sources = {src[0] for _, src in per_report.values()}
    assert kinds == {"image", "other", "video"} and sources == {"computed", "platform", "none"}

    clear(runtime)
    with transaction(runtime.sessions) as s:
        out = hashes_group(ctx, s, rids)
    assert out == {rid: Outcome.DONE for rid in rids}
    assert signals(runtime) == per_report

    # Re-running over rows already there replaces them (no duplicate key, same rows), also
    # over a group that overlaps what ran before and includes a report with no files.
    empty = add_report(runtime, [])[0]
    with transaction(runtime.sessions) as s:
        hashes_group(ctx, s, [*rids[3:], empty])
    assert signals(runtime) == per_report


def test_group_is_registered_and_refuses_a_malformed_file_like_the_stage(runtime: Runtime) -> None:
    assert get_stage("hashes").group is hashes_group
    good = mixed_reports(runtime, 2)
    bad, (fid,) = add_report(runtime, [(standin_image(1), {})])
    with transaction(runtime.sessions) as s:
        s.execute(File.__table__.update().where(File.id == fid).values(md5="XYZ"))
    ctx = StageContext(runtime)
    # Both forms raise, so the runner's fallback runs the group report by report and the bad
    # report fails alone.
    with pytest.raises(ValueError, match="md5"), transaction(runtime.sessions) as s:
        hashes_group(ctx, s, [*good, bad])
    with pytest.raises(ValueError, match="md5"), transaction(runtime.sessions) as s:
        hashes(ctx, s, bad)
    assert signals(runtime) == {}


def count_statements(rt: Runtime, ctx: StageContext, rids: list[int]) -> int:
    seen: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        seen.append(statement)

    engine = rt.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        with transaction(rt.sessions) as s:
            assert isinstance(s, Session)
            seen.clear()
            hashes_group(ctx, s, rids)
            s.flush()
            total = len(seen)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    return total


def test_statements_do_not_grow_with_the_group(runtime: Runtime) -> None:
    rids = mixed_reports(runtime, 80)
    ctx = StageContext(runtime)
    small, large = count_statements(runtime, ctx, rids[:20]), count_statements(runtime, ctx, rids)
    # 80 reports hold 4x the files of 20 (and 4x their bytes; PostgreSQL's server-side cursor
    # fetches them a few rows per round trip, which is not a statement): the same statements.
    assert small <= 8 and large == small, (small, large)
