"""Hostile and odd input at the parser level: each gets its documented code, nothing else."""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from tipline.cybertip.codes import CybertipError, ResponseCode
from tipline.cybertip.xml import MAX_XML_BYTES, parse_file_details, parse_report

MALFORMED, INVALID = ResponseCode.MALFORMED_XML, ResponseCode.VALIDATION_FAILED

SUMMARY = (
    "<incidentSummary><incidentType>Child Sex Trafficking</incidentType>"
    "<incidentDateTime>2024-03-05T14:30:00Z</incidentDateTime></incidentSummary>"
)


def report(additional: str = "x", prolog: str = "") -> str:
    return (
        f"{prolog}<report>{SUMMARY}<reporter><reportingPerson/></reporter>"
        f"<additionalInfo>{additional}</additionalInfo></report>"
    )


def code_of(body: bytes, parse: Callable[[bytes], object] = parse_report) -> ResponseCode:
    try:
        parse(body)
    except CybertipError as exc:
        assert exc.detail, "every rejection says why"
        return exc.code
    return ResponseCode.SUCCESS


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


def test_xxe_file_entity(secret: Path) -> None:
    body = report("&xxe;", f'<!DOCTYPE report [<!ENTITY xxe SYSTEM "file://{secret}">]>')
    with pytest.raises(CybertipError) as info:
        parse_report(body.encode())
    assert info.value.code == MALFORMED
    assert "TOP-SECRET" not in info.value.description


def test_billion_laughs() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    body = report("&lol9;", f"<!DOCTYPE report [{entities}]>").encode()
    start = time.perf_counter()
    assert code_of(body) == MALFORMED
    assert time.perf_counter() - start < 1


def test_external_dtd(secret: Path) -> None:
    body = report(prolog=f'<!DOCTYPE report SYSTEM "file://{secret}">').encode()
    assert code_of(body) == MALFORMED
    network = report(prolog='<!DOCTYPE report SYSTEM "http://192.0.2.1/x.dtd">').encode()
    assert code_of(network) == MALFORMED


def test_internal_dtd_even_harmless() -> None:
    assert code_of(report(prolog="<!DOCTYPE report>").encode()) == MALFORMED
    body = report(prolog='<!DOCTYPE report [<!ENTITY e "x">]>')  # declared, unused
    assert code_of(body.encode()) == MALFORMED


def test_parameter_entities(secret: Path) -> None:
    body = report(
        prolog=f'<!DOCTYPE report [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>'
    ).encode()
    assert code_of(body) == MALFORMED


def test_undeclared_entity_reference() -> None:
    assert code_of(report("&nbsp;").encode()) == MALFORMED
    assert code_of(report("&amp; &lt; &#233; &#x1F600;").encode()) == ResponseCode.SUCCESS


def test_oversized_body_is_refused_before_parsing() -> None:
    body = report("a" * MAX_XML_BYTES).encode()
    assert len(body) > MAX_XML_BYTES
    tracemalloc.start()
    start = time.perf_counter()
    try:
        assert code_of(body) == MALFORMED
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.05  # parsing 10 MiB would take far longer
    assert peak < 1024 * 1024  # no copy of the body, no tree
    # Exactly at the cap is fine. (libxml2 without huge_tree also caps a single text node
    # at 10,000,000 bytes, so the bulk is spread over several elements.)
    chunk = "<intendedRecipient>" + "<additionalInfo>" + "a" * 1_000_000 + "</additionalInfo>"
    doc = report().replace("<additionalInfo>x", chunk * 10 + "<additionalInfo>x")
    doc = doc.replace("<additionalInfo>x</additionalInfo>", "")
    doc = doc.replace("</reporter>", "</reporter>").replace(
        chunk, chunk + "</intendedRecipient>"
    )
    at_limit = doc.encode() + b" " * (MAX_XML_BYTES - len(doc.encode()))
    assert len(at_limit) == MAX_XML_BYTES
    assert code_of(at_limit) == ResponseCode.SUCCESS
    assert code_of(at_limit + b" ") == MALFORMED


@pytest.mark.parametrize("depth", [65, 200, 10_000])
def test_deep_nesting(depth: int) -> None:
    body = ("<a>" * depth + "</a>" * depth).encode()
    assert code_of(report().replace("x</additionalInfo>", "</additionalInfo>").encode()) == 0
    nested = report().replace("<additionalInfo>x</additionalInfo>", body.decode())
    assert code_of(nested.encode()) == MALFORMED


def test_moderate_nesting_is_a_validation_error() -> None:
    nested = report().replace("<additionalInfo>x</additionalInfo>", "<a>" * 10 + "</a>" * 10)
    assert code_of(nested.encode()) == INVALID


