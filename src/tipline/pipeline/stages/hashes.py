"""Stage ``hashes``: check the cryptographic hashes and compute the perceptual signal of each file.

MD5, SHA-1 and SHA-256 were computed while the upload streamed in; here they are only
checked. Images get PDQ + quality (decoded from memory), videos vPDQ frame hashes (through
an in-memory file; see tipline.pipeline.media), anything else ``media_kind = "other"``.
Files whose bytes are not held take the PDQ the platform supplied in fileDetails.

Two forms, one computation: ``hashes`` (one report) and ``hashes_group`` (a group of
reports, a fixed number of statements however many reports and files: one query for the
files, one streamed query for the bytes, two deletes, two or three multi-row inserts). Both build
each file's rows with ``signal_from_media``, so they write the same rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session

from tipline.kinds.hashes import CRYPTO_NAMES, HASH_TYPES
from tipline.pipeline import media
from tipline.pipeline.core import Outcome, StageContext, stage
from tipline.store.tables import Blob, File, FileSignal
from tipline.store.tables_hashing import FileSignalSource

_HEX = re.compile(r"^[0-9a-f]+$")
#: Rows of blob bytes fetched at a time by the group form: the bytes of a group's files are
#: streamed, never all held at once (hundreds of reports x 512 KiB inline ciphertexts).
_BLOB_BATCH = 8
#: Ids per IN list. Far above a group's usual size; it only keeps one statement under
#: SQLite's bound-parameter limit when a group holds tens of thousands of files.
_IN_CHUNK = 5000
_SIGNALS = cast(Table, FileSignal.__table__)
_SOURCES = cast(Table, FileSignalSource.__table__)


def _check_crypto(f: Any) -> None:
    for name in CRYPTO_NAMES:
        value = getattr(f, name)
        if not value or len(value) != HASH_TYPES[name].hex_length or not _HEX.match(value):
            raise ValueError(f"file {f.id}: {name} missing or malformed ({value!r}); intake computes it at upload")


def _kind_from_media_type(media_type: str | None, default: str) -> str:
    mt = (media_type or "").lower()
    return "image" if mt.startswith("image/") else "video" if mt.startswith("video/") else default


@dataclass(frozen=True)
class MediaResult:
    """What the held bytes of one content (one sha256) gave: the same for every file holding it."""

    kind: str
    fmt: str | None
    pdq: bytes | None = None
    quality: int | None = None
    width: int | None = None
    height: int | None = None
    frames: list[dict[str, Any]] | None = None
    error: str | None = None


def media_of(ctx: StageContext, stored_name: str | None, data: bytes | None, size: int) -> MediaResult:
    """Decrypt, sniff and hash one held content (``size``: its length, to refuse huge images undecoded)."""
    head, chunks = media.iter_with_head(ctx.rt.blobs.open_held(stored_name, data))
    kind, fmt = media.sniff(head)
    if kind == "image":
        if size > media.IMAGE_MAX_BYTES:
            return MediaResult(kind, fmt, error=f"image larger than {media.IMAGE_MAX_BYTES} bytes: not decoded")
        img = media.pdq_from_image_bytes(b"".join(chunks))
        return MediaResult(kind, fmt, img.pdq, img.quality, img.width, img.height, error=img.error)
    if kind == "video":
        vid = media.vpdq_from_chunks(chunks)
        return MediaResult(kind, fmt, vid.pdq, vid.quality, frames=vid.frames or None, error=vid.error)
    return MediaResult(kind, fmt)


def signal_from_media(f: Any, held: MediaResult | None, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``file_signals`` and ``file_signal_sources`` rows of one file, as column dicts.

    ``f`` is a File (or a row with its columns); ``held`` what its bytes gave, None when the
    bytes are not held.
    """
    supplied = media.platform_pdq(f.details)
    sig: dict[str, Any] = {"file_id": f.id, "media_kind": "other", "pdq": None, "pdq_quality": None,
                           "width": None, "height": None, "video_frames": None, "computed_at": now}
    src: dict[str, Any] = {"file_id": f.id, "source": "none", "media_format": None, "detail": None,
                           "computed_at": now}
    if held is not None:
        sig["media_kind"], src["media_format"] = held.kind, held.fmt
        if held.kind == "image":
            sig["width"], sig["height"] = held.width, held.height
            if held.pdq is not None:
                sig["pdq"], sig["pdq_quality"] = held.pdq, held.quality
                src["source"] = "computed"
        elif held.kind == "video" and held.frames:
            sig["video_frames"] = held.frames
            sig["pdq"], sig["pdq_quality"] = held.pdq, held.quality
            src["source"] = "computed"
        src["detail"] = held.error
        if src["source"] == "none" and supplied is not None:
            # Held but not hashable here (undecodable, too large, no vpdq): the platform's PDQ is
            # the best signal there is, and it is marked as the platform's.
            sig["pdq"], sig["pdq_quality"] = supplied
            src["source"] = "platform"
    elif supplied is not None:
        sig["media_kind"] = _kind_from_media_type(f.media_type, "image")  # PDQ is an image hash
        sig["pdq"], sig["pdq_quality"] = supplied
        src["source"] = "platform"
        src["detail"] = "bytes not held; PDQ supplied by the platform in fileDetails"
    else:
        sig["media_kind"] = _kind_from_media_type(f.media_type, "other")
        src["detail"] = "bytes not held and no PDQ in fileDetails"
    return sig, src


