"""Encrypted, content-addressed blob store.

Each blob is sealed with AES-256-GCM in 64 KiB segments (the STREAM construction: a
per-blob key derived with HKDF from the master key and a random salt, a segment counter
in the nonce, and a final-segment flag so truncation is detected). Plaintext only ever
exists in memory, one segment at a time; uploads are encrypted as they stream in.

Small blobs (up to ``inline_limit``, 512 KiB by default) never become files: their ciphertext
is returned to the caller, which stores it in the database row of the same transaction that
records the upload. One commit then makes both durable (one fsync instead of three: the
file, its directory and the database), and there is nothing to clean up after a crash.
Larger blobs stream to a file that is fsynced before the database row is committed.

Blobs are addressed by the SHA-256 of their plaintext. The file name on disk is an HMAC
of that hash under the master key, so someone holding only the disk cannot test it for
known content by hash.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"TLB1"
SALT_BYTES = 16
SEGMENT = 64 * 1024
TAG = 16
KEY_BYTES = 32


class BlobTooLarge(Exception):
    """The stream exceeded the configured size limit."""


class BlobCorrupt(Exception):
    """A blob failed authentication: wrong key, tampering or truncation."""


def generate_key_file(path: Path) -> bool:
    """Create a new random master key at ``path`` (mode 0600). Returns False if one exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(KEY_BYTES))
        fh.flush()
        os.fsync(fh.fileno())
    return True


def load_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte key")
    return key


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _blob_key(master: bytes, salt: bytes) -> AESGCM:
    # Imported here: loading the cryptography bindings costs ~35 ms, which the CLI's read
    # commands (which open a Runtime but never a blob) should not pay.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"tipline blob v1")
    return AESGCM(hkdf.derive(master))


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    md5: str
    sha1: str
    size: int
    #: The ciphertext file's name, for blobs held as files (``None`` when ``inline``).
    stored_name: str | None
    #: The whole ciphertext, for small blobs kept in the database row.
    inline: bytes | None = None


