"""The public report form (/report) and the receipt page (/report/receipt), on both backends.

The rule checked throughout: a failed submission stores nothing — no report, document,
file or blob row, and no file on disk (not even a temporary one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tipline.intake.public_form import INCIDENT_CHOICES, sniff
from tipline.intake.receipts import format_receipt_code, new_receipt_code, normalise_receipt_code, receipt_hash
from tipline.runtime import Runtime
from tipline.standin import standin_image, standin_of_size
from tipline.store.tables import Base, Blob, Document, File, Report
from tipline.web import public

CODE_RE = re.compile(r'<p class="receipt-code" id="receipt-code">(TPL(?:-[0-9A-Z]{4}){4})</p>')
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(range(256)) * 4


def valid(**over: str) -> dict[str, str]:
    data = {
        "incident": "enticement",
        "description": "An adult account keeps asking my 13-year-old to send pictures.",
        "incident_date": "",
        "incident_time": "",
        "urls": "https://social.example.com/u/stranger\nhttps://social.example.com/p/42",
        "platform": "Example Social",
        "usernames": "stranger_1\n  other.name  ",
        "child_age": "13",
        "first_name": "",
        "last_name": "",
        "email": "",
        "phone": "",
        "form_token": "tok" + "x" * 20,
    }
    data.update(over)
    return data


Files = list[tuple[str, tuple[str, bytes, str]]]


def post(client: TestClient, data: dict[str, str], files: Files | None = None) -> Any:
    # An empty file part is what a browser sends when no file was chosen.
    return client.post("/report", data=data,
                       files=files if files is not None else [("files", ("", b"", "application/octet-stream"))])


def receipt_code(resp: Any) -> str:
    assert resp.status_code == 200, resp.text
    m = CODE_RE.search(resp.text)
    assert m, resp.text
    return m.group(1)


def stored(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        counts = {t.__tablename__: s.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (Report, Document, File, Blob)}
    counts["disk"] = sum(1 for p in Path(rt.settings.blob_dir).rglob("*") if p.is_file())
    return counts


NOTHING = {"reports": 0, "documents": 0, "files": 0, "blobs": 0, "disk": 0}


def only_report(rt: Runtime) -> Report:
    with rt.sessions() as s:
        reps = list(s.execute(select(Report)).scalars())
    assert len(reps) == 1
    return reps[0]


def documents(rt: Runtime, kind: str) -> list[Document]:
    with rt.sessions() as s:
        return list(s.execute(select(Document).where(Document.kind == kind)
                              .order_by(Document.id)).scalars())


# --- pages ------------------------------------------------------------------------------


def test_form_page_needs_no_script_and_is_not_cached(client: TestClient) -> None:
    resp = client.get("/report")
    assert resp.status_code == 200
    html = resp.text
    assert "<script" not in html.lower()
    assert "call your local emergency number: 112 in the EU, 999 in the UK, 911 in the US" in html
    assert 'href="/privacy"' in html
    assert 'enctype="multipart/form-data"' in html
    for choice in INCIDENT_CHOICES:
        assert f'id="incident-{choice.key}"' in html
        assert f'<label for="incident-{choice.key}">' in html
    assert "encrypted" in html and "trained analysts" in html
    assert resp.headers["cache-control"] == "no-store"
    assert "script-src" not in resp.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    css = client.get("/static/tipline.css")
    assert css.status_code == 200 and ".error-summary" in css.text


def test_receipt_page_renders(client: TestClient) -> None:
    resp = client.get("/report/receipt")
    assert resp.status_code == 200
    assert 'name="code"' in resp.text and 'name="information"' in resp.text
    assert "<script" not in resp.text.lower()


# --- a valid report ---------------------------------------------------------------------


def test_valid_anonymous_report_is_filed_with_files(client: TestClient, runtime: Runtime) -> None:
    png, jpeg = standin_image(1), standin_image(2, fmt="JPEG")
    text = "chat log line one\nzweite Zeile — ünïcödé\n".encode()
    files: Files = [("files", ("screenshot.png", png, "image/png")),
                    ("files", ("C:\\Users\\me\\photo.jpg", jpeg, "image/jpeg")),
                    ("files", ("chat.txt", text, "text/plain")),
                    ("files", ("scan", PDF, "application/octet-stream"))]
    resp = post(client, valid(), files)
    code = receipt_code(resp)
    assert resp.headers["cache-control"] == "no-store"
    assert normalise_receipt_code(code) == code

    rep = only_report(runtime)
    assert rep.source == "web" and rep.state == "finished"
    assert rep.incident_type == "Online Enticement of Children for Sexual Acts"
    assert rep.receipt_hash == hashlib.sha256(code.encode()).hexdigest()
    doc = rep.document
    assert doc is not None
    assert doc["internetDetails"] == [{"webPageIncident": {"url": [
        "https://social.example.com/u/stranger", "https://social.example.com/p/42"]}}]
    assert doc["personOrUserReported"] == [
        {"espService": "Example Social", "screenName": "stranger_1"},
        {"espService": "Example Social", "screenName": "other.name"},
    ]
    assert doc["incidentSummary"]["platform"] == "Example Social"
    assert "submitted" in doc["incidentSummary"]["incidentDateTimeDescription"]
    assert doc["victim"] == [{"victimPerson": {"age": 13}}]
    assert doc["additionalInfo"].startswith("An adult account")
    # Anonymous: the reporting person is present but empty.
    assert doc["reporter"] == {"reportingPerson": {}}

    (web,) = documents(runtime, "web")
    assert web.content_type == "application/json"
    body = json.loads(web.body)
    assert body["fields"]["incident"] == "enticement"
    assert "form_token" not in body["fields"]
    assert [f["mediaType"] for f in body["files"]] == [
        "image/png", "image/jpeg", "text/plain; charset=utf-8", "application/pdf"]

    view = runtime.intake.view_unchecked(rep.id)
    assert view is not None
    assert [f.file_name for f in view.files] == ["screenshot.png", "photo.jpg", "chat.txt", "scan"]
    for f, data in zip(view.files, [png, jpeg, text, PDF], strict=True):
        assert f.sha256 == hashlib.sha256(data).hexdigest()
        assert f.md5 == hashlib.md5(data).hexdigest()
        assert f.size == len(data)
        assert runtime.intake.read_file_unchecked(f.id) == data
    # On disk only ciphertext: no stored blob contains the plaintext.
    for p in Path(runtime.settings.blob_dir).rglob("*"):
        if p.is_file():
            assert png[100:200] not in p.read_bytes()
    tmp = Path(runtime.settings.blob_dir, "tmp")
    assert not tmp.exists() or not any(tmp.iterdir())


def test_contact_date_and_time(client: TestClient, runtime: Runtime) -> None:
    resp = post(client, valid(
        incident="images", incident_date="2024-03-27", incident_time="14:30",
        first_name="Sam", last_name="Example", email="sam@example.org",
        phone="+1 555 010 0000", urls="", usernames="", platform="", child_age=""))
    receipt_code(resp)
    doc = only_report(runtime).document
    assert doc is not None
    assert doc["reporter"]["reportingPerson"] == {
        "firstName": "Sam", "lastName": "Example",
        "email": [{"value": "sam@example.org"}], "phone": [{"value": "+1 555 010 0000"}]}
    assert doc["incidentSummary"]["incidentDateTime"] == "2024-03-27T14:30:00"
    assert "local time" in doc["incidentSummary"]["incidentDateTimeDescription"]
    assert "internetDetails" not in doc and "victim" not in doc
    assert stored(runtime)["files"] == 0


def test_description_with_browser_line_breaks_counts_characters(
    client: TestClient, runtime: Runtime
) -> None:
    # Browsers send CRLF; 3,000 characters typed must not count as more.
    text = ("a" * 99 + "\r\n") * 30
    receipt_code(post(client, valid(description=text.rstrip())))
    assert only_report(runtime).document["additionalInfo"] == ("a" * 99 + "\n") * 29 + "a" * 99  # type: ignore[index]


def test_reload_after_sending_files_the_report_once(client: TestClient, runtime: Runtime) -> None:
    files: Files = [("files", ("a.png", standin_image(3), "image/png"))]
    receipt_code(post(client, valid(), files))
    again = post(client, valid(), files)
    assert again.status_code == 200
    assert "already received" in again.text
    assert not CODE_RE.search(again.text)
    assert stored(runtime)["reports"] == 1 and stored(runtime)["files"] == 1
    # The same form token with other content is a stale form: nothing new is stored.
    stale = post(client, valid(description="something else"), files)
    assert stale.status_code == 409
    assert stored(runtime)["reports"] == 1


# --- invalid fields: a message, the values kept, nothing stored ---------------------------

INVALID = [
    ({"incident": ""}, "incident", "Choose what happened"),
    ({"incident": "Child Sex Trafficking"}, "incident", "Choose what happened"),
    ({"description": "   "}, "description", "Tell us what happened."),
    ({"description": "x" * 3001}, "description", "shorten this to 3,000 characters"),
    ({"description": "my code is TPL-7KQ4-M9XD-2HPR-W3CT"}, "description", "receipt code"),
    ({"incident_date": "2024-02-30"}, "incident_date", "Enter a real date"),
    ({"incident_date": "27/03/2024"}, "incident_date", "Enter a real date"),
    ({"incident_date": "2999-01-01"}, "incident_date", "cannot be in the future"),
    ({"incident_date": "1900-01-01"}, "incident_date", "after 1950"),
    ({"incident_time": "14:30"}, "incident_time", "Enter the date as well"),
    ({"incident_date": "2024-01-01", "incident_time": "25:00"}, "incident_time", "like 14:30"),
    ({"urls": "ftp://files.example.com/x"}, "urls", "must start with http:// or https://"),
    ({"urls": "https://ok.example.com\nexample.com/page"}, "urls", "Line 2 must start with"),
    ({"urls": "https://exa mple.com"}, "urls", "contains a space"),
    ({"urls": "https://"}, "urls", "no website name"),
    ({"urls": "\n".join(f"https://e.example.com/{i}" for i in range(21))}, "urls", "at most 20"),
    ({"platform": "p" * 201}, "platform", "200 characters"),
    ({"usernames": "u" * 201}, "usernames", "at most 200 characters"),
    ({"child_age": "25"}, "child_age", "from 0 to 17"),
    ({"child_age": "ten"}, "child_age", "from 0 to 17"),
    ({"email": "not-an-address"}, "email", "like name@example.com"),
    ({"phone": "call me maybe"}, "phone", "phone number using digits"),
    ({"phone": "12"}, "phone", "phone number using digits"),
    ({"first_name": "n" * 101}, "first_name", "100 characters"),
]


@pytest.mark.parametrize(("over", "field", "message"), INVALID,
                         ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(INVALID)])
def test_invalid_field_stores_nothing(
    client: TestClient, runtime: Runtime, over: dict[str, str], field: str, message: str
) -> None:
    data = valid(**over)
    files: Files = [("files", ("ok.png", standin_image(4), "image/png"))]
    resp = post(client, data, files)
    assert resp.status_code == 422
    html = resp.text
    assert "There is a problem" in html
    # The message next to the field, and in the summary linking to it.
    anchor = "incident-images" if field == "incident" else field
    assert re.search(rf'<li><a href="#{anchor}">[^<]*{re.escape(message)}', html), html
    assert f'id="{field}-error"' in html
    # The control (or the radio group's fieldset) points at the message.
    owner = "<fieldset" if field == "incident" else f'id="{anchor}"'
    assert f"{field}-error" in html.split(owner, 1)[1].split(">", 1)[0]
    assert html.startswith("<!doctype html>") and "<title>Error: " in html
    # What the person typed is kept (escaped).
    if field not in ("incident",):
        kept = data["description"].replace("'", "&#39;")
        assert kept in html
    assert "choose them again" in html
    assert stored(runtime) == NOTHING


def test_values_are_escaped_when_shown_again(client: TestClient, runtime: Runtime) -> None:
    resp = post(client, valid(description='<script>alert(1)</script>"', email="x"))
    assert resp.status_code == 422
    assert "<script>alert(1)" not in resp.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in resp.text
    assert stored(runtime) == NOTHING


# --- files ------------------------------------------------------------------------------


def test_file_over_the_limit_stores_nothing(client: TestClient, runtime: Runtime) -> None:
    runtime.settings = dataclasses.replace(runtime.settings, max_upload_bytes=60_000)
    big = standin_of_size(5, 120_000)
    assert len(big) > 60_000
    files: Files = [("files", ("small.png", standin_image(5), "image/png")),
                    ("files", ("big.png", big, "image/png"))]
    resp = post(client, valid(), files)
    assert resp.status_code == 422
    assert "“big.png” is too large" in resp.text
    assert "59 KB" in resp.text  # the limit, in words people use
    assert stored(runtime) == NOTHING


def test_body_far_over_the_limit_is_cut_off(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.settings = dataclasses.replace(runtime.settings, max_upload_bytes=10_000)
    monkeypatch.setattr(public, "DRAIN_EXTRA", 20_000)
    resp = post(client, valid(), [("files", ("huge.png", standin_of_size(6, 80_000), "image/png"))])
    assert resp.status_code == 413
    assert "too large" in resp.text
    assert stored(runtime) == NOTHING


@pytest.mark.parametrize(("name", "data", "message"), [
    ("photo.jpg", EXE, "is not a picture, video, PDF or text file"),
    ("setup.exe", EXE, "is not a picture, video, PDF or text file"),
    ("notes.txt", b"\x00\x01binary\xff\xfe", "is not a picture, video, PDF or text file"),
    ("photo.png", b"<html><body>hello</body></html>", "is named like a picture"),
    ("clip.mp4", standin_image(7), "is named like a video"),
    ("doc.pdf", b"just text, not a PDF", "is named like a PDF"),
    ("empty.png", b"", "is empty"),
])
def test_disguised_or_unsupported_file_is_refused(
    client: TestClient, runtime: Runtime, name: str, data: bytes, message: str
) -> None:
    files: Files = [("files", ("fine.png", standin_image(8), "image/png")),
                    ("files", (name, data, "image/jpeg"))]
    resp = post(client, valid(), files)
    assert resp.status_code == 422
    assert message in resp.text
    assert f"“{name}”" in resp.text
    assert stored(runtime) == NOTHING


def test_type_comes_from_content_not_from_the_browser(client: TestClient, runtime: Runtime) -> None:
    files: Files = [("files", ("IMG_0001", standin_image(9, fmt="GIF"), "application/x-evil"))]
    receipt_code(post(client, valid(), files))
    view = runtime.intake.view_unchecked(only_report(runtime).id)
    assert view is not None and view.files[0].media_type == "image/gif"


def test_too_many_files(client: TestClient, runtime: Runtime) -> None:
    files: Files = [("files", (f"f{i}.png", standin_image(100 + i), "image/png"))
                    for i in range(11)]
    resp = post(client, valid(), files)
    assert resp.status_code == 422
    assert "at most 10 files" in resp.text
    assert stored(runtime) == NOTHING


def test_unreadable_form_stores_nothing(client: TestClient, runtime: Runtime) -> None:
    # The body ends inside a file part (no closing boundary): the file may be cut short.
    body = (b'--x\r\nContent-Disposition: form-data; name="incident"\r\n\r\nimages\r\n'
            b'--x\r\nContent-Disposition: form-data; name="description"\r\n\r\nsome text\r\n'
            b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + standin_image(13)[:500])
    resp = client.post("/report", content=body,
                       headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert resp.status_code == 400
    assert "could not be read" in resp.text
    resp = client.post("/report", content=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert stored(runtime) == NOTHING


def test_failure_after_opening_retracts_the_report(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_finish(reporter_id: int, report_id: int) -> list[str]:
        raise RuntimeError("database went away")

    monkeypatch.setattr(runtime.intake, "finish", broken_finish)
    resp = post(client, valid(), [("files", ("a.png", standin_image(10), "image/png"))])
    assert resp.status_code == 503
    assert "not filed" in resp.text
    assert not CODE_RE.search(resp.text)
    assert only_report(runtime).state == "retracted"


# --- receipt codes and adding information -------------------------------------------------


def test_receipt_codes_are_random_friendly_and_forgiving() -> None:
    codes = {new_receipt_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert re.fullmatch(r"TPL(-[0-9A-HJKMNP-TV-Z]{4}){4}", code)
        assert normalise_receipt_code(code) == code
        assert normalise_receipt_code(code.lower().replace("-", "")) == code
        assert normalise_receipt_code(" " + code[4:].replace("-", " ") + " ") == code
    assert normalise_receipt_code("tpl-0o1i-L000-0000-0000") == format_receipt_code("0011" + "1000" + "0" * 8)
    assert normalise_receipt_code("TPL-7KQ4-M9XD-2HPR") is None
    assert normalise_receipt_code("TPL-7KQ4-M9XD-2HPR-W3CU") is None  # U is not in the alphabet
    assert normalise_receipt_code("") is None
    assert receipt_hash("TPL-7KQ4-M9XD-2HPR-W3CT") == hashlib.sha256(
        b"TPL-7KQ4-M9XD-2HPR-W3CT").hexdigest()


def test_receipt_code_adds_information(client: TestClient, runtime: Runtime) -> None:
    code = receipt_code(post(client, valid()))
    typed = code.lower().replace("-", " ")
    resp = client.post("/report/receipt", data={"code": typed,
                                                "information": "He also uses the name x_y_z."})
    assert resp.status_code == 200, resp.text
    assert "was added to your report" in resp.text
    assert resp.headers["cache-control"] == "no-store"
    (add,) = documents(runtime, "addendum")
    assert add.report_id == only_report(runtime).id
    assert json.loads(add.body) == {"information": "He also uses the name x_y_z."}
    # The page shows nothing of the report itself.
    assert "stranger_1" not in resp.text and "Example Social" not in resp.text


def test_wrong_receipt_code_is_answered_without_clues(client: TestClient, runtime: Runtime) -> None:
    code = receipt_code(post(client, valid()))
    before = stored(runtime)
    wrong = new_receipt_code()
    assert wrong != code
    resp = client.post("/report/receipt", data={"code": wrong, "information": "more"})
    assert resp.status_code == 422
    assert "We could not match this receipt code" in resp.text
    assert ">more</textarea>" in resp.text  # what they typed is kept
    # Every unknown code gets the very same page (apart from echoing what was typed).
    other = new_receipt_code()
    resp2 = client.post("/report/receipt", data={"code": other, "information": "more"})
    assert resp2.text.replace(other, "") == resp.text.replace(wrong, "")
    malformed = client.post("/report/receipt", data={"code": "hello", "information": "more"})
    assert malformed.status_code == 422 and "This is not a receipt code" in malformed.text
    empty = client.post("/report/receipt", data={"code": "", "information": ""})
    assert "Enter the receipt code" in empty.text and "Enter the information" in empty.text
    in_text = client.post("/report/receipt", data={"code": code, "information": f"code {code}"})
    assert in_text.status_code == 422 and "do not write the receipt code here" in in_text.text
    assert stored(runtime) == before
    assert documents(runtime, "addendum") == []


def test_receipt_page_takes_no_files(client: TestClient, runtime: Runtime) -> None:
    code = receipt_code(post(client, valid()))
    resp = client.post("/report/receipt", data={"code": code, "information": "x"},
                       files=[("files", ("a.png", standin_image(11), "image/png"))])
    assert resp.status_code == 400
    assert documents(runtime, "addendum") == []


def _all_stored_text(rt: Runtime) -> str:
    out: list[str] = []
    with rt.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        out.append(bytes(value).decode("latin-1"))
                    elif isinstance(value, dict | list):
                        out.append(json.dumps(value))
                    else:
                        out.append(str(value))
    return "\n".join(out)


def test_receipt_code_is_never_stored_or_logged(
    client: TestClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = receipt_code(post(client, valid(), [("files", ("a.png", standin_image(12), "image/png"))]))
    client.post("/report/receipt", data={"code": code, "information": "addendum text"})
    assert len(documents(runtime, "addendum")) == 1
    forms = {code, code.replace("-", ""), code[4:], code[4:].replace("-", "")}
    text = _all_stored_text(runtime).upper()
    for form in forms:
        assert form not in text
    assert receipt_hash(code) in _all_stored_text(runtime)
    if runtime.engine.dialect.name == "sqlite":
        data_dir = Path(runtime.settings.data_dir)
        for p in data_dir.glob("tipline.db*"):
            raw = p.read_bytes().upper()
            for form in forms:
                assert form.encode() not in raw, p
    for form in forms:
        assert form not in caplog.text.upper()


# --- file sniffing ----------------------------------------------------------------------


@pytest.mark.parametrize(("head", "expected"), [
    (standin_image(1), ("image", "image/png")),
    (standin_image(1, fmt="JPEG"), ("image", "image/jpeg")),
    (standin_image(1, fmt="WEBP"), ("image", "image/webp")),
    (standin_image(1, fmt="BMP"), ("image", "image/bmp")),
    (standin_image(1, fmt="TIFF"), ("image", "image/tiff")),
    (b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2", ("video", "video/mp4")),
    (b"\0\0\0\x14ftypqt  \0\0\0\0qt  ", ("video", "video/quicktime")),
    (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", ("image", "image/heic")),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm", ("video", "video/webm")),
    (PDF, ("pdf", "application/pdf")),
    ("Grüße\r\n\tline two".encode(), ("text", "text/plain; charset=utf-8")),
    (b"\0\0\0\x20ftypM4A \0\0\0\0", None),
    (EXE, None),
    (b"PK\x03\x04zipfile", None),
    (b"text with a NUL\0", None),
    (b"\xff\xfe\x00\x00", None),
])
def test_sniff(head: bytes, expected: tuple[str, str] | None) -> None:
    assert sniff(head, complete=True) == expected


def test_sniff_allows_a_character_cut_at_the_sniff_boundary() -> None:
    head = ("x" * 10 + "ü").encode()[:-1]
    assert sniff(head, complete=False) == ("text", "text/plain; charset=utf-8")
    assert sniff(head, complete=True) is None
