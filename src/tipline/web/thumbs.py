"""Pictures of report files, made on the server: a blurred greyscale thumbnail by default,
and a size-limited rendering once a person unblurs one file (an audited action).

The analyst console and the law-enforcement inbox both use this one module. Neither picture
is ever the original bytes: both are re-encoded JPEGs, so full-resolution content (and the
metadata it carries) never reaches a page.

A video gets a representative frame: one frame decoded with PyAV (the ``video`` extra), the
most detailed of a few sampled near the start (a fade from black says nothing), downscaled
to :data:`CLEAR_SIDE` and kept encrypted in the blob store under a name derived from the
video's SHA-256, so the video is decoded once, not on every page view. From then on it is
blurred and greyed like any image. Without PyAV a video has no picture (:class:`NoPicture`)
and the page says why.

Decoding is bounded: Pillow's decompression-bomb limit applies, images larger than
:data:`MAX_INPUT_BYTES` and videos larger than ``media.VIDEO_MAX_BYTES`` are not read.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

from PIL import Image, ImageFilter, ImageOps, ImageStat

from tipline.pipeline.media import VIDEO_MAX_BYTES, sniff

if TYPE_CHECKING:
    from tipline.store.blobs import BlobStore

#: Longest side of the blurred thumbnail, in pixels.
THUMB_SIDE = 240
#: Longest side of the unblurred rendering: enough to judge, never the original resolution.
CLEAR_SIDE = 800
#: Images larger than this are not decoded for a picture (the page says so).
MAX_INPUT_BYTES = 64 * 1024 * 1024
MEDIA_TYPE = "image/jpeg"
#: How many frames are sampled for the representative one, and from how many decoded.
FRAME_CANDIDATES = 6
FRAMES_DECODED = 240
#: Part of the name of a cached frame: a new way of choosing frames gets a new version.
_FRAME_KEY = b"tipline.video-frame.v1\x00"


class NoPicture(Exception):
    """The bytes are no decodable image or video (or too large to decode here)."""


def _read(chunks: bytes | Iterable[bytes], limit: int) -> bytes:
    if isinstance(chunks, bytes | bytearray):
        if len(chunks) > limit:
            raise NoPicture(f"larger than {limit // (1024 * 1024)} MiB: not decoded for a picture")
        return bytes(chunks)
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > limit:
            raise NoPicture(f"larger than {limit // (1024 * 1024)} MiB: not decoded for a picture")
    return bytes(out)


def _open(data: bytes, side: int) -> Image.Image:
    try:
        raw = Image.open(io.BytesIO(data))
        raw.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a reduced scale, cheaply
        img = ImageOps.exif_transpose(raw)
        img.thumbnail((side, side))
        return img
    except Exception as exc:  # truncated, unsupported, decompression bomb
        raise NoPicture(f"not a decodable image ({type(exc).__name__})") from exc


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def representative_frame(data: bytes, side: int = CLEAR_SIDE) -> Image.Image:
    """One frame of a video, at most ``side`` pixels: of a few frames sampled from the first
    :data:`FRAMES_DECODED`, the one with the most contrast (not a black or flat frame)."""
    try:
        import av
    except ImportError:
        raise NoPicture("this installation has no video decoder (PyAV, the 'video' extra)") from None
    best: tuple[float, Image.Image] | None = None
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise NoPicture("no video stream")
            stream = container.streams.video[0]
            # Every frame up to the first FRAMES_DECODED, or the stream's own length if shorter.
            total = min(stream.frames or FRAMES_DECODED, FRAMES_DECODED)
            step = max(1, total // FRAME_CANDIDATES)
            for i, frame in enumerate(container.decode(stream)):
                if i >= FRAMES_DECODED:
                    break
                if i % step:
                    continue
                img = frame.to_image()
                img.thumbnail((side, side))
                contrast = float(ImageStat.Stat(img.convert("L")).stddev[0])
                if best is None or contrast > best[0]:
                    best = (contrast, img)
    except NoPicture:
        raise
    except Exception as exc:  # av.FFmpegError and friends: a damaged or unsupported file
        raise NoPicture(f"not a decodable video ({type(exc).__name__})") from exc
    if best is None:
        raise NoPicture("the video has no frame that decodes")
    return best[1].convert("RGB")


class Pictures:
    """Pictures of files, with the representative frames of videos cached in ``blobs``."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def frame_name(self, sha256: str) -> str:
        """Where the representative frame of the video with this SHA-256 is kept."""
        return self.blobs.stored_name(hashlib.sha256(_FRAME_KEY + bytes.fromhex(sha256)).hexdigest())

    def _picture(self, sha256: str, chunks: bytes | Iterable[bytes], side: int) -> Image.Image:
        name = self.frame_name(sha256)
        if self.blobs.exists(name):  # a video seen before: no need to decrypt it again
            return _open(self.blobs.read(name), side)
        # Enough of the file to tell an image from a video is read before the size limit of
        # either applies (videos are larger than images may be).
        data = _read(chunks, VIDEO_MAX_BYTES)
        kind, _ = sniff(data[:64])
        if kind != "video":
            if len(data) > MAX_INPUT_BYTES:
                raise NoPicture(f"larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB: not decoded for a picture")
            return _open(data, side)
        cached = _jpeg(representative_frame(data), 85)
        self.blobs.put_as(name, cached)
        # From the cached JPEG, as every later view will be: the same picture each time.
        return _open(cached, side)

    def blurred(self, sha256: str, chunks: bytes | Iterable[bytes], side: int = THUMB_SIDE) -> bytes:
        """Greyscale, strongly blurred, small: shows that there is a picture and its layout only."""
        img = self._picture(sha256, chunks, side).convert("L")
        radius = max(6.0, max(img.size) / 14)
        return _jpeg(img.filter(ImageFilter.GaussianBlur(radius)), 70)

    def clear(self, sha256: str, chunks: bytes | Iterable[bytes], side: int = CLEAR_SIDE) -> bytes:
        """The picture itself (a video's representative frame), at most ``side`` pixels, re-encoded."""
        return _jpeg(self._picture(sha256, chunks, side).convert("RGB"), 85)
