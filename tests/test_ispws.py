"""ISPWS compatibility: every call, code and response rule of CYBERTIPLINE_API.md 1 and 3."""

from __future__ import annotations

import hashlib
import re
import threading

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from helpers import ManualClock, file_details_xml, report_xml
from tipline.standin import standin_image

ACME = ("acme", "acme-secret-1")
GLOBEX = ("globex", "globex-secret-1")


def parse(resp) -> etree._Element:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/xml")
    assert resp.headers.get("request-id")
    text = resp.content
    assert text.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>')
    assert b"\n" not in text
    root = etree.fromstring(text)
    assert root.nsmap == {} and "{" not in root.tag
    return root


def code(root: etree._Element) -> int:
    return int(root.findtext("responseCode"))  # type: ignore[arg-type]


def submit(client: TestClient, auth=ACME, body: bytes | None = None, ctype="text/xml; charset=utf-8") -> int:  # type: ignore[no-untyped-def]
    root = parse(client.post("/ispws/submit", content=body or report_xml(), auth=auth,
                             headers={"Content-Type": ctype}))
    assert code(root) == 0, root.findtext("responseDescription")
    assert root.findtext("responseDescription") == "Success"
    return int(root.findtext("reportId"))  # type: ignore[arg-type]


def upload(client: TestClient, report_id: int, data: bytes, auth=ACME, name="a.png") -> etree._Element:  # type: ignore[no-untyped-def]
    return parse(client.post("/ispws/upload", data={"id": str(report_id)},
                             files={"file": (name, data, "image/png")}, auth=auth))


def test_status(client: TestClient) -> None:
    root = parse(client.get("/ispws/status", auth=ACME))
    assert code(root) == 0
    assert root.findtext("responseDescription") == "Remote User : acme, Remote Ip : testclient"
    assert root.find("reportId") is None


@pytest.mark.parametrize("auth", [None, ("acme", "wrong"), ("nobody", "x"), ("", "")])
def test_bad_credentials_get_401_with_realm(client: TestClient, auth) -> None:  # type: ignore[no-untyped-def]
    for method, path in [("GET", "/ispws/status"), ("POST", "/ispws/submit"), ("POST", "/ispws/finish")]:
        resp = client.request(method, path, auth=auth, content=report_xml())
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == 'Basic realm="ESP Web Services"'
        assert resp.headers.get("request-id")
        assert code(etree.fromstring(resp.content)) == 2000


def test_disabled_platform_is_refused(client: TestClient, runtime) -> None:  # type: ignore[no-untyped-def]
    from tipline.store.db import transaction
    from tipline.store.tables import Reporter

    clock = ManualClock()
    runtime.auth.clock = clock
    assert client.get("/ispws/status", auth=ACME).status_code == 200  # warms the auth cache
    with transaction(runtime.sessions) as s:
        s.query(Reporter).filter_by(name="Acme Social").update({"enabled": False})
    # Refused within TIPLINE_AUTH_RECHECK_SECONDS, as documented.
    clock.advance(runtime.settings.auth_recheck_seconds + 0.1)
    assert client.get("/ispws/status", auth=ACME).status_code == 401


def test_full_cycle(client: TestClient, runtime) -> None:  # type: ignore[no-untyped-def]
    rid = submit(client)
    data = standin_image(1)
    root = upload(client, rid, data)
    assert code(root) == 0 and root.findtext("responseDescription") == "Success"
    assert int(root.findtext("reportId")) == rid  # type: ignore[arg-type]
    fid = root.findtext("fileId")
    assert root.findtext("hash") == hashlib.md5(data).hexdigest()
    root = parse(client.post("/ispws/fileinfo", content=file_details_xml(rid, fid),  # type: ignore[arg-type]
                             auth=ACME, headers={"Content-Type": "text/plain;charset=UTF-8"}))
    assert code(root) == 0 and int(root.findtext("reportId")) == rid  # type: ignore[arg-type]
    root = parse(client.post("/ispws/finish", data={"id": str(rid)}, auth=ACME))
    assert root.tag == "reportDoneResponse"
    assert code(root) == 0 and int(root.findtext("reportId")) == rid  # type: ignore[arg-type]
    assert [e.text for e in root.findall("files/fileId")] == [fid]
    assert root.find("responseDescription") is None
    view = runtime.intake.view_unchecked(rid)
    assert view.state == "finished" and view.files[0].sha256 == hashlib.sha256(data).hexdigest()
    assert runtime.intake.read_file_unchecked(fid) == data


def test_file_ids_unique_not_numeric_and_hash_stable(client: TestClient) -> None:
    rid = submit(client)
    ids, hashes = set(), set()
    for _ in range(30):
        root = upload(client, rid, b"same bytes")
        fid = root.findtext("fileId")
        assert re.fullmatch(r"[0-9a-f]{32}", fid)  # type: ignore[arg-type]
        assert re.search(r"[a-df]", fid[0])  # type: ignore[index]
        ids.add(fid)
        hashes.add(root.findtext("hash"))
    assert len(ids) == 30 and hashes == {hashlib.md5(b"same bytes").hexdigest()}


