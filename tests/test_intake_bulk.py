"""Intake's bulk use case stores what the one-at-a-time use cases store (both database backends).

The same simulated reports go once through ``open_report`` → ``upload``/``attach_file`` →
``file_info`` → ``finish`` and once through ``BulkIntake``, each into a store of its own; the
tables must then agree row for row, up to surrogate ids, random tokens and timestamps (which
legitimately differ: one path takes several steps, the other one). A batch with a bad report
stores none of it and names the report; loading again stores nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tipline.config import Settings
from tipline.cybertip.xml import file_details_to_xml, parse_file_details
from tipline.intake.bulk import BulkFile, BulkIntake, BulkIntakeError, BulkReport, Loaded, prepare
from tipline.model.report import FileDetails
from tipline.runtime import Runtime
from tipline.sim.calibration import PUBLIC
from tipline.sim.generate import FilesMode, YearGenerator
from tipline.sim.write import XML_TYPE, DirectWriter, register_platforms
from tipline.store.blobs import StoredBlob
from tipline.store.setup import do_init
from tipline.store.tables import Blob, Document, File, Report, Reporter


def small_year(files: FilesMode) -> YearGenerator:
    """About 30 reports of 2024 (batched ones among them), two turned into public web-form reports."""
    gen = YearGenerator(2024, 1.5e-6, seed=11, files=files)
    public = next(i for i, p in enumerate(gen.platforms) if p.name == PUBLIC)
    gen._platform_of[[3, 9]] = public  # a year this small rarely draws the 0.8 % public share
    return gen


@pytest.fixture
def second_runtime(settings: Settings, backend: str, tmp_path: Path,
                   request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A second, empty store on the same backend (the other path writes into it)."""
    url = request.getfixturevalue("pg_cluster").new_database() if backend == "postgresql" else ""
    other = Settings.from_env(tmp_path / "data2", database_url=url)
    do_init(other)
    rt = Runtime.open(other)
    yield rt
    rt.close()


def bulk_reports(rt: Runtime, gen: YearGenerator, key_prefix: str | None = "t") -> list[BulkReport]:
    writer = DirectWriter(rt, register_platforms(rt, gen.platforms_used()), key_prefix=key_prefix)
    now = datetime.now(UTC)
    return [writer.bulk_report(r, now) for r in gen]


def one_at_a_time(rt: Runtime, reports: list[BulkReport]) -> list[int]:
    """Each report through the per-request use cases, as the ISPWS adapter drives them."""
    intake, ids = rt.intake, []
    for b in reports:
        rid, created = intake.open_report(
            b.reporter_id, b.parsed, source=b.source, body=b.body, content_type=b.content_type,
            document_kind=b.document_kind, idempotency_key=b.idempotency_key, receipt_hash=b.receipt_hash)
        assert created
        for f in b.files:
            if f.data is not None:
                w = rt.blobs.writer(len(f.data))
                w.write(f.data)
                _, fid = intake.upload(b.reporter_id, rid, w, file_name=f.file_name, media_type=f.media_type)
            else:
                assert f.hashes is not None
                h = f.hashes
                fid = intake.attach_file(b.reporter_id, rid, StoredBlob(h.sha256, h.md5, h.sha1, h.size, None),
                                         file_name=f.file_name, media_type=f.media_type)
            if f.details is not None:
                body = file_details_to_xml(FileDetails(reportId=rid, fileId=fid, **f.details))
                intake.file_info(b.reporter_id, parse_file_details(body), body=body, content_type=XML_TYPE)
        intake.finish(b.reporter_id, rid)
        ids.append(rid)
    return ids


