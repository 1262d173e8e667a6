"""Decode and hash media held in the encrypted blob store, without plaintext ever touching disk.

* The kind of a file (image / video / other) is decided by its magic bytes, never by its
  name or the media type the platform claimed.
* Images are decoded with Pillow from memory and hashed with PDQ (pdqhash, Meta's C++ code).
* Videos are hashed with vPDQ when the optional ``vpdq`` extension is importable. vPDQ (libav)
  only reads from a path, so the plaintext is written into an anonymous in-memory file
  (``memfd_create``) and passed as ``/proc/self/fd/N``: it lives in RAM only, has no name in
  any file system and disappears when closed. Where ``memfd_create`` does not exist (not
  Linux) videos are not frame-hashed at all rather than written to a temporary file.

PDQ hashes are handled as 32 bytes in the byte order of Meta's hex form (``Hash256``
prints word 15 first), i.e. ``bytes.fromhex(hex)``; this is what HMA/ThreatExchange
exchange and what faiss binary indexes take.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where it is used: the stage registry imports this module, and listing
# the stages (`tipline pipeline stages`, `report show`) must not pay for numpy.

#: Largest PDQ Hamming distance that counts as a near duplicate (Meta's recommended 31).
DEFAULT_RADIUS = 31
#: PDQ hashes with quality below this are "too featureless to be useful" (Meta's PDQ notes):
#: flat or nearly flat images all hash alike, so they are stored but never matched.
MIN_MATCH_QUALITY = 50
#: Largest video decrypted into RAM for vPDQ; larger ones are recorded as video, unhashed.
VIDEO_MAX_BYTES = 1024**3
#: Largest image decoded (bytes of the encoded file; Pillow's own pixel-count guard applies too).
IMAGE_MAX_BYTES = 256 * 1024**2
#: vPDQ samples one frame per this many seconds.
VIDEO_SECONDS_PER_HASH = 1.0

PDQ_HEX = re.compile(r"^[0-9a-f]{64}$")
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def sniff(head: bytes) -> tuple[str, str | None]:
    """``(media_kind, format)`` from the first bytes of a file: image, video or other."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif"
    if head.startswith(b"BM") and len(head) >= 14:
        return "image", "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc"):
            return "image", "heif"
        if brand in (b"avif", b"avis"):
            return "image", "avif"
        return "video", "iso-bmff"  # mp4, mov, m4v, 3gp ...
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "matroska"  # mkv, webm
    if head.startswith(b"FLV"):
        return "video", "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video", "asf"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video", "mpeg-ts"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "video", "mpeg-ps"
    return "other", None


def pdq_bits_to_bytes(vector: np.ndarray) -> bytes:
    """pdqhash's 256-element bit vector (most significant first) as 32 bytes."""
    import numpy as np

    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()


def pdq_hex(value: bytes) -> str:
    return value.hex()


def parse_pdq_hex(text: str) -> bytes | None:
    """A 64-hex-digit PDQ hash as 32 bytes; None if malformed."""
    t = text.strip().lower()
    return bytes.fromhex(t) if PDQ_HEX.match(t) else None


def hamming(a: bytes, b: bytes) -> int:
    """Hamming distance of two equal-length byte strings."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def image_to_rgb_array(img: Any) -> np.ndarray:
    """A Pillow image as a contiguous HxWx3 uint8 array (palette, alpha, 16-bit, CMYK handled)."""
    import numpy as np

    # Always convert, even an RGB image (convert then copies it): measured in the hashes stage
    # (benchmarks/pdq/bench_hashing.py), pdqhash.compute on the array of the converted copy took
    # 25 ms CPU per 1024x768 image against 32 ms on the array of the decoded image itself
    # (same bytes, same flags and alignment; in a tight loop both take the same time), so the
    # copy costs ~1 ms and saves ~7. The cause is where the decoded image's memory sits when
    # pdqhash's float temporaries are allocated; raw pdqhash loops (convert + asarray) have
    # always had the fast layout.
    img = img.convert("RGB")
    # np.asarray(img) (no dtype argument) takes Pillow's fast __array_interface__ path.
    arr = np.asarray(img)
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def pdq_from_array(rgb: np.ndarray) -> tuple[bytes, int]:
    """PDQ hash (32 bytes) and quality (0..100) of an RGB array."""
    import pdqhash

    vector, quality = pdqhash.compute(rgb)
    return pdq_bits_to_bytes(vector), int(quality)


@dataclass
class ImageSignal:
    pdq: bytes | None
    quality: int | None
    width: int | None
    height: int | None
    error: str | None = None


def pdq_from_image_bytes(data: bytes) -> ImageSignal:
    """Decode an encoded image from memory and PDQ-hash it (first frame of animations)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            rgb = image_to_rgb_array(img)
    except Exception as exc:  # truncated, unsupported (HEIF without plugin), decompression bomb
        # Pillow names the in-memory file by its address ("<_io.BytesIO object at 0x7f...>"):
        # dropped, so that the stored detail is the same on every run of the stage.
        text = _OBJECT_REPR.sub("image data", str(exc))
        return ImageSignal(None, None, None, None, error=f"decode failed: {type(exc).__name__}: {text}"[:500])
    value, quality = pdq_from_array(rgb)
    return ImageSignal(value, quality, width, height)


