"""Pictures of files (tipline.web.thumbs), for the console and the inbox alike: blurred,
greyscale, small; the clear rendering bounded and re-encoded; junk gives none; a video gets
a representative frame, decoded once and cached encrypted in the blob store under its SHA-256.
The console's report page on both backends shows a video's blurred frame."""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFilter, ImageStat
from sqlalchemy import select

from people_helpers import make_user, sign_in
from test_console_data import store_report
from test_identifiers import report_doc
from tipline.pipeline.core import StageContext, run_report
from tipline.pipeline.media import frame_decoder_available
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.blobs import BlobStore
from tipline.store.tables import File
from tipline.web.thumbs import CLEAR_SIDE, THUMB_SIDE, NoPicture, Pictures

# CI sets TIPLINE_TEST_REQUIRE_VIDEO=1: there a missing PyAV fails these tests instead.
needs_av = pytest.mark.skipif(os.environ.get("TIPLINE_TEST_REQUIRE_VIDEO") != "1" and not frame_decoder_available(),
                              reason="PyAV (the 'video' extra) missing")


def standin_video(seed: int = 3, frames: int = 30, size: tuple[int, int] = (320, 240)) -> bytes:
    """An MP4 of generated stand-in pictures (shapes and gradients), made with PyAV in memory.
    The first frames are black, as many real videos start: the representative frame must not be one."""
    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = (Image.new("RGB", size) if i < 5 else
                   Image.open(io.BytesIO(standin_image(seed + i // 10, size))).convert("RGB"))
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


@pytest.fixture
def pictures(tmp_path: object) -> Pictures:
    from pathlib import Path

    return Pictures(BlobStore(Path(str(tmp_path)) / "blobs", b"k" * 32))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def edges(i: Image.Image) -> float:
    # The border of the frame is an edge of its own: look inside it.
    inner = i.convert("L").filter(ImageFilter.FIND_EDGES).crop((2, 2, i.width - 2, i.height - 2))
    return float(ImageStat.Stat(inner).stddev[0])


def test_blurred_thumbnail_is_small_grey_jpeg_and_loses_detail(pictures: Pictures) -> None:
    original = standin_image(7, size=(1280, 960))
    blurred = pictures.blurred(sha(original), original)
    assert blurred[:2] == b"\xff\xd8"
    img = Image.open(io.BytesIO(blurred))
    assert img.mode == "L" and max(img.size) <= THUMB_SIDE
    clear = Image.open(io.BytesIO(pictures.clear(sha(original), original)))
    assert clear.mode == "RGB" and max(clear.size) == CLEAR_SIDE  # never the original 1280
    sharp = Image.open(io.BytesIO(pictures.clear(sha(original), original, side=THUMB_SIDE)))
    # Blurring removes edges: the spread of the edge image drops sharply.
    assert edges(img) < edges(sharp) / 3
    # Chunks (as the blob store yields them) give the same picture as bytes.
    chunks: Iterable[bytes] = (original[i:i + 4096] for i in range(0, len(original), 4096))
    assert pictures.blurred(sha(original), chunks) == blurred


def test_not_a_picture_raises(pictures: Pictures) -> None:
    for junk in (b"not an image at all", b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40):
        with pytest.raises(NoPicture):
            pictures.blurred(sha(junk), junk)
    # An image is never cached as a frame: only videos are.
    png = standin_image(1)
    pictures.blurred(sha(png), png)
    assert not pictures.blobs.exists(pictures.frame_name(sha(png)))


@needs_av
def test_video_gets_a_representative_frame_cached_by_sha256(pictures: Pictures) -> None:
    video = standin_video()
    key = sha(video)
    assert not pictures.blobs.exists(pictures.frame_name(key))
    blurred = pictures.blurred(key, video)
    thumb = Image.open(io.BytesIO(blurred))
    assert thumb.mode == "L" and max(thumb.size) <= THUMB_SIDE
    # Not one of the black frames the video starts with.
    assert ImageStat.Stat(thumb).mean[0] > 20
    clear = Image.open(io.BytesIO(pictures.clear(key, video)))
    assert clear.mode == "RGB" and clear.size == (320, 240) and edges(clear) > edges(thumb) * 3
    # Cached in the blob store, encrypted: the file on disk is no JPEG.
    name = pictures.frame_name(key)
    assert pictures.blobs.exists(name)
    assert not pictures.blobs.path_for(name).read_bytes().startswith(b"\xff\xd8")
    assert pictures.blobs.read(name)[:2] == b"\xff\xd8"

    # The second time the video is not read at all.
    def never() -> Iterable[bytes]:
        raise AssertionError("the video was decrypted again")
        yield b""

    assert pictures.blurred(key, never()) == blurred
    # A damaged video has no picture (and nothing is cached for it).
    broken = video[:200]
    with pytest.raises(NoPicture):
        pictures.blurred(sha(broken), broken)
    assert not pictures.blobs.exists(pictures.frame_name(sha(broken)))


@needs_av
def test_console_shows_a_videos_blurred_frame(runtime: Runtime, client: TestClient) -> None:
    video = standin_video(seed=11)
    rid = store_report(runtime, report_doc(), [(video, True)])
    run_report(StageContext(runtime), rid)
    with runtime.sessions() as s:
        f = s.scalars(select(File).where(File.report_id == rid)).one()
    sign_in(client, make_user(runtime, "vera", "analyst"))
    page = client.get(f"/console/reports/{rid}")
    assert page.status_code == 200
    assert "No frame available" not in page.text
    assert f"/console/files/{f.id}/thumb.jpg" in page.text
    got = client.get(f"/console/files/{f.id}/thumb.jpg")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(got.content))
    assert img.mode == "L" and max(img.size) <= THUMB_SIDE
    assert video not in got.content and len(got.content) < len(video)
    # The frame is in the blob store now, under the video's SHA-256.
    assert runtime.blobs.exists(Pictures(runtime.blobs).frame_name(f.sha256))
    assert re.search(r'alt="File 1, blurred and greyscale"', page.text)
