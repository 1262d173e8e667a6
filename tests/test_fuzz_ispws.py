"""Property-based bodies for every ISPWS call: XML, multipart and form, on both backends.

For any body: HTTP 200 with a one-line ISPWS document, never code 1000 (server error), no
traceback, and a refused request leaves the store as it found it (no report, file or
document row). Derandomized so that CI always runs the same examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from helpers import FIELD, counts, file_details_xml, report_xml
from tipline.runtime import Runtime
from tipline.standin import standin_image

ACME = ("acme", "acme-secret-1")
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

def ispws(resp: Any, root_tag: str = "reportResponse") -> int:
    """Assert the answer is a well-formed ISPWS document; return its code."""
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/xml")
    assert b"Traceback" not in resp.content and b"\n" not in resp.content
    root = etree.fromstring(resp.content)
    assert root.tag == root_tag
    code = int(root.findtext("responseCode") or "-1")
    assert code != 1000, resp.text
    if root_tag == "reportResponse":
        assert root.findtext("responseDescription")
    return code


# Drawn bodies carry these placeholders for the ids the test creates, so that what is drawn
# does not depend on the store (hypothesis replays draws exactly).
RID, FID = 987654321, "f" * 32


def fill(body: bytes, rid: int, fid: str = FID) -> bytes:
    return body.replace(str(RID).encode(), str(rid).encode()).replace(FID.encode(), fid.encode())


def open_report(client: TestClient) -> int:
    resp = client.post("/ispws/submit", content=report_xml(), auth=ACME)
    return int(etree.fromstring(resp.content).findtext("reportId"))  # type: ignore[arg-type]


def upload(client: TestClient, rid: int) -> str:
    resp = client.post("/ispws/upload", data={"id": str(rid)}, auth=ACME,
                       files={"file": ("a.png", standin_image(4), "image/png")})
    return str(etree.fromstring(resp.content).findtext("fileId"))


# --- XML --------------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: Callable[[], bytes]) -> bytes:
    """A valid document with a few random edits: bytes, text or markup spliced in or cut out."""
    body = bytearray(seed())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        kind = draw(st.sampled_from(["insert", "delete", "replace-text"]))
        if kind == "insert":
            piece = draw(st.one_of(FIELD.map(lambda t: t.encode("utf-8", "surrogatepass")),
                                   st.binary(max_size=8),
                                   st.sampled_from([b"<x>", b"</report>", b"<!DOCTYPE r>", b"<?pi?>",
                                                    b"<reportId>1</reportId>", b"<![CDATA[", b"&e;"])))
            body[at:at] = piece
        elif kind == "delete":
            del body[at:at + draw(st.integers(1, 16))]
        else:
            text = draw(FIELD).replace("&", "&amp;").replace("<", "&lt;").encode("utf-8", "surrogatepass")
            m = list(re.finditer(rb">([^<]+)<", bytes(body)))
            if m:
                g = m[draw(st.integers(0, len(m) - 1))]
                body[g.start(1):g.end(1)] = text
    return bytes(body)


def _valid_summary(text: str) -> bytes:
    return report_xml(extra_summary=f"<platform>{text}</platform>")


XML_BODIES = st.one_of(
    mutated(report_xml),
    FIELD.map(lambda t: _valid_summary(t.replace("&", "&amp;").replace("<", "&lt;"))),
    st.binary(max_size=200),
)


@FUZZ
@given(body=XML_BODIES, ctype=st.sampled_from(["text/xml; charset=utf-8", "text/plain;charset=UTF-8",
                                               "application/xml", "text/xml; charset=latin-1", ""]))
def test_submit_any_xml(client: TestClient, runtime: Runtime, body: bytes, ctype: str) -> None:
    before = counts(runtime)
    code = ispws(client.post("/ispws/submit", content=body, auth=ACME, headers={"Content-Type": ctype}))
    after = counts(runtime)
    if code == 0:
        assert (after[0] - before[0], after[2] - before[2]) == (1, 1)
    else:
        assert code in (4000, 4100, 4110), code
        assert after == before


@FUZZ
@given(data=st.data())
def test_fileinfo_any_xml(client: TestClient, runtime: Runtime, data: st.DataObject) -> None:
    rid = open_report(client)
    fid = upload(client, rid)
    body = fill(data.draw(st.one_of(
        mutated(lambda: file_details_xml(RID, FID)), st.binary(max_size=200),
        FIELD.map(lambda t: file_details_xml(
            RID, FID, f"<locationOfFile>{t.replace('&', '&amp;').replace('<', '&lt;')}</locationOfFile>")))),
        rid, fid)
    before = counts(runtime)
    code = ispws(client.post("/ispws/fileinfo", content=body, auth=ACME))
    if code != 0:
        assert counts(runtime) == before


# --- multipart --------------------------------------------------------------------------------


def _disposition(name: str, filename: str | None, ext: bool) -> bytes:
    out = b'form-data; name="' + name.encode("utf-8", "surrogatepass") + b'"'
    if filename is not None:
        out += b'; filename="' + filename.encode("utf-8", "surrogatepass") + b'"'
    if ext and filename is not None:
        from urllib.parse import quote

        out += b"; filename*=UTF-8''" + quote(filename, safe="").encode()
    return out


@st.composite
def multipart(draw: st.DrawFn) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0undary", "----WebKitFormBoundaryx", "x"]))
    parts: list[bytes] = []
    parts.append(b'Content-Disposition: form-data; name="id"\r\n\r\n'
                 + draw(st.one_of(st.just(str(RID)), FIELD)).encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(st.just("file"), FIELD))
        filename = draw(st.one_of(st.none(), FIELD))
        head = b"Content-Disposition: " + _disposition(name, filename, draw(st.booleans()))
        if draw(st.booleans()):
            head += b"\r\nContent-Type: " + draw(st.sampled_from([b"image/png", b"", b"\xff\xfe", b"a/b; x=\xe5"]))
        parts.append(head + b"\r\n\r\n" + draw(st.binary(max_size=64)))
    sep = f"--{boundary}\r\n".encode()
    body = sep + (b"\r\n" + sep).join(parts) + f"\r\n--{boundary}--\r\n".encode()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=8)) + body[cut + draw(st.integers(0, 8)):]
    return body, f"multipart/form-data; boundary={boundary}"


@FUZZ
@given(data=st.data())
def test_upload_any_multipart(client: TestClient, runtime: Runtime, data: st.DataObject) -> None:
    rid = open_report(client)
    body, ctype = data.draw(multipart())
    body = fill(body, rid)
    before = counts(runtime)
    code = ispws(client.post("/ispws/upload", content=body, auth=ACME, headers={"Content-Type": ctype}))
    after = counts(runtime)
    if code == 0:
        assert after[1] == before[1] + 1
    else:
        assert code in (4000, 4200, 5001), code
        assert after == before


# --- forms (finish, retract) ------------------------------------------------------------------


@FUZZ
@given(data=st.data(), call=st.sampled_from(["finish", "retract"]),
       encoding=st.sampled_from(["urlencoded", "multipart", "raw"]))
def test_finish_and_retract_any_form(client: TestClient, runtime: Runtime, data: st.DataObject, call: str,
                                     encoding: str) -> None:
    rid = open_report(client)
    value = data.draw(st.one_of(st.just(str(RID)), st.just(f" {RID} "), FIELD, st.integers().map(str)))
    value = value.replace(str(RID), str(rid))
    if encoding == "urlencoded":
        resp = client.post(f"/ispws/{call}", data={"id": value, data.draw(FIELD): data.draw(FIELD)}, auth=ACME)
    elif encoding == "multipart":
        body, ctype = data.draw(multipart())
        resp = client.post(f"/ispws/{call}", content=fill(body, rid), auth=ACME, headers={"Content-Type": ctype})
    else:
        resp = client.post(f"/ispws/{call}", content=data.draw(st.binary(max_size=64)), auth=ACME,
                           headers={"Content-Type": data.draw(st.sampled_from(
                               ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""]))})
    code = ispws(resp, "reportDoneResponse" if call == "finish" else "reportResponse")
    view = runtime.intake.view_unchecked(rid)
    assert view is not None
    if code != 0:
        assert view.state == "open", "a refused request changed the report"