class BlobWriter:
    """Streams plaintext in, encrypts and hashes as it goes.

    Ciphertext stays in memory while the blob is small; past ``inline_limit`` it spills to a
    temporary file (ciphertext only) and continues there.
    """

    def __init__(self, store: BlobStore, limit: int, inline_limit: int = 0) -> None:
        self._store = store
        self._limit = limit
        self._inline_limit = inline_limit
        self._salt = secrets.token_bytes(SALT_BYTES)
        self._aead = _blob_key(store.key, self._salt)
        self._buf = bytearray()
        self._counter = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self.size = 0
        self._mem: bytearray | None = bytearray(MAGIC + self._salt)
        self._tmp: Path | None = None
        self._fh: BinaryIO | None = None
        self._done = False
        if inline_limit <= 0:
            self._spill()

    def _spill(self) -> None:
        self._store.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self._store.tmp_dir / secrets.token_hex(16)
        self._fh = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit()/abort()
        assert self._mem is not None
        self._fh.write(self._mem)
        self._mem = None

    def _emit(self, sealed: bytes) -> None:
        if self._mem is not None:
            self._mem += sealed
            if len(self._mem) > self._inline_limit + TAG:
                self._spill()
        else:
            assert self._fh is not None
            self._fh.write(sealed)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise BlobTooLarge(f"file exceeds the limit of {self._limit} bytes")
        self._md5.update(data)
        self._sha1.update(data)
        self._sha256.update(data)
        self._buf += data
        # Keep at least one byte back: the last segment must be sealed as final.
        while len(self._buf) > SEGMENT:
            seg = bytes(self._buf[:SEGMENT])
            del self._buf[:SEGMENT]
            self._emit(self._aead.encrypt(_nonce(self._counter, False), seg, None))
            self._counter += 1
        if self._mem is not None and self.size > self._inline_limit:
            self._spill()

    def commit(self, name: str | None = None) -> StoredBlob:
        """Seal the blob. A file-held blob is fsynced and in place when this returns; an
        inline blob is durable once the caller commits the row that carries it. ``name``:
        file it under this stored name instead of the one its plaintext's SHA-256 gives."""
        final_seg = self._aead.encrypt(_nonce(self._counter, True), bytes(self._buf), None)
        self._buf.clear()
        self._done = True
        sha256 = self._sha256.hexdigest()
        if self._mem is not None:
            self._mem += final_seg
            inline = bytes(self._mem)
            self._mem = None
            return StoredBlob(sha256, self._md5.hexdigest(), self._sha1.hexdigest(), self.size, None, inline)
        assert self._fh is not None and self._tmp is not None
        self._fh.write(final_seg)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        name = name or self._store.stored_name(sha256)
        final = self._store.path_for(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Same plaintext already stored: the existing ciphertext decrypts to it.
            self._tmp.unlink()
        else:
            os.replace(self._tmp, final)
            _fsync_dir(final.parent)
        return StoredBlob(sha256, self._md5.hexdigest(), self._sha1.hexdigest(), self.size, name)

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._mem = None
            if self._fh is not None:
                self._fh.close()
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """The local encrypted blob store under ``root``."""

    def __init__(self, root: Path, key: bytes, inline_limit: int = 0) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("blob key must be 32 bytes")
        self.root = root
        self.key = key
        self.inline_limit = inline_limit
        self.tmp_dir = root / "tmp"

    def stored_name(self, sha256: str) -> str:
        return hmac.new(self.key, bytes.fromhex(sha256), hashlib.sha256).hexdigest()

    def path_for(self, stored_name: str) -> Path:
        return self.root / stored_name[:2] / stored_name[2:4] / stored_name

    def writer(self, limit: int) -> BlobWriter:
        return BlobWriter(self, limit, self.inline_limit)

    def put(self, data: bytes, limit: int | None = None) -> StoredBlob:
        with self.writer(limit if limit is not None else len(data)) as w:
            w.write(data)
            return w.commit()

    def put_as(self, stored_name: str, data: bytes) -> StoredBlob:
        """Keep ``data`` encrypted under ``stored_name``, always as a file (derived data, such
        as a video's representative frame, that no database row points at)."""
        with BlobWriter(self, len(data), 0) as w:
            w.write(data)
            return w.commit(stored_name)

    def open_held(self, stored_name: str | None, inline: bytes | None) -> Iterator[bytes]:
        """Plaintext of a blob held either as a file or inline in its database row."""
        if inline is not None:
            return self._decrypt(io.BytesIO(inline), "inline blob")
        if stored_name is None:
            raise BlobCorrupt("the content of this blob is not held (hashes only)")
        return self.open(stored_name)

    def exists(self, stored_name: str) -> bool:
        return self.path_for(stored_name).exists()

    def open(self, stored_name: str) -> Iterator[bytes]:
        """Yield the plaintext segment by segment, authenticating each one."""
        with open(self.path_for(stored_name), "rb") as fh:
            yield from self._decrypt(fh, stored_name)

    def _decrypt(self, fh: BinaryIO, stored_name: str) -> Iterator[bytes]:
        head = fh.read(len(MAGIC) + SALT_BYTES)
        if head[: len(MAGIC)] != MAGIC or len(head) != len(MAGIC) + SALT_BYTES:
            raise BlobCorrupt(f"{stored_name}: not a tipline blob")
        aead = _blob_key(self.key, head[len(MAGIC) :])
        counter = 0
        chunk = fh.read(SEGMENT + TAG)
        while True:
            nxt = fh.read(SEGMENT + TAG)
            final = not nxt
            try:
                yield aead.decrypt(_nonce(counter, final), chunk, None)
            except Exception as exc:  # InvalidTag: wrong key, tampering or truncation
                raise BlobCorrupt(f"{stored_name}: segment {counter} failed to authenticate") from exc
            if final:
                return
            chunk = nxt
            counter += 1

    def read(self, stored_name: str) -> bytes:
        return b"".join(self.open(stored_name))

    def delete(self, stored_name: str) -> None:
        self.path_for(stored_name).unlink(missing_ok=True)

    def sweep_tmp(self, older_than_seconds: float = 6 * 3600) -> int:
        """Remove temporary files left by a crash mid-upload (never acknowledged).

        Only old ones: another worker process may be streaming into a fresh one right now.
        """
        n = 0
        if self.tmp_dir.exists():
            cutoff = time.time() - older_than_seconds
            for p in self.tmp_dir.iterdir():
                if p.stat().st_mtime < cutoff:
                    p.unlink(missing_ok=True)
                    n += 1
        return n
