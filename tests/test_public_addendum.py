"""What the public adds with a receipt code is seen and re-assessed, on SQLite and PostgreSQL.

Seen: in ``tipline report show`` (text and ``--json``) and in the operators' JSON route
``GET /api/v1/operator/reports/{reportId}`` (operator tokens only). Re-assessed: the addendum
merges into the report and re-enqueues the stages that read it, so the assessment, location
and jurisdiction reflect it.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from tipline.cli import main
from tipline.config import Settings
from tipline.intake.service import DOCUMENT_STAGES
from tipline.pipeline.core import StageContext, stages
from tipline.pipeline.queue import enrich, pending_report_ids
from tipline.runtime import Runtime
from tipline.store.tables import Assessment, Document, Jurisdiction, PipelineRun, Report

CODE_RE = re.compile(r'id="receipt-code">(TPL(?:-[0-9A-Z]{4}){4})</p>')


def cli(settings: Settings, *args: str, ok: bool = True) -> str:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def file_report(client: TestClient, **over: str) -> str:
    data = {"incident": "enticement", "description": "An adult keeps asking a child for pictures.",
            "platform": "Example Chat", "usernames": "stranger_1", "form_token": "add" + "x" * 20}
    data.update(over)
    resp = client.post("/report", data=data, files=[("files", ("", b"", "application/octet-stream"))])
    m = CODE_RE.search(resp.text)
    assert resp.status_code == 200 and m, resp.text
    return m.group(1)


def report_id(rt: Runtime) -> int:
    with rt.sessions() as s:
        (rid,) = s.execute(select(Report.id)).scalars().all()
        return int(rid)


def add(client: TestClient, code: str, **fields: str) -> Any:
    return client.post("/report/receipt", data={"code": code, **fields})


def assessment(rt: Runtime, rid: int) -> Assessment:
    with rt.sessions() as s:
        a = s.get(Assessment, rid)
        assert a is not None
        s.expunge(a)
        return a


# --- seen --------------------------------------------------------------------------------------


def test_addendum_is_shown_by_report_show(client: TestClient, runtime: Runtime, settings: Settings) -> None:
    code = file_report(client)
    rid = report_id(runtime)
    assert add(client, code, information="His other name is x_y_z.\nHe said he lives in Leeds.",
               usernames="x_y_z", child_country="GB").status_code == 200
    text = cli(settings, "report", "show", str(rid))
    assert "Added by the reporter (1):" in text
    assert "      His other name is x_y_z." in text and "      He said he lives in Leeds." in text
    assert "      usernames: x_y_z" in text and "      child_country: GB" in text
    data = json.loads(cli(settings, "report", "show", str(rid), "--json"))
    (entry,) = data["addenda"]
    assert entry["information"] == "His other name is x_y_z.\nHe said he lives in Leeds."
    assert entry["added"] == {"usernames": "x_y_z", "child_country": "GB"}
    # And merged into the report as it now stands.
    doc = data["report"]
    assert [p.get("screenName") for p in doc["personOrUserReported"]] == ["stranger_1", "x_y_z"]
    assert doc["victim"][0]["victimPerson"]["address"] == [{"country": "GB"}]
    assert re.search(r"Added by the reporter on \d{4}-\d\d-\d\d \d\d:\d\d UTC:\nHis other name",
                     doc["additionalInfo"])
    # A report without addenda says nothing about them.
    file_report(client, form_token="other" + "y" * 20)
    with runtime.sessions() as s:
        other = max(s.execute(select(Report.id)).scalars())
    assert json.loads(cli(settings, "report", "show", str(other), "--json"))["addenda"] == []
    assert "Added by the reporter" not in cli(settings, "report", "show", str(other))


def test_two_addenda_keep_both(client: TestClient, runtime: Runtime) -> None:
    code = file_report(client)
    rid = report_id(runtime)
    add(client, code, information="first")
    add(client, code, information="second", child_age="12")
    entries = runtime.intake.addenda_unchecked(rid)
    assert [e["information"] for e in entries] == ["first", "second"]
    with runtime.sessions() as s:
        doc = s.execute(select(Report.document).where(Report.id == rid)).scalar_one()
    assert doc["additionalInfo"].index("first") < doc["additionalInfo"].index("second")
    assert doc["victim"] == [{"victimPerson": {"age": 12}}]


def test_invalid_addendum_stores_and_changes_nothing(client: TestClient, runtime: Runtime) -> None:
    code = file_report(client)
    rid = report_id(runtime)
    with runtime.sessions() as s:
        before = s.execute(select(Report.document).where(Report.id == rid)).scalar_one()
    resp = add(client, code, information="more", child_country="Atlantis")
    assert resp.status_code == 422 and "Choose a country from the list" in resp.text
    assert add(client, code).status_code == 422  # nothing at all to add
    assert add(client, code, person_town="Lyon").status_code == 422  # a town needs its country
    with runtime.sessions() as s:
        assert s.execute(select(Report.document).where(Report.id == rid)).scalar_one() == before
        assert s.execute(select(Document).where(Document.kind == "addendum")).first() is None


# --- the operators' JSON route -------------------------------------------------------------------


def test_operator_reads_a_report_with_its_addenda(client: TestClient, runtime: Runtime, settings: Settings) -> None:
    code = file_report(client)
    rid = report_id(runtime)
    add(client, code, information="Seen again today.", profile_urls="https://chat.example.com/u/stranger_1")
    token = cli(settings, "operator", "token", "--label", "Ana (analyst)").splitlines()[0]
    assert token.startswith("tpo_")
    url = f"/api/v1/operator/reports/{rid}"
    resp = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["reportId"] == rid and body["source"] == "web"
    assert body["addenda"][0]["information"] == "Seen again today."
    assert body["addenda"][0]["added"] == {"profile_urls": "https://chat.example.com/u/stranger_1"}
    assert body["report"]["personOrUserReported"][0]["profileUrl"] == ["https://chat.example.com/u/stranger_1"]
    assert {"stages", "jurisdiction", "priority"} <= set(body["enrichment"])

    # No token, a platform's credentials, a bad token: 401 problem documents.
    for headers in ({}, {"Authorization": "Basic YWNtZTphY21lLXNlY3JldC0x"},
                    {"Authorization": "Bearer tpo_000000000000_nope"}):
        r = client.get(url, headers=headers)
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    # An operator token does not open the platforms' routes.
    assert client.get(f"/api/v1/reports/{rid}", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    missing = client.get(f"/api/v1/operator/reports/{rid + 1000}", headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404 and missing.json()["code"] == 5001

    listed = json.loads(cli(settings, "operator", "list", "--json"))
    (entry,) = listed
    assert entry["label"] == "Ana (analyst)" and entry["revoked"] is None and token[4:].startswith(entry["id"])
    assert "Ana (analyst)" in cli(settings, "operator", "list")
    cli(settings, "operator", "revoke", entry["id"])
    assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    cli(settings, "operator", "revoke", entry["id"], ok=False)  # already revoked: a clear error
    # Operators never appear as a platform.
    assert "tipline operators" not in cli(settings, "esp", "list")


def test_operator_route_is_in_the_openapi_document(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    op = schema["paths"]["/api/v1/operator/reports/{reportId}"]["get"]
    assert op["security"] == [{"operatorAuth": []}]
    assert schema["components"]["securitySchemes"]["operatorAuth"]["bearerFormat"] == "tpo_<id>_<secret>"
    assert "addenda" in schema["components"]["schemas"]["OperatorReportRead"]["properties"]


# --- re-assessed -----------------------------------------------------------------------------------


def test_addendum_re_enqueues_and_the_assessment_reflects_it(client: TestClient, runtime: Runtime) -> None:
    enqueued: list[int] = []
    runtime.intake.finished_hooks.append(enqueued.append)
    code = file_report(client)
    rid = report_id(runtime)
    assert enqueued == [rid]  # the finish
    ctx = StageContext(runtime)
    enrich(ctx, rid)
    first = assessment(runtime, rid)
    assert first.priority != 1
    assert "enticement_sextortion" in [r["rule"] for r in first.priority_reasons]
    with runtime.sessions() as s:
        j = s.get(Jurisdiction, rid)
        assert j is not None and j.country is None
        hashed_at = s.execute(select(PipelineRun.done_at).where(PipelineRun.report_id == rid,
                                                              PipelineRun.stage == "hashes")).scalar_one()
    assert pending_report_ids(runtime) == []

    assert add(client, code, information="The child is 13.", child_age="13", child_country="GB",
               child_town="Leeds").status_code == 200
    assert enqueued == [rid, rid]  # handed to the queue again
    assert pending_report_ids(runtime) == [rid]  # and durable: the reconciler finds it too
    ran = enrich(ctx, rid)
    assert set(DOCUMENT_STAGES) <= set(ran)
    assert {"jurisdiction", "links", "route"} <= set(ran)
    assert "hashes" not in ran and "matches" not in ran  # files did not change

    after = assessment(runtime, rid)
    assert after.priority == 1
    assert "enticement_sextortion_minor" in [r["rule"] for r in after.priority_reasons]
    with runtime.sessions() as s:
        j = s.get(Jurisdiction, rid)
        assert j is not None and (j.country, j.source) == ("GB", "public_form_child")
        assert s.execute(select(PipelineRun.done_at).where(PipelineRun.report_id == rid,
                                                         PipelineRun.stage == "hashes")).scalar_one() == hashed_at


def test_document_stages_are_every_stage_that_reads_the_report() -> None:
    """DOCUMENT_STAGES must name each stage reading ``reports.document``, or one it reads from."""
    listed = set(DOCUMENT_STAGES)
    by_name = {st.name: st for st in stages()}
    assert listed <= set(by_name)

    def reruns(name: str) -> bool:
        st = by_name[name]
        return name in listed or any(reruns(dep) for dep in st.after)

    for st in stages():
        source = inspect.getsource(inspect.getmodule(st.func))  # type: ignore[arg-type]
        if "Report.document" in source:
            assert reruns(st.name), f"stage {st.name} reads the report document but an addendum would not rerun it"
    # Stages that read only files are left alone.
    assert "hashes" not in listed and "matches" not in listed


@pytest.mark.parametrize("field", ["usernames", "profile_urls"])
def test_receipt_code_is_refused_in_every_addendum_field(client: TestClient, runtime: Runtime, field: str) -> None:
    code = file_report(client)
    value = code if field == "usernames" else f"https://x.example/{code}"
    resp = add(client, code, **{field: value})
    assert resp.status_code == 422
    with runtime.sessions() as s:
        assert s.execute(select(Document).where(Document.kind == "addendum")).first() is None
