"""Hash banks: CSV and HMA/ThreatExchange layouts, errors with line numbers, idempotent
re-import, and the ``tipline bank`` commands (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tipline.cli import main
from tipline.config import Settings
from tipline.pipeline.banks import BankImportError, import_bank, parse_csv, parse_hma
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import BankEntry

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

GOOD_CSV = (f"hash_type,value,label\nmd5,{MD5},known-a\nsha1,{SHA1},\nsha256,{SHA256.upper()},known-c\n"
            f"pdq,{PDQ},known-d\n")


def test_csv_parses_and_reports_every_bad_line() -> None:
    ok = parse_csv(GOOD_CSV)
    assert not ok.errors and [e.hash_type for e in ok.entries] == ["md5", "sha1", "sha256", "pdq"]
    assert ok.entries[2].value == SHA256  # lower-cased
    bad = parse_csv(f"hash_type,value,label\nmd5,{MD5[:-1]},x\ncrc32,abcd,y\npdq,{'z' * 64},\nsha1,{SHA1},ok\n")
    assert [e.split(":")[0] for e in bad.errors] == ["line 2", "line 3", "line 4"]
    assert "32 hex digits" in bad.errors[0] and "unknown hash type 'crc32'" in bad.errors[1]
    assert parse_csv("value,label\nabc,x\n").errors[0].startswith("line 1: header")


def test_hma_layouts() -> None:
    te = parse_hma(f"signal_type,signal_str,collab,category,tags\npdq,{PDQ},Sample,POSITIVE_CLASS,csam known\n"
                   "url,https://example.com,Sample,POSITIVE_CLASS,\n")
    assert [(e.hash_type, e.value, e.label) for e in te.entries] == [("pdq", PDQ, "csam known")]
    assert len(te.skipped) == 1
    hma1 = parse_hma(f"{PDQ},123456,789,2021-01-01,label1 label2\n", "simple.HASH_PDQ.te")
    assert [(e.hash_type, e.label) for e in hma1.entries] == [("pdq", "label1 label2")]
    md5s = parse_hma(f"{MD5},1,2,2021-01-01,\n", "simple.HASH_MD5.te")
    assert md5s.entries[0].hash_type == "md5"
    lines = parse_hma(f"pdq {PDQ}\n{PDQ}\nvideo_md5 {MD5}\n")
    assert [e.hash_type for e in lines.entries] == ["pdq", "pdq", "md5"]
    assert parse_hma("pdq 1234\n").errors == ["line 1: pdq value must be 64 hex digits, got '1234'"]


def test_import_is_idempotent_and_all_or_nothing(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as s:
        first = import_bank(s, "b1", GOOD_CSV, pdq_threshold=20)
    with transaction(runtime.sessions) as s:
        again = import_bank(s, "b1", GOOD_CSV.replace("known-a", "renamed"))
    assert (first.added, again.added, again.relabelled, again.unchanged) == (4, 0, 1, 3)
    with pytest.raises(BankImportError), transaction(runtime.sessions) as s:
        import_bank(s, "b1", f"hash_type,value,label\nmd5,{'1' * 32},new\nmd5,bad,x\n")
    with runtime.sessions() as s:
        rows = s.execute(select(BankEntry)).scalars().all()
    assert len(rows) == 4 and {r.label for r in rows} >= {"renamed"}


def test_bank_commands(settings: Settings, runtime: Runtime, tmp_path: Path) -> None:
    env = {"TIPLINE_DATABASE_URL": settings.database_url}
    base = ["--data-dir", str(settings.data_dir), "bank"]
    cli = CliRunner()
    f = tmp_path / "known.csv"
    f.write_text(GOOD_CSV)
    res = cli.invoke(main, [*base, "import", str(f), "--bank", "known", "--pdq-threshold", "25",
                            "--description", "test list"], env=env)
    assert res.exit_code == 0, res.output
    assert "4 added" in res.output
    res = cli.invoke(main, [*base, "import", str(f), "--bank", "known"], env=env)
    assert "0 added" in res.output and "4 unchanged" in res.output
    te = tmp_path / "simple.HASH_PDQ.te"
    te.write_text(f"{PDQ},1,2,2021-01-01,a b\n")
    assert cli.invoke(main, [*base, "import", str(te), "--bank", "hma", "--format", "hma"], env=env).exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("hash_type,value,label\nmd5,nothex,x\n")
    res = cli.invoke(main, [*base, "import", str(bad), "--bank", "x"], env=env)
    assert res.exit_code != 0 and "line 2" in res.output and "nothing imported" in res.output
    assert cli.invoke(main, [*base, "disable", "known"], env=env).exit_code == 0
    rows = json.loads(cli.invoke(main, [*base, "list", "--json"], env=env).output)
    by = {r["name"]: r for r in rows}
    assert set(by) == {"known", "hma"}
    assert by["known"]["enabled"] is False and by["known"]["pdq_threshold"] == 25 and by["known"]["total"] == 4
    assert by["hma"]["entries"] == {"pdq": 1}
    assert cli.invoke(main, [*base, "enable", "known"], env=env).exit_code == 0
    assert "known" in cli.invoke(main, [*base, "list"], env=env).output
    assert cli.invoke(main, [*base, "disable", "nope"], env=env).exit_code != 0