def tables(rt: Runtime) -> dict[str, list[Any]]:
    """Every row of reports, files, documents and blobs, with what legitimately differs taken out.

    Report ids become load order, fileIds (report, seq), in details and in document bodies
    too; timestamps become "set" or not (open_deadline: its distance from opened_at); random
    receipt hashes "set"; inline ciphertext (random salt) the plaintext it decrypts to.
    """
    with rt.sessions() as s:
        reports = list(s.execute(select(Report).order_by(Report.id)).scalars())
        reporter = dict(s.execute(select(Reporter.id, Reporter.name)).all())
        order = {r.id: n for n, r in enumerate(reports)}
        files = list(s.execute(select(File)).scalars())
        fname = {f.id: f"F{order[f.report_id]}.{f.seq}" for f in files}

        def scrub(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: (order.get(v, v) if k == "reportId" else scrub(v)) for k, v in value.items()}
            if isinstance(value, list):
                return [scrub(v) for v in value]
            if isinstance(value, str):
                return fname.get(value, value)
            return value

        def body(b: bytes, report_id: int) -> bytes:
            b = b.replace(f"<reportId>{report_id}</reportId>".encode(), b"<reportId>R</reportId>")
            for fid, name in fname.items():
                b = b.replace(fid.encode(), name.encode())
            return b

        out: dict[str, list[Any]] = {"reports": [], "files": [], "documents": [], "blobs": []}
        for r in reports:
            out["reports"].append({
                "reporter": reporter[r.reporter_id], "source": r.source, "state": r.state,
                "opened": r.opened_at is not None, "last_change": r.last_change_at is not None,
                "expires_at": r.expires_at, "deadline": r.open_deadline and r.open_deadline - r.opened_at,
                "file_count": r.file_count, "finished": r.finished_at is not None, "retracted_at": r.retracted_at,
                "incident_type": r.incident_type, "incident_at": r.incident_at, "escalation": r.escalation,
                "batched": r.batched, "document": r.document, "normalisations": r.normalisations,
                "idempotency_key": r.idempotency_key, "receipt": r.receipt_hash is not None,
            })
        for f in sorted(files, key=lambda f: (order[f.report_id], f.seq)):
            out["files"].append({
                "report": order[f.report_id], "seq": f.seq, "file_name": f.file_name, "media_type": f.media_type,
                "size": f.size, "md5": f.md5, "sha1": f.sha1, "sha256": f.sha256, "uploaded": f.uploaded_at is not None,
                "details": scrub(f.details), "details_at": f.details_at is not None,
                "file_relevance": f.file_relevance, "viewed_by_esp": f.viewed_by_esp,
                "industry_classification": f.industry_classification,
            })
        for d in s.execute(select(Document).order_by(Document.report_id, Document.id)).scalars():
            assert d.sha256 == hashlib.sha256(d.body).hexdigest()
            out["documents"].append((order[d.report_id], d.file_id and fname[d.file_id], d.kind, d.content_type,
                                     d.received_at is not None, body(bytes(d.body), d.report_id)))
        for b in s.execute(select(Blob).order_by(Blob.sha256)).scalars():
            plain = b"".join(rt.blobs.open_held(b.stored_name, b.data)) if (b.stored_name or b.data) else None
            out["blobs"].append((b.sha256, b.size, b.md5, b.sha1, b.stored_name, b.data is not None, plain,
                                 b.created_at is not None))
    return out


def counts(rt: Runtime) -> tuple[int, int, int, int]:
    with rt.sessions() as s:
        return tuple(s.execute(select(func.count()).select_from(t)).scalar_one()  # type: ignore[return-value]
                     for t in (Report, File, Document, Blob))


@pytest.mark.parametrize("files", ["hashes", "images"])
def test_bulk_stores_the_rows_the_one_at_a_time_path_stores(
        runtime: Runtime, second_runtime: Runtime, files: FilesMode) -> None:
    gen = small_year(files)
    singly = one_at_a_time(runtime, bulk_reports(runtime, gen))
    loaded = BulkIntake(second_runtime.intake).load(bulk_reports(second_runtime, gen))
    assert [x.created for x in loaded] == [True] * len(gen) == [True] * len(singly)
    a, b = tables(runtime), tables(second_runtime)
    assert len(a["reports"]) == len(gen) and len(a["files"]) > len(gen)
    for name in a:
        assert len(a[name]) == len(b[name]), name
        for n, (x, y) in enumerate(zip(a[name], b[name], strict=True)):
            assert x == y, f"{name} row {n} differs between the one-at-a-time and the bulk path"
    # The sample exercised what it should: both sources, batched reports, both kinds of file.
    assert {r["source"] for r in a["reports"]} == {"ispws", "web"}
    assert any(r["batched"] for r in a["reports"])
    held = [blob[6] is not None for blob in a["blobs"]]
    assert all(held) if files == "images" else not any(held)
    # What store() returned names the stored report and its files in upload order.
    with second_runtime.sessions() as s:
        for x in loaded:
            assert x.file_ids == list(s.execute(
                select(File.id).where(File.report_id == x.report_id).order_by(File.seq)).scalars())


