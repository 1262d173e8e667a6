"""Intake speaks no protocol: its use cases refuse with a reason, each adapter maps it.

The wire answers themselves are pinned by the protocol tests (test_ispws*.py,
test_api_v1.py, test_public*.py); this file checks the seam: the reasons the use cases
raise, that every adapter's table answers every reason, one Basic-auth reading for both
protocols that take it, and reads that skip the owner check saying so.
"""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from helpers import file_details_xml, report_xml
from tipline.cybertip.xml import parse_file_details, parse_report
from tipline.intake.credentials import CredentialError, Principal, add_esp
from tipline.intake.errors import IntakeError, Reason
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.web import api_v1, ispws, public
from tipline.web.basic_auth import parse_basic


def _header(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


# --- the tables -----------------------------------------------------------------------------


@pytest.mark.parametrize("table", [ispws.CODE_FOR_REASON, api_v1.PROBLEM_FOR_REASON, public.TOLD_FOR_REASON],
                         ids=["ispws", "api_v1", "public"])
def test_every_adapter_answers_every_reason(table: dict[Reason, object]) -> None:
    assert set(table) == set(Reason)


def test_the_protocols_share_the_ispws_code_for_each_reason() -> None:
    # A platform that uses both protocols sees one number for one refusal.
    for reason, code in ispws.CODE_FOR_REASON.items():
        assert api_v1.PROBLEM_FOR_REASON[reason][3] == code, reason


def test_the_public_form_shows_the_form_again_only_for_what_the_person_can_correct() -> None:
    again = {r for r, told in public.TOLD_FOR_REASON.items() if told.again}
    assert again == {Reason.RULES_VIOLATED}
    assert public.TOLD_FOR_REASON[Reason.IDEMPOTENCY_KEY_REUSED].status == 409


# --- what the use cases raise ---------------------------------------------------------------


def _acme(runtime: Runtime) -> int:
    return add_esp(runtime, "Acme Social", "acme", "acme-secret-1")


def _open(runtime: Runtime, reporter_id: int, **kw: object) -> int:
    body = report_xml()
    rid, _ = runtime.intake.open_report(reporter_id, parse_report(body), source="ispws", body=body,
                                        content_type="text/xml", **kw)  # type: ignore[arg-type]
    return rid


def _refusal(fn: object, *args: object, **kw: object) -> IntakeError:
    with pytest.raises(IntakeError) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value


def test_use_cases_refuse_with_reasons_and_fields(runtime: Runtime) -> None:
    acme = _acme(runtime)
    other = add_esp(runtime, "Globex Chat", "globex", "globex-secret-1")
    rid = _open(runtime, acme)

    # Another reporter's report is a missing one, on every use case.
    err = _refusal(runtime.intake.finish, other, rid)
    assert (err.reason, err.field) == (Reason.REPORT_NOT_FOUND, "reportId")
    assert _refusal(runtime.intake.require_open, other, rid).reason == Reason.REPORT_NOT_FOUND
    assert runtime.intake.view(rid, other) is None and runtime.intake.view(rid, acme) is not None
    assert runtime.intake.list_reports(other) == []

    details = file_details_xml(rid, "a" * 32)
    err = _refusal(runtime.intake.file_info, acme, parse_file_details(details), body=details,
                   content_type="text/xml")
    assert (err.reason, err.field) == (Reason.FILE_NOT_FOUND, "fileId")

    runtime.intake.retract(acme, rid)
    assert _refusal(runtime.intake.finish, acme, rid).reason == Reason.REPORT_RETRACTED
    assert _refusal(runtime.intake.require_open, acme, rid).reason == Reason.REPORT_RETRACTED

    done = _open(runtime, acme)
    runtime.intake.finish(acme, done)
    assert _refusal(runtime.intake.retract, acme, done).reason == Reason.REPORT_FINISHED
    writer = runtime.blobs.writer(10_000)
    writer.write(standin_image(3))
    err = _refusal(runtime.intake.upload, acme, done, writer, file_name="a.png", media_type="image/png")
    assert err.reason == Reason.REPORT_FINISHED

    _open(runtime, acme, idempotency_key="k-1")
    other_body = report_xml(when="2026-10-02T12:00:00Z")
    err = _refusal(runtime.intake.open_report, acme, parse_report(other_body), source="api", body=other_body,
                   content_type="text/xml", idempotency_key="k-1")
    assert err.reason == Reason.IDEMPOTENCY_KEY_REUSED and "k-1" in (err.message or "")


def test_finish_rules_are_a_rules_violation_and_the_report_stays_open(runtime: Runtime) -> None:
    acme = _acme(runtime)
    rid = _open(runtime, acme)
    writer = runtime.blobs.writer(10_000)
    writer.write(standin_image(4))
    stored, fid = runtime.intake.upload(acme, rid, writer, file_name="a.png", media_type="image/png")
    assert stored.size > 0 and len(fid) == 32
    # industryClassification on a file that is not "Reported" breaks a finish rule.
    details = file_details_xml(rid, fid, "<fileRelevance>Supplemental Reported</fileRelevance>"
                                         "<industryClassification>A1</industryClassification>")
    runtime.intake.file_info(acme, parse_file_details(details), body=details, content_type="text/xml")
    err = _refusal(runtime.intake.finish, acme, rid)
    assert err.reason == Reason.RULES_VIOLATED and fid in (err.message or "")
    assert runtime.intake.view(rid, acme).state == "open"  # type: ignore[union-attr]


def test_upload_commits_the_blob_before_the_file_and_keeps_no_blob_when_refused(runtime: Runtime) -> None:
    acme = _acme(runtime)
    rid = _open(runtime, acme)
    data = standin_image(5)
    writer = runtime.blobs.writer(len(data) + 1)
    writer.write(data)
    stored, fid = runtime.intake.upload(acme, rid, writer, file_name="dir/a.png", media_type="image/png")
    assert runtime.intake.read_file_unchecked(fid) == data
    assert runtime.intake.view(rid, acme).files[0].file_name == "a.png"  # type: ignore[union-attr]

    refused = runtime.blobs.writer(10_000)
    refused.write(standin_image(6))
    before = sorted(p.name for p in runtime.blobs.root.rglob("*") if p.is_file())
    _refusal(runtime.intake.upload, acme, rid + 1000, refused, file_name="b.png", media_type="image/png")
    after = sorted(p.name for p in runtime.blobs.root.rglob("*") if p.is_file())
    assert after == before  # the ciphertext written for the refused file is gone again


# --- one reading of HTTP Basic --------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    (_header(b"acme:secret"), ("acme", "secret")),
    (_header(b"acme:"), ("acme", "")),  # an empty password is a (wrong) password
    (_header(b"acme:se:cr:et"), ("acme", "se:cr:et")),  # the first ':' splits
    ("basic " + base64.b64encode(b"acme:pw").decode(), ("acme", "pw")),  # the scheme has no case
    (_header("jos\u00e9:p\u00e4ss".encode()), ("jos\u00e9", "p\u00e4ss")),
    (_header(b":secret"), None),  # an empty user name is no credential
    (_header(b":"), None),
    (_header(b"acme"), None),  # no ':'
    (_header(b"\xff\xfe:pw"), None),  # not UTF-8
    ("Basic not*base64", None),
    ("Basic ", None),
    ("Basic", None),
    ("Bearer " + base64.b64encode(b"acme:pw").decode(), None),
    ("", None),
])
def test_parse_basic(header: str, expected: tuple[str, str] | None) -> None:
    assert parse_basic(header) == expected


