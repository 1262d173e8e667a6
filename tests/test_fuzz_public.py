"""Property-based bodies for the public form ``POST /report`` and ``/report/receipt``.

Fields are read from the live form page (so fields added to it are fuzzed too), filled
from a valid report with a few values replaced by anything a person or a bot might send,
as urlencoded or multipart (with files under any name). For any body: no 5xx, no
traceback, and when nothing was filed, nothing was stored. Derandomized for CI.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import html

from helpers import FIELD, counts
from tipline.runtime import Runtime
from tipline.standin import standin_image

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BASE = {
    "incident": "enticement",
    "description": "An adult account keeps asking my 13-year-old to send pictures.",
    "urls": "https://social.example.com/u/stranger",
    "platform": "Example Social",
    "usernames": "stranger_1",
    "child_age": "13",
}


def form_fields(client: TestClient) -> list[str]:
    page = html.fromstring(client.get("/report").content)
    return sorted({str(n) for n in page.xpath("//form//*[@name]/@name")} - {"files"})


def check(resp: Any) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert "Traceback" not in resp.text


@FUZZ
@given(data=st.data(), multipart=st.booleans())
def test_report_form_any_fields(client: TestClient, runtime: Runtime, data: st.DataObject,
                                multipart: bool) -> None:
    names = form_fields(client)
    fields = dict(BASE)
    fields["form_token"] = "tok" + data.draw(st.text("abcdef0123456789", min_size=20, max_size=20))
    for name in data.draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
        fields[name] = data.draw(FIELD)
    if data.draw(st.booleans()):
        fields[data.draw(FIELD)] = data.draw(FIELD)  # a field the form does not have
    before = counts(runtime)
    if multipart:
        files = [(data.draw(st.sampled_from(["files", "file", "写真"])),
                  (data.draw(FIELD) or "x.png", data.draw(st.sampled_from([standin_image(5), b"", b"\x00text"])),
                   data.draw(st.sampled_from(["image/png", "application/octet-stream", ""]))))
                 for _ in range(data.draw(st.integers(0, 2)))]
        resp = client.post("/report", data=fields, files=files or [("none", ("", b"", "text/plain"))])
    else:
        resp = client.post("/report", data=fields)
    check(resp)
    if resp.status_code != 200 or "receipt" not in resp.text.lower():
        assert counts(runtime) == before, "a refused form left rows behind"


@FUZZ
@given(body=st.binary(max_size=300), ctype=st.sampled_from(
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "multipart/form-data", "text/plain", ""]))
def test_report_form_any_bytes(client: TestClient, runtime: Runtime, body: bytes, ctype: str) -> None:
    before = counts(runtime)
    check(client.post("/report", content=body, headers={"Content-Type": ctype}))
    check(client.post("/report/receipt", content=body, headers={"Content-Type": ctype}))
    assert counts(runtime) == before
