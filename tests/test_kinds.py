"""One registry per kind: each kind's members are listed in its module under tipline/kinds and
nowhere else in the code (a list typed out by hand elsewhere is how they drifted apart)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tipline.kinds.agencies import KIND_NAMES
from tipline.kinds.hashes import CRYPTO_NAMES, HASH_NAMES, HASH_TYPES
from tipline.kinds.locations import CLASS_NAMES, CONFIDENCE, ip_class
from tipline.kinds.queues import QUEUE_NAMES, QueueKind, resolve
from tipline.kinds.reports import REPORTER_STATES, STATE_NAMES, ReporterStateName
from tipline.pipeline import banks
from tipline.pipeline.directory import KINDS, LOCATION_CLASSES, LOCATION_CONFIDENCE, load_routing

SRC = Path(__file__).resolve().parents[1] / "src" / "tipline"
#: Files whose run of such names means something else.
NOT_A_KIND = {"sim/write.py": "the simulator's truth CSV columns, named after the File columns"}


def _literal_lists(text: str, names: tuple[str, ...]) -> list[str]:
    """Runs of three or more of ``names`` written as quoted literals one after another."""
    name = "|".join(re.escape(n) for n in names)
    item = rf"""["']({name})["']"""
    return [m.group(0) for m in re.finditer(rf"{item}(?:\s*,\s*{item}){{2,}}", text)]


@pytest.mark.parametrize(("kind", "names"), [("agency kinds", KIND_NAMES), ("location classes", CLASS_NAMES),
                                             ("hash types", HASH_NAMES), ("report states", STATE_NAMES),
                                             ("queue kinds", QUEUE_NAMES)])
def test_each_kind_is_listed_in_its_registry_only(kind: str, names: tuple[str, ...]) -> None:
    found: dict[str, list[str]] = {}
    for p in sorted(SRC.rglob("*.py")):
        name = str(p.relative_to(SRC))
        hits = _literal_lists(p.read_text("utf-8"), names)
        if hits and p.parent.name != "kinds" and name not in NOT_A_KIND:
            found[name] = hits
    assert found == {}, f"{kind} listed by hand outside tipline/kinds: {found}"


def test_the_literal_list_finder_finds_a_list() -> None:
    assert _literal_lists('KINDS = ("icac", "federal", "international")', KIND_NAMES)
    assert not _literal_lists('if kind == "icac" and x == "federal":', KIND_NAMES)


def test_the_code_reads_the_registries() -> None:
    assert KINDS == KIND_NAMES
    assert LOCATION_CLASSES == CLASS_NAMES and LOCATION_CONFIDENCE == CONFIDENCE
    assert set(load_routing().precedence) <= set(CLASS_NAMES)
    # Every IP class is ranked as it is scored: an upload is its own class, in the precedence.
    assert {ip_class(e, False) for e in ("Login", "Upload", "Other", None)} == {"ip_login", "ip_upload", "ip_other"}
    assert "ip_upload" in load_routing().precedence


def test_bank_imports_read_the_hash_registry() -> None:
    assert {name: h.hex_length for name, h in HASH_TYPES.items()} == banks.HASH_TYPES
    assert banks.CRYPTO_TYPES == CRYPTO_NAMES == ("md5", "sha1", "sha256")
    # ThreatExchange's names for the same hashes.
    assert {banks._TE_TYPES[a] for a in ("photo_md5", "video_md5", "hash_pdq")} == {"md5", "pdq"}


def test_report_states_compared_in_the_code_are_states() -> None:
    """A state written as a literal beside ``.state`` must be one of the registry's: a typo
    ("finshed") would silently match nothing."""
    bad: dict[str, list[str]] = {}
    pattern = re.compile(r"""Report\.state\s*(?:==|!=)\s*["']([a-z_]+)["']|state=["']([a-z_]+)["']""")
    for p in sorted(SRC.rglob("*.py")):
        for m in pattern.finditer(p.read_text("utf-8")):
            value = m.group(1) or m.group(2)
            if value not in STATE_NAMES:
                bad.setdefault(str(p.relative_to(SRC)), []).append(value)
    assert bad == {}, f"report states not in tipline.kinds.reports: {bad}"


def test_the_api_publishes_the_reporter_states() -> None:
    from typing import get_args

    assert set(get_args(ReporterStateName)) == set(REPORTER_STATES)


@pytest.mark.parametrize(("kind", "dialect", "want"), [
    (None, "sqlite", QueueKind.INPROCESS), ("auto", "postgresql", QueueKind.PROCRASTINATE),
    ("INPROCESS", "postgresql", QueueKind.INPROCESS), ("procrastinate", "postgresql", QueueKind.PROCRASTINATE)])
def test_queue_kinds_resolve(kind: str | None, dialect: str, want: QueueKind) -> None:
    assert resolve(kind, dialect) is want


@pytest.mark.parametrize(("kind", "dialect", "says"), [("huey", "sqlite", "not available"),
                                                       ("procrastinate", "sqlite", "needs a PostgreSQL")])
def test_queue_kinds_refuse_with_a_reason(kind: str, dialect: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        resolve(kind, dialect)
