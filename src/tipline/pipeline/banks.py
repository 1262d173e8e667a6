"""Hash banks: named lists of known hashes with labels, imported from files.

Formats (one registry, :data:`FORMATS`):

* ``csv`` — tipline's own: a header ``hash_type,value,label`` and one hash per row;
  ``hash_type`` one of :data:`HASH_TYPES`.
* ``hma`` — the layouts Meta's tools write for PDQ (and MD5) lists, detected per file:
  1. ``threatexchange dataset -P --csv`` output: header ``signal_type,signal_str,collab,category,tags``
     (python-threatexchange ``cli/dataset_cmd.py``);
  2. HMA 1.x / ThreatExchange ``simple.<TYPE>.te`` files: no header, rows
     ``indicator,indicator_id,first_descriptor_id,added_on,labels`` with space-separated labels
     (``cli/dataset/simple_serialization.py`` ``HMASerialization``); the type comes from the
     file name (``HASH_PDQ``, ``HASH_MD5``), PDQ when the name does not say;
  3. the local-file signal exchange layout: one ``<signal_type> <hash>`` per line, or a bare
     hash per line (``exchanges/impl/file_api.py`` ``LocalFileSignalExchangeAPI``).

An import is all or nothing: every malformed line is reported with its line number and
nothing is written. Re-importing the same file changes nothing (labels are updated).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tipline.kinds.hashes import BY_NAME_OR_ALIAS, CRYPTO_NAMES
from tipline.kinds.hashes import HASH_TYPES as HASH_REGISTRY
from tipline.store.tables import BankEntry, HashBank

#: Hash types a bank can hold, with their length in hex digits (tipline.kinds.hashes).
HASH_TYPES: dict[str, int] = {h.name: h.hex_length for h in HASH_REGISTRY.values()}
CRYPTO_TYPES = CRYPTO_NAMES
DEFAULT_PDQ_THRESHOLD = 31
#: Thresholds above this make PDQ matching meaningless (and the multi-index probe count explode).
MAX_PDQ_THRESHOLD = 63
_HEX = re.compile(r"^[0-9a-f]+$")

# Signal type names used by python-threatexchange / HMA, mapped to ours.
_TE_TYPES = BY_NAME_OR_ALIAS


class BankImportError(Exception):
    """A bank file could not be imported; ``errors`` lists every bad line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ParsedEntry:
    hash_type: str
    value: str
    label: str | None
    line: int


