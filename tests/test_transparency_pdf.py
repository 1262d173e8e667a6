"""The transparency PDF holds what the page holds, the Revisions section included: its text read
back from the PDF itself.

fpdf2 embeds the DejaVu font as a subset (Identity-H): the drawn strings are glyph ids, and each
font's ToUnicode CMap maps them back to characters. The reader below follows that map, as the
inbox's PDF test reads fpdf2's zlib-compressed content streams (tests/test_inbox.py)."""

from __future__ import annotations

import re
import zlib
from datetime import date

from sqlalchemy import select

from outcome_rows import Records
from test_outcome_stats import _large_world
from tipline.runtime import Runtime
from tipline.stats import transparency as tr
from tipline.store.tables import Agency


def _objects(data: bytes) -> dict[int, bytes]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\n(.*?)endobj", data, re.S)}


def _stream(body: bytes) -> bytes:
    m = re.search(rb"stream\n(.*?)\nendstream", body, re.S)
    assert m is not None
    raw = m.group(1)
    return zlib.decompress(raw) if b"/FlateDecode" in body[: body.index(b"stream")] else raw


def _unescape(s: bytes) -> bytes:
    out, i = bytearray(), 0
    simple = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
    while i < len(s):
        c = s[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif 0x30 <= nxt <= 0x37:
            j = i + 1
            while j < len(s) and j < i + 4 and 0x30 <= s[j] <= 0x37:
                j += 1
            out.append(int(s[i + 1:j], 8) & 0xFF)
            i = j
        else:
            out.append(nxt)
            i += 2
    return bytes(out)


def pdf_text(data: bytes) -> str:
    """Every string drawn in an fpdf2 PDF, one per line, decoded through its font's ToUnicode map
    (a core font's strings are Latin-1 as they are)."""
    objs = _objects(data)
    cmaps: dict[str, dict[int, str]] = {}
    for body in objs.values():
        fonts = re.search(rb"/Font <<(.*?)>>", body, re.S)
        if not fonts:
            continue
        for name, num in re.findall(rb"/(F\d+) (\d+) 0 R", fonts.group(1)):
            font = objs[int(num)]
            tu = re.search(rb"/ToUnicode (\d+) 0 R", font)
            if tu is None:
                continue
            cmap = _stream(objs[int(tu.group(1))])
            mapping = {int(a, 16): chr(int(b, 16)) for a, b in re.findall(rb"<([0-9A-Fa-f]{4})> <([0-9A-Fa-f]{4})>",
                                                                          cmap.split(b"beginbfchar", 1)[-1])}
            cmaps[name.decode()] = mapping
    lines: list[str] = []
    for body in objs.values():
        if b"/Type /Page\n" not in body and b"/Type /Page>" not in body:
            continue
        contents = re.search(rb"/Contents (\d+) 0 R", body)
        assert contents is not None
        font = ""
        stream = _stream(objs[int(contents.group(1))])
        for m in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj", stream, re.S):
            if m.group(1):
                font = m.group(1).decode()
                continue
            raw = _unescape(m.group(2))
            if font in cmaps:
                lines.append("".join(cmaps[font].get(int.from_bytes(raw[i:i + 2], "big"), "?")
                                     for i in range(0, len(raw) - 1, 2)))
            else:
                lines.append(raw.decode("latin-1"))
    return "\n".join(lines)


def test_the_reader_reads_what_was_drawn() -> None:
    """The reader can fail: it finds what a PDF says and not what it does not."""
    report = tr.Transparency(2023, "0123456789abcdef", "9.9", "codes-7", "2026-01-01T00:00:00Z", {"reports": 0}, [])
    text = pdf_text(tr.pdf(report))
    assert "tipline transparency report 2023" in text and "Snapshot 0123456789abcdef" in text
    assert "1. Revisions" in text and "No revision on record" in text
    assert "Snapshot fedcba9876543210" not in text


def test_the_pdf_has_the_revisions_section_with_every_change(runtime: Runtime) -> None:
    _large_world(runtime)
    data = runtime.settings.data_dir
    first = tr.build(runtime.sessions, 2023)
    tr.keep(first, data)
    r = Records(runtime)
    with runtime.sessions() as s:
        r._agencies.update({code: i for i, code in s.execute(select(Agency.id, Agency.code))})
    rep = r.report(priority=1, received=date(2023, 5, 3))
    ref = r.refer(rep, "A", date(2023, 5, 3))
    r.outcome(ref, "ARREST", date(2023, 9, 1), persons=3)
    second = tr.build(runtime.sessions, 2023)
    tr.keep(second, data)
    assert [e["snapshot"] for e in second.revisions] == [first.snapshot, second.snapshot]
    entry = second.revisions[-1]
    assert entry["changes"]
    text = pdf_text(tr.pdf(second, shown_changes=10_000))
    assert f"{len(second.tables) + 1}. Revisions" in text
    # Both revisions, newest first, each with its reasons.
    assert f"{entry['date']} · {second.snapshot} revises {first.snapshot}" in text
    assert f"{first.revisions[0]['date']} · {first.snapshot}" in text
    assert text.index(second.snapshot + " revises") < text.rindex("first published")
    for why in entry["reasons"]:
        assert why in text
    assert f"{len(entry['changes']):,} figures changed." in text or f"{len(entry['changes'])} figure changed." in text
    # Every changed figure: its row, column and old and new value as the page writes them (a cell
    # too long for its column wraps at a space: the words are read back joined by one).
    flat = " ".join(text.split())
    for c in entry["changes"]:
        assert f"{c['row']} {c['column']} {tr.fmt_revision(c['old'])} {tr.fmt_revision(c['new'])}" in flat, c
    # Shown as on the page: at most so many per revision, the rest named.
    short = pdf_text(tr.pdf(second, shown_changes=1))
    if len(entry["changes"]) > 1:
        assert f"{len(entry['changes']) - 1:,} more in revisions.csv." in short
