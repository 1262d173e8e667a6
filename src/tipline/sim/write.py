"""Writing a simulated year into tipline: over real HTTP (ISPWS + public form), or in bulk.

Both paths consume the same ``YearGenerator`` stream and store the same records (reports,
documents, files, blobs) up to ids, timestamps and random tokens; tests/test_sim_paths.py
checks that on both database backends.

- ``IspwsWriter`` speaks the CyberTipline Reporting API to a running server (started
  in-process on a free port unless a URL is given): ``/submit``, ``/upload``,
  ``/fileinfo``, ``/finish``; public reports go through the public web form. With
  ``--files hashes`` there are no bytes to upload, so each file is recorded by hash
  (``attach_hash_only``: a ``blobs`` row with ``stored_name = NULL``) and everything else
  still goes over HTTP.
- ``DirectWriter`` hands the reports to Intake's bulk use case (``tipline.intake.bulk``), a
  batch per transaction: no HTTP, no XML parsing (the stored XML bodies are still serialised,
  since they are kept byte for byte).
"""

from __future__ import annotations

import csv
import gc
import json
import multiprocessing as mp
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tipline.cybertip.xml import Parsed, file_details_to_xml, report_to_xml, report_to_xml_fast
from tipline.intake.bulk import (
    BulkFile,
    BulkIntake,
    BulkIntakeError,
    BulkReport,
    FileHashes,
    PackedBatch,
    PreparedReport,
    prepare,
)
from tipline.intake.credentials import hash_password
from tipline.intake.errors import IntakeError, Reason
from tipline.intake.public_form import checked_report, validate_report_form, web_document
from tipline.intake.receipts import new_receipt_code, receipt_hash
from tipline.model.report import FileDetails
from tipline.runtime import Runtime
from tipline.sim.calibration import Platform
from tipline.sim.generate import SimFile, SimReport, YearGenerator
from tipline.sim.population import slug
from tipline.store.blobs import StoredBlob
from tipline.store.db import transaction
from tipline.store.tables import Credential, Reporter