def test_an_empty_user_name_is_refused_alike_by_both_protocols_without_a_password_check(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_check(username: str, password: str, **kw: object) -> Principal | None:
        raise AssertionError(f"password checked for user name {username!r}")

    monkeypatch.setattr(runtime.auth, "basic", no_check)
    header = {"Authorization": _header(b":acme-secret-1")}
    resp = client.get("/ispws/status", headers=header)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == ispws.REALM
    assert b"<responseCode>2000</responseCode>" in resp.content
    resp = client.get("/api/v1/reports", headers=header)
    assert resp.status_code == 401 and resp.headers["content-type"] == api_v1.PROBLEM_MEDIA_TYPE
    assert resp.json()["code"] == 2000 and resp.json()["detail"] == "the credentials were not accepted"


@pytest.mark.parametrize("username", ["", "acme:x"])
def test_add_esp_refuses_a_user_name_basic_cannot_carry(runtime: Runtime, username: str) -> None:
    with pytest.raises(CredentialError, match="username"):
        add_esp(runtime, "Acme Social", username, "acme-secret-1")


# --- the owner check is in the name -----------------------------------------------------------


def test_unchecked_reads_see_any_report_checked_reads_only_the_callers(runtime: Runtime) -> None:
    acme = _acme(runtime)
    other = add_esp(runtime, "Globex Chat", "globex", "globex-secret-1")
    rid = _open(runtime, acme)
    assert runtime.intake.view_unchecked(rid) is not None
    assert runtime.intake.view(rid, other) is None
    assert [r["reportId"] for r in runtime.intake.list_reports_unchecked()] == [rid]
    assert [r["reportId"] for r in runtime.intake.list_reports(acme)] == [rid]
    assert runtime.intake.addenda_unchecked(rid) == []
