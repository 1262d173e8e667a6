"""Schemathesis over /api/v1, driven by the app's own OpenAPI document, on both backends.

Checks: no 5xx (``not_a_server_error``), every response conforms to the documented schema,
status code, content type and headers, what the schema allows is accepted
(``positive_data_acceptance``), and a refused request writes nothing. Path ids are pointed
at a real open report (and file) for most cases, so the fuzzer gets past 404 into the
validation it is here to test. Deterministic (derandomized) so CI is never flaky.
"""

from __future__ import annotations

import base64
import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from conftest import ESP_PASS, ESP_USER
from helpers import report_xml
from tipline.cybertip.xml import parse_report
from tipline.runtime import Runtime
from tipline.standin import standin_image
from tipline.store.tables import Document, File, Report

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance, response_headers_conformance]
# The one rule a static schema cannot state: an incident may not lie in the future (NCMEC's
# rule; docs/api.md). Every other refusal of schema-valid data is a bug in the document.
FUTURE_RULE = "is in the future"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{ESP_USER}:{ESP_PASS}".encode()).decode()}


def _document() -> dict[str, Any]:
    # The document needs only the routes: read it from a throwaway app at collection time
    # (schemathesis' fixture-based loader does not run under this pytest).
    from tipline.cli import do_init
    from tipline.config import Settings
    from tipline.web.app import create_app

    with tempfile.TemporaryDirectory() as d:
        settings = Settings.from_env(d)
        do_init(settings)
        rt = Runtime.open(settings)
        try:
            return create_app(runtime=rt).openapi()
        finally:
            rt.close()


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
# Examples and fuzzing. The coverage phase enumerates every boundary case regardless of
# max_examples (minutes per operation here) and fails to build the multipart upload's cases
# in schemathesis 4.32.5 ("Unsupported type: 'Binary'"); what it checks for methods (405 and
# Allow) has its own test in test_api_v1.py.
schema.config.phases.update(phases=["examples", "fuzzing"])


@pytest.fixture
def app(runtime: Runtime, esps: object) -> Any:
    from tipline.web.app import create_app

    return create_app(runtime=runtime)


def _counts(rt: Runtime) -> tuple[int, ...]:
    with rt.sessions() as s:
        return tuple(int(s.execute(select(func.count()).select_from(t)).scalar_one())
                     for t in (Report, File, Document))


def _open_report_with_file(rt: Runtime) -> tuple[int, str]:
    reporter = rt.auth.basic(ESP_USER, ESP_PASS)
    assert reporter is not None
    body = report_xml()
    rid, _ = rt.intake.open_report(reporter.reporter_id, parse_report(body), source="ispws", body=body,
                                   content_type="text/xml")
    w = rt.blobs.writer(10**6)
    w.write(standin_image(3))
    fid = rt.intake.attach_file(reporter.reporter_id, rid, w.commit(), file_name="a.png",
                                media_type="image/png")
    return rid, fid


@schema.parametrize()
# One store per operation and backend, shared by its examples on purpose: each example checks
# that what it was refused left the store as it found it.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, derandomize=True,
          max_examples=MAX_EXAMPLES)
def test_api_v1_conforms_to_its_openapi(case: Any, app: Any, runtime: Runtime) -> None:
    # A generated id almost never exists: aim valid ones at a real open report and file.
    params = case.path_parameters or {}
    if isinstance(params.get("reportId"), int) and params["reportId"] >= 1:
        rid, fid = _open_report_with_file(runtime)
        params["reportId"] = rid
        if isinstance(params.get("fileId"), str):
            params["fileId"] = fid
    before = _counts(runtime)
    response = case.call_and_validate(headers=AUTH, checks=CHECKS, app=app)
    # positive_data_acceptance, less the dynamic rule above: data the schema allows is taken.
    if case.meta is not None and case.meta.generation.mode.is_positive and response.status_code in (400, 422):
        if response.json().get("type") == "urn:tipline:problem:cannot-answer":
            # /api/v1/answer: any string is schema-valid, the grammar (docs/answers.md) is not a
            # schema; the refusal must still be the documented one, with the closest questions.
            assert response.json()["closest"], response.text
            return
        errors = response.json().get("errors") or []
        assert errors and all(FUTURE_RULE in e["message"] for e in errors), \
            f"schema-valid request refused: {response.text}"
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        assert _counts(runtime) == before, "a refused request left rows behind"