def test_finish_without_files_sends_empty_files(client: TestClient) -> None:
    rid = submit(client)
    resp = client.post("/ispws/finish", files={"id": (None, str(rid))}, auth=ACME)  # multipart
    assert b"<files/>" in resp.content
    assert code(parse(resp)) == 0


@pytest.mark.parametrize("ctype", ["text/xml; charset=utf-8", "text/xml", "text/plain;charset=UTF-8",
                                   "application/octet-stream", ""])
def test_submit_any_content_type(client: TestClient, ctype: str) -> None:
    submit(client, ctype=ctype)


@pytest.mark.parametrize("decl", ["", "<?xml version='1.0' encoding='utf-8'?>",
                                  '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'])
@pytest.mark.parametrize("when", ["2026-10-01T12:00:00.123Z", "2026-10-01T12:00:00Z",
                                  "2026-10-01T06:00:00-06:00", "2026-10-01T12:00:00.123456789Z"])
def test_client_dialects(client: TestClient, decl: str, when: str) -> None:
    submit(client, body=report_xml(decl=decl, when=when))


def test_state_machine_codes(client: TestClient) -> None:
    rid = submit(client)
    assert code(parse(client.post("/ispws/retract", data={"id": str(rid)}, auth=ACME))) == 0
    assert code(parse(client.post("/ispws/retract", data={"id": str(rid)}, auth=ACME))) == 5101
    root = parse(client.post("/ispws/finish", data={"id": str(rid)}, auth=ACME))
    assert root.tag == "reportDoneResponse" and code(root) == 5101
    assert int(root.findtext("reportId")) == rid and root.find("files") is not None  # type: ignore[arg-type]
    assert code(upload(client, rid, b"x")) == 5101

    rid2 = submit(client)
    assert code(parse(client.post("/ispws/finish", data={"id": str(rid2)}, auth=ACME))) == 0
    assert code(parse(client.post("/ispws/finish", data={"id": str(rid2)}, auth=ACME))) == 5102
    assert code(parse(client.post("/ispws/retract", data={"id": str(rid2)}, auth=ACME))) == 5102
    root = upload(client, rid2, b"x")
    assert code(root) == 5102 and int(root.findtext("reportId")) == rid2  # type: ignore[arg-type]


def test_missing_report_and_file(client: TestClient) -> None:
    root = upload(client, 99999999, b"x")
    assert code(root) == 5001 and root.findtext("reportId") == "99999999"
    rid = submit(client)
    root = parse(client.post("/ispws/fileinfo", content=file_details_xml(rid, "b" * 32), auth=ACME))
    assert code(root) == 5002 and int(root.findtext("reportId")) == rid  # type: ignore[arg-type]
    root = parse(client.post("/ispws/finish", data={"id": "99999999"}, auth=ACME))
    assert code(root) == 5001 and root.findtext("reportId") == "99999999"


def test_other_platforms_report_is_invisible(client: TestClient, runtime) -> None:  # type: ignore[no-untyped-def]
    rid = submit(client, auth=GLOBEX)
    fid = upload(client, rid, b"globex file", auth=GLOBEX).findtext("fileId")
    assert code(upload(client, rid, b"x")) == 5001
    assert code(parse(client.post("/ispws/fileinfo", content=file_details_xml(rid, fid), auth=ACME))) == 5001  # type: ignore[arg-type]
    assert code(parse(client.post("/ispws/finish", data={"id": str(rid)}, auth=ACME))) == 5001
    assert code(parse(client.post("/ispws/retract", data={"id": str(rid)}, auth=ACME))) == 5001
    view = runtime.intake.view_unchecked(rid)
    assert view.state == "open" and len(view.files) == 1


def test_fileinfo_for_file_of_another_report(client: TestClient) -> None:
    a, b = submit(client), submit(client)
    fid_b = upload(client, b, b"b").findtext("fileId")
    root = parse(client.post("/ispws/fileinfo", content=file_details_xml(a, fid_b), auth=ACME))  # type: ignore[arg-type]
    assert code(root) == 5002


def test_missing_id_and_file_part(client: TestClient) -> None:
    root = parse(client.post("/ispws/finish", data={}, auth=ACME))
    assert root.tag == "reportDoneResponse" and code(root) == 4000
    root = parse(client.post("/ispws/retract", data={"id": "abc"}, auth=ACME))
    assert code(root) == 4000
    rid = submit(client)
    root = parse(client.post("/ispws/upload", files={"id": (None, str(rid))}, auth=ACME))
    assert code(root) == 4200 and int(root.findtext("reportId")) == rid  # type: ignore[arg-type]
    root = parse(client.post("/ispws/upload", data={"id": str(rid)}, auth=ACME))  # urlencoded
    assert code(root) == 4200
    root = parse(client.post("/ispws/upload", files={"file": ("a.png", b"x")}, auth=ACME))
    assert code(root) == 4000


