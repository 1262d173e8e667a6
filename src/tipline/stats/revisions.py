"""The revision log of a year's transparency report: published figures change when late
outcomes (or late reports) arrive, and each change is kept with its reason, as ONS keeps
earlier versions with the reason for each revision.

Every kept snapshot of a year's report (tipline.stats.transparency.keep) is an entry of the
year's log, ``<data dir>/snapshots/transparency-YEAR-revisions.json``, an append-only list:

- ``snapshot`` and ``previous`` (the snapshot it revises; null for the first);
- ``date``: when the revising report was generated;
- ``reasons``: why, from what changed underneath — the outcome events (new, amended or
  withdrawn feedback), the year's records (reports, assessments, jurisdictions, referrals,
  files; with the change in the number of reports), the software or the outcome-code list;
- ``changes``: every figure that differs, one line each: table, row, column, old value, new
  value, and the reason that applies to that table. A row that appears has ``old: null``,
  one that disappears ``new: null`` — "not in that version", never a zero.

The log is a file beside the snapshots it describes, not a database table: the snapshots are
files too, and a log kept with them stays consistent with them when a data directory is
copied or restored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tipline.stats.transparency import Table, Transparency

OUTCOME_PREFIX = "outcomes"


def log_path(snapshots: Path, year: int) -> Path:
    return snapshots / f"transparency-{year}-revisions.json"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the log: two page views keeping reports at once append one
    entry each, in turn."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.with_suffix(".lock")).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_log(snapshots: Path, year: int) -> list[dict[str, Any]]:
    path = log_path(snapshots, year)
    if not path.exists():
        return []
    doc: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _row_key(t: Table, row: list[Any]) -> str:
    """A row's name: its leading text columns (a country; a recipient and its detail)."""
    parts = []
    for value, col in zip(row, t.columns, strict=True):
        if col.type != "string":
            break
        parts.append("" if value is None else str(value))
    return " / ".join(parts)


def reasons(old: Transparency, new: Transparency) -> dict[str, str]:
    """Why the figures moved, by what changed underneath: "outcomes" for the outcome tables,
    "records" for the others (and the software or code list, for all)."""
    out: dict[str, str] = {}
    common: list[str] = []
    if old.software_version != new.software_version:
        common.append(f"software changed ({old.software_version} → {new.software_version})")
    if old.codes_version != new.codes_version:
        common.append(f"outcome code list changed ({old.codes_version} → {new.codes_version})")
    o_src, n_src = old.sources or {}, new.sources or {}
    records_changed = o_src.get("records") != n_src.get("records")
    outcomes_changed = o_src.get("outcomes") != n_src.get("outcomes")
    rec: list[str] = []
    if records_changed:
        before, after = old.records.get("reports", 0), new.records.get("reports", 0)
        if after != before:
            rec.append(f"{after - before:+,} reports of the year on record (late reports, or reports finished since)")
        else:
            rec.append("records of the year changed (assessments, jurisdictions, referrals, files or incidents)")
    out["records"] = "; ".join(common + rec) or "unexplained: the records' snapshot is unchanged"
    oc: list[str] = []
    if outcomes_changed:
        oc.append("new, amended or withdrawn outcome feedback from agencies, or referrals added")
    if records_changed and not outcomes_changed:
        oc.append("the year's records changed")
    out["outcomes"] = "; ".join(common + oc) or out["records"]
    return out


def diff(old: Transparency, new: Transparency) -> list[dict[str, Any]]:
    """Every figure of ``new`` that differs from ``old``, with the reason for its table."""
    why = reasons(old, new)
    changes: list[dict[str, Any]] = []
    old_tables = {t.key: t for t in old.tables}
    for t in new.tables:
        reason = why["outcomes" if t.key.startswith(OUTCOME_PREFIX) else "records"]
        before = old_tables.get(t.key)
        old_rows = {_row_key(before, r): r for r in before.rows} if before else {}
        new_rows = {_row_key(t, r): r for r in t.rows}
        old_cols = [c.name for c in before.columns] if before else []
        lead = next((i for i, c in enumerate(t.columns) if c.type != "string"), len(t.columns))
        for key in list(new_rows) + [k for k in old_rows if k not in new_rows]:
            nr, orow = new_rows.get(key), old_rows.get(key)
            for i, col in enumerate(t.columns):
                if i < lead:
                    continue  # the row's own name, already in "row"
                new_v = nr[i] if nr is not None else None
                old_v = orow[old_cols.index(col.name)] if orow is not None and col.name in old_cols else None
                if new_v != old_v:
                    changes.append({"table": t.key, "row": key, "column": col.name, "old": old_v, "new": new_v,
                                    "why": reason})
    return changes


def record(report: Transparency, snapshots: Path, load: Any) -> list[dict[str, Any]]:
    """Add ``report``'s snapshot to its year's log (once) and return the log up to and with it.
    ``load(snapshot)`` recalls a kept report (the previous one, to compare with)."""
    path = log_path(snapshots, report.year)
    with _locked(path):
        log = read_log(snapshots, report.year)
        # A report back at an earlier snapshot (a withdrawal undoing a change) is a revision too.
        if not log or log[-1]["snapshot"] != report.snapshot:
            previous = log[-1]["snapshot"] if log else None
            prior = load(previous) if previous else None
            entry: dict[str, Any] = {
                "snapshot": report.snapshot, "previous": previous, "date": report.generated_at,
                "reasons": sorted(set(reasons(prior, report).values())) if prior else ["first published"],
                "changes": diff(prior, report) if prior else [],
            }
            log.append(entry)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(log, indent=1, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)
        return log


def history(snapshots: Path, year: int, snapshot: str) -> list[dict[str, Any]]:
    """The log as it stood when ``snapshot`` was kept: up to its first entry."""
    log = read_log(snapshots, year)
    known = [e["snapshot"] for e in log]
    return log[: known.index(snapshot) + 1] if snapshot in known else []
