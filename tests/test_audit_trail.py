"""The audit trail holds: ``tipline audit verify`` exits 0 on an intact chain and 1 naming
the first bad row after an edit, a deletion, an insertion or a reordering; the database
refuses UPDATE and DELETE of audit rows for the service's own role; concurrent appends from
many connections never fork the chain; list and export read it back."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tipline.cli import main
from tipline.config import Settings
from tipline.people import audit, trail
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction

AUDITOR = Principal(user_id=1, username="aud", role="auditor")


def cli(settings: Settings, *args: str, code: int = 0) -> Result:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _fill(rt: Runtime, n: int = 6) -> None:
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with transaction(rt.sessions) as s:
        for i in range(n):
            audit.record(s, action="report_view" if i % 2 else "sign_in", actor=Principal(
                i + 1, f"user{i % 3}", "analyst"), object_kind="report", object_id=100 + i,
                address="192.0.2.7", request_id=f"r{i}", detail={"i": i}, at=t0 + timedelta(hours=i))


def _tamper(rt: Runtime, *statements: str) -> None:
    """Change audit rows behind the service's back, as someone with the database's
    superuser (PostgreSQL: triggers off for this transaction) or its file (SQLite: the
    triggers dropped and put back) could."""
    with rt.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for st in statements:
                conn.execute(text(st))
            return
        ddl = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                "AND tbl_name = 'audit_events'")).all()
        for name, _ in ddl:
            conn.execute(text(f"DROP TRIGGER {name}"))
        for st in statements:
            conn.execute(text(st))
        for _, sql in ddl:
            conn.execute(text(sql))


def _bad_row(settings: Settings) -> str:
    result = cli(settings, "audit", "verify", code=1)
    return result.output


def test_intact_trail_verifies_and_prints_its_head(settings: Settings, runtime: Runtime) -> None:
    assert "intact: 0 row(s)" in cli(settings, "audit", "verify").output
    _fill(runtime)
    out = cli(settings, "audit", "verify").output
    assert "intact: 6 row(s)" in out
    with runtime.sessions() as s:
        head = trail.head(s)
    assert head is not None and f"head: {head[0]}:{head[1]}" in out
    doc = json.loads(cli(settings, "audit", "verify", "--json").output)
    assert doc["intact"] is True and doc["rows"] == 6 and doc["head"]["seq"] == 6


@pytest.mark.parametrize("what, statements, expected", [
    ("edited", ["UPDATE audit_events SET actor = 'someone-else' WHERE seq = 3"], "row 3: was edited"),
    ("detail edited", ["UPDATE audit_events SET detail = '{\"i\": 99}' WHERE seq = 2"], "row 2: was edited"),
    ("deleted in the middle", ["DELETE FROM audit_events WHERE seq = 4"], "row 5: row 4 is missing"),
    ("first deleted", ["DELETE FROM audit_events WHERE seq = 1"], "row 2: row 1 is missing"),
    ("deleted and renumbered", ["DELETE FROM audit_events WHERE seq = 4",
                                "UPDATE audit_events SET seq = seq + 100 WHERE seq > 4",
                                "UPDATE audit_events SET seq = seq - 101 WHERE seq > 100"], "row 4: does not follow"),
    ("inserted", ["UPDATE audit_events SET seq = seq + 100 WHERE seq >= 3",
                  "UPDATE audit_events SET seq = seq - 99 WHERE seq >= 100",
                  "INSERT INTO audit_events (seq, at, actor, action, prev_hash, hash) SELECT 3, at, 'ghost', "
                  "'report_view', hash, 'f' || substr(hash, 2) FROM audit_events WHERE seq = 2"],
     "row 3: "),
    ("reordered", ["UPDATE audit_events SET seq = 100 WHERE seq = 2",
                   "UPDATE audit_events SET seq = 2 WHERE seq = 3",
                   "UPDATE audit_events SET seq = 3 WHERE seq = 100"], "row 2: does not follow"),
])
def test_tampering_is_found_and_the_first_bad_row_named(settings: Settings, runtime: Runtime, what: str,
                                                       statements: list[str], expected: str) -> None:
    _fill(runtime)
    _tamper(runtime, *statements)
    out = _bad_row(settings)
    assert f"BROKEN: {expected}" in out, (what, out)
    doc = json.loads(cli(settings, "audit", "verify", "--json", code=1).output)
    assert doc["intact"] is False and doc["firstBadRow"] == int(expected.split()[1].rstrip(":"))


def test_rows_deleted_from_the_end_are_found_with_the_anchor(settings: Settings, runtime: Runtime) -> None:
    _fill(runtime)
    with runtime.sessions() as s:
        head = trail.head(s)
    assert head is not None
    anchor = f"{head[0]}:{head[1]}"
    cli(settings, "audit", "verify", "--anchor", anchor)
    _tamper(runtime, "DELETE FROM audit_events WHERE seq >= 5")
    # The rows alone still chain; the anchor the operator kept does not.
    assert "intact: 4 row(s)" in cli(settings, "audit", "verify").output
    out = cli(settings, "audit", "verify", "--anchor", anchor, code=1).output
    assert "row 6 you kept is gone (the trail ends at 4)" in out
    _fill(runtime, 1)  # a new row 5 written over the gap is not the row kept either
    assert "you kept is gone" in cli(settings, "audit", "verify", "--anchor", anchor, code=1).output
    assert "Invalid value for '--anchor'" in cli(settings, "audit", "verify", "--anchor", "6:nothex",
                                                 code=2).output


def test_the_database_refuses_update_delete_and_truncate(runtime: Runtime, settings: Settings) -> None:
    """The service's own database role — the one that created the tables — cannot change
    or remove an audit row; the refusal leaves the chain as it was."""
    _fill(runtime)
    attempts = ["UPDATE audit_events SET actor = 'x' WHERE seq = 2", "DELETE FROM audit_events WHERE seq = 6",
                "DELETE FROM audit_events"]
    if runtime.engine.dialect.name == "postgresql":
        attempts.append("TRUNCATE audit_events")
    for statement in attempts:
        with pytest.raises(DBAPIError, match="append-only"), transaction(runtime.sessions) as s:
            s.execute(text(statement))
    with runtime.sessions() as s:
        assert audit.verify(s).rows == 6 and audit.verify(s).intact
        assert trail.guard_problems(s) == []
    # Appending still works.
    _fill(runtime, 1)
    cli(settings, "audit", "verify")


def test_verify_fails_when_the_guard_was_removed(runtime: Runtime, settings: Settings) -> None:
    _fill(runtime, 2)
    with runtime.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
    out = cli(settings, "audit", "verify", code=1).output
    missing = "audit_events_no_change" if runtime.engine.dialect.name == "postgresql" else "audit_events_no_delete"
    assert f"BROKEN: the append-only trigger {missing} is missing or disabled" in out


def test_concurrent_appends_never_fork_the_chain(runtime: Runtime) -> None:
    """Many connections append at once (PostgreSQL: as several server processes would):
    every row has a distinct predecessor and the chain verifies."""
    workers, each = 8, 10
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(each):
                with transaction(runtime.sessions) as s:
                    audit.record(s, action="report_view", actor_name=f"worker{n}", object_kind="report",
                                 object_id=i)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with runtime.sessions() as s:
        verdict = audit.verify(s)
        assert verdict.intact and verdict.rows == workers * each
        prevs = s.scalars(text("SELECT prev_hash FROM audit_events")).all()
        assert len(set(prevs)) == len(prevs)


def _write(rt: Runtime, fn: Callable[[Session], object]) -> None:
    with transaction(rt.sessions) as s:
        fn(s)


def test_list_and_export_read_the_filtered_rows(settings: Settings, runtime: Runtime, tmp_path: object) -> None:
    _fill(runtime)
    out = cli(settings, "audit", "list", "--actor", "user1").output.splitlines()
    assert out[0].split()[:3] == ["SEQ", "AT", "(UTC)"]
    assert [line.split()[0] for line in out[1:]] == ["5", "2"]
    assert "no audit rows match" in cli(settings, "audit", "list", "--action", "nothing").output
    body = cli(settings, "audit", "export", "--action", "report_view", "--since", "2026-12-01T10:00",
               "--until", "2026-12-01T13:00").output
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["seq"] for r in rows] == ["2", "4"]  # 10:00 and 12:00; 14:00 is past the minute 13:00
    assert json.loads(rows[0]["detail"]) == {"i": 1} and len(rows[0]["hash"]) == 64
    lines = cli(settings, "audit", "export", "--format", "json", "--since", "2026-12-01").output.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    # The exported rows carry what verify needs: each row's prev_hash is the hash before it.
    docs = [json.loads(line) for line in lines]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(docs, docs[1:], strict=False))
    path = f"{tmp_path}/trail.csv"
    result = CliRunner().invoke(main, ["audit", "export", "-o", path], env={
        "TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url})
    assert result.exit_code == 0 and "wrote 6 row(s)" in result.output
    with open(path, encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 6
    bad = cli(settings, "audit", "export", "--since", "yesterday", code=2).output
    assert "From: a date (2026-12-03)" in bad


def test_export_cells_never_start_a_spreadsheet_formula(runtime: Runtime) -> None:
    _write(runtime, lambda s: audit.record(s, action="sign_in", actor_name="=HYPERLINK(\"x\")",
                                           object_id="+1", detail={"q": "-2"}))
    with runtime.sessions() as s:
        body = "".join(trail.csv_lines(trail.matching_rows(s, AUDITOR, trail.AuditQuery())))
    row = next(csv.DictReader(io.StringIO(body)))
    assert row["actor"].startswith("'=") and row["object_id"] == "'+1"


def test_only_auditors_read_the_trail(runtime: Runtime) -> None:
    for role in ("analyst", "supervisor", "officer", "platform", "admin"):
        with runtime.sessions() as s, pytest.raises(trail.NotVisible):
            trail.search(s, Principal(2, "x", role), trail.AuditQuery())
        with pytest.raises(trail.NotVisible):
            trail.matching_rows(runtime.sessions(), Principal(2, "x", role), trail.AuditQuery())


@pytest.mark.parametrize("values, field, message", [
    ({"since": "12/03/2026"}, "since", "From: a date"),
    ({"until": "2026-13-40"}, "until", "Until: a date"),
    ({"since": "2026-12-03", "until": "2026-12-01"}, "until", "later than From"),
    ({"actor": "x" * 101}, "actor", "at most 100"),
])
def test_bad_filters_get_a_message_naming_the_field(values: dict[str, str], field: str, message: str) -> None:
    _, problems = trail.parse_query(values)
    assert message in problems.errors[field]