def test_finish_rule_classification_only_on_reported(client: TestClient) -> None:
    rid = submit(client)
    fid = upload(client, rid, b"x").findtext("fileId")
    extra = "<fileRelevance>Supplemental Reported</fileRelevance><industryClassification>A1</industryClassification>"
    root = parse(client.post("/ispws/fileinfo", content=file_details_xml(rid, fid, extra), auth=ACME))  # type: ignore[arg-type]
    assert code(root) == 0
    root = parse(client.post("/ispws/finish", data={"id": str(rid)}, auth=ACME))
    assert code(root) == 4100
    # Correcting the file details lets it finish.
    root = parse(client.post("/ispws/fileinfo", content=file_details_xml(rid, fid), auth=ACME))  # type: ignore[arg-type]
    assert code(parse(client.post("/ispws/finish", data={"id": str(rid)}, auth=ACME))) == 0


def test_original_bodies_kept_byte_for_byte(client: TestClient, runtime) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from tipline.store.tables import Document

    body = report_xml(decl="<?xml version='1.0' encoding='utf-8'?>") + b"\n\n  "
    rid = submit(client, body=body)
    fid = upload(client, rid, b"x").findtext("fileId")
    info = file_details_xml(rid, fid)  # type: ignore[arg-type]
    client.post("/ispws/fileinfo", content=info, auth=ACME)
    with runtime.sessions() as s:
        docs = s.execute(select(Document).where(Document.report_id == rid).order_by(Document.id)).scalars().all()
        assert [(d.kind, d.body) for d in docs] == [("submit", body), ("fileinfo", info)]
        assert docs[1].file_id == fid


def test_normalised_incident_type_is_recorded(client: TestClient, runtime) -> None:  # type: ignore[no-untyped-def]
    rid = submit(client, body=report_xml(incident_type="Online Enticement of Children for Sexual Act"))
    view = runtime.intake.view_unchecked(rid)
    assert view.incident_type == "Online Enticement of Children for Sexual Acts"
    assert view.normalisations and "Sexual Act" in str(view.normalisations)


def test_concurrent_finish_and_retract(client: TestClient) -> None:
    for _ in range(5):
        rid = submit(client)
        results: dict[str, int] = {}

        def call(path: str, rid: int = rid, results: dict[str, int] = results) -> None:
            results[path] = code(parse(client.post(f"/ispws/{path}", data={"id": str(rid)}, auth=ACME)))

        threads = [threading.Thread(target=call, args=(p,)) for p in ("finish", "retract")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results.values()) in ([0, 5101], [0, 5102]), results
        winner = "finish" if results["finish"] == 0 else "retract"
        assert results["retract" if winner == "finish" else "finish"] == (5102 if winner == "finish" else 5101)


def test_root_paths_also_answer(client: TestClient) -> None:
    assert code(parse(client.get("/status", auth=ACME))) == 0



WRONG_METHODS = [("GET", "/submit", "POST"), ("PUT", "/upload", "POST"), ("DELETE", "/fileinfo", "POST"),
                 ("GET", "/finish", "POST"), ("PATCH", "/retract", "POST"), ("POST", "/status", "GET")]


def test_wrong_method_answers_in_ispws_xml(client: TestClient) -> None:
    for base in ("/ispws", ""):  # also at the root, for integrations given a bare host
        for method, call, allow in WRONG_METHODS:
            resp = client.request(method, base + call, auth=ACME)
            assert resp.status_code == 405, (method, base + call)
            assert resp.headers["allow"] == allow
            assert resp.headers["content-type"].startswith("application/xml")
            assert resp.headers.get("request-id")
            assert resp.content.startswith(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><reportResponse>')
            root = etree.fromstring(resp.content)
            assert code(root) == 4000
            assert f"{method} {base}{call}: this call takes {allow}" in (root.findtext("responseDescription") or "")


def test_unknown_ispws_path_answers_in_ispws_xml(client: TestClient) -> None:
    for path in ["/ispws", "/ispws/", "/ispws/nope", "/ispws/submit/extra", "/ispws/a/b/c"]:
        for method in ("GET", "POST", "DELETE"):
            resp = client.request(method, path, auth=ACME, content=report_xml())
            assert resp.status_code == 404, (method, path)
            assert resp.headers["content-type"].startswith("application/xml")
            root = etree.fromstring(resp.content)
            assert code(root) == 1210
            assert "/submit" in (root.findtext("responseDescription") or "")
