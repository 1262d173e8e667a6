"""Hostile input over HTTP: each gets its documented ISPWS code, never a 5xx, nothing half-written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import func, select

from helpers import report_xml
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.store.tables import Blob, Document, File, Report

ACME = ("acme", "acme-secret-1")

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE report [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<report><incidentSummary><incidentType>&xxe;</incidentType>
<incidentDateTime>2026-01-01T00:00:00Z</incidentDateTime></incidentSummary>
<reporter><reportingPerson/></reporter></report>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<report><incidentSummary><incidentType>&lol9;</incidentType></incidentSummary></report>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE report SYSTEM "http://127.0.0.1:9/evil.dtd">""" + report_xml(decl="")


def reply(resp) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.status_code
    root = etree.fromstring(resp.content)
    return int(root.findtext("responseCode")), root.findtext("responseDescription") or ""


def counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.sessions() as s:
        return tuple(s.execute(select(func.count()).select_from(t)).scalar_one()  # type: ignore[return-value]
                     for t in (Report, File, Document))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (XXE, 4110),
        (LAUGHS, 4110),
        (EXTERNAL_DTD, 4110),
        (b"<report><unclosed></report>", 4110),
        (b"", 4110),
        (b"not xml at all", 4110),
        (b"<fileDetails><reportId>1</reportId><fileId>a</fileId></fileDetails>", 4110),  # wrong root
        (b"<" + b"a>" * 10_000, 4110),
        (report_xml().replace(b"Child Pornography (possession, manufacture, and distribution)", b"Bogus"), 4100),
        (report_xml().replace(b"<incidentDateTime>2026-10-01T12:00:00Z</incidentDateTime>", b""), 4100),
        (report_xml().replace(b"Rita", "Ri\xe7a".encode("latin-1")), 4110),  # not UTF-8
        (report_xml(when="2999-01-01T00:00:00Z"), 4100),
    ],
    ids=["xxe", "billion-laughs", "external-dtd", "not-well-formed", "empty", "text", "wrong-root",
         "deep-nesting", "wrong-enum", "missing-required", "non-utf8", "future-date"],
)
def test_submit_rejections(client: TestClient, runtime: Runtime, body: bytes, expected: int) -> None:
    before = counts(runtime)
    got, description = reply(client.post("/ispws/submit", content=body, auth=ACME))
    assert got == expected, description
    assert description and "root:" not in description  # no file contents leaked
    assert counts(runtime) == before


def test_missing_required_names_the_element(client: TestClient) -> None:
    body = report_xml().replace(b"<incidentDateTime>2026-10-01T12:00:00Z</incidentDateTime>", b"")
    _, description = reply(client.post("/ispws/submit", content=body, auth=ACME))
    assert "incidentDateTime" in description


@pytest.fixture
def small_client(settings: Settings, esps: object) -> Iterator[tuple[TestClient, Runtime]]:
    from dataclasses import replace

    from tipline.web.app import create_app

    rt = Runtime.open(replace(settings, max_document_bytes=4096, max_upload_bytes=1000))
    with TestClient(create_app(runtime=rt), raise_server_exceptions=False) as c:
        yield c, rt
    rt.close()


def test_body_over_limit(small_client: tuple[TestClient, Runtime]) -> None:
    client, rt = small_client
    before = counts(rt)
    big = report_xml(body="<additionalInfo>" + "A" * 100_000 + "</additionalInfo>")
    got, description = reply(client.post("/ispws/submit", content=big, auth=ACME))
    assert got == 4110 and "4096" in description
    assert counts(rt) == before


