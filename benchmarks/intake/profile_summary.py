"""Aggregate py-spy ``--format raw`` (collapsed stacks) into where tipline's time goes.

Each stack is put in one bucket: the first rule below (in order) that matches any frame of
it. Shares are of all samples taken; "ms per cycle" divides the samples by the sampling rate
and by the complete cycles finished while sampling. Two recordings are summarised:

- *active threads* (py-spy default): every thread not idle, so a thread waiting on the
  database counts — this is where the *latency* of a request goes;
- *GIL holder* (``--gil``): only the thread running Python — where the *CPU* goes.

Usage: ``python profile_summary.py CYCLES RAW_FILE...`` (run.py calls ``summarise``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (bucket, any of these substrings in any frame). Order matters: first match wins.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("idle thread-pool workers (waiting for work)", ("Queue.get (queue.py",)),
    ("argon2 password verification", ("argon2", "verify_password_slow")),
    ("auth: credential lookup (DB round trip per request)", ("Authenticator._lookup",)),
    ("auth: other (HMAC, cache)", ("Authenticator.basic", "Authenticator.bearer")),
    ("pool pre-ping (extra round trip per checkout)", ("do_ping",)),
    ("DB commit (waits for the WAL fsync)", ("SessionTransaction.commit", "Connection.commit",
                                              "Transaction.commit", "_commit_impl")),
    ("blob commit: fsync of file and directory, rename", ("BlobWriter.commit", "_fsync_dir")),
    ("blob encryption + MD5/SHA-1/SHA-256 (BlobWriter.write)", ("BlobWriter.write", "_blob_key")),
    ("multipart parsing (stream_form)", ("stream_form", "python_multipart", "multipart.py")),
    ("XML parse + validate (cybertip/xml.py)", ("cybertip/xml.py", "lxml")),
    ("pydantic models (dump/validate)", ("pydantic", "model_dump", "model_validate")),
    ("ORM flush (INSERT/UPDATE statements)", ("Session.flush", "Session._flush", "UOWTransaction")),
    ("other SQL (SELECT ... FOR UPDATE, lookups)", ("sqlalchemy", "psycopg", "sqlite3")),
    ("response building (cybertip/responses.py)", ("cybertip/responses.py",)),
    ("thread-pool hand-off (anyio / run_in_threadpool)", ("anyio", "run_in_threadpool", "to_thread")),
    ("HTTP/ASGI stack (uvicorn, starlette, fastapi)", ("uvicorn/protocols", "starlette", "fastapi")),
    ("tipline other", ("tipline/",)),
    ("event loop / C code (uvloop I/O, httptools, epoll)", ("Runner.run", "asyncio")),
]


def parse(files: Iterable[Path]) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for f in files:
        for line in f.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                stacks[stack] += int(n)
    return stacks


def bucket(stack: str) -> str:
    for name, needles in RULES:
        if any(n in stack for n in needles):
            return name
    return "other"


def table(stacks: Counter[str], cycles: float, rate: int, title: str) -> list[str]:
    total = sum(stacks.values())
    out = [f"## {title}: {total} samples at {rate} Hz over {cycles:.0f} complete cycles", ""]
    if not total:
        return [*out, "(no samples)", ""]
    buckets: Counter[str] = Counter()
    for s, n in stacks.items():
        buckets[bucket(s)] += n
    out.append(f"{'share':>6}  {'ms/cycle':>8}  bucket")
    for name, n in buckets.most_common():
        out.append(f"{n / total:6.1%}  {n / rate * 1000 / max(cycles, 1):8.2f}  {name}")
    out += ["", "top leaf frames:"]
    leaves: Counter[str] = Counter()
    for s, n in stacks.items():
        leaves[s.rsplit(";", 1)[-1]] += n
    for frame, n in leaves.most_common(20):
        out.append(f"{n / total:6.1%}  {frame}")
    out += ["", "inclusive, tipline functions:"]
    incl: Counter[str] = Counter()
    for s, n in stacks.items():
        seen = {f.split(" (")[0] for f in s.split(";") if "tipline/" in f}
        for fn in seen:
            incl[fn] += n
    for fn, n in incl.most_common(20):
        out.append(f"{n / total:6.1%}  {fn}")
    out.append("")
    return out


def summarise(raws: list[Path], cycles: float, rate: int) -> str:
    active = [p for p in raws if not p.name.endswith("-gil.txt")]
    gil = [p for p in raws if p.name.endswith("-gil.txt")]
    lines = ["# py-spy profile of tipline (all worker processes together)", ""]
    lines += table(parse(active), cycles, rate, "active threads (latency view)")
    if gil:
        lines += table(parse(gil), cycles, rate, "GIL holder (CPU view)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise([Path(p) for p in sys.argv[2:]], float(sys.argv[1]), 100))