def signal_for_file(ctx: StageContext, session: Session, f: File, now: datetime) -> tuple[FileSignal, FileSignalSource]:
    """The FileSignal (and its provenance) of one file, computed from its bytes or its fileDetails."""
    blob = session.get(Blob, f.sha256)
    held = (media_of(ctx, blob.stored_name, blob.data, f.size)
            if blob is not None and (blob.stored_name is not None or blob.data is not None) else None)
    sig, src = signal_from_media(f, held, now)
    return FileSignal(**_without_null_json(sig)), FileSignalSource(**src)


def _without_null_json(sig: dict[str, Any]) -> dict[str, Any]:
    # A JSON column given Python None stores JSON 'null', not SQL NULL; files without frames
    # have always had SQL NULL there, so the key is left out instead.
    return sig if sig["video_frames"] is not None else {k: v for k, v in sig.items() if k != "video_frames"}


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i:i + _IN_CHUNK]


def hashes_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """``hashes`` over a group of reports in a fixed number of statements.

    Content held by several files of the group (the same image in many reports, as in viral
    sharing) is decrypted and hashed once. Any malformed file raises, as the per-report stage
    does, so that the runner runs the group's reports one by one and the bad one fails alone.
    """
    files: list[Any] = []
    for ids in _chunks(sorted(set(report_ids))):
        files.extend(session.execute(
            select(File.id, File.report_id, File.seq, File.size, File.md5, File.sha1, File.sha256,
                   File.media_type, File.details)
            .where(File.report_id.in_(ids)).order_by(File.report_id, File.seq)
        ).all())
    for f in files:
        _check_crypto(f)
    file_ids = [f.id for f in files]
    for ids in _chunks(file_ids):
        session.execute(delete(FileSignal).where(FileSignal.file_id.in_(ids)))
        session.execute(delete(FileSignalSource).where(FileSignalSource.file_id.in_(ids)))
    size_of = {f.sha256: f.size for f in files}
    held: dict[str, MediaResult] = {}
    for shas in _chunks(sorted(size_of)):
        # Streamed a few rows at a time: the inline ciphertexts of a group may not fit in RAM.
        blob_rows = session.execute(
            select(Blob.sha256, Blob.stored_name, Blob.data)
            .where(Blob.sha256.in_(shas), (Blob.stored_name.is_not(None)) | (Blob.data.is_not(None)))
            .execution_options(yield_per=_BLOB_BATCH)
        )
        for sha, stored_name, data in blob_rows:
            held[sha] = media_of(ctx, stored_name, data, size_of[sha])
    now = datetime.now(UTC)
    sigs: list[dict[str, Any]] = []
    srcs: list[dict[str, Any]] = []
    for f in files:
        sig, src = signal_from_media(f, held.get(f.sha256), now)
        sigs.append(sig)
        srcs.append(src)
    # Core executemany on the tables (the ORM's bulk insert would split the rows into one
    # statement per set of non-null columns). Rows with and without frames go in two
    # statements, so that "no frames" stays SQL NULL (see _without_null_json).
    with_frames = [sig for sig in sigs if sig["video_frames"] is not None]
    without = [_without_null_json(sig) for sig in sigs if sig["video_frames"] is None]
    for rows in (with_frames, without):
        if rows:
            session.execute(insert(_SIGNALS), rows)
    if srcs:
        session.execute(insert(_SOURCES), srcs)
    return {rid: Outcome.DONE for rid in report_ids}


@stage("hashes", version="1", group=hashes_group)
def hashes(ctx: StageContext, session: Session, report_id: int) -> None:
    """Check MD5/SHA-1/SHA-256 of every file; PDQ for images, vPDQ for videos; replace earlier rows."""
    files = list(session.execute(select(File).where(File.report_id == report_id).order_by(File.seq)).scalars())
    if not files:
        return
    ids = [f.id for f in files]
    session.execute(delete(FileSignal).where(FileSignal.file_id.in_(ids)))
    session.execute(delete(FileSignalSource).where(FileSignalSource.file_id.in_(ids)))
    now = datetime.now(UTC)
    for f in files:
        _check_crypto(f)
        sig, src = signal_for_file(ctx, session, f, now)
        session.add(sig)
        session.add(src)
    session.flush()
