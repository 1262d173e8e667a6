"""/transparency/YEAR is served as published from the year's columnar export when there is one:
the same tables and snapshot as the store path (the reference), computed from the export once
and then read back from the kept file — neither the store nor the export is read again."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from test_outcome_stats import _large_world
from tipline.runtime import Runtime
from tipline.stats import columnar
from tipline.stats import transparency as tr


def _tables(doc: dict[str, object]) -> object:
    return doc["tables"]


def test_the_page_is_served_from_the_export_as_the_store_would_serve_it(runtime: Runtime,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tipline.web.app import create_app

    _large_world(runtime)
    data = runtime.settings.data_dir
    th = runtime.settings.outcome_coverage_threshold
    reference = tr.build(runtime.sessions, 2023, coverage_threshold=th).as_json()
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as c:
        # No export: the store path, as before.
        from_store = c.get("/api/v1/stats/transparency/2023").json()
        assert from_store["snapshot"] == reference["snapshot"] and _tables(from_store) == _tables(reference)
        columnar.export(runtime.sessions, 2023, columnar.default_dir(data, 2023))
        calls: list[str] = []
        real_build, real_store = columnar.build, tr.build
        monkeypatch.setattr(columnar, "build", lambda *a, **k: calls.append("export") or real_build(*a, **k))
        monkeypatch.setattr(tr, "build", lambda *a, **k: calls.append("store") or real_store(*a, **k))
        first = c.get("/api/v1/stats/transparency/2023").json()
        assert calls == ["export"]
        assert first["snapshot"] == reference["snapshot"] and _tables(first) == _tables(reference)
        # Computed once: the page, the JSON and the PDF now read the kept report.
        page = c.get("/transparency/2023")
        assert page.status_code == 200 and f"?snapshot={reference['snapshot']}" in page.text
        again = c.get("/api/v1/stats/transparency/2023").json()
        assert c.get("/transparency/2023.pdf").content.startswith(b"%PDF")
        assert calls == ["export"] and _tables(again) == _tables(reference)
        # A year without an export still comes from the store.
        assert c.get("/api/v1/stats/transparency/2022").status_code == 200
        assert calls == ["export", "store"]


def test_a_new_export_or_threshold_is_published_anew(runtime: Runtime) -> None:
    _large_world(runtime)
    data = runtime.settings.data_dir
    directory = columnar.default_dir(data, 2023)
    columnar.export(runtime.sessions, 2023, directory)
    a = columnar.published(data, 2023, coverage_threshold=0.5)
    assert a is not None
    assert columnar.published(data, 2023, coverage_threshold=0.5).as_json() == a.as_json()  # type: ignore[union-attr]
    # Another threshold is another report (computed again, from the same export).
    b = columnar.published(data, 2023, coverage_threshold=0.0)
    assert b is not None and b.as_json()["tables"] == tr.build(runtime.sessions, 2023, coverage_threshold=0.0) \
        .as_json()["tables"]
    # A re-export (the same records, a new export time) is published from anew: the same figures.
    columnar.export(runtime.sessions, 2023, directory)
    c = columnar.published(data, 2023, coverage_threshold=0.5)
    assert c is not None and c.snapshot == a.snapshot and c.generated_at >= a.generated_at
    assert columnar.published(data, 2022) is None


def test_a_damaged_export_falls_back_to_the_store(runtime: Runtime) -> None:
    from tipline.web.app import create_app

    _large_world(runtime)
    data = runtime.settings.data_dir
    directory = columnar.default_dir(data, 2023)
    columnar.export(runtime.sessions, 2023, directory)
    (directory / "units_all.parquet").write_bytes(b"not parquet")
    reference = tr.build(runtime.sessions, 2023, coverage_threshold=runtime.settings.outcome_coverage_threshold)
    assert columnar.published(data, 2023) is None
    (directory / "manifest.json").write_text("{}")
    assert columnar.published(data, 2023) is None
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as c:
        doc = c.get("/api/v1/stats/transparency/2023").json()
        assert doc["tables"] == reference.as_json()["tables"]
        assert c.get("/transparency/2023").status_code == 200