@dataclass
class VideoSignal:
    frames: list[dict[str, Any]] = field(default_factory=list)
    pdq: bytes | None = None
    quality: int | None = None
    error: str | None = None


def frame_decoder_available() -> bool:
    """PyAV (the 'video' extra) is importable: a video's representative frame can be decoded
    for its picture (tipline.web.thumbs)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def vpdq_available() -> bool:
    try:
        import vpdq  # noqa: F401
    except ImportError:
        return False
    return hasattr(os, "memfd_create")


def vpdq_from_chunks(chunks: Iterable[bytes]) -> VideoSignal:
    """vPDQ frame hashes of a video given as plaintext chunks, via an in-memory file."""
    if not hasattr(os, "memfd_create"):
        return VideoSignal(error="video hashing needs memfd_create (Linux); not written to disk instead")
    try:
        import vpdq
    except ImportError:
        return VideoSignal(error="vpdq not installed (the 'video' extra)")
    fd = os.memfd_create("tipline-video", os.MFD_CLOEXEC)
    try:
        total = 0
        for chunk in chunks:
            total += len(chunk)
            if total > VIDEO_MAX_BYTES:
                return VideoSignal(error=f"video larger than {VIDEO_MAX_BYTES} bytes: not hashed in memory")
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        try:
            features = vpdq.computeHash(f"/proc/self/fd/{fd}", seconds_per_hash=VIDEO_SECONDS_PER_HASH)
        except Exception as exc:
            return VideoSignal(error=f"vpdq failed: {type(exc).__name__}: {exc}"[:500])
    finally:
        os.close(fd)
    out = VideoSignal()
    for f in features:
        out.frames.append({"frame": int(f.frame_number), "ts": float(f.timestamp), "pdq": str(f.hex),
                           "quality": int(f.quality)})
    if not out.frames:
        out.error = "no decodable frames"
        return out
    # The first frame good enough to match on, else the best one there is.
    good = [f for f in out.frames if f["quality"] >= MIN_MATCH_QUALITY]
    first = good[0] if good else max(out.frames, key=lambda f: f["quality"])
    out.pdq, out.quality = bytes.fromhex(first["pdq"]), first["quality"]
    return out


def platform_pdq(details: dict[str, Any] | None) -> tuple[bytes, int | None] | None:
    """The PDQ hash (and quality) a platform supplied in a file's fileDetails, if any.

    ``details`` entries of ``type == "HASH"`` with a nameValuePair named ``PDQ``
    (case-insensitive, 64 hex digits) and optionally ``PDQ_QUALITY``.
    """
    if not details:
        return None
    for entry in details.get("details") or []:
        if str(entry.get("type") or "").upper() != "HASH":
            continue
        pairs = {str(p.get("name", "")).strip().upper(): str(p.get("value", "")) for p in
                 entry.get("nameValuePair") or []}
        value = parse_pdq_hex(pairs.get("PDQ", ""))
        if value is None:
            continue
        quality: int | None = None
        raw_q = pairs.get("PDQ_QUALITY", "").strip()
        if raw_q.isdigit() and 0 <= int(raw_q) <= 100:
            quality = int(raw_q)
        return value, quality
    return None


def iter_with_head(chunks: Iterator[bytes], need: int = 512) -> tuple[bytes, Iterator[bytes]]:
    """Read at least ``need`` bytes for sniffing; return them and an iterator over everything."""
    head = b""
    taken: list[bytes] = []
    for chunk in chunks:
        taken.append(chunk)
        head += chunk
        if len(head) >= need:
            break

    def rest() -> Iterator[bytes]:
        yield from taken
        yield from chunks

    return head, rest()
