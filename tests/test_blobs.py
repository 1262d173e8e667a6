"""The encrypted blob store: round trips, streaming, tamper and truncation detection."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import pytest

from tipline.store.blobs import SEGMENT, BlobCorrupt, BlobStore, BlobTooLarge, generate_key_file, load_key


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    key_file = tmp_path / "keys" / "blob.key"
    assert generate_key_file(key_file)
    assert not generate_key_file(key_file)  # never overwrites an existing key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    return BlobStore(tmp_path / "blobs", load_key(key_file))


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17])
def test_round_trip_and_hashes(store: BlobStore, size: int) -> None:
    data = secrets.token_bytes(size)
    with store.writer(limit=10 * SEGMENT) as w:
        # Odd chunk sizes: the writer must re-segment whatever the network hands it.
        for i in range(0, size, 7919):
            w.write(data[i : i + 7919])
        blob = w.commit()
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.md5 == hashlib.md5(data).hexdigest()
    assert blob.sha1 == hashlib.sha1(data).hexdigest()
    assert blob.size == size
    assert store.read(blob.stored_name) == data


def test_plaintext_never_on_disk(store: BlobStore) -> None:
    marker = b"PLAINTEXT-MARKER-" * 4096
    blob = store.put(marker)
    for path in store.root.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert b"PLAINTEXT-MARKER-" not in raw
            # The name on disk is not the content hash either.
            assert blob.sha256 not in path.name


def test_same_content_stored_once(store: BlobStore) -> None:
    a = store.put(b"same bytes")
    b = store.put(b"same bytes")
    assert a.stored_name == b.stored_name
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert len(files) == 1


def test_limit_aborts_and_leaves_nothing(store: BlobStore) -> None:
    w = store.writer(limit=100)
    with pytest.raises(BlobTooLarge):
        w.write(b"x" * 101)
    w.abort()
    assert not [p for p in store.root.rglob("*") if p.is_file()]


def test_tamper_and_truncation_detected(store: BlobStore) -> None:
    blob = store.put(os.urandom(2 * SEGMENT + 5))
    path = store.path_for(blob.stored_name)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobCorrupt):
        store.read(blob.stored_name)
    # Truncating at a segment boundary must fail too (the last kept segment is not final).
    raw[100] ^= 1
    path.write_bytes(bytes(raw[: 4 + 16 + SEGMENT + 16]))
    with pytest.raises(BlobCorrupt):
        store.read(blob.stored_name)


def test_wrong_key_fails(store: BlobStore, tmp_path: Path) -> None:
    blob = store.put(b"secret")
    other = BlobStore(store.root, secrets.token_bytes(32))
    # Another key maps the hash to another name; read the same path explicitly.
    with pytest.raises(BlobCorrupt):
        b"".join(other.open(blob.stored_name))


@pytest.mark.parametrize("size", [0, 1, SEGMENT, 3 * SEGMENT + 5])
def test_inline_blobs_round_trip_and_never_touch_disk(tmp_path: Path, size: int) -> None:
    key_file = tmp_path / "k"
    generate_key_file(key_file)
    store = BlobStore(tmp_path / "blobs", load_key(key_file), inline_limit=4 * SEGMENT)
    data = secrets.token_bytes(size)
    blob = store.put(data)
    assert blob.stored_name is None and blob.inline is not None
    assert size < 16 or data not in blob.inline
    assert b"".join(store.open_held(None, blob.inline)) == data
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert not [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else True


def test_writer_spills_past_the_inline_limit(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    generate_key_file(key_file)
    store = BlobStore(tmp_path / "blobs", load_key(key_file), inline_limit=SEGMENT)
    data = secrets.token_bytes(2 * SEGMENT + 3)
    with store.writer(limit=10 * SEGMENT) as w:
        for i in range(0, len(data), 1000):
            w.write(data[i : i + 1000])
        blob = w.commit()
    assert blob.inline is None and blob.stored_name is not None
    assert store.read(blob.stored_name) == data
    tampered = bytearray(store.put(b"small").inline or b"")
    tampered[-1] ^= 1
    with pytest.raises(BlobCorrupt):
        b"".join(store.open_held(None, bytes(tampered)))
