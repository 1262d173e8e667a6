"""Text output a person can read: long values cut with their length, headers, tables, honest
empty answers. ``--json`` output stays whole."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import update

from helpers import person, report_doc, run, store_report
from tipline.cli import main
from tipline.commands.output import cut, table
from tipline.config import Settings
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Agency

NINE_MB = 9 * 1024 * 1024  # 9,437,184 characters


def cli(settings: Settings, *args: str) -> str:
    env = {"TIPLINE_DATA_DIR": str(settings.data_dir), "TIPLINE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cut_states_the_full_length() -> None:
    assert cut("x" * 200) == "x" * 200
    assert cut("x" * 201) == "x" * 200 + "… (201 characters)"
    assert cut("é" * NINE_MB) == "é" * 200 + "… (9,437,184 characters)"
    assert cut(12345, limit=3) == "123… (5 characters)"


def test_table_aligns_columns_under_a_header() -> None:
    lines = table(["ID", "NAME"], [[7, "short"], [1234, "a longer name"]], right=(0,))
    assert lines == ["  ID  NAME", "   7  short", "1234  a longer name"]


def test_report_show_cuts_a_9_mb_screen_name_in_text_not_in_json(settings: Settings, runtime: Runtime) -> None:
    screen = "s" * NINE_MB
    rid = store_report(runtime, report_doc([person("user-1", screen=screen)]))
    text = cli(settings, "report", "show", str(rid))
    assert f"screenName: {'s' * 200}… (9,437,184 characters)" in text
    assert len(text) < 20_000  # not megabytes on the terminal
    whole = json.loads(cli(settings, "report", "show", str(rid), "--json"))
    assert whole["report"]["personOrUserReported"][0]["screenName"] == screen


def test_agency_list_has_a_header_and_honest_empty_answers(settings: Settings, runtime: Runtime) -> None:
    assert "load the bundled directory with `tipline agency import`" in cli(settings, "agency", "list")
    cli(settings, "agency", "import")
    lines = cli(settings, "agency", "list").splitlines()
    assert lines[0].split() == ["CODE", "KIND", "WHERE", "NAME"]
    assert len(lines[1].split()) >= 4 and lines[-1].endswith("agencies")
    # The bundled directory has no local agencies: say so, do not ask to import it.
    out = cli(settings, "agency", "list", "--kind", "local")
    assert out.startswith("the directory has no local agencies (") and "import" not in out
    with transaction(runtime.sessions) as s:
        s.execute(update(Agency).where(Agency.kind == "icac").values(active=False))
    out = cli(settings, "agency", "list", "--kind", "icac")
    assert out.startswith("no active icac agencies (") and "--all" in out
    assert cli(settings, "agency", "list", "--kind", "icac", "--all").splitlines()[0].split()[0] == "CODE"


def test_bundles_preview_prints_tables(settings: Settings, runtime: Runtime, tmp_path: object) -> None:
    v = [store_report(runtime, report_doc([person(f"v{i}")]), files=["meme"]) for i in range(3)]
    run(runtime, ["identifiers", "links", "bundles"], v)
    out = cli(settings, "bundles", "preview")
    assert "{" not in out and "}" not in out  # no Python dictionaries
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("RULE"))
    assert lines[header].split() == ["RULE", "BUNDLES", "NOW", "BY", "THESE", "RULES"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1:] if line.strip()
            and not line.startswith("would")}
    assert rows["viral"] == ["1", "1"] and rows["(all)"] == ["1", "1"]
    assert "would create 0, remove 0, move 0 report(s)" in out