XML_TYPE = "text/xml; charset=utf-8"
_RECEIPT = re.compile(r"TPL-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Account:
    reporter_id: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def register_platforms(rt: Runtime, platforms: Iterable[Platform], *,
                       credentials: bool = True) -> dict[str, Account]:
    """Make each platform a reporter with a Basic credential ``sim-<name>`` (new random password).

    The public share files under the public reporter (``rt.intake.public_reporter_id()``).
    Re-running replaces the simulated credentials' passwords, as ``tipline demo`` does.
    ``credentials=False``: the reporters only, credentials left as they are — what the direct
    writer needs (it signs in nowhere); an argon2 hash per platform is most of a small load.
    """
    out: dict[str, Account] = {}
    now = utcnow()
    for p in platforms:
        if p.public:
            out[p.name] = Account(rt.intake.public_reporter_id())
            continue
        username, password = f"sim-{slug(p.name)}", secrets.token_urlsafe(12)
        with transaction(rt.sessions) as s:
            rep = s.execute(select(Reporter).where(Reporter.name == p.name)).scalar_one_or_none()
            if rep is None:
                rep = Reporter(name=p.name, kind="esp", enabled=True, created_at=now)
                s.add(rep)
                s.flush()
            if not credentials:
                out[p.name] = Account(rep.id)
                continue
            cred = s.execute(select(Credential).where(Credential.lookup == username)).scalar_one_or_none()
            if cred is None:
                s.add(Credential(reporter_id=rep.id, kind="basic", lookup=username,
                                 secret_hash=hash_password(password), label="tipline simulate", created_at=now))
            elif cred.reporter_id != rep.id:
                raise ValueError(f"username {username!r} belongs to another reporter")
            else:
                cred.secret_hash = hash_password(password)
                cred.disabled_at = None
            out[p.name] = Account(rep.id, username, password)
    return out


def attach_hash_only(rt: Runtime, reporter_id: int, report_id: int, f: SimFile) -> str:
    """Record a file known only by its hashes as a file of an open report; returns its fileId.

    Intake's own ``attach_file`` with a blob that holds no content (``stored_name`` and data
    None): the blob row is shared by every file with the same SHA-256, and the report's
    ownership, state and expiry are checked and moved exactly as for an upload. A refusal is
    Intake's ``IntakeError``, never a protocol's code.
    """
    c = f.content
    held = StoredBlob(sha256=c.sha256, md5=c.md5, sha1=c.sha1, size=c.size, stored_name=None)
    return rt.intake.attach_file(reporter_id, report_id, held, file_name=f.file_name, media_type=c.media_type)


def file_details(report_id: int, file_id: str, f: SimFile) -> FileDetails:
    return FileDetails(reportId=report_id, fileId=file_id, **f.details)


# --- ISPWS over HTTP ---------------------------------------------------------------------


class Server:
    """The tipline app under uvicorn in a thread, on a free local port (``enrich``: as ``tipline serve``)."""

    def __init__(self, rt: Runtime, *, enrich: bool = False) -> None:
        import uvicorn

        from tipline.web.app import create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(create_app(runtime=rt, enrich=enrich), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the in-process tipline server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _code(xml: bytes) -> tuple[int, dict[str, str]]:
    from lxml import etree

    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    fields = {str(el.tag): (el.text or "") for el in root.iter() if isinstance(el.tag, str)}
    return int(fields.get("responseCode", "-1")), fields


class IspwsWriter:
    """Files each report through the real HTTP intake (ISPWS for platforms, the form for the public)."""

    def __init__(self, rt: Runtime, accounts: dict[str, Account], url: str | None = None) -> None:
        self.rt, self.accounts, self.url = rt, accounts, url

    def write(self, reports: Iterable[SimReport], done: Callable[[SimReport, int], None]) -> None:
        if self.url:
            self._run(self.url, reports, done)
        else:
            with Server(self.rt) as url:
                self._run(url, reports, done)

    def _run(self, base: str, reports: Iterable[SimReport], done: Callable[[SimReport, int], None]) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            for r in reports:
                rid = self._public(http, r) if r.public else self._esp(http, r)
                done(r, rid)

    def _esp(self, http: httpx.Client, r: SimReport) -> int:
        acct = self.accounts[r.platform]
        assert acct.username and acct.password and r.report is not None
        auth = (acct.username, acct.password)
        code, resp = _code(http.post("/ispws/submit", content=report_to_xml(r.report), auth=auth,
                                     headers={"Content-Type": XML_TYPE}).content)
        if code != 0:
            raise RuntimeError(f"submit of simulated report {r.seq} failed: {resp}")
        rid = int(resp["reportId"])
        for f in r.files:
            if f.content.data is not None:
                code, resp = _code(http.post("/ispws/upload", data={"id": str(rid)}, auth=auth, files={
                    "file": (f.file_name, f.content.data, f.content.media_type)}).content)
                if code != 0:
                    raise RuntimeError(f"upload for simulated report {r.seq} failed: {resp}")
                fid = resp["fileId"]
            else:
                fid = attach_hash_only(self.rt, acct.reporter_id, rid, f)
            code, resp = _code(http.post("/ispws/fileinfo", content=file_details_to_xml(file_details(rid, fid, f)),
                                         auth=auth, headers={"Content-Type": XML_TYPE}).content)
            if code != 0:
                raise RuntimeError(f"fileinfo for simulated report {r.seq} failed: {resp}")
        code, resp = _code(http.post("/ispws/finish", data={"id": str(rid)}, auth=auth).content)
        if code != 0:
            raise RuntimeError(f"finish of simulated report {r.seq} failed: {resp}")
        return rid

    def _public(self, http: httpx.Client, r: SimReport) -> int:
        assert r.form is not None and not r.files, "simulated public reports carry no files"
        page = http.post("/report", data={**r.form, "form_token": secrets.token_urlsafe(16)})
        m = _RECEIPT.search(page.text)
        if page.status_code != 200 or m is None:
            raise RuntimeError(f"public form for simulated report {r.seq} failed: HTTP {page.status_code}")
        rid = self.rt.intake.report_id_for_receipt(receipt_hash(m.group()))
        if rid is None:
            raise RuntimeError(f"no report for the receipt of simulated report {r.seq}")
        return rid


# --- direct bulk path --------------------------------------------------------------------


class DirectWriter:
    """Files finished reports through Intake's bulk use case (``tipline.intake.bulk``), a batch per transaction.

    No HTTP and no XML parsing, but the same rows, checks and idempotency as Intake's
    one-at-a-time path. With ``key_prefix`` every report carries the idempotency key
    ``<prefix>:<seq>`` (public ones the form's ``web-form:<prefix>:<seq>``), so loading the
    same year again stores nothing twice and a load cut short resumes where it stopped.
    """

    def __init__(self, rt: Runtime, accounts: dict[str, Account], batch: int = 1000,
                 key_prefix: str | None = None, workers: int = 1,
                 received: Callable[[int, datetime], datetime] | None = None) -> None:
        """``received``: the simulated receipt time of a report (its sequence number and incident
        time), written into its row as it is stored (``sim.outcomes.receipt_times``): what
        ``stamp_report_times`` would set afterwards, without the second pass over the year."""
        self.rt, self.accounts, self.batch, self.key_prefix = rt, accounts, batch, key_prefix
        self.workers = workers
        self.received = received
        self.bulk = BulkIntake(rt.intake)
        #: Reports found already stored (idempotent replays) by the last ``write``, by id.
        self.replayed_ids: set[int] = set()

    def write(self, reports: Iterable[SimReport], done: Callable[[SimReport, int], None]) -> None:
        """File ``reports`` in batches, calling ``done`` for each once its batch has committed.

        With ``workers`` > 1 and a ``YearGenerator``, that many forked processes make and
        prepare the reports (block ``b`` of ``batch`` reports by process ``b % workers``) while
        this one writes them in order: generating a report and rendering its XML cost several
        times what storing it costs, and a process uses one core.
        """
        self.replayed_ids = set()
        with _few_collections():
            if self.workers > 1 and isinstance(reports, YearGenerator):
                self._write_parallel(reports, done)
                return
            buf: list[SimReport] = []
            for r in reports:
                buf.append(r)
                if len(buf) >= self.batch:
                    self._flush(buf, done)
                    buf = []
            if buf:
                self._flush(buf, done)

    def _flush(self, batch: list[SimReport], done: Callable[[SimReport, int], None]) -> None:
        self._store(batch, self._pack(batch), done)

    def _pack(self, batch: list[SimReport]) -> PackedBatch | list[PreparedReport]:
        """The batch prepared and, where it can be, packed: values bound for the store's driver
        (``BulkIntake.pack``), which is what a producer process should do rather than the one
        that writes. What cannot be packed (files with bytes) is stored as prepared: the same rows."""
        now = utcnow()
        prepared = [self._prepare(r, now) for r in batch]
        packed = self.bulk.pack(prepared)
        return prepared if packed is None else packed

    def _prepare(self, r: SimReport, now: datetime) -> PreparedReport:
        # The simulator's models were validated as it built them, and the checked writer is
        # tested to accept its reports (tests/test_xml_fast.py): render without the read-back.
        p = prepare(self.rt.settings, self.bulk_report(r, now), now, checked_xml=False)
        incident = p.row["incident_at"]
        if self.received is not None and incident is not None:
            p.backdate(self.received(r.seq, incident))
        return p

    def _store(self, batch: list[SimReport], prepared: PackedBatch | list[PreparedReport],
               done: Callable[[SimReport, int], None]) -> None:
        results = (self.bulk.store_packed(prepared) if isinstance(prepared, PackedBatch)
                   else self.bulk.store(prepared))
        for r, loaded in zip(batch, results, strict=True):
            if not loaded.created:
                self.replayed_ids.add(loaded.report_id)
            done(r, loaded.report_id)

    def _write_parallel(self, gen: YearGenerator, done: Callable[[SimReport, int], None]) -> None:
        ctx = mp.get_context("fork")  # the children start from this generator's very state
        queues = [ctx.Queue(maxsize=3) for _ in range(self.workers)]
        procs = [ctx.Process(target=self._produce, args=(gen, k, queues[k]), daemon=True,
                             name=f"tipline-simulate-{k}") for k in range(self.workers)]
        for p in procs:
            p.start()
        try:
            block = 0
            while True:
                item = queues[block % self.workers].get()
                if item is None:  # the owner of this block has none: every block is stored
                    break
                if item[0] == "error":
                    ref, reason, message, fld = item[1]
                    raise BulkIntakeError(ref, IntakeError(Reason(reason), message, field=fld))
                if item[0] == "crash":
                    raise RuntimeError(f"a simulator process failed: {item[1]}")
                self._store(item[1], item[2], done)
                block += 1
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join(timeout=30)

    def _produce(self, gen: YearGenerator, k: int, out: Any) -> None:
        """In a forked child: make and prepare blocks ``k``, ``k + workers``, ... and queue them.

        The child makes only its own reports (``YearGenerator.reports(owned=...)``); each
        report's details come from generators seeded by its sequence number, so a report is
        the same whichever process makes it.
        """
        batch, workers = self.batch, self.workers
        try:
            buf: list[SimReport] = []
            for r in gen.reports(owned=lambda seq: (seq // batch) % workers == k):
                buf.append(r)
                if len(buf) == self.batch:
                    self._hand_over(buf, out)
                    buf = []
            if buf:  # the year's last block, shorter than the others
                self._hand_over(buf, out)
            out.put(None)
        except BulkIntakeError as exc:
            out.put(("error", (exc.ref, exc.error.reason.value, exc.error.message, exc.error.field)))
        except Exception as exc:  # the parent raises it; a child has no one else to tell
            out.put(("crash", f"{type(exc).__name__}: {exc}"))

    def bulk_report(self, r: SimReport, now: datetime) -> BulkReport:
        """The simulated report as a protocol adapter would hand it to Intake."""
        acct = self.accounts[r.platform]
        key = f"{self.key_prefix}:{r.seq}" if self.key_prefix else None
        if r.public:
            assert r.form is not None and not r.files, "simulated public reports carry no files"
            model = validate_report_form(r.form, now).report
            if model is None:
                raise ValueError(f"simulated public report {r.seq} does not validate")
            # What the public form does: the same format walk as ISPWS, the same web document.
            return BulkReport(
                ref=f"simulated report {r.seq}", reporter_id=acct.reporter_id, parsed=checked_report(model),
                source="web", body=web_document({**r.form, "form_token": ""}, []), content_type="application/json",
                document_kind="web", idempotency_key=f"web-form:{key or secrets.token_urlsafe(16)}",
                receipt_hash=receipt_hash(new_receipt_code()))
        assert r.report is not None
        # The fast writer gives report_to_xml's bytes without reading them back through the
        # CyberTipline reader (a fifth of the cost); tests/test_xml_fast.py checks that the
        # checked writer accepts simulated reports and that both give the same bytes.
        return BulkReport(
            ref=f"simulated report {r.seq}", reporter_id=acct.reporter_id,
            parsed=Parsed(r.report, []), source="ispws", body=report_to_xml_fast(r.report), content_type=XML_TYPE,
            idempotency_key=key, files=[_bulk_file(f) for f in r.files])


    def _hand_over(self, buf: list[SimReport], out: Any) -> None:
        out.put(("batch", [_lite(x) for x in buf], self._pack(buf)))


#: Allocations between two young-generation collections during a load (CPython's default: 700).
GC_THRESHOLD = 50_000


@contextmanager
def _few_collections() -> Iterator[None]:
    """Run a load with the cyclic garbage collector mostly out of the way.

    A load allocates millions of small acyclic objects (models, rows, dicts) that live for one
    batch; at the default threshold the collector walks them, and every older object, again
    and again: 40 % of a serial load's CPU was collection (measured, benchmarks/README.md
    "loading"). Freezing what exists before the load keeps it out of every pass; a higher
    threshold makes the passes rare. Nothing is leaked: reference counting frees these
    objects, and cycles are still collected, only later. Forked producers inherit the setting.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _lite(r: SimReport) -> SimReport:
    """What ``done`` callbacks read of a report (truth, files' facts), cheap to send between processes.

    Built directly rather than with ``dataclasses.replace`` (a twentieth of a producer's CPU);
    a hash-only file's content has no bytes to drop and is sent as it is.
    """
    files = [SimFile(f.seq, f.item, f.variant, f.kind, f.content if f.content.data is None
                     else replace(f.content, data=None), f.file_name, {}) for f in r.files]
    return SimReport(r.seq, r.platform, r.public, None, None, files, r.truth)


def _bulk_file(f: SimFile) -> BulkFile:
    c = f.content
    hashes = None if c.data is not None else FileHashes(c.md5, c.sha1, c.sha256, c.size)
    return BulkFile(file_name=f.file_name, media_type=c.media_type, data=c.data, hashes=hashes, details=f.details)


# --- ground truth ------------------------------------------------------------------------

REPORT_TRUTH = ["sim_seq", "report_id", "platform", "public", "incident_type", "true_incident", "incidents_counted",
                "batched", "persons", "repeat_person", "true_country", "true_us_state", "location_visible",
                "child_in_imminent_danger", "escalated", "sextortion", "csamSolicitation", "minorToMinorInteraction",
                "spam", "sadisticOnlineExploitation", "generative_ai", "viral_item", "n_files", "proxy_ip"]
FILE_TRUTH = ["sim_seq", "report_id", "seq", "item", "variant", "kind", "viral", "md5", "sha256", "pdq"]


class TruthWriter:
    """The ground truth, kept apart from what the system sees: truth/reports.csv and truth/files.csv."""

    def __init__(self, out: Path, n_memes: int) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.n_memes = n_memes
        self._rf = open(out / "reports.csv", "w", newline="")  # noqa: SIM115 - closed in close()
        self._ff = open(out / "files.csv", "w", newline="")  # noqa: SIM115
        self._r = csv.DictWriter(self._rf, REPORT_TRUTH, extrasaction="ignore", restval="")
        self._f = csv.writer(self._ff)
        self._r.writeheader()
        self._f.writerow(FILE_TRUTH)

    def add(self, r: SimReport, report_id: int | None) -> None:
        self._r.writerow({**r.truth, "report_id": report_id if report_id is not None else ""})
        for f in r.files:
            self._f.writerow([r.seq, report_id if report_id is not None else "", f.seq, f.item, f.variant, f.kind,
                              f.item < self.n_memes, f.content.md5, f.content.sha256, f.content.pdq or ""])

    def close(self, summary: dict[str, Any]) -> None:
        self._rf.close()
        self._ff.close()
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