def test_a_bad_report_fails_its_batch_alone_and_is_named(runtime: Runtime) -> None:
    gen = small_year("hashes")
    reports = bulk_reports(runtime, gen)
    bulk = BulkIntake(runtime.intake)
    first = bulk.load(reports[:10])  # acknowledged: committed before the bad batch comes
    before = counts(runtime)
    # Finish rules: a file not "Reported" may not carry an industry classification.
    victim = next(i for i, r in enumerate(reports[10:], start=10) if r.files)
    f0 = reports[victim].files[0]
    details = {**(f0.details or {}), "fileRelevance": "Supplemental Reported", "industryClassification": "A1"}
    bad_file = BulkFile(f0.file_name, f0.media_type, f0.data, f0.hashes, details)
    bad = BulkReport(**{**reports[victim].__dict__, "files": [bad_file, *reports[victim].files[1:]]})
    batch = reports[10:victim] + [bad] + reports[victim + 1:]
    with pytest.raises(BulkIntakeError, match=rf"^{reports[victim].ref}: .*industryClassification") as err:
        bulk.load(batch)
    assert err.value.ref == reports[victim].ref
    assert counts(runtime) == before
    # One the database refuses half way through the writes (no such reporter): rolled back, named.
    ghost = BulkReport(**{**reports[victim].__dict__, "reporter_id": 999_999, "ref": "the ghost report"})
    with pytest.raises(BulkIntakeError, match=r"^the ghost report: the store refused it"):
        bulk.load(reports[10:victim] + [ghost] + reports[victim + 1:])
    assert counts(runtime) == before
    # The good reports of the failed batches load afterwards, and the acknowledged ones are there.
    rest = bulk.load(reports[10:])
    assert all(x.created for x in rest)
    with runtime.sessions() as s:
        stored = set(s.execute(select(Report.id).where(Report.state == "finished")).scalars())
    assert {x.report_id for x in first + rest} == stored


def test_a_file_with_neither_bytes_nor_hashes_is_refused(runtime: Runtime) -> None:
    reports = bulk_reports(runtime, small_year("hashes"))
    r = next(r for r in reports if r.files)
    hollow = BulkReport(**{**r.__dict__, "files": [BulkFile("a.jpg", "image/jpeg")]})
    with pytest.raises(BulkIntakeError, match=rf"^{r.ref}: file 1 has neither content nor hashes"):
        prepare(runtime.settings, hollow)


def test_blob_ciphertext_of_a_failed_batch_is_removed(runtime: Runtime) -> None:
    reports = [r for r in bulk_reports(runtime, small_year("images")) if r.files]
    ghost = BulkReport(**{**reports[-1].__dict__, "reporter_id": 999_999})
    with pytest.raises(BulkIntakeError):
        BulkIntake(runtime.intake).load(reports[:3] + [ghost])
    assert counts(runtime) == (0, 0, 0, 0)
    assert not [p for p in runtime.blobs.root.rglob("*") if p.is_file()]


def test_loading_again_stores_nothing_twice(runtime: Runtime) -> None:
    gen = small_year("images")
    reports = bulk_reports(runtime, gen)
    bulk = BulkIntake(runtime.intake)
    first = bulk.load(reports[:20])
    after_first = counts(runtime)
    # A load cut short and started again: the first 20 are replays, the rest are new.
    again = bulk.load(reports)
    assert [x.created for x in again] == [False] * 20 + [True] * (len(reports) - 20)
    assert [(x.report_id, x.file_ids) for x in again[:20]] == [(x.report_id, x.file_ids) for x in first]
    full = counts(runtime)
    assert full[0] == len(reports) and full > after_first
    assert all(not x.created for x in bulk.load(reports))
    assert counts(runtime) == full
    # A key within one batch twice: the second is the first's replay.
    twice = bulk.load([reports[0], reports[0]])
    assert twice[0] == twice[1] == Loaded(first[0].report_id, first[0].file_ids, False)


