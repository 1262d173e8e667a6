"""The revision log of the transparency report: each kept snapshot against the one before it,
figure by figure, with why — on the page, in the JSON, in the data package."""

from __future__ import annotations

import csv
import io
from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import select

from outcome_rows import Records
from test_outcome_stats import _large_world
from tipline.runtime import Runtime
from tipline.stats import revisions
from tipline.stats import transparency as tr
from tipline.store.tables import Agency


def _records(rt: Runtime) -> Records:
    """A row writer that knows the agencies already on record (the worlds made them)."""
    r = Records(rt)
    with rt.sessions() as s:
        r._agencies.update({code: i for i, code in s.execute(select(Agency.id, Agency.code))})
    return r


def _figure(report: tr.Transparency, table: str, row: str, column: str) -> object:
    t = report.table(table)
    names = [c.name for c in t.columns]
    return next(r[names.index(column)] for r in t.rows if r[0] == row)


def test_late_feedback_is_a_revision_figure_by_figure(runtime: Runtime) -> None:
    _large_world(runtime)
    data = runtime.settings.data_dir
    first = tr.build(runtime.sessions, 2023)
    tr.keep(first, data)
    assert [e["snapshot"] for e in first.revisions] == [first.snapshot]
    assert first.revisions[0]["reasons"] == ["first published"] and first.revisions[0]["changes"] == []
    tr.keep(tr.build(runtime.sessions, 2023), data)  # the same records: no new entry
    assert len(revisions.read_log(tr.snapshot_dir(data), 2023)) == 1

    # Late feedback: an arrest on a referral that had none.
    r = _records(runtime)
    rep = r.report(priority=1, received=date(2023, 5, 3))
    ref = r.refer(rep, "A", date(2023, 5, 3))
    second = tr.build(runtime.sessions, 2023)
    tr.keep(second, data)
    r.outcome(ref, "ARREST", date(2023, 9, 1), persons=3)
    third = tr.build(runtime.sessions, 2023)
    tr.keep(third, data)
    log = third.revisions
    assert [e["snapshot"] for e in log] == [first.snapshot, second.snapshot, third.snapshot]
    entry = log[-1]
    assert entry["previous"] == second.snapshot
    assert any("outcome feedback" in why for why in entry["reasons"])
    changed = {(c["table"], c["row"], c["column"]): c for c in entry["changes"]}
    # Only outcome figures moved: the year's records did not change.
    assert {t for t, _, _ in changed} <= {t.key for t in third.tables if t.key.startswith("outcomes")}
    arrests = changed[("outcomes", "total", "withArrest")]
    assert (arrests["old"], arrests["new"]) == (_figure(second, "outcomes", "total", "withArrest"),
                                                _figure(third, "outcomes", "total", "withArrest"))
    assert arrests["new"] == arrests["old"] + 1 and "outcome feedback" in arrests["why"]
    persons = changed[("outcomes", "total", "personsArrested")]
    assert persons["new"] - persons["old"] == 3
    # The report added before: the year's records changed, with the count of reports.
    added = log[1]
    assert any("+1 reports" in why for why in added["reasons"])
    assert ("reports", "total", "tipline") in {(c["table"], c["row"], c["column"]) for c in added["changes"]}
    # A kept snapshot recalls the log as it stood then.
    back = tr.recall(data, 2023, second.snapshot)
    assert back is not None and [e["snapshot"] for e in back.revisions] == [first.snapshot, second.snapshot]


def test_a_new_row_has_no_old_value_not_a_zero() -> None:
    cols = [tr.Column("group", "group", "string"), tr.Column("n", "n", "integer")]

    def rep(rows: list[list[object]], snap: str) -> tr.Transparency:
        return tr.Transparency(2023, snap, "1", "c", "2024-01-01T00:00:00Z", {"reports": 1},
                               [tr.Table("outcomesByAgency", "t", cols, rows, "q")],
                               {"records": "r", "outcomes": {"all": snap}})

    changes = revisions.diff(rep([["A", 4]], "a"), rep([["A", 4], ["B", 0]], "b"))
    assert changes == [{"table": "outcomesByAgency", "row": "B", "column": "n", "old": None, "new": 0,
                        "why": "new, amended or withdrawn outcome feedback from agencies, or referrals added"}]
    gone = revisions.diff(rep([["A", 4], ["B", 2]], "a"), rep([["A", 4]], "b"))
    assert [(c["row"], c["old"], c["new"]) for c in gone] == [("B", 2, None)]


def test_page_json_and_data_package_show_the_revisions(runtime: Runtime, client: TestClient) -> None:
    _large_world(runtime)
    first = client.get("/api/v1/stats/transparency/2023").json()
    r = _records(runtime)
    rep = r.report(priority=2, received=date(2023, 6, 3))
    r.outcome(r.refer(rep, "B", date(2023, 6, 3)), "CLOSED_NOT_ACTIONABLE", date(2023, 8, 1))
    page = client.get("/transparency/2023")
    assert page.status_code == 200
    assert 'id="revisions"' in page.text and f"revises <code>{first['snapshot']}</code>" in page.text
    doc = client.get("/api/v1/stats/transparency/2023").json()
    assert [e["snapshot"] for e in doc["revisions"]] == [first["snapshot"], doc["snapshot"]]
    assert doc["revisions"][-1]["changes"]
    snap = doc["snapshot"]
    pkg = client.get(f"/transparency/2023/datapackage.json?snapshot={snap}").json()
    res = next(x for x in pkg["resources"] if x["name"] == "revisions")
    body = client.get(f"/transparency/2023/{res['path'].split('?')[0]}?snapshot={snap}")
    assert body.status_code == 200
    rows = list(csv.DictReader(io.StringIO(body.text)))
    assert [f["name"] for f in res["schema"]["fields"]] == list(rows[0])
    assert {x["snapshot"] for x in rows} == {first["snapshot"], snap}
    # An old snapshot's page shows the log as it stood then: no later revision.
    old = client.get(f"/transparency/2023?snapshot={first['snapshot']}")
    assert "revises <code>" not in old.text


def test_revision_values_are_written_out_for_a_reader() -> None:
    from tipline.stats.transparency import fmt_revision

    assert fmt_revision(1.65698e-06) == "0.00000165698"  # never "1.65698e-06"
    assert fmt_revision(0.8032791) == "0.803279"
    assert fmt_revision(12_345) == "12,345"
    assert fmt_revision(None) == "—"  # not in that version: never shown as 0
