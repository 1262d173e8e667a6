"""GET /ispws/xsd serves the CyberTipline report schema, and the samples we accept conform to it."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from lxml import etree

from tipline.web.ispws import XSD_PATH


def test_xsd_is_served_as_a_schema(client: TestClient) -> None:
    for path in ("/ispws/xsd", "/xsd"):
        res = client.get(path)
        assert res.status_code == 200, path
        assert res.headers["content-type"].startswith("application/xml")
        assert res.content == XSD_PATH.read_bytes()
        schema = etree.XMLSchema(etree.fromstring(res.content))
        assert schema is not None


def test_sample_reports_conform_to_the_served_schema() -> None:
    schema = etree.XMLSchema(etree.parse(str(XSD_PATH)))
    samples = sorted((Path(__file__).parent / "corpus" / "report" / "valid").glob("*.xml"))
    assert samples
    failing = [p.name for p in samples if not schema.validate(etree.parse(str(p)))]
    assert failing == [], f"valid corpus documents that the served schema refuses: {failing}"
