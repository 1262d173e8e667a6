"""How fast is the analyst console's queue page on a store the size of a simulated year?

The store is a *synthetic fill of the queue's tables* (``benchmarks/console_fill.py``:
362,104 reports by default, the size of a scale-0.01 2023 year, in the simulator's
calibrated proportions), not an enriched simulated year; it is built once and cached.

For every view — the default queue and one filter of each kind, on page 1 and on a deep
page (the middle of that view) — it times, in rounds:

- **service**: ``tipline.console.service.queue`` (the page's rows and every filter's counts)
  in one session;
- **http**: ``GET /console?…`` through the whole app (session cookie resolved by the
  sign-in middleware, the template rendered), signed in as an analyst with a real TOTP code;
- **cold**: the service call after the cached counts were dropped (what the first page
  after a restart costs).

``--compare SRC`` measures another source tree (e.g. main before this change, unpacked with
``git archive``) on a copy of the same rows at that tree's own schema, in the same run,
alternating round by round so that the machine's load falls on both alike.

    .venv/bin/python benchmarks/console_queue.py [--pg] [--runs 5] [--rounds 4] [--compare DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
PG_BIN = Path("/usr/lib/postgresql/15/bin")

#: (name, query string of the filter) — one view of every filter kind.
VIEWS: list[tuple[str, dict[str, str]]] = [
    ("default", {}),
    ("priority 1", {"priority": "1"}),
    ("priority 3", {"priority": "3"}),
    ("informational", {"disposition": "informational"}),
    ("escalated", {"escalated": "yes"}),
    ("bank match", {"bank_match": "yes"}),
    ("unclaimed", {"claim": "unclaimed"}),
    ("mine", {"claim": "mine"}),
    ("incident: enticement", {"incident_type": "Online Enticement of Children for Sexual Acts"}),
    ("platform: small", {"platform": "@Small platform 07"}),
    ("country IN", {"country": "IN"}),
    ("country DE", {"country": "DE"}),
    ("country unknown", {"country": "unknown"}),
    ("US, TX, unclaimed", {"country": "US", "state": "TX", "claim": "unclaimed"}),
    ("bank match, referral, P2", {"bank_match": "yes", "disposition": "referral", "priority": "2"}),
    ("closed", {"status": "closed"}),
]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# --- stores ------------------------------------------------------------------------------


def pg_cluster(directory: Path, port: int) -> str:
    """Start (or find running) a local cluster kept in ``directory``; its URL prefix."""
    def run(*a: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *a], capture_output=True)

    if not (directory / "data" / "PG_VERSION").exists():
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "postgres")
        os.chmod(directory, 0o700)
        run(str(PG_BIN / "initdb"), "-D", f"{directory}/data", "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8").check_returncode()
    if run(str(PG_BIN / "pg_ctl"), "-D", f"{directory}/data", "status").returncode != 0:
        run(str(PG_BIN / "pg_ctl"), "-D", f"{directory}/data", "-w", "-l", f"{directory}/log", "-o",
            f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=256MB",
            "start").check_returncode()
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}"


def _pg_exec(prefix: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(prefix.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(sql)


def _pg_has(prefix: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(prefix.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def prepare(src: Path, tag: str, args: argparse.Namespace, base: tuple[str, str] | None) -> tuple[str, str]:
    """A store (data dir, database URL) for the tree ``src``: filled here, or copied from
    ``base`` and migrated by ``src`` (so each tree runs at its own schema)."""
    key = f"console-{args.reports}-s{args.seed}-{tag}"
    data = CACHE / key / "data"
    url = ""
    if args.pg:
        prefix = pg_cluster(CACHE / "pg", args.pg_port)
        name = key.replace("-", "_")
        url = f"{prefix}/{name}"
        if not _pg_has(prefix, name):
            if base is not None:
                _pg_exec(prefix, f'CREATE DATABASE "{name}" TEMPLATE "{base[1].rsplit("/", 1)[1]}"')
            else:
                _pg_exec(prefix, f'CREATE DATABASE "{name}"')
    elif base is not None and not data.exists():
        shutil.copytree(Path(base[0]), data)
    # Migrate (and fill, when no marker says it is done) in a child of that tree.
    subprocess.run([sys.executable, __file__, "--child-fill", "--src", str(src), "--data", str(data), "--url", url,
                    "--reports", str(args.reports), "--seed", str(args.seed)], check=True)
    return str(data), url


# --- the measurement (in a child process that imports one tree) --------------------------


def child_fill(args: argparse.Namespace) -> None:
    sys.path[:0] = [args.src, str(ROOT / "tests"), str(ROOT / "benchmarks")]
    from console_fill import fill

    from tipline.config import Settings
    from tipline.runtime import Runtime
    from tipline.store.setup import do_init

    settings = Settings.from_env(Path(args.data), database_url=args.url)
    do_init(settings)
    rt = Runtime.open(settings)
    got = fill(rt.engine, rt.sessions, args.reports, args.seed)
    if rt.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with rt.engine.begin() as c:
            c.execute(text("SELECT setval(pg_get_serial_sequence('reports', 'id'), (SELECT max(id) FROM reports))"))
            c.execute(text("ANALYZE"))
    rt.close()
    print(f"  store {'reused' if got.reused else 'filled'}: {got.finished:,} finished of {got.reports:,} reports"
          f" (fill {got.fill_seconds} s)", file=sys.stderr)


def child_measure(args: argparse.Namespace) -> None:
    sys.path[:0] = [args.src, str(ROOT / "tests"), str(ROOT / "benchmarks")]
    from urllib.parse import urlencode

    import pyotp
    from console_fill import _marker
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from people_helpers import TestUser, sign_in
    from tipline.config import Settings
    from tipline.console import service as svc
    from tipline.people.principal import Principal
    from tipline.runtime import Runtime
    from tipline.store.tables import Reporter
    from tipline.web.app import create_app
    from tipline.web.console import _parse_filter

    settings = Settings.from_env(Path(args.data), database_url=args.url)
    rt = Runtime.open(settings)
    found = _marker(rt.engine)
    assert found is not None
    a = found["analyst"]
    user = TestUser(a["username"], "analyst", a["password"], a["user_id"], a["totp_secret"])
    me = Principal(user.user_id, user.username, "analyst")
    with rt.sessions() as s:
        names = dict(s.execute(select(Reporter.name, Reporter.id)).all())
    out: dict[str, Any] = {}

    class Req:  # what _parse_filter reads of a request: its query parameters
        def __init__(self, q: dict[str, str]) -> None:
            self.query_params = q

    with TestClient(create_app(runtime=rt)) as client:
        # Two sign-ins in one 30 s step would reuse a code (refused): the previous round may
        # have signed in during this step, so wait for the next one.
        time.sleep(30.5 - time.time() % 30)
        sign_in(client, user, code=pyotp.TOTP(user.totp_secret or "").now())
        only = [v for v in args.views.split(",") if v]
        for name, q0 in VIEWS:
            if only and name not in only:
                continue
            q = {k: (str(names[v[1:]]) if v.startswith("@") else v) for k, v in q0.items()}
            f, ignored = _parse_filter(Req(q))  # type: ignore[arg-type]
            assert not ignored, (name, ignored)
            with rt.sessions() as s:
                first = svc.queue(s, me, f)
            deep = max(1, first.pages // 2)
            for label, page in (("p1", 1), ("deep", deep)):
                res: dict[str, list[float]] = {"service": [], "http": [], "cold": []}
                for _ in range(args.runs):
                    t = time.perf_counter()
                    with rt.sessions() as s:
                        got = svc.queue(s, me, f, page=page)
                    res["service"].append((time.perf_counter() - t) * 1000)
                    path = "/console?" + urlencode({**q, "page": str(page)})
                    t = time.perf_counter()
                    resp = client.get(path)
                    res["http"].append((time.perf_counter() - t) * 1000)
                    assert resp.status_code == 200, resp.text[:300]
                if args.cold and name == "default" and label == "p1":
                    # Only here: a cold count reads every report (seconds), the same for every view.
                    for _ in range(2):
                        getattr(svc, "drop_counts", svc.counts_changed)()
                        t = time.perf_counter()
                        with rt.sessions() as s:
                            svc.queue(s, me, f, page=page)
                        res["cold"].append((time.perf_counter() - t) * 1000)
                print(f"    {Path(args.src).parent.name}: {name} | {label}: service median "
                      f"{statistics.median(res['service']):.0f} ms, "
                      f"http median {statistics.median(res['http']):.0f} ms",
                      file=sys.stderr, flush=True)
                out[f"{name} | {label}"] = {**res, "total": got.total, "page": page, "rows": len(got.rows),
                                            "first_ids": [r.report_id for r in got.rows[:3]]}
    rt.close()
    Path(args.out).write_text(json.dumps(out))


# --- the parent: prepare stores, alternate rounds, summarise ------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=362_104)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5, help="timed calls per view per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL (a local cluster in benchmarks/.cache/pg)")
    ap.add_argument("--pg-port", type=int, default=5499)
    ap.add_argument("--cold", action="store_true", help="also time the service call with the counts dropped")
    ap.add_argument("--compare", default="", help="another source tree to measure beside this one")
    ap.add_argument("--before-runs", type=int, default=0, help="calls per view per round for the --compare tree")
    ap.add_argument("--before-views", default="", help="comma-separated view names the --compare tree is timed on")
    ap.add_argument("--views", default="", help=argparse.SUPPRESS)
    ap.add_argument("--before-rounds", type=int, default=0,
                    help="measure the --compare tree only in the first N rounds (it may be slow)")
    ap.add_argument("--child-fill", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", default=str(ROOT / "src"), help=argparse.SUPPRESS)
    ap.add_argument("--data", default="", help=argparse.SUPPRESS)
    ap.add_argument("--url", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_fill:
        return child_fill(args)
    if args.child_measure:
        return child_measure(args)

    trees: list[tuple[str, Path]] = []
    if args.compare:
        trees.append(("before", Path(args.compare).resolve()))
    trees.append(("after", ROOT / "src"))
    stores: dict[str, tuple[str, str]] = {}
    base: tuple[str, str] | None = None
    for tag, src in trees:
        stores[tag] = prepare(src, tag if args.compare or tag != "after" else "after", args, base)
        base = base or stores[tag]
    samples: dict[str, dict[str, dict[str, list[float]]]] = {tag: {} for tag, _ in trees}
    meta: dict[str, dict[str, Any]] = {tag: {} for tag, _ in trees}
    for r in range(args.rounds):
        for tag, src in trees:
            if tag == "before" and args.before_rounds and r >= args.before_rounds:
                continue
            outf = CACHE / f"round-{tag}-{'pg' if args.pg else 'sqlite'}.json"
            subprocess.run([sys.executable, __file__, "--child-measure", "--src", str(src), "--data",
                            stores[tag][0], "--url", stores[tag][1], "--out", str(outf), "--runs",
                            str(args.before_runs if tag == "before" and args.before_runs else args.runs),
                            "--views", args.before_views if tag == "before" else "",
                            *(["--cold"] if args.cold else [])], check=True)
            for view, res in json.loads(outf.read_text()).items():
                acc = samples[tag].setdefault(view, {"service": [], "http": [], "cold": []})
                for k in acc:
                    acc[k] += res[k]
                meta[tag][view] = {k: res[k] for k in ("total", "page", "rows", "first_ids")}
        print(f"  round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    backend = "postgresql" if args.pg else "sqlite"
    summary: dict[str, Any] = {"backend": backend, "reports": args.reports, "runs": args.runs,
                               "rounds": args.rounds, "views": {}}
    head = f"{'view':34s} {'page':>5s} {'matching':>8s}"
    for tag, _ in trees:
        head += f" | {tag}: svc p50/p95   http p50/p95"
    print(f"\n{backend}, {args.reports:,} reports, {args.rounds} rounds × {args.runs} calls per view\n{head}")
    for view in samples[trees[-1][0]]:
        m = meta[trees[-1][0]][view]
        line = f"{view:34s} {m['page']:5d} {m['total']:8d}"
        summary["views"][view] = {"page": m["page"], "total": m["total"]}
        for tag, _ in trees:
            if view not in samples[tag]:
                line += " | (not timed)" + " " * 29
                continue
            acc = samples[tag][view]
            st = {k: {"p50": round(statistics.median(v), 1), "p95": round(pct(v, 0.95), 1)}
                  for k, v in acc.items() if v}
            summary["views"][view][tag] = st
            line += (f" | {st['service']['p50']:7.1f} {st['service']['p95']:7.1f}  "
                     f"{st['http']['p50']:7.1f} {st['http']['p95']:7.1f}")
            if "cold" in st:
                line += f"  cold {st['cold']['p50']:7.1f} {st['cold']['p95']:7.1f}"
        if args.compare and view in meta["before"]:
            mb = meta["before"][view]
            # The same rows on both schemas: the two trees must show the same page.
            if (mb["total"], mb["first_ids"]) != (m["total"], m["first_ids"]):
                line += f"  DIFFERS from before: {mb['total']} {mb['first_ids']} vs {m['total']} {m['first_ids']}"
        print(line)
    allp95 = [summary["views"][v][trees[-1][0]]["http"]["p95"] for v in summary["views"]]
    print(f"\n{trees[-1][0]}: worst http p95 {max(allp95):.1f} ms over {len(allp95)} views")
    # Every page call of every view pooled: the p95 page time an analyst paging the views sees.
    for tag, _ in trees:
        for k in ("service", "http"):
            calls = [x for v in samples[tag].values() for x in v[k]]
            if calls:
                summary.setdefault("pooled", {}).setdefault(tag, {})[k] = {
                    "calls": len(calls), "p50": round(pct(calls, 0.5), 1), "p95": round(pct(calls, 0.95), 1)}
                print(f"{tag}: {k} over all {len(calls)} page calls: p50 {pct(calls, 0.5):.1f} ms, "
                      f"p95 {pct(calls, 0.95):.1f} ms, over 300 ms: {sum(x > 300 for x in calls)}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"console-queue-{backend}-{stamp}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
