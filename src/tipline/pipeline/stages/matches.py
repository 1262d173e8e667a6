"""Stage ``matches``: hash-bank hits and (near-)duplicates among all stored files.

For each file of the report it writes ``file_matches`` rows, replacing earlier ones:

* ``kind="bank"``: an enabled bank holds its MD5/SHA-1/SHA-256 exactly, or a PDQ within that
  bank's threshold (default 31);
* ``kind="duplicate"``: another stored file has the same SHA-256 (the same bytes), or a PDQ
  within 31 bits and another SHA-256. At most :data:`DUPLICATE_LIMIT` per file and hash kind,
  nearest and then earliest first, so a viral item seen in 10,000 reports does not write
  10,000² rows; every copy still links to the earliest copies, which keeps them all
  connected. A pair is stored once, under the file whose report was matched later; read both
  directions.

Version 2 lists a copy of the same bytes once, by SHA-256. Version 1 also listed a viral file's
next copies by MD5 and then by PDQ at distance 0 (up to three times the rows, which the links
stage read again). Every stored file has its bytes, so intake computed both hashes from them:
the same MD5 with another SHA-256 is a collision, other bytes, and no copy.

PDQ candidates come from process-wide indexes (tipline.pipeline.pdqindex) built from the
database once and kept current; every candidate is re-checked against the stored hash, so a
stale index entry can never produce a wrong match.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, and_, bindparam, delete, func, insert, or_, select, true, union_all
from sqlalchemy.dialects.postgresql import ARRAY as PG_ARRAY
from sqlalchemy.orm import Session

from tipline.console import queue_model
from tipline.kinds.hashes import CRYPTO_NAMES
from tipline.pipeline import media
from tipline.pipeline.core import Outcome, StageContext, first_in_transaction, insert_rows, stage, union_shape
from tipline.pipeline.media import DEFAULT_RADIUS
from tipline.store.tables import BankEntry, File, FileMatch, FileSignal, HashBank

DUPLICATE_LIMIT = 100
#: How often a worker looks for hashes stored by other processes, and how far back (commit lag).
REFRESH_SECONDS = 2.0
REFRESH_OVERLAP = timedelta(minutes=2)


def usable_pdq(pdq: bytes | None, quality: int | None) -> bool:
    """A PDQ worth matching: present, and not too featureless (unknown quality counts as usable)."""
    return pdq is not None and len(pdq) == 32 and (quality is None or quality >= media.MIN_MATCH_QUALITY)


def _instant(when: datetime | None) -> int:
    """An upload time as microseconds since the epoch (naive times are UTC, as stored)."""
    if when is None:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


class FileIndex:
    """All stored file PDQs in one :class:`PdqIndex`; int ids are positions in ``file_ids``.

    Each entry also holds its file's upload time, so that the nearest and earliest candidates
    (the duplicates the matches stage keeps) can be chosen from the index before the database
    is asked about them (:meth:`nearest`)."""

    def __init__(self) -> None:
        # numpy and the index are imported here: importing the stage (to list it) needs neither.
        import numpy as np

        from tipline.pipeline.pdqindex import PdqIndex

        self.index = PdqIndex()
        self.file_ids: list[str] = []
        self.present: dict[str, bytes] = {}
        self._uploaded = np.empty(0, np.int64)  # per entry: its file's upload time (µs)
        self._changed = np.empty(0, np.bool_)  # per entry: its file has another entry (a new hash)
        self._sha = np.empty(0, "S32")  # per entry: its file's SHA-256 (copies of the same bytes are skipped)
        self._entry_of: dict[str, int] = {}
        self._lock = threading.Lock()
        self._watermark: datetime | None = None
        self._last_refresh = 0.0

    def add(self, entries: Iterable[tuple[str, bytes, datetime | None, str]]) -> None:
        """Make (file id, PDQ, upload time, SHA-256 in hex) entries searchable; already-present
        identical ones are skipped."""
        import numpy as np

        with self._lock:
            new = [(fid, h, up, sha) for fid, h, up, sha in entries if self.present.get(fid) != h]
            if not new:
                return
            start = len(self.file_ids)
            changed = np.zeros(len(new), np.bool_)
            for n, (fid, h, _, _) in enumerate(new):
                if fid in self._entry_of:  # a second hash for a file: both entries are marked
                    changed[n] = True
                    earlier = self._entry_of[fid]
                    if earlier < start:
                        self._changed[earlier] = True
                    else:
                        changed[earlier - start] = True
                self._entry_of[fid] = start + n
                self.file_ids.append(fid)
                self.present[fid] = h
            self._uploaded = np.concatenate([self._uploaded, np.array([_instant(u) for _, _, u, _ in new], np.int64)])
            self._changed = np.concatenate([self._changed, changed])
            self._sha = np.concatenate([self._sha, np.array([bytes.fromhex(sha) for *_, sha in new], "S32")])
            self.index.add(np.arange(start, start + len(new)), [h for _, h, _, _ in new])

    def refresh(self, session: Session, *, force: bool = False) -> None:
        """Pick up hashes stored by other processes since the last look (rate-limited)."""
        now = time.monotonic()
        if self._watermark is not None and not force and now - self._last_refresh < REFRESH_SECONDS:
            return
        self._last_refresh = now
        started = datetime.now(UTC)
        q = (select(FileSignal.file_id, FileSignal.pdq, FileSignal.pdq_quality, File.uploaded_at, File.sha256)
             .join(File, File.id == FileSignal.file_id).where(FileSignal.pdq.is_not(None)))
        if self._watermark is not None:
            q = q.where(FileSignal.computed_at >= self._watermark - REFRESH_OVERLAP)
        self.add((fid, bytes(h), up, sha) for fid, h, qual, up, sha in session.execute(q)
                 if h is not None and usable_pdq(bytes(h), qual))
        self._watermark = started

    def near(self, pdq: bytes, radius: int = DEFAULT_RADIUS) -> list[str]:
        return self.near_many([pdq], radius)[0]

    def near_many(self, pdqs: list[bytes], radius: int = DEFAULT_RADIUS) -> list[list[str]]:
        """Candidate file ids within ``radius`` of each hash, in one search."""
        hits = self.index.search(pdqs, radius)
        out: list[list[str]] = [[] for _ in pdqs]
        for q, i in zip(hits.query.tolist(), hits.ids.tolist(), strict=True):
            out[q].append(self.file_ids[i])
        return out

    def nearest(self, pdqs: list[bytes], keep: int, skip: list[set[str]], shas: list[str],
                radius: int = DEFAULT_RADIUS) -> list[tuple[list[str], list[tuple[int, int]]] | None]:
        """Per hash, the candidates the matches stage would keep, chosen from the index alone:
        by (distance, upload time) the first ``keep`` not in ``skip`` and not a copy of the
        same bytes (the query file's SHA-256, ``shas``), and every candidate tied
        with the last of them (the stage breaks ties by file id); with their (distance, upload
        time) as the index has them, for the caller to check against the database. None where
        the index cannot tell (a candidate's file has a second entry: its hash changed), and
        the caller reads every candidate (``near_many``).

        A viral item's copies are thousands of candidates per hash; reading and re-checking all
        of them made the stage's cost grow with the store, for the hundred it keeps."""
        import numpy as np

        hits = self.index.search(pdqs, radius)
        bounds = np.searchsorted(hits.query, np.arange(len(pdqs) + 1))
        out: list[tuple[list[str], list[tuple[int, int]]] | None] = []
        for q in range(len(pdqs)):
            lo, hi = int(bounds[q]), int(bounds[q + 1])
            pos, dist = hits.ids[lo:hi], hits.distance[lo:hi]
            if self._changed[pos].any():
                out.append(None)
                continue
            keep_at = self._sha[pos] != bytes.fromhex(shas[q])
            pos, dist = pos[keep_at], dist[keep_at]
            up = self._uploaded[pos]
            order = np.lexsort((up, dist))
            chosen: list[str] = []
            keys: list[tuple[int, int]] = []
            edge: tuple[int, int] | None = None
            for n in order.tolist():
                key = (int(dist[n]), int(up[n]))
                if edge is not None and key != edge:
                    break
                fid = self.file_ids[int(pos[n])]
                if fid in skip[q]:
                    continue
                chosen.append(fid)
                keys.append(key)
                if len(chosen) == keep:
                    edge = key
            out.append((chosen, keys))
        return out


class BankIndex:
    """The PDQ entries of all banks in one :class:`PdqIndex` (ids = ``bank_entries.id``).

    Enabled flags and thresholds are read from the database at match time, so only new
    entries need adding; they are picked up by id above the highest id seen.
    """

    def __init__(self) -> None:
        from tipline.pipeline.pdqindex import PdqIndex

        self.index = PdqIndex()
        self._max_id = 0
        self._lock = threading.Lock()

    def refresh(self, session: Session) -> None:
        with self._lock:
            rows = session.execute(
                select(BankEntry.id, BankEntry.value)
                .where(BankEntry.hash_type == "pdq", BankEntry.id > self._max_id)
                .order_by(BankEntry.id)
            ).all()
            if rows:
                self.index.add([r[0] for r in rows], [bytes.fromhex(r[1]) for r in rows])
                self._max_id = int(rows[-1][0])


@dataclass(frozen=True)
class _Match:
    kind: str
    hash_type: str
    distance: int
    bank_entry_id: int | None = None
    other_file_id: str | None = None


def _bank_matches(session: Session, banks: BankIndex, f: File, sig: FileSignal | None,
                  limits: dict[int, int]) -> list[_Match]:
    """Hits in enabled banks; ``limits`` is {enabled bank id: PDQ threshold} (read once per report)."""
    out: list[_Match] = []
    if not limits:
        return out  # no enabled bank: nothing can match
    crypto = or_(*(and_(BankEntry.hash_type == t, BankEntry.value == getattr(f, t).lower())
                   for t in CRYPTO_NAMES))
    for entry_id, htype in session.execute(
        select(BankEntry.id, BankEntry.hash_type).join(HashBank, HashBank.id == BankEntry.bank_id)
        .where(HashBank.enabled.is_(True), crypto).order_by(BankEntry.id)
    ):
        out.append(_Match("bank", htype, 0, bank_entry_id=int(entry_id)))
    if sig is not None and usable_pdq(sig.pdq, sig.pdq_quality):
        assert sig.pdq is not None
        if limits:
            radius = max(limits.values())
            cand = banks.index.search([sig.pdq], radius).ids.tolist()
            if cand:
                for entry_id, bank_id, value in session.execute(
                    select(BankEntry.id, BankEntry.bank_id, BankEntry.value).where(BankEntry.id.in_(cand))
                ):
                    if bank_id not in limits:
                        continue
                    d = media.hamming(sig.pdq, bytes.fromhex(value))  # re-check: the DB is the truth
                    if d <= limits[bank_id]:
                        out.append(_Match("bank", "pdq", d, bank_entry_id=int(entry_id)))
    return sorted(out, key=lambda m: (m.distance, m.bank_entry_id or 0))


def _duplicate_matches(session: Session, f: File, sig: FileSignal | None, near: list[str]) -> list[_Match]:
    """Files with the same SHA-256, and PDQ ``near`` candidates (from the index) of other bytes,
    re-checked."""
    out: list[_Match] = []
    exact: set[str] = {f.id}
    for other in session.execute(
            select(File.id).where(File.sha256 == f.sha256, File.id != f.id)
            .order_by(File.uploaded_at, File.id).limit(DUPLICATE_LIMIT)).scalars().all():
        exact.add(other)
        out.append(_Match("duplicate", "sha256", 0, other_file_id=other))
    if sig is not None and usable_pdq(sig.pdq, sig.pdq_quality):
        assert sig.pdq is not None
        found: list[tuple[int, datetime, str]] = []
        for other, (pdq, uploaded, sha) in _stored_signals(session, {c for c in near if c not in exact}).items():
            if sha == f.sha256:
                continue  # the same bytes: listed by SHA-256 (or beyond the copies kept)
            d = media.hamming(sig.pdq, pdq)
            if d <= DEFAULT_RADIUS:
                found.append((d, uploaded, other))
        for d, _, other in sorted(found)[:DUPLICATE_LIMIT]:
            out.append(_Match("duplicate", "pdq", d, other_file_id=other))
    return out


def matches(ctx: StageContext, session: Session, report_id: int) -> None:
    """Hash-bank hits (exact crypto, PDQ within the bank's threshold) and (near-)duplicate files."""
    files = list(session.execute(select(File).where(File.report_id == report_id).order_by(File.seq)).scalars())
    if not files:
        return
    ids = [f.id for f in files]
    session.execute(delete(FileMatch).where(FileMatch.file_id.in_(ids)))
    sigs = {s.file_id: s for s in session.execute(select(FileSignal).where(FileSignal.file_id.in_(ids))).scalars()}
    banks: BankIndex = ctx.service("pdq-bank-index", BankIndex)
    # Built lazily from this session: the first refresh loads every stored hash (a second
    # connection could not read on SQLite while this transaction holds the write lock).
    file_index: FileIndex = ctx.service("pdq-file-index", FileIndex)
    banks.refresh(session)
    # No cross-report lock: the runner committed this report's hashes before this stage began
    # (core.phases), so of two workers hashing copies of one image at once, the one that looks
    # second finds the other's. Look once per transaction (forced): a near-duplicate another
    # process committed a moment ago is then a candidate.
    file_index.refresh(session, force=first_in_transaction(session, "pdq-file-index"))
    limits = {int(bid): int(t) for bid, t in session.execute(
        select(HashBank.id, HashBank.pdq_threshold).where(HashBank.enabled.is_(True)))}
    # One index search for all of the report's images (a search has a fixed cost of its own).
    queries = [(f.id, sig.pdq) for f in files
               if (sig := sigs.get(f.id)) is not None and sig.pdq is not None and usable_pdq(sig.pdq, sig.pdq_quality)]
    near = file_index.near_many([pdq for _, pdq in queries]) if queries else []
    candidates = {fid: cand for (fid, _), cand in zip(queries, near, strict=True)}
    now = datetime.now(UTC)
    rows = [{"file_id": f.id, "kind": m.kind, "hash_type": m.hash_type, "distance": m.distance,
             "bank_entry_id": m.bank_entry_id, "other_file_id": m.other_file_id, "created_at": now}
            for f in files for m in (_bank_matches(session, banks, f, sigs.get(f.id), limits)
                                     + _duplicate_matches(session, f, sigs.get(f.id), candidates.get(f.id, [])))]
    if rows:
        # One multi-row INSERT: ORM objects cost more than the matching itself.
        session.execute(insert(FileMatch), rows)
    # This report's hashes are committed (the hashes stage ran before us): make them findable
    # by later reports at once. If this transaction rolls back nothing is lost: the index only
    # proposes candidates and every one is re-checked against the database.
    of = {f.id: f for f in files}
    file_index.add((fid, bytes(s.pdq), of[fid].uploaded_at, of[fid].sha256) for fid, s in sigs.items()
                   if fid in of and s.pdq is not None and usable_pdq(s.pdq, s.pdq_quality))
    # The analyst queue's read model follows its inputs in this transaction (tipline.console.queue_model).
    queue_model.refresh(session, [report_id])


# --- the group form ---------------------------------------------------------------------------
#
# What ``matches`` run on each report of a group writes, with a bounded number of statements
# for the whole group: the group's files and signals, ONE near-duplicate index search for
# every image of the group (and one over the banks), the exact duplicates of every file by
# SHA-256 in one ranked statement (a window function keeps the earliest copies per hash, as
# the per-file LIMIT does), and one read of every PDQ candidate to re-check.

_IN = 2000  # values per IN (...): far below both backends' parameter limits


_UNION = 200  # selects per UNION ALL (SQLite allows 500 compound terms)


@lru_cache(maxsize=1)
def _copies_lateral() -> Any:
    """PostgreSQL: the :keep earliest files of each SHA-256 of the array :hashes in one
    statement (a LATERAL select per hash on ``ix_files_sha256_uploaded``, stopping at :keep);
    the UNION ALL form below is planned anew at each execution, 200 subqueries at a time."""
    keys = func.unnest(bindparam("hashes", type_=PG_ARRAY(File.sha256.type))).table_valued("h") \
        .render_derived(name="hashes")
    sub = (select(File.id.label("fid"), File.uploaded_at.label("up")).where(File.sha256 == keys.c.h)
           .order_by(File.uploaded_at, File.id).limit(bindparam("keep", type_=Integer)).lateral("c"))
    return select(sub.c.fid, keys.c.h, sub.c.up).select_from(keys).join(sub, true())


@lru_cache(maxsize=16)
def _copies_stmt(n: int) -> Any:
    """UNION ALL of ``n`` selects "the :keep earliest files with SHA-256 :h<i>", each walking
    ``ix_files_sha256_uploaded`` (which holds the upload time and id) and stopping at ``keep``.
    Built once per shape: building such a statement costs more than running it."""
    parts = []
    for i in range(n):
        sub = (select(File.id.label("fid"), File.sha256.label("h"), File.uploaded_at.label("up"))
               .where(File.sha256 == bindparam(f"h{i}"))
               .order_by(File.uploaded_at, File.id).limit(bindparam("keep", type_=Integer)).subquery(f"c{i}"))
        parts.append(select(sub.c.fid, sub.c.h, sub.c.up))
    return parts[0] if n == 1 else union_all(*parts)


def _ranked_copies(session: Session, values: list[str], keep: int) -> dict[str, list[str]]:
    """{SHA-256: the ``keep`` earliest files with it (by upload time, then id)}, one statement
    per 2,000 hashes (PostgreSQL) or 200 (SQLite): what the per-file LIMIT of the per-report
    form reads, for many at once.

    Per hash, not ranked by a window function over every copy: a viral file has tens of
    thousands of copies in a year, all of which the window read for every group holding one."""
    found: dict[str, list[tuple[Any, str]]] = {}
    if session.get_bind().dialect.name == "postgresql":
        for i in range(0, len(values), _IN):
            for fid, h, up in session.execute(_copies_lateral(), {"hashes": values[i:i + _IN], "keep": keep}):
                found.setdefault(h, []).append((up, fid))
        return {h: [fid for _, fid in sorted(lst)] for h, lst in found.items()}
    for i in range(0, len(values), _UNION):
        chunk = values[i:i + _UNION]
        n = union_shape(len(chunk), _UNION)
        chunk += [""] * (n - len(chunk))  # no file has an empty SHA-256 (see ``union_shape``)
        params: dict[str, Any] = {f"h{j}": h for j, h in enumerate(chunk)} | {"keep": keep}
        for fid, h, up in session.execute(_copies_stmt(n), params):
            found.setdefault(h, []).append((up, fid))
    # UNION ALL promises no order of a part's rows: sorted here, as each part chose them.
    return {h: [fid for _, fid in sorted(lst)] for h, lst in found.items()}


def _stored_signals(session: Session, file_ids: set[str]) -> dict[str, tuple[bytes, datetime, str]]:
    """{file id: (PDQ, upload time, SHA-256)} of those with a usable stored PDQ."""
    wanted = sorted(file_ids)
    stored: dict[str, tuple[bytes, datetime, str]] = {}
    for i in range(0, len(wanted), _IN):
        for other, pdq, quality, uploaded, sha in session.execute(
                select(FileSignal.file_id, FileSignal.pdq, FileSignal.pdq_quality, File.uploaded_at, File.sha256)
                .join(File, File.id == FileSignal.file_id).where(FileSignal.file_id.in_(wanted[i:i + _IN]))):
            if pdq is not None and usable_pdq(bytes(pdq), quality):
                stored[other] = (bytes(pdq), uploaded, sha)
    return stored


def matches_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The matches stage over a group (see the notes above ``_ranked_copies``)."""
    ids = list(report_ids)
    files: list[File] = []
    for i in range(0, len(ids), 500):
        files += list(session.execute(select(File).where(File.report_id.in_(ids[i:i + 500]))
                                      .order_by(File.report_id, File.seq)).scalars())
    out = dict.fromkeys(ids, Outcome.DONE)
    if not files:
        return out
    fids = [f.id for f in files]
    sigs: dict[str, FileSignal] = {}
    for i in range(0, len(fids), _IN):
        chunk = fids[i:i + _IN]
        session.execute(delete(FileMatch).where(FileMatch.file_id.in_(chunk)))
        sigs.update({s.file_id: s for s in session.execute(
            select(FileSignal).where(FileSignal.file_id.in_(chunk))).scalars()})
    banks: BankIndex = ctx.service("pdq-bank-index", BankIndex)
    file_index: FileIndex = ctx.service("pdq-file-index", FileIndex)
    banks.refresh(session)
    file_index.refresh(session, force=first_in_transaction(session, "pdq-file-index"))  # as in ``matches``
    limits = {int(bid): int(t) for bid, t in session.execute(
        select(HashBank.id, HashBank.pdq_threshold).where(HashBank.enabled.is_(True)))}
    usable = {fid: bytes(s.pdq) for fid, s in sigs.items() if s.pdq is not None and usable_pdq(s.pdq, s.pdq_quality)}
    # The group's own images are candidates for each other, as on a re-run of any one of them.
    upload_of = {f.id: f.uploaded_at for f in files}
    sha_of = {f.id: f.sha256 for f in files}
    file_index.add((fid, pdq, upload_of[fid], sha_of[fid]) for fid, pdq in usable.items())
    queries = [f.id for f in files if f.id in usable]

    # Banks: exact crypto hits in one statement, PDQ hits from one index search.
    bank_hits: dict[str, list[_Match]] = {}
    if limits:
        wanted = {t: sorted({getattr(f, t).lower() for f in files}) for t in CRYPTO_NAMES}
        by_value: dict[tuple[str, str], list[int]] = {}
        for t, values in wanted.items():
            for i in range(0, len(values), _IN):
                for entry_id, value in session.execute(
                        select(BankEntry.id, BankEntry.value).join(HashBank, HashBank.id == BankEntry.bank_id)
                        .where(HashBank.enabled.is_(True), BankEntry.hash_type == t,
                               BankEntry.value.in_(values[i:i + _IN]))):
                    by_value.setdefault((t, value), []).append(int(entry_id))
        for f in files:
            for t in CRYPTO_NAMES:
                for entry_id in by_value.get((t, getattr(f, t).lower()), []):
                    bank_hits.setdefault(f.id, []).append(_Match("bank", t, 0, bank_entry_id=entry_id))
        if queries:
            hits = banks.index.search([usable[q] for q in queries], max(limits.values()))
            per_query = hits.per_query(len(queries))
            cand = sorted({i for lst in per_query for i, _ in lst})
            entries: dict[int, tuple[int, str]] = {}
            for i in range(0, len(cand), _IN):
                for entry_id, bank_id, value in session.execute(
                        select(BankEntry.id, BankEntry.bank_id, BankEntry.value)
                        .where(BankEntry.id.in_(cand[i:i + _IN]))):
                    entries[int(entry_id)] = (int(bank_id), value)
            for q, lst in zip(queries, per_query, strict=True):
                for entry_id, _ in lst:
                    if entry_id not in entries or entries[entry_id][0] not in limits:
                        continue
                    bank_id, value = entries[entry_id]
                    d = media.hamming(usable[q], bytes.fromhex(value))  # re-check: the DB is the truth
                    if d <= limits[bank_id]:
                        bank_hits.setdefault(q, []).append(_Match("bank", "pdq", d, bank_entry_id=entry_id))

    # Duplicates: the earliest copies by SHA-256 (one more than kept: a file is its own copy).
    by_sha = _ranked_copies(session, sorted({f.sha256 for f in files}), DUPLICATE_LIMIT + 1)
    exact_of: dict[str, set[str]] = {}
    dup_hits: dict[str, list[_Match]] = {}
    for f in files:
        found = [c for c in by_sha.get(f.sha256, []) if c != f.id][:DUPLICATE_LIMIT]
        for other in found:
            dup_hits.setdefault(f.id, []).append(_Match("duplicate", "sha256", 0, other_file_id=other))
        exact_of[f.id] = {f.id, *found}
    # The PDQ candidates: those the index shows are kept (nearest, then earliest; checked
    # against the database below), else every candidate of the hash, as the per-report stage.
    picks = (file_index.nearest([usable[q] for q in queries], DUPLICATE_LIMIT, [exact_of[q] for q in queries],
                                [sha_of[q] for q in queries]) if queries else [])
    pending: dict[str, list[str]] = {}
    expected: dict[str, dict[str, tuple[int, int]]] = {}
    for q, picked in zip(queries, picks, strict=True):
        if picked is not None:
            pending[q] = picked[0]
            expected[q] = dict(zip(picked[0], picked[1], strict=True))
    wide = [q for q in queries if q not in pending]
    for q, found_near in zip(wide, file_index.near_many([usable[q] for q in wide]) if wide else [], strict=True):
        pending[q] = [c for c in found_near if c not in exact_of[q]]
    stored = _stored_signals(session, {c for lst in pending.values() for c in lst})
    for q, want in expected.items():
        # The database is the truth: a chosen candidate whose hash or time differs from the
        # index's (or is gone) means the choice may be wrong: read every candidate of it.
        if any(c not in stored or stored[c][2] == sha_of[q]
               or (media.hamming(usable[q], stored[c][0]), _instant(stored[c][1])) != key
               for c, key in want.items()):
            more = [c for c in file_index.near_many([usable[q]])[0] if c not in exact_of[q]]
            stored.update(_stored_signals(session, set(more) - stored.keys()))
            pending[q] = more
    for q in queries:
        near_found: list[tuple[int, datetime, str]] = []
        for other in pending[q]:
            if other not in stored or stored[other][2] == sha_of[q]:
                continue  # gone, or the same bytes (listed by SHA-256, or beyond the kept copies)
            pdq, uploaded, _ = stored[other]
            d = media.hamming(usable[q], pdq)
            if d <= DEFAULT_RADIUS:
                near_found.append((d, uploaded, other))
        for d, _, other in sorted(near_found)[:DUPLICATE_LIMIT]:
            dup_hits.setdefault(q, []).append(_Match("duplicate", "pdq", d, other_file_id=other))
    now = datetime.now(UTC)
    rows = [{"file_id": f.id, "kind": m.kind, "hash_type": m.hash_type, "distance": m.distance,
             "bank_entry_id": m.bank_entry_id, "other_file_id": m.other_file_id, "created_at": now}
            for f in files
            for m in (sorted(bank_hits.get(f.id, []), key=lambda m: (m.distance, m.bank_entry_id or 0))
                      + dup_hits.get(f.id, []))]
    insert_rows(session, FileMatch, rows)
    # The analyst queue's read model follows its inputs in this transaction (tipline.console.queue_model).
    queue_model.refresh(session, ids)
    return out


# Registered here, below its group form.
stage("matches", version="2", after=("hashes",), group=matches_group, reads_others=True)(matches)
