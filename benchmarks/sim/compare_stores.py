"""Do two SQLite stores of the same simulated year hold the same records? (a check, not a timing)

    .venv/bin/python benchmarks/sim/compare_stores.py A/tipline.db B/tipline.db

For two loads of the same year, seed and scale (e.g. ``main``'s tree and a branch's, each with
``tipline simulate --via direct`` into a fresh data directory): compares every column of
``reports``, ``files``, ``documents`` and ``blobs`` in load order, except what legitimately
differs between two runs: file ids (random; replaced by the report and sequence number, in
bodies too), the load's own clock (upload, details and document receipt times, the open
deadline) and the public reports' random receipt hashes (only whether there is one). Report
ids, the simulated receipt times, the JSON text of ``document``/``details`` and the stored XML
bodies are compared as stored. Prints one line per table; exits 1 if any differs.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from typing import Any


def dump(path: str) -> dict[str, list[Any]]:
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    cols = [r[1] for r in c.execute("PRAGMA table_info(reports)")]
    keep = [x if x != "receipt_hash" else "receipt_hash IS NOT NULL" for x in cols if x != "open_deadline"]
    reports = c.execute(f"SELECT {', '.join(keep)} FROM reports ORDER BY id").fetchall()
    where = {f: (r, s) for f, r, s in c.execute("SELECT id, report_id, seq FROM files")}
    fcols = [r[1] for r in c.execute("PRAGMA table_info(files)") if r[1] not in ("id", "uploaded_at", "details_at")]
    files = []
    for fid, *rest in c.execute(f"SELECT id, {', '.join(fcols)} FROM files ORDER BY report_id, seq"):
        files.append(tuple(v.replace(fid, "F") if isinstance(v, str) else v for v in rest))
    docs = []
    for rid, fid, kind, ctype, body in c.execute(
            "SELECT report_id, file_id, kind, content_type, body FROM documents ORDER BY id"):
        b = bytes(body).replace(fid.encode(), b"F") if fid else bytes(body)
        docs.append((rid, where[fid] if fid else None, kind, ctype, hashlib.sha256(b).hexdigest()))
    blobs = c.execute("SELECT sha256, size, stored_name, data, md5, sha1 FROM blobs ORDER BY sha256").fetchall()
    c.close()
    return {"columns": cols, "reports": reports, "files": files, "documents": docs, "blobs": blobs}


def main() -> int:
    a, b = dump(sys.argv[1]), dump(sys.argv[2])
    same = True
    for name in a:
        x, y = a[name], b[name]
        ok = x == y
        same &= ok
        print(f"{name}: {len(x):,} rows, {'the same' if ok else 'DIFFER'}")
        if not ok:
            for i, (u, v) in enumerate(zip(x, y, strict=False)):
                if u != v:
                    print(f"  first difference at row {i}:\n  {u}\n  {v}")
                    break
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
