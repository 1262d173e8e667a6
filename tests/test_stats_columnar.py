"""The columnar path (tipline.stats.columnar: Parquet export, DuckDB) gives the very report the
store path gives (tipline.stats.transparency.build, the reference), on both backends: a
simulated year for NCMEC's tables, and referrals with every kind of feedback (amendments,
withdrawals, reopened closings, transfers, several referrals per report) for the outcome
tables, with enough feedback that both estimates and their bootstraps are computed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from test_outcome_stats import _large_world, _world
from test_transparency import year_2023  # noqa: F401 - the fixture
from tipline.runtime import Runtime
from tipline.stats import columnar
from tipline.stats import outcomes as oc
from tipline.stats import transparency as tr
from tipline.store.db import transaction
from tipline.store.tables import Agency, Jurisdiction

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _with_outcomes(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    import outcome_rows

    plain = outcome_rows.Records.agency

    def agency(self: outcome_rows.Records, code: str, kind: str = "icac", state: str | None = "TX") -> int:
        # The simulated year's directory already holds some of the codes the worlds use.
        with rt.sessions() as s:
            found = s.scalar(select(Agency.id).where(Agency.code == code))
        if found is not None:
            self._agencies[code] = found
        return plain(self, code, kind, state)

    monkeypatch.setattr(outcome_rows.Records, "agency", agency)
    _world(rt)
    _large_world(rt)
    return rt


@pytest.fixture
def year_with_outcomes(year_2023: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:  # noqa: F811
    return _with_outcomes(year_2023, monkeypatch)


@pytest.fixture
def outcomes_only(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    return _with_outcomes(runtime, monkeypatch)


def test_the_columnar_report_is_the_store_report(year_with_outcomes: Runtime, tmp_path: Path) -> None:
    rt = year_with_outcomes
    reference = tr.build(rt.sessions, 2023, now=NOW)
    manifest = columnar.export(rt.sessions, 2023, tmp_path / "x", now=NOW)
    assert manifest["rows"]["reports"] == reference.records["reports"] > 60
    assert manifest["rows"]["outcomes"] > 0 and manifest["rows"]["files"] > 0
    fast = columnar.build(tmp_path / "x", now=NOW)
    ref_doc, fast_doc = reference.as_json(), fast.as_json()
    for a, b in zip(ref_doc["tables"], fast_doc["tables"], strict=True):
        assert a == b, a["key"]
    assert ref_doc == fast_doc
    # The export's aggregates (record counts, outcome cubes) are what the build read; summed
    # here from the row-level facts instead, and without the aggregate files, the same report.
    held = manifest["derived"]["units_all"]["cubes"]
    assert held["by"] == ["priority", "month", "agency"] and held["censor"] <= "2023-12-31"
    assert columnar.build(tmp_path / "x", now=NOW, aggregates=False).as_json() == ref_doc
    for name in columnar.AGGREGATES:
        assert (tmp_path / "x" / f"{name}.parquet").exists(), name
        (tmp_path / "x" / f"{name}.parquet").unlink()
    assert columnar.build(tmp_path / "x", now=NOW).as_json() == ref_doc
    # Without its derived files (an export of an earlier version), the report derives them on
    # the fly from the five files, with the same SQL: the same report.
    for name in columnar.ROW_FACTS:
        (tmp_path / "x" / f"{name}.parquet").unlink()
    assert columnar.build(tmp_path / "x", now=NOW).as_json() == ref_doc
    # The figures are not trivially empty: an estimate and its bootstrap interval were computed.
    total = dict(zip([c.name for c in reference.table("outcomes").columns], reference.table("outcomes").rows[0],
                     strict=True))
    assert total["estimate"] is not None and total["estimateLow"] < total["estimateHigh"]
    assert total["estimateWeighted"] is not None


def test_outcome_statistics_agree_for_every_breakdown(outcomes_only: Runtime, tmp_path: Path) -> None:
    rt = outcomes_only
    directory = tmp_path / "x"
    manifest = columnar.export(rt.sessions, 2023, directory)
    con = columnar.connect(directory)
    for unit, measure, escalated in (("referral", "arrests", False), ("report", "charges", True),
                                     ("report", "convictions", False), ("report", "children_identified", False)):
        for by in ("platform", "state", "country", "incident-type", "year", "agency", "priority", "month", None):
            scope = oc.Scope(date(2023, 1, 1), date(2023, 12, 31), escalated_only=escalated, by=by, unit=unit,
                             measure=measure)
            got = columnar.outcome_stats(con, manifest, scope, coverage_threshold=0.3, replicates=40)
            want = oc.outcome_stats(rt.sessions, scope, coverage_threshold=0.3, replicates=40)
            assert got == want, (unit, measure, escalated, by)
    # The transparency report's unit and measure: read from the export's cubes for a breakdown
    # they hold (alone or with the others prefetched), summed from the units for one they do not.
    for escalated in (False, True):
        for by, prefetch in ((None, ()), ("agency", ()), ("month", ("priority",)), ("priority", ()),
                             ("platform", ()), ("agency", ("month", "priority"))):
            scope = oc.Scope(date(2023, 1, 1), date(2023, 12, 31), escalated_only=escalated, by=by)
            want = oc.outcome_stats(rt.sessions, scope, coverage_threshold=0.3, replicates=40)
            for aggregates in (True, False):
                got = columnar.outcome_stats(columnar.connect(directory), manifest, scope, coverage_threshold=0.3,
                                             replicates=40, prefetch=prefetch, aggregates=aggregates)
                assert got == want, (escalated, by, prefetch, aggregates)


def test_an_export_knows_when_the_store_moved_on(outcomes_only: Runtime, tmp_path: Path) -> None:
    rt = outcomes_only
    columnar.export(rt.sessions, 2023, tmp_path / "x")
    assert columnar.is_current(rt.sessions, tmp_path / "x")
    with transaction(rt.sessions) as s:
        j = s.scalars(select(Jurisdiction).limit(1)).one()
        j.country = "ZZ" if j.country != "ZZ" else "YY"
    assert not columnar.is_current(rt.sessions, tmp_path / "x")
    assert tr.build(rt.sessions, 2023).snapshot != columnar.build(tmp_path / "x").snapshot


def test_the_manifest_checksums_the_files(outcomes_only: Runtime, tmp_path: Path) -> None:
    m = columnar.export(outcomes_only.sessions, 2023, tmp_path / "x")
    on_disk = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert on_disk == m and set(m["sha256"]) == {f"{n}.parquet" for n in (*columnar.COLUMNS, *columnar.DERIVED)}
    with pytest.raises(ValueError, match="no columnar export"):
        columnar.read_manifest(tmp_path)


def test_cli_export_and_report_from_it(outcomes_only: Runtime, tmp_path: Path) -> None:
    from tipline.cli import main

    rt = outcomes_only
    env = {"TIPLINE_DATABASE_URL": rt.settings.database_url}
    base = ["--data-dir", str(rt.settings.data_dir)]
    res = CliRunner().invoke(main, [*base, "stats", "export", "--year", "2023"], env=env)
    assert res.exit_code == 0, res.output
    assert (columnar.default_dir(rt.settings.data_dir, 2023) / "reports.parquet").exists()
    res = CliRunner().invoke(main, [*base, "transparency", "2023", "--format", "json", "--columnar",
                                    "--out", str(tmp_path / "out")], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "transparency-2023.json").read_text())
    assert doc["snapshot"] == tr.build(rt.sessions, 2023).snapshot
    missing = CliRunner().invoke(main, [*base, "transparency", "2022", "--columnar", "--out", str(tmp_path / "o")],
                                 env=env)
    assert missing.exit_code != 0 and "stats export" in missing.output