@dataclass
class Parsed:
    entries: list[ParsedEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # rows of signal types we do not hold


def _check(hash_type: str, value: str, line: int, errors: list[str]) -> str | None:
    v = value.strip().lower()
    want = HASH_TYPES.get(hash_type)
    if want is None:
        errors.append(f"line {line}: unknown hash type {hash_type!r} (expected one of {', '.join(HASH_TYPES)})")
        return None
    if len(v) != want or not _HEX.match(v):
        errors.append(f"line {line}: {hash_type} value must be {want} hex digits, got {value.strip()[:80]!r}")
        return None
    return v


def _label(text: str | None) -> str | None:
    t = (text or "").strip()
    return t[:255] or None


def parse_csv(text: str, source: str = "") -> Parsed:
    """tipline CSV: header ``hash_type,value,label``."""
    out = Parsed()
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            missing = [c for c in ("hash_type", "value") if c not in header]
            if missing:
                out.errors.append(f"line {line}: header must name columns hash_type,value[,label]; "
                                  f"missing {', '.join(missing)}")
                return out
            continue
        rec = dict(zip(header, row, strict=False))
        if len(row) > len(header):
            out.errors.append(f"line {line}: {len(row)} fields, header has {len(header)}")
            continue
        htype = (rec.get("hash_type") or "").strip().lower()
        value = _check(htype, rec.get("value") or "", line, out.errors)
        if value is not None:
            out.entries.append(ParsedEntry(htype, value, _label(rec.get("label")), line))
    if header is None:
        out.errors.append("empty file: expected a header hash_type,value,label")
    return out


def parse_hma(text: str, source: str = "") -> Parsed:
    """HMA / ThreatExchange layouts (see the module docstring); the layout is detected."""
    out = Parsed()
    lines = text.splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if first.lower().startswith("signal_type,signal_str"):
        reader = csv.DictReader(io.StringIO(text))
        for rec in reader:
            line = reader.line_num
            stype = (rec.get("signal_type") or "").strip().lower()
            htype = _TE_TYPES.get(stype)
            if htype is None:
                out.skipped.append(f"line {line}: signal type {stype!r} not held in hash banks")
                continue
            value = _check(htype, rec.get("signal_str") or "", line, out.errors)
            tags = (rec.get("tags") or "").strip()
            label = tags or " ".join(x for x in ((rec.get("collab") or "").strip(),
                                                  (rec.get("category") or "").strip()) if x)
            if value is not None:
                out.entries.append(ParsedEntry(htype, value, _label(label), line))
        return out
    if "," in first:
        m = re.search(r"simple\.([A-Za-z0-9_]+)\.te$", source)
        htype = _TE_TYPES.get(m.group(1).lower(), "") if m else "pdq"
        if not htype:
            out.errors.append(f"{source}: indicator type {m.group(1) if m else '?'} is not a hash type we hold")
            return out
        for row_no, row in enumerate(csv.reader(io.StringIO(text)), 1):
            if not row or not row[0].strip():
                continue
            value = _check(htype, row[0], row_no, out.errors)
            labels = row[4].strip() if len(row) > 4 else ""
            if value is not None:
                out.entries.append(ParsedEntry(htype, value, _label(labels), row_no))
        return out
    for row_no, raw in enumerate(lines, 1):
        ln = raw.strip()
        if not ln or ln.startswith("#"):
            continue
        stype, _, sig = ln.partition(" ")
        if not sig:
            stype, sig = "pdq", stype
        htype = _TE_TYPES.get(stype.lower())
        if htype is None:
            out.errors.append(f"line {row_no}: unknown signal type {stype!r}")
            continue
        value = _check(htype, sig, row_no, out.errors)
        if value is not None:
            out.entries.append(ParsedEntry(htype, value, None, row_no))
    return out


#: Bank file formats: name -> parser(text, source name).
FORMATS: dict[str, Callable[[str, str], Parsed]] = {"csv": parse_csv, "hma": parse_hma}


@dataclass
class ImportResult:
    bank: str
    added: int
    relabelled: int
    unchanged: int
    skipped: list[str]


def import_bank(session: Session, name: str, path_or_text: Path | str, *, fmt: str = "csv",
                description: str | None = None, pdq_threshold: int | None = None,
                source: str = "") -> ImportResult:
    """Import a bank file into bank ``name`` (created when new). All or nothing; idempotent.
    ``source``: the file's name when text is given (the hma layouts read the type from it)."""
    if fmt not in FORMATS:
        raise BankImportError([f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}"])
    if pdq_threshold is not None and not 0 <= pdq_threshold <= MAX_PDQ_THRESHOLD:
        raise BankImportError([f"--pdq-threshold must be between 0 and {MAX_PDQ_THRESHOLD}"])
    if isinstance(path_or_text, Path):
        text, source = path_or_text.read_text(encoding="utf-8-sig"), path_or_text.name
    else:
        text = path_or_text
    parsed = FORMATS[fmt](text, source)
    if parsed.errors:
        raise BankImportError(parsed.errors)
    now = datetime.now(UTC)
    bank = session.execute(select(HashBank).where(HashBank.name == name)).scalar_one_or_none()
    if bank is None:
        bank = HashBank(name=name, description=description, enabled=True,
                        pdq_threshold=DEFAULT_PDQ_THRESHOLD if pdq_threshold is None else pdq_threshold,
                        created_at=now)
        session.add(bank)
        session.flush()
    else:
        if description is not None:
            bank.description = description
        if pdq_threshold is not None:
            bank.pdq_threshold = pdq_threshold
    existing: dict[tuple[str, str], BankEntry] = {
        (e.hash_type, e.value): e
        for e in session.execute(select(BankEntry).where(BankEntry.bank_id == bank.id)).scalars()
    }
    added = relabelled = unchanged = 0
    seen: set[tuple[str, str]] = set()
    for ent in parsed.entries:
        key = (ent.hash_type, ent.value)
        if key in seen:  # the same hash twice in one file: the later label wins
            row = existing[key]
            row.label = ent.label or row.label
            continue
        seen.add(key)
        row_or_none = existing.get(key)
        if row_or_none is None:
            row = BankEntry(bank_id=bank.id, hash_type=ent.hash_type, value=ent.value, label=ent.label,
                            added_at=now)
            session.add(row)
            existing[key] = row
            added += 1
        elif ent.label is not None and row_or_none.label != ent.label:
            row_or_none.label = ent.label
            relabelled += 1
        else:
            unchanged += 1
    session.flush()
    return ImportResult(name, added, relabelled, unchanged, parsed.skipped)


def list_banks(session: Session) -> list[dict[str, Any]]:
    """Every bank with its settings and entry counts per hash type."""
    counts: dict[int, dict[str, int]] = {}
    for bank_id, htype, n in session.execute(
        select(BankEntry.bank_id, BankEntry.hash_type, func.count()).group_by(BankEntry.bank_id, BankEntry.hash_type)
    ):
        counts.setdefault(bank_id, {})[htype] = int(n)
    return [
        {"name": b.name, "enabled": b.enabled, "pdq_threshold": b.pdq_threshold, "description": b.description,
         "created": b.created_at.isoformat(), "entries": counts.get(b.id, {}),
         "total": sum(counts.get(b.id, {}).values())}
        for b in session.execute(select(HashBank).order_by(HashBank.name)).scalars()
    ]


def set_enabled(session: Session, name: str, enabled: bool) -> None:
    """Enable or disable bank ``name`` (disabled banks are not matched; entries are kept)."""
    bank = session.execute(select(HashBank).where(HashBank.name == name)).scalar_one_or_none()
    if bank is None:
        raise KeyError(name)
    bank.enabled = enabled
