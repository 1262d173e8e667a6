"""CSV bulk import on both backends: every bad file is a clear error and changes nothing; the
same file twice changes nothing; the ``tipline outcome`` commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from outcome_helpers import World, counts, make_world
from tipline.cli import main
from tipline.config import Settings
from tipline.outcomes.csv_import import COLUMNS, ImportFailed, import_outcomes
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables_people import AuditEvent, Outcome, OutcomeImport

HEADER = ",".join(COLUMNS)


@pytest.fixture
def world(runtime: Runtime) -> World:
    return make_world(runtime)


def good(w: World) -> str:
    a0, a1, a2 = w.refs_a
    return (f"{HEADER}\r\n"
            f"{a0},ACKNOWLEDGED,2026-06-02,,,,,,,\r\n"
            f"{a0},ARREST,2026-07-01,2,,T,,,,\"two arrested, one warrant\"\r\n"
            f"{a1},CHILD_IDENTIFIED,2026-07-03,,1,,,,,\r\n"
            f"{a2},CLOSED_NOT_ACTIONABLE,2026-06-20,,,,,,cannot_locate,\r\n")


def do_import(rt: Runtime, w: World, data: bytes, **kw: Any) -> Any:
    kw.setdefault("agency_id", w.agency_a)
    with transaction(rt.sessions) as s:
        return import_outcomes(s, None, data, actor_name="test", **kw)


def refused(rt: Runtime, w: World, data: bytes, *words: str, **kw: Any) -> ImportFailed:
    before = counts(rt)
    with pytest.raises(ImportFailed) as info:
        do_import(rt, w, data, **kw)
    text = str(info.value)
    for word in words:
        assert word in text, text
    assert counts(rt) == before, "a refused file changed the store"
    return info.value


def test_a_good_file_imports_every_row_once(runtime: Runtime, world: World) -> None:
    data = good(world).encode()
    res = do_import(runtime, world, data, file_name="feedback.csv")
    assert (res.rows, res.created, res.already_recorded, res.replay) == (4, 4, 0, False)
    with runtime.sessions() as s:
        rows = s.scalars(select(Outcome).order_by(Outcome.id)).all()
        assert [r.code for r in rows] == ["ACKNOWLEDGED", "ARREST", "CHILD_IDENTIFIED", "CLOSED_NOT_ACTIONABLE"]
        assert {r.via for r in rows} == {"csv"} and {r.import_id for r in rows} == {res.import_id}
        assert rows[1].persons == 2 and rows[1].note == "two arrested, one warrant" and rows[2].children == 1
        imp = s.get(OutcomeImport, res.import_id)
        assert imp is not None and imp.rows == 4 and imp.file_name == "feedback.csv"
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
        assert actions == ["outcome.record"] * 4 + ["outcome.import"]
    before = counts(runtime)
    again = do_import(runtime, world, data)
    assert again.replay and again.import_id == res.import_id and counts(runtime) == before


def test_rows_already_imported_by_another_file_are_not_counted_twice(runtime: Runtime, world: World) -> None:
    do_import(runtime, world, good(world).encode())
    a0 = world.refs_a[0]
    # A row of the first file re-exported beside a new one (columns in another order, a BOM, LF).
    more = ("\ufeffreferralId,occurredOn,code,persons,arrestType,note\n"
            f"{a0},2026-07-01,ARREST,2,T,\"two arrested, one warrant\"\n"
            f"{a0},2026-07-09,ARREST,1,O,\n")
    res = do_import(runtime, world, more.encode())
    assert (res.created, res.already_recorded) == (1, 1)
    with runtime.sessions() as s:
        arrests = s.scalars(select(Outcome).where(Outcome.code == "ARREST")).all()
    assert sorted(a.occurred_on.isoformat() for a in arrests) == ["2026-07-01", "2026-07-09"]


@pytest.mark.parametrize(("text", "words"), [
    ("referralId,code\n1,ARREST\n", ["line 1", "missing column(s): occurredOn"]),
    (f"{HEADER},colour\n", ["line 1", "unknown column(s): colour"]),
    ("referralId,code,occurredOn,code\n", ["named twice: code"]),
    ("", ["the file is empty"]),
    (f"{HEADER}\n", ["no rows"]),
])
def test_wrong_columns(runtime: Runtime, world: World, text: str, words: list[str]) -> None:
    refused(runtime, world, text.encode(), *words)


def test_bad_rows_name_their_lines_and_change_nothing(runtime: Runtime, world: World) -> None:
    a0, a1, _ = world.refs_a
    b0 = world.refs_b[0]
    text = (f"{HEADER}\n"
            f"{a0},ACKNOWLEDGED,2026-06-02,,,,,,,\n"            # line 2: fine
            f"{a0},ARREST,2026-02-30,1,,T,,,,\n"                # 3: bad date
            f"{a0},SHRUG,2026-07-01,,,,,,,\n"                  # 4: unknown code
            f"{b0},ARREST,2026-07-01,1,,T,,,,\n"                # 5: another agency's referral
            f"{a1},ARREST,2026-07-01,one,,T,,,,\n"              # 6: not a number
            f"{a1},ARREST,2026-07-01,1,,T,,,,\n"                # 7: fine
            f"{a1},ARREST,2026-07-01,1,,T,,,,\n"                # 8: duplicate of 7
            f"{a1},CLOSED_NOT_PURSUED,2099-01-01,,,,,,evidential,\n"  # 9: future
            f"{a1},ARREST,2026-07-02\n")                        # 10: too few fields
    err = refused(runtime, world, text.encode())
    got = {e.line: e.message for e in err.errors}
    assert set(got) == {3, 4, 5, 6, 8, 9, 10}, got
    assert "not a calendar date" in got[3]
    assert "unknown outcome code 'SHRUG'" in got[4]
    assert got[5] == f"no referral {b0} for agency TEST-A"
    assert "not a whole number" in got[6]
    assert "same row as line 7" in got[8]
    assert "in the future" in got[9]
    assert "3 field(s)" in got[10]
    assert f"line 5: no referral {b0} for agency TEST-A" in str(err)


def test_business_rules_across_rows(runtime: Runtime, world: World) -> None:
    a0 = world.refs_a[0]
    text = (f"{HEADER}\n"
            f"{a0},CLOSED_NOT_ACTIONABLE,2026-06-20,,,,,,cannot_locate,\n"
            f"{a0},CLOSED_NOT_PURSUED,2026-06-21,,,,,,evidential,\n")
    err = refused(runtime, world, text.encode())
    assert [e.line for e in err.errors] == [3] and "already closed" in err.errors[0].message


def test_bom_and_encodings(runtime: Runtime, world: World) -> None:
    assert do_import(runtime, world, b"\xef\xbb\xbf" + good(world).encode()).created == 4
    latin = f"{HEADER}\n{world.refs_a[1]},FORENSIC_EXAM,2026-07-01,,,,,,,caf\xe9\n".encode("latin-1")
    refused(runtime, world, latin, "not UTF-8", "offset")


def test_junk(runtime: Runtime, world: World) -> None:
    junk = os.urandom(10 * 1024**2)
    refused(runtime, world, junk, "not UTF-8")
    refused(runtime, world, b"\x00" * 1000, "NUL")
    refused(runtime, world, b"a" * (10 * 1024**2 + 1), "at most 10,485,760")
    text_junk = ("lorem ipsum " * 900_000).encode()[: 10 * 1024**2]
    refused(runtime, world, text_junk, "line 1 is 10,485,760 characters long: not a header")
    lines_junk = ("lorem ipsum\n" * 900_000).encode()[: 10 * 1024**2]
    refused(runtime, world, lines_junk, "line 1", "missing column(s): referralId, code, occurredOn",
            "unknown column(s): lorem ipsum")
    refused(runtime, world, f'{HEADER}\n1,"ARREST,2026\n'.encode(), "line 2")


def test_an_officer_imports_for_their_own_agency_only(runtime: Runtime, world: World) -> None:
    data = good(world).encode()
    with transaction(runtime.sessions) as s:
        res = import_outcomes(s, world.officer_a, data)
    assert res.created == 4
    with runtime.sessions() as s:
        assert {r.user_id for r in s.scalars(select(Outcome))} == {world.officer_a.user_id}
    before = counts(runtime)
    with pytest.raises(ImportFailed, match="own agency"), transaction(runtime.sessions) as s:
        import_outcomes(s, world.officer_a, data, agency_id=world.agency_b)
    # Officer B's import of agency A's referrals: every row is "no referral".
    with pytest.raises(ImportFailed) as info, transaction(runtime.sessions) as s:
        import_outcomes(s, world.officer_b, data)
    assert all("no referral" in e.message and "TEST-B" in e.message for e in info.value.errors)
    assert counts(runtime) == before


# --- the commands -----------------------------------------------------------------------------


def cli(settings: Settings, *args: str, ok: bool = True) -> str:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    assert "Traceback" not in result.output
    return result.output


def test_outcome_commands(runtime: Runtime, world: World, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "feedback.csv"
    f.write_bytes(good(world).encode())
    out = cli(settings, "outcome", "import", str(f), "--agency", "TEST-A")
    assert "imported 4 row(s)" in out and "4 new" in out
    assert "already imported" in cli(settings, "outcome", "import", str(f), "--agency", "TEST-A")
    wrong = cli(settings, "outcome", "import", str(f), "--agency", "TEST-B", ok=False)
    assert "nothing imported" in wrong and f"line 2: no referral {world.refs_a[0]} for agency TEST-B" in wrong
    assert "no agency with code" in cli(settings, "outcome", "import", str(f), "--agency", "NOPE", ok=False)
    listing = cli(settings, "outcome", "list", "--referral", str(world.refs_a[0]))
    assert "ACKNOWLEDGED" in listing and "ARREST" in listing and "persons=2" in listing
    assert "unknown" in cli(settings, "outcome", "list", "--referral", str(world.refs_b[0]))
    assert "no referral" in cli(settings, "outcome", "list", "--referral", "999999", ok=False)
    added = cli(settings, "outcome", "add", "--referral", str(world.refs_b[0]), "--code", "ARREST", "--on",
                "2026-07-04", "--detail", "persons=1", "--detail", "arrestType=O")
    assert "ARREST (record) on 2026-07-04" in added
    refused_out = cli(settings, "outcome", "add", "--referral", str(world.refs_b[0]), "--code", "ARREST",
                      "--on", "2026-07-04", "--detail", "persons=1", ok=False)
    assert "refused: arrestType" in refused_out
    with runtime.sessions() as s:
        event = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert event is not None and event.actor.startswith("cli:")
    overdue = cli(settings, "outcome", "overdue", "--days", "0", "--json")
    assert "TEST-B" in overdue
