"""The two ways of filing a simulated year store the same records (both database backends).

``--via ispws`` drives the real HTTP intake (ISPWS for platforms, the public web form for
the public); ``--via direct`` bulk-inserts. Reports, documents, files and blobs must agree
up to ids, timestamps and random tokens.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from tipline.model.report import Report as ReportModel
from tipline.runtime import Runtime
from tipline.sim.calibration import PUBLIC
from tipline.sim.generate import FilesMode, SimReport, YearGenerator
from tipline.sim.write import Account, DirectWriter, IspwsWriter, TruthWriter, register_platforms
from tipline.store.tables import Blob, Document, File, Report, Reporter


def small_year(files: FilesMode, year: int = 2024) -> YearGenerator:
    """About 30 reports, with two of them turned into public web-form reports."""
    gen = YearGenerator(year, 1.5e-6, seed=7, files=files)
    public = next(i for i, p in enumerate(gen.platforms) if p.name == PUBLIC)
    gen._platform_of[[5, 11]] = public  # a year this small rarely draws the 0.8 % public share
    return gen


def snapshot(rt: Runtime, report_ids: list[int]) -> list[dict[str, Any]]:
    """The stored records of ``report_ids`` with ids, timestamps and random tokens taken out."""
    out: list[dict[str, Any]] = []
    with rt.sessions() as s:
        for rid in report_ids:
            rep = s.get(Report, rid)
            assert rep is not None
            files = list(s.execute(select(File).where(File.report_id == rid).order_by(File.seq)).scalars())
            seq_of = {f.id: f.seq for f in files}
            docs = list(s.execute(select(Document).where(Document.report_id == rid).order_by(Document.id)).scalars())

            def scrub(body: bytes, fid: str | None, seq_of: dict[str, int] = seq_of) -> bytes:
                body = re.sub(rb"<reportId>\d+</reportId>", b"<reportId>R</reportId>", body)
                return body.replace(fid.encode(), f"F{seq_of[fid]}".encode()) if fid else body

            blobs = {f.sha256: s.get(Blob, f.sha256) for f in files}
            out.append({
                "reporter": s.get(Reporter, rep.reporter_id).name,  # type: ignore[union-attr]
                "source": rep.source, "state": rep.state, "incident_type": rep.incident_type,
                "incident_at": rep.incident_at, "escalation": rep.escalation, "batched": rep.batched,
                "document": rep.document, "normalisations": rep.normalisations,
                "expires_at": rep.expires_at, "finished": rep.finished_at is not None,
                "idempotency_key": rep.idempotency_key is not None, "receipt": rep.receipt_hash is not None,
                "documents": [(d.kind, d.content_type, d.file_id and seq_of[d.file_id], scrub(d.body, d.file_id))
                              for d in docs],
                "files": [
                    (f.seq, f.file_name, f.media_type, f.size, f.md5, f.sha1, f.sha256,
                     {k: v for k, v in (f.details or {}).items() if k not in ("reportId", "fileId")},
                     f.file_relevance, f.viewed_by_esp, f.industry_classification, f.details_at is not None,
                     blobs[f.sha256] is not None and blobs[f.sha256].stored_name is None  # type: ignore[union-attr]
                     and blobs[f.sha256].data is None)  # type: ignore[union-attr]
                    for f in files
                ],
            })
    return out


def file_year(rt: Runtime, gen: YearGenerator, via: str, reports: list[SimReport] | None = None,
              accounts: dict[str, Account] | None = None) -> list[int]:
    accounts = accounts or register_platforms(rt, gen.platforms_used())
    ids: list[int] = []

    def done(r: SimReport, rid: int) -> None:
        ids.append(rid)

    writer = IspwsWriter(rt, accounts) if via == "ispws" else DirectWriter(rt, accounts, batch=16)
    writer.write(reports if reports is not None else gen, done)
    return ids


@pytest.mark.parametrize("files", ["hashes", "images"])
def test_ispws_and_direct_store_identical_records(runtime: Runtime, files: FilesMode) -> None:
    gen = small_year(files)
    reports = list(gen)  # the same deterministic stream feeds both paths
    accounts = register_platforms(runtime, gen.platforms_used())
    via_http = file_year(runtime, gen, "ispws", reports, accounts)
    direct = file_year(runtime, gen, "direct", reports, accounts)
    assert len(via_http) == len(direct) == len(gen)
    a, b = snapshot(runtime, via_http), snapshot(runtime, direct)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"simulated report {i} differs between the ISPWS and direct paths"
    # The year exercised what it should: public reports, batched reports, files of both kinds.
    sources = {r["source"] for r in a}
    assert sources == {"ispws", "web"}
    assert any(r["batched"] for r in a)
    assert sum(len(r["files"]) for r in a) > len(a)
    hashes_only = [f[-1] for r in a for f in r["files"]]
    assert all(hashes_only) if files == "hashes" else not any(hashes_only)
    for r in a:  # every stored document reloads as the typed model
        ReportModel.model_validate(r["document"])


def test_hashes_only_files_carry_pdq_in_file_details(runtime: Runtime) -> None:
    gen = small_year("hashes")
    ids = file_year(runtime, gen, "direct")
    with runtime.sessions() as s:
        photos = list(s.execute(select(File).where(File.report_id.in_(ids), File.media_type == "image/jpeg")).scalars())
        assert photos
        for f in photos:
            blob = s.get(Blob, f.sha256)
            assert blob is not None and blob.stored_name is None and blob.data is None
            pdq = [p["value"] for d in f.details["details"] if d.get("type") == "HASH"  # type: ignore[index]
                   for p in d["nameValuePair"] if p["name"] == "PDQ"]
            assert len(pdq) == 1 and re.fullmatch(r"[0-9a-f]{64}", pdq[0])


def test_ground_truth_is_written_apart(tmp_path: Any) -> None:
    gen = small_year("hashes")
    truth = TruthWriter(tmp_path / "truth", gen.n_memes)
    for r in gen:
        truth.add(r, None)
    truth.close({"reports": len(gen)})
    lines = (tmp_path / "truth" / "reports.csv").read_text().splitlines()
    assert len(lines) == len(gen) + 1
    assert "true_incident" in lines[0] and "child_in_imminent_danger" in lines[0]
    assert (tmp_path / "truth" / "files.csv").exists() and (tmp_path / "truth" / "summary.json").exists()


def test_the_direct_writer_needs_no_credentials(runtime: Runtime) -> None:
    # ``tipline simulate --via direct`` registers the platforms as reporters only: no password
    # hash per platform (most of a small load's time), and credentials made earlier stay.
    from tipline.store.tables import Credential

    gen = YearGenerator(2023, 2e-6, 4, files="hashes")
    bare = register_platforms(runtime, gen.platforms_used(), credentials=False)
    with runtime.sessions() as s:
        assert s.execute(select(Credential)).scalars().all() == []
        names = set(s.execute(select(Reporter.name)).scalars())
    assert {p.name for p in gen.platforms_used() if not p.public} <= names
    assert all(a.username is None and a.password is None for a in bare.values())
    full = register_platforms(runtime, gen.platforms_used())
    assert {a.reporter_id for a in full.values()} == {a.reporter_id for a in bare.values()}
    with runtime.sessions() as s:
        kept = {c.lookup: c.secret_hash for c in s.execute(select(Credential)).scalars()}
    assert kept and all(k.startswith("sim-") for k in kept)
    register_platforms(runtime, gen.platforms_used(), credentials=False)
    with runtime.sessions() as s:
        assert {c.lookup: c.secret_hash for c in s.execute(select(Credential)).scalars()} == kept