def test_a_key_reused_for_another_body_is_refused(runtime: Runtime) -> None:
    reports = bulk_reports(runtime, small_year("hashes"))
    bulk = BulkIntake(runtime.intake)
    a, b = next((x, y) for x in reports for y in reports if x is not y and x.reporter_id == y.reporter_id)
    bulk.load([a])
    other = BulkReport(**{**b.__dict__, "idempotency_key": a.idempotency_key})
    with pytest.raises(BulkIntakeError, match="already used for a different request body") as err:
        bulk.load([reports[-1], other])
    assert err.value.ref == b.ref
    # Within one batch too, before anything is written.
    with pytest.raises(BulkIntakeError, match="already used for a different request body"):
        bulk.load([b, BulkReport(**{**a.__dict__, "idempotency_key": b.idempotency_key})])
    assert counts(runtime)[0] == 1


def test_finished_hooks_run_for_created_reports_only(runtime: Runtime) -> None:
    reports = bulk_reports(runtime, small_year("hashes"))[:5]
    seen: list[int] = []
    runtime.intake.finished_hooks.append(seen.append)
    loaded = BulkIntake(runtime.intake).load(reports)
    BulkIntake(runtime.intake).load(reports)  # replays: no second enqueue
    assert seen == [x.report_id for x in loaded]


def test_the_placeholder_report_id_renders_what_the_real_one_renders(runtime: Runtime) -> None:
    # prepare() renders fileDetails before the report has an id; swapping the id in afterwards
    # must give the very bytes the serialiser gives with the real id, for any id.
    reports = [r for r in bulk_reports(runtime, small_year("hashes")) if r.files]
    for rid in (1, 7, 10, 123456789012):
        p = prepare(runtime.settings, reports[0])
        for f, src in zip(p.files, reports[0].files, strict=True):
            fd = FileDetails(reportId=rid, fileId=str(f.row["id"]), **(src.details or {}))
            assert f.document(rid) == file_details_to_xml(fd)


def test_forked_producers_store_what_one_process_stores(runtime: Runtime, second_runtime: Runtime) -> None:
    # Blocks of 4 reports made by 3 processes in turn; the store must not tell the difference.
    gen = small_year("images")
    seen: dict[str, list[tuple[int, int, str]]] = {"serial": [], "forked": []}
    for name, rt, workers in (("serial", runtime, 1), ("forked", second_runtime, 3)):
        writer = DirectWriter(rt, register_platforms(rt, gen.platforms_used()), batch=4, key_prefix="t",
                              workers=workers)
        writer.write(gen, lambda r, rid, name=name: seen[name].append((r.seq, rid, r.truth["true_incident"])))
    assert [s for s, _, _ in seen["forked"]] == list(range(len(gen)))
    assert [(s, t) for s, _, t in seen["forked"]] == [(s, t) for s, _, t in seen["serial"]]
    a, b = tables(runtime), tables(second_runtime)
    for name in a:
        assert a[name] == b[name], name


def test_simulating_the_same_year_again_stores_nothing_twice(settings: Settings, tmp_path: Path) -> None:
    from tipline.commands.simulate import simulate_year

    first = simulate_year(settings, 2024, 3e-6, seed=3, out=tmp_path / "a", outcomes=False, workers=2)
    rt = Runtime.open(settings)
    try:
        stored = counts(rt)
        assert stored[0] == first["reports"] > 0
        simulate_year(settings, 2024, 3e-6, seed=3, out=tmp_path / "b", outcomes=False, workers=1)
        assert counts(rt) == stored
    finally:
        rt.close()
    # Both runs' ground truth names the same stored reports.
    assert (tmp_path / "a" / "reports.csv").read_text() == (tmp_path / "b" / "reports.csv").read_text()
