"""The fast ways of loading a simulated year store what the plain ways store (both database backends).

Each fast path of ``tipline simulate --via direct`` is checked against the reference it
replaces, into two stores of the same backend, on a small year with batched and public
reports: the receipt times written into the rows as they are stored against the stamping pass
after the load (``stamp_report_times``); batches packed with their values bound beforehand
(``BulkIntake.pack``, in the producer processes) against the prepared reports ``store`` takes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Text, cast, select

from test_intake_bulk import bulk_reports, second_runtime, small_year, tables  # noqa: F401  (second_runtime: a fixture)
from tipline.intake.bulk import BulkIntake, prepare
from tipline.runtime import Runtime
from tipline.sim.generate import SimReport
from tipline.sim.outcomes import load_profile, receipt_times, stamp_report_times
from tipline.sim.write import DirectWriter, register_platforms
from tipline.store.tables import Blob, Document, File, Report


def _times(rt: Runtime) -> list[tuple[Any, ...]]:
    """Every report's times, exactly, in load order (the scrubbed tables() only say "set")."""
    with rt.sessions() as s:
        return [tuple(row) for row in s.execute(
            select(Report.idempotency_key, Report.opened_at, Report.last_change_at, Report.finished_at,
                   Report.expires_at, Report.incident_at).order_by(Report.id))]


def test_receipt_times_written_with_the_rows_are_the_stamped_ones(runtime: Runtime,
                                                                  second_runtime: Runtime) -> None:  # noqa: F811
    gen = small_year("hashes")
    profile = load_profile(None)
    truths: dict[int, dict[str, Any]] = {}

    def keep(r: SimReport, rid: int) -> None:
        truths[rid] = r.truth

    # Reference: stored at the load's time, then stamped by a second pass.
    DirectWriter(runtime, register_platforms(runtime, gen.platforms_used()), batch=7, key_prefix="t").write(gen, keep)
    stamp_report_times(runtime, truths, profile, 11, gen.year)
    # Fast: each row written with its receipt time, by two forked producers.
    DirectWriter(second_runtime, register_platforms(second_runtime, gen.platforms_used()), batch=7, key_prefix="t",
                 workers=2, received=receipt_times(profile, 11, gen.year)).write(gen, lambda r, rid: None)
    a, b = _times(runtime), _times(second_runtime)
    assert len(a) == len(gen) and a == b
    # The times did move: inside the simulated year, after the incident, not the load's clock.
    year = datetime(gen.year, 1, 1).year
    assert all(opened.year == year and opened >= incident and opened == changed == finished and expires is None
               for _, opened, changed, finished, expires, incident in b)
    # Everything else is the same too; the open deadline stays the load's (opened + TTL, as the
    # stamp leaves it), so its distance from the stamped opening differs between two loads.
    ta, tb = tables(runtime), tables(second_runtime)
    for t in (ta, tb):
        for row in t["reports"]:
            del row["deadline"]
    for name in ta:
        assert ta[name] == tb[name], name
    for rt in (runtime, second_runtime):
        with rt.sessions() as s:
            assert {d - r for d, r in s.execute(select(Report.open_deadline, Document.received_at).join(
                Document, Document.report_id == Report.id).where(Document.kind.in_(("submit", "web"))))} == {
                timedelta(seconds=rt.settings.open_ttl_seconds)}


def _raw(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every row, JSON columns as the text the database holds."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with rt.sessions() as s:
        for table, order in ((Report, Report.id), (File, File.id), (Document, Document.id), (Blob, Blob.sha256)):
            cols = [cast(c, Text) if isinstance(c.type, JSON) else c for c in table.__table__.columns]
            out[table.__tablename__] = [tuple(r) for r in s.execute(select(*cols).order_by(order))]
    return out


def test_a_packed_batch_stores_what_the_prepared_one_stores(runtime: Runtime,
                                                            second_runtime: Runtime) -> None:  # noqa: F811
    # The same prepared reports (so the same file ids and times) into two fresh stores: once as
    # they are, once packed (values bound beforehand, as a producer process does). Byte for byte.
    gen = small_year("hashes")
    reports = bulk_reports(runtime, gen)
    register_platforms(second_runtime, gen.platforms_used())  # the same reporter ids
    now = datetime.now(UTC)
    prepared = [prepare(runtime.settings, r, now) for r in reports]
    plain, fast = BulkIntake(runtime.intake), BulkIntake(second_runtime.intake)
    half = len(prepared) // 2
    packed_half, packed_all = fast.pack(prepared[:half]), fast.pack(prepared)
    assert packed_half is not None and packed_all is not None
    # Half first, then all of it: the first half are replays, on both paths alike.
    a = plain.store(prepared[:half]) + plain.store(prepared)
    b = fast.store_packed(packed_half) + fast.store_packed(packed_all)
    assert a == b and [x.created for x in b] == [True] * half + [False] * half + [True] * (len(prepared) - half)
    ra, rb = _raw(runtime), _raw(second_runtime)
    assert len(ra["files"]) > len(ra["reports"]) == len(gen)
    for name in ra:
        assert ra[name] == rb[name], name
    # The details' text carries the stored report's id, where the placeholder was.
    with second_runtime.sessions() as s:
        texts = list(s.execute(select(File.report_id, cast(File.details, Text))))
    assert texts and all(d.startswith(f'{{"reportId": {rid}, ') for rid, d in texts)


def test_what_cannot_be_packed_is_stored_as_prepared(runtime: Runtime) -> None:
    # Files with bytes go to the blob store before their rows: pack() leaves them to store().
    reports = bulk_reports(runtime, small_year("images"))
    bulk = BulkIntake(runtime.intake)
    assert bulk.pack([prepare(runtime.settings, r) for r in reports if r.files]) is None
    assert bulk.pack([]) is None