def test_upload_over_limit_stores_nothing(small_client: tuple[TestClient, Runtime]) -> None:
    client, rt = small_client
    rid = int(etree.fromstring(client.post("/ispws/submit", content=report_xml(), auth=ACME).content)
              .findtext("reportId"))  # type: ignore[arg-type]
    before = counts(rt)
    resp = client.post("/ispws/upload", data={"id": str(rid)}, files={"file": ("big.bin", b"x" * 5000)}, auth=ACME)
    got, description = reply(resp)
    assert got == 4200 and "1000" in description
    assert counts(rt) == before
    assert not [p for p in rt.blobs.root.rglob("*") if p.is_file()]
    with rt.sessions() as s:
        assert s.execute(select(func.count()).select_from(Blob)).scalar_one() == 0


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.exe", "evil.exe"),
        ("/abs/path/photo.jpg", "photo.jpg"),
        ("bell\x07and\x1bescape\x00.png", "bellandescape.png"),
        ("..", None),
        ("", None),
    ],
)
def test_hostile_file_names(client: TestClient, runtime: Runtime, name: str, stored: str | None) -> None:
    rid = int(etree.fromstring(client.post("/ispws/submit", content=report_xml(), auth=ACME).content)
              .findtext("reportId"))  # type: ignore[arg-type]
    # Built by hand: HTTP clients escape control characters that a hostile client would not.
    body = (f'--b0undary\r\nContent-Disposition: form-data; name="id"\r\n\r\n{rid}\r\n'
            f'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            'Content-Type: image/png\r\n\r\ndata\r\n--b0undary--\r\n').encode()
    got, _ = reply(client.post("/ispws/upload", content=body, auth=ACME,
                               headers={"Content-Type": "multipart/form-data; boundary=b0undary"}))
    assert got == 0
    view = runtime.intake.view_unchecked(rid)
    assert view is not None and view.files[0].file_name == stored
    for p in runtime.blobs.root.rglob("*"):
        assert runtime.blobs.root in p.parents


def test_broken_multipart(client: TestClient) -> None:
    resp = client.post("/ispws/upload", content=b"--xyz\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n1",
                       headers={"Content-Type": "multipart/form-data; boundary=xyz"}, auth=ACME)
    got, _ = reply(resp)
    assert got in (4000, 4200)
    resp = client.post("/ispws/upload", content=b"garbage", headers={"Content-Type": "multipart/form-data"}, auth=ACME)
    assert reply(resp)[0] == 4200


def test_finish_with_garbage_body(client: TestClient) -> None:
    resp = client.post("/ispws/finish", content=b"\xff\xfe\x00garbage", auth=ACME,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    root = etree.fromstring(resp.content)
    assert resp.status_code == 200 and root.tag == "reportDoneResponse"
    assert root.findtext("responseCode") == "4000"


@pytest.mark.parametrize("size", [10, 700_000], ids=["inline", "file"])
def test_refused_upload_leaves_no_ciphertext(client: TestClient, runtime: Runtime, size: int) -> None:
    rid = int(etree.fromstring(client.post("/ispws/submit", content=report_xml(), auth=ACME).content)
              .findtext("reportId"))  # type: ignore[arg-type]
    client.post("/ispws/finish", data={"id": str(rid)}, auth=ACME)
    got, _ = reply(client.post("/ispws/upload", data={"id": str(rid)}, files={"file": ("late.bin", b"l" * size)},
                               auth=ACME))
    assert got == 5102
    assert not [p for p in runtime.blobs.root.rglob("*") if p.is_file()]
    got, _ = reply(client.post("/ispws/upload", data={"id": "424242"}, files={"file": ("x.bin", b"x" * size)},
                               auth=ACME))
    assert got == 5001
    assert not [p for p in runtime.blobs.root.rglob("*") if p.is_file()]
    with runtime.sessions() as s:
        assert s.execute(select(func.count()).select_from(Blob)).scalar_one() == 0


def _upload_raw(client: TestClient, rid: int, disposition: bytes, *, extra: bytes = b"") -> tuple[int, str]:
    """An upload whose file part carries ``disposition`` byte for byte (clients differ)."""
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="id"\r\n\r\n' + str(rid).encode()
            + b"\r\n" + extra + b"--b0undary\r\nContent-Disposition: " + disposition
            + b"\r\nContent-Type: image/png\r\n\r\ndata\r\n--b0undary--\r\n")
    return reply(client.post("/ispws/upload", content=body, auth=ACME,
                             headers={"Content-Type": "multipart/form-data; boundary=b0undary"}))


@pytest.mark.parametrize(
    ("disposition", "stored"),
    [
        # RFC 7578: UTF-8 as is, the way curl -F and every browser send it.
        ('form-data; name="file"; filename="写真.png"'.encode(), "写真.png"),
        ('form-data; name="file"; filename="صورة الملف.jpg"'.encode(), "صورة الملف.jpg"),
        # Kept as sent: an NFD name (macOS) is not recomposed.
        ('form-data; name="file"; filename="cafe\u0301.png"'.encode(), "cafe\u0301.png"),
        # An old client's ISO-8859-1 bytes read as Latin-1, not as replacement characters.
        ('form-data; name="file"; filename="résumé.png"'.encode("latin-1"), "résumé.png"),
        # RFC 5987 extended value, alone and beside an ASCII fallback (it wins).
        (b"form-data; name=\"file\"; filename*=UTF-8''%E5%86%99%E7%9C%9F.png", "写真.png"),
        (b"form-data; name=\"file\"; filename=\"photo.png\"; filename*=utf-8''%E5%86%99%E7%9C%9F.png",
         "写真.png"),
        # An unreadable extended value falls back to the plain one.
        (b"form-data; name=\"file\"; filename=\"photo.png\"; filename*=nope''%FF", "photo.png"),
        # A name*= inside the quoted file name does not rename the part.
        (b"form-data; name=\"file\"; filename=\"a; name*=UTF-8''x.png\"", "a; name*=UTF-8''x.png"),
    ],
    ids=["utf8-cjk", "utf8-arabic", "nfd", "latin1", "ext", "ext-wins", "ext-bad", "quoted-ext"],
)
def test_any_file_name(client: TestClient, runtime: Runtime, disposition: bytes, stored: str) -> None:
    rid = int(etree.fromstring(client.post("/ispws/submit", content=report_xml(), auth=ACME).content)
              .findtext("reportId"))  # type: ignore[arg-type]
    got, description = _upload_raw(client, rid, disposition)
    assert got == 0, description
    view = runtime.intake.view_unchecked(rid)
    assert view is not None and [f.file_name for f in view.files] == [stored]


def test_any_field_name(client: TestClient, runtime: Runtime) -> None:
    rid = int(etree.fromstring(client.post("/ispws/submit", content=report_xml(), auth=ACME).content)
              .findtext("reportId"))  # type: ignore[arg-type]
    # An extra field named in Japanese is ignored, as any unknown field is.
    extra = '--b0undary\r\nContent-Disposition: form-data; name="説明"\r\n\r\n写真\r\n'.encode()
    got, description = _upload_raw(client, rid, b'form-data; name="file"; filename="a.png"', extra=extra)
    assert got == 0, description
    # A file part under a non-Latin-1 name is the client's mistake: 4200, never 1000.
    before = counts(runtime)
    got, description = _upload_raw(client, rid, 'form-data; name="ファイル"; filename="写真.png"'.encode())
    assert got == 4200 and "'file'" in description
    assert counts(runtime) == before
