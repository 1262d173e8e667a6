"""Request body helpers shared by the protocols: capped reads and streaming multipart.

Starlette's own form parser spools large file parts to a temporary file in plaintext; the
streaming parser here hands each chunk straight to the encrypting blob writer instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import decode_rfc2231
from urllib.parse import parse_qs, unquote

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from tipline.store.blobs import BlobStore, BlobWriter


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


class BadForm(Exception):
    """The body is not a form we can read (bad multipart framing, wrong content type)."""


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refusing (before reading it all) anything longer than ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


FileSink = Callable[[Part], Callable[[bytes], None]]


def _header_text(raw: bytes) -> str:
    """A part header's bytes as text: UTF-8 (RFC 7578 section 5.1), else Latin-1.

    Latin-1 maps every byte, so an old client's ISO-8859-1 file name still reads as sent.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _extended_value(raw: bytes) -> str | None:
    """An RFC 5987 ``filename*`` value (``UTF-8''%E5%86%99.png``), or None if unreadable."""
    charset, _, value = decode_rfc2231(raw.decode("latin-1").strip())
    if charset is None:
        return None
    try:
        return unquote(value, encoding=charset, errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


_EXTENDED_PARAM = re.compile(rb";\s*([A-Za-z0-9_-]+)\*\s*=\s*([^;\s]*)")
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"')


def content_disposition(raw: bytes) -> dict[str, str]:
    """The parameters of a part's ``Content-Disposition`` header, any file or field name.

    python-multipart's parser works on Latin-1 text, so it is given the raw bytes as
    Latin-1 (one character per byte) and each value is decoded again from those bytes.
    ``name*``/``filename*`` (RFC 5987), which RFC 7578 forbids but some clients still send,
    win over the plain parameter when they decode.
    """
    _, opts = parse_options_header(raw.decode("latin-1"))
    params = {k.decode("latin-1").lower(): _header_text(v) for k, v in opts.items()}
    # An ext-value is never quoted: look for them outside quoted strings only, so that a
    # filename="a; name*=..." cannot rename the part.
    for m in _EXTENDED_PARAM.finditer(_QUOTED.sub(b'""', raw)):
        decoded = _extended_value(m.group(2))
        if decoded is not None:
            params[m.group(1).decode("latin-1").lower()] = decoded
    return params


def _decode_field(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadForm("form field is not valid UTF-8") from exc


async def stream_form(
    request: Request,
    *,
    on_file: FileSink | None,
    field_limit: int = 64 * 1024,
) -> tuple[dict[str, str], list[Part]]:
    """Read a multipart or urlencoded form.

    Text fields are collected (each at most ``field_limit`` bytes). For a part with a
    filename, ``on_file(part)`` returns a writer that receives the part's bytes as they
    arrive; without ``on_file`` a file part is an error. Returns (fields, file parts).
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype == b"application/x-www-form-urlencoded" or (not ctype and request.method == "POST"):
        body = await read_capped(request, field_limit)
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise BadForm("form body is not valid UTF-8") from exc
        return {k: v[0] for k, v in parsed.items()}, []
    if ctype != b"multipart/form-data":
        raise BadForm(f"expected a multipart or urlencoded form, got {ctype.decode(errors='replace')!r}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadForm("multipart body without a boundary")

    fields: dict[str, str] = {}
    files: list[Part] = []
    current = Part()
    header_name = bytearray()
    header_value = bytearray()
    disposition = bytearray()  # kept as bytes: names may be UTF-8 (or Latin-1, or RFC 5987)
    field_buf = bytearray()
    sink: Callable[[bytes], None] | None = None

    def on_part_begin() -> None:
        nonlocal current, sink
        current = Part()
        sink = None
        field_buf.clear()
        disposition.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        name = header_name.decode("latin-1").lower()
        if name == "content-disposition":
            disposition[:] = header_value
        current.headers[name] = _header_text(bytes(header_value))
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal sink
        opts = content_disposition(bytes(disposition))
        current.name = opts.get("name")
        current.filename = opts.get("filename")
        current.content_type = current.headers.get("content-type")
        if current.filename is not None:
            if on_file is None:
                raise BadForm("this request takes no file part")
            sink = on_file(current)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if sink is not None:
            sink(data[start:end])
        else:
            field_buf.extend(data[start:end])
            if len(field_buf) > field_limit:
                raise BadForm(f"form field {current.name!r} exceeds {field_limit} bytes")

    def on_part_end() -> None:
        if current.filename is not None:
            files.append(current)
        elif current.name is not None:
            fields[current.name] = _decode_field(bytes(field_buf))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (BadForm, BodyTooLarge):
        raise
    except Exception as exc:  # python-multipart raises its own errors on broken framing
        # Sink errors (size limit, disk) propagate as themselves so callers can map them.
        if exc.__class__.__module__.startswith("python_multipart"):
            raise BadForm(f"malformed multipart body: {exc}") from exc
        raise
    return fields, files


class SingleFileUpload:
    """The ``on_file`` sink for an upload that takes exactly one file part named ``file``.

    Its bytes stream into an encrypting blob writer; ``writer`` is None until that part
    arrives. Shared by the ISPWS and JSON upload endpoints.
    """

    def __init__(self, blobs: BlobStore, limit: int) -> None:
        self._blobs = blobs
        self._limit = limit
        self.writer: BlobWriter | None = None

    def on_file(self, part: Part) -> Callable[[bytes], None]:
        if part.name != "file" or self.writer is not None:
            raise BadForm("one file part, named 'file', is expected")
        self.writer = self._blobs.writer(self._limit)
        return self.writer.write

    def abort(self) -> None:
        """Discard the ciphertext of an upload that will not be recorded."""
        if self.writer is not None:
            self.writer.abort()
