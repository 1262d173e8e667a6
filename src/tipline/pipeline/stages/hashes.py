"""Stage ``hashes``: check the cryptographic hashes and compute the perceptual signal of each file.

MD5, SHA-1 and SHA-256 were computed while the upload streamed in; here they are only
checked. Images get PDQ + quality (decoded from memory), videos vPDQ frame hashes (through
an in-memory file; see tipline.pipeline.media), anything else ``media_kind = "other"``.
Files whose bytes are not held take the PDQ the platform supplied in fileDetails.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tipline.kinds.hashes import CRYPTO_NAMES, HASH_TYPES
from tipline.pipeline import media
from tipline.pipeline.core import StageContext, stage
from tipline.store.tables import Blob, File, FileSignal
from tipline.store.tables_hashing import FileSignalSource

_HEX = re.compile(r"^[0-9a-f]+$")


def _check_crypto(f: File) -> None:
    for name in CRYPTO_NAMES:
        value = getattr(f, name)
        if not value or len(value) != HASH_TYPES[name].hex_length or not _HEX.match(value):
            raise ValueError(f"file {f.id}: {name} missing or malformed ({value!r}); intake computes it at upload")


def _kind_from_media_type(media_type: str | None, default: str) -> str:
    mt = (media_type or "").lower()
    return "image" if mt.startswith("image/") else "video" if mt.startswith("video/") else default


def signal_for_file(ctx: StageContext, session: Session, f: File, now: datetime) -> tuple[FileSignal, FileSignalSource]:
    """The FileSignal (and its provenance) of one file, computed from its bytes or its fileDetails."""
    blob = session.get(Blob, f.sha256)
    supplied = media.platform_pdq(f.details)
    sig = FileSignal(file_id=f.id, media_kind="other", computed_at=now)
    src = FileSignalSource(file_id=f.id, source="none", computed_at=now)
    detail: str | None = None
    if blob is not None and (blob.stored_name is not None or blob.data is not None):
        head, chunks = media.iter_with_head(ctx.rt.blobs.open_held(blob.stored_name, blob.data))
        kind, fmt = media.sniff(head)
        sig.media_kind, src.media_format = kind, fmt
        if kind == "image":
            if f.size > media.IMAGE_MAX_BYTES:
                detail = f"image larger than {media.IMAGE_MAX_BYTES} bytes: not decoded"
            else:
                img = media.pdq_from_image_bytes(b"".join(chunks))
                sig.width, sig.height = img.width, img.height
                if img.pdq is not None:
                    sig.pdq, sig.pdq_quality = img.pdq, img.quality
                    src.source = "computed"
                detail = img.error
        elif kind == "video":
            vid = media.vpdq_from_chunks(chunks)
            if vid.frames:
                sig.video_frames = vid.frames
                sig.pdq, sig.pdq_quality = vid.pdq, vid.quality
                src.source = "computed"
            detail = vid.error
        if src.source == "none" and supplied is not None:
            # Held but not hashable here (undecodable, too large, no vpdq): the platform's PDQ is
            # the best signal there is, and it is marked as the platform's.
            sig.pdq, sig.pdq_quality = supplied
            src.source = "platform"
    elif supplied is not None:
        sig.media_kind = _kind_from_media_type(f.media_type, "image")  # PDQ is an image hash
        sig.pdq, sig.pdq_quality = supplied
        src.source = "platform"
        detail = "bytes not held; PDQ supplied by the platform in fileDetails"
    else:
        sig.media_kind = _kind_from_media_type(f.media_type, "other")
        detail = "bytes not held and no PDQ in fileDetails"
    src.detail = detail
    return sig, src


@stage("hashes", version="1")
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