def test_wrong_root() -> None:
    assert code_of(b"<html><body/></html>") == MALFORMED
    assert code_of(report().encode(), parse_file_details) == MALFORMED
    assert code_of(b"<Report/>") == MALFORMED


def test_wrong_enum_and_missing_required() -> None:
    assert code_of(report().replace("Child Sex Trafficking", "Other").encode()) == INVALID
    assert code_of(b"<report/>") == INVALID
    no_file_id = b"<fileDetails><reportId>1</reportId></fileDetails>"
    assert code_of(no_file_id, parse_file_details) == INVALID


def test_non_utf8_bytes_without_declaration() -> None:
    assert code_of(report("caf\xe9").encode("latin-1")) == MALFORMED
    assert code_of(report("\udcff").encode("utf-8", "surrogateescape")) == MALFORMED


def test_utf16_with_bom_is_legal_xml() -> None:
    parsed = parse_report(report("caf\xe9 \u4e2d").encode("utf-16"))
    assert parsed.value.additionalInfo == "caf\xe9 \u4e2d"


def test_declared_iso_8859_1_with_latin1_bytes() -> None:
    body = report("caf\xe9", '<?xml version="1.0" encoding="ISO-8859-1"?>').encode("latin-1")
    assert parse_report(body).value.additionalInfo == "caf\xe9"


def test_declared_encoding_that_does_not_exist() -> None:
    body = report(prolog='<?xml version="1.0" encoding="x-no-such"?>').encode()
    assert code_of(body) == MALFORMED


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "&#0;", "&#1;", "&#x1B;", "\ufffe"])
def test_control_characters(char: str) -> None:
    assert code_of(report(f"a{char}b").encode("utf-8", "surrogatepass")) == MALFORMED


def test_allowed_whitespace_controls() -> None:
    assert parse_report(report("a\tb\nc&#13;").encode()).value.additionalInfo == "a\tb\nc\r"


def test_processing_instructions_and_comments_are_ignored() -> None:
    body = report("a<?pi data?>b<!-- c -->c", '<?xml-stylesheet href="x"?><!-- top -->')
    assert parse_report(body.encode()).value.additionalInfo == "abc"


def test_xml_declaration_must_be_first() -> None:
    assert code_of((" " + report(prolog='<?xml version="1.0"?>')).encode()) == MALFORMED


def test_garbage_and_empty() -> None:
    for body in [b"", b"   ", b"not xml", b"\x00\x01\x02", b"<report", b"<?xml version='1.0'?>"]:
        assert code_of(body) == MALFORMED


def test_trailing_content_after_root() -> None:
    assert code_of((report() + "<report/>").encode()) == MALFORMED


def test_cdata_is_text() -> None:
    body = report("<![CDATA[<script>&]]>")
    assert parse_report(body.encode()).value.additionalInfo == "<script>&"


def test_xinclude_is_not_processed(secret: Path) -> None:
    body = report().replace(
        "<additionalInfo>x</additionalInfo>",
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{secret}"/>',
    )
    assert code_of(body.encode()) == INVALID


def test_huge_attribute_and_text_within_cap() -> None:
    body = report("y" * 5_000_000).encode()
    assert parse_report(body).value.additionalInfo == "y" * 5_000_000


def test_non_bytes_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_report(report())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "position", "what"),
    [
        (b"<report><a></report>", "line 1, column 21", "tag mismatch: <a> and </report>"),
        (b"<report>\n<a>\n</b></report>", "line 3, column 5", "<a> (opened on line 2) and </b>"),
        (b"<report>", "line 1, column 9", "end of data in tag <report>"),
        (b"<report/><x/>", "line 1, column 10", "Extra content at the end of the document"),
        (b"", "line 1, column 1", "Document is empty"),
        (b"<report>\x01</report>", "line 1, column 9", "invalid Char value 1"),
    ],
    ids=["mismatch", "mismatch-lines", "unclosed", "extra", "empty", "control-char"],
)
def test_malformed_xml_names_the_position_once(body: bytes, position: str, what: str) -> None:
    with pytest.raises(CybertipError) as info:
        parse_report(body)
    detail = info.value.detail or ""
    assert info.value.code == MALFORMED
    assert detail.startswith(f"not well-formed XML at {position}: "), detail
    assert what in detail, detail
    # One position: no second "line N" or "column N" beyond an element's opening line.
    assert len(re.findall(r"(?<!opened on )line \d+", detail)) == 1, detail
    assert detail.count("column") == 1, detail
