"""Intake benchmark: complete ISPWS cycles per second, tipline against a bare baseline.

One run: a fresh data dir and a throwaway PostgreSQL cluster (durable defaults: fsync on,
synchronous_commit on), then for each backend, each concurrency and — interleaved — each
target (``tipline serve`` and the bare baseline in baseline.py, both on uvicorn with the
same worker count): warm up, measure for ``--seconds``, record cycles/s, per-cycle and
per-request latency, failures, and the CPU taken by the client, the servers and PostgreSQL.
Prints a table and writes benchmarks/results/intake-<timestamp>.json. See benchmarks/README.md.

    .venv/bin/python benchmarks/intake/run.py [--seconds 20] [--backends sqlite,postgresql]
        [--concurrency 1,8,32] [--workers 2] [--client aiohttp|node] [--profile]
        [--before-src DIR]   # a third target: tipline from another source tree (e.g. main)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results"
VENV_BIN = Path(sys.executable).parent
USER, PASSWORD = "bench", "bench-secret-1"
PG_BIN = Path(os.environ.get("TIPLINE_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
NCPU = os.cpu_count() or 1

sys.path.insert(0, str(HERE))
import baseline  # noqa: E402
import profile_summary  # noqa: E402

REPORT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<report xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xsi:noNamespaceSchemaLocation="https://report.cybertip.org/ispws/xsd">
  <incidentSummary>
    <incidentType>Child Pornography (possession, manufacture, and distribution)</incidentType>
    <incidentDateTime>2026-10-01T12:00:00Z</incidentDateTime>
  </incidentSummary>
  <internetDetails><webPageIncident><url>https://example.com/p/1</url></webPageIncident></internetDetails>
  <reporter>
    <reportingPerson><firstName>Rita</firstName><lastName>Reporter</lastName>
      <email>safety@example.com</email></reportingPerson>
  </reporter>
</report>"""
FILEINFO_TEMPLATE = ("<fileDetails><reportId>{rid}</reportId><fileId>{fid}</fileId>"
                     "<fileName>standin.png</fileName></fileDetails>")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_image() -> bytes:
    """The 100 KB stand-in PNG with a tEXt chunk before IEND that the client rewrites per cycle."""
    from tipline.standin import standin_of_size

    png = standin_of_size(1, 100_000)
    assert png[-12:-8] == b"\x00\x00\x00\x00" and png[-8:-4] == b"IEND"
    data = b"bench\0" + b"0" * 32
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:-12] + chunk + png[-12:]


# -- PostgreSQL --------------------------------------------------------------------------


class PgCluster:
    """A throwaway cluster run as the postgres user, with PostgreSQL's durable defaults."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tipline-bench-pg-"))
        shutil.chown(self.dir, "postgres")
        os.chmod(self.dir, 0o700)
        self.port = free_port()

    def _run(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    def start(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres", "-E", "UTF8")
        # No fsync/synchronous_commit/full_page_writes overrides: commits are durable.
        self._run(str(PG_BIN / "pg_ctl"), "-D", f"{self.dir}/data", "-w", "-l", f"{self.dir}/log",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300",
                  "start")

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", f"{self.dir}/data",
                        "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def settings(self) -> dict[str, str]:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                "('fsync','synchronous_commit','full_page_writes','wal_sync_method',"
                                "'shared_buffers','server_version')").fetchall()
        return {str(k): str(v) for k, v in rows}

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, psutil.Error):
            return None


# -- servers -----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    auth: tuple[str, str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/ispws"

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def workers(self) -> list[int]:
        """PIDs of the uvicorn worker processes (multiprocessing spawn children)."""
        pids = []
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if any("spawn_main" in a for a in p.cmdline()):
                    pids.append(p.pid)
            except psutil.Error:
                continue
        return pids

    def connections_per_worker(self) -> list[int]:
        """Established client connections held by each worker (keep-alive spread)."""
        counts = []
        for pid in self.workers():
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                conns = []
            counts.append(sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED
                              and c.laddr and c.laddr.port == self.port))
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_server(name: str, argv: list[str], env: dict[str, str], log_path: Path, port: int,
                 auth: tuple[str, str] | None) -> Server:
    proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=REPO, stdout=log_path.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, proc, port, log_path, auth)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            r = httpx.get(f"{server.base}/status", auth=auth, timeout=2) if auth else \
                httpx.get(f"{server.base}/status", timeout=2)
            if r.status_code in (200, 404, 405) and len(server.workers()) >= 1:
                time.sleep(1.0)  # let every worker finish starting
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{name} did not start:\n{log_path.read_text()[-3000:]}")


def start_tipline(data_dir: Path, db_url: str, workers: int, logs: Path, enrichment: bool = False,
                  src: Path | None = None, name: str = "tipline", extra_env: dict[str, str] | None = None) -> Server:
    # Enrichment off by default: this benchmark measures intake (issue 2); with it on, SQLite
    # also runs every enrichment stage in the serving process.
    env = {"TIPLINE_DATA_DIR": str(data_dir), "TIPLINE_DATABASE_URL": db_url,
           "TIPLINE_SERVE_ENRICHMENT": "1" if enrichment else "0"}
    if src is not None:  # that tree's tipline, not the one installed in the venv
        env["PYTHONPATH"] = str(src)
    env.update(extra_env or {})
    tipline = [sys.executable, "-m", "tipline"]
    for argv in ([*tipline, "init"], [*tipline, "esp", "add", "Bench Platform", "--username", USER,
                                      "--password", PASSWORD]):
        subprocess.run(argv, env={**os.environ, **env}, check=True, capture_output=True)
    port = free_port()
    return start_server(name, [*tipline, "serve", "--port", str(port), "--workers", str(workers)],
                        env, logs / f"{name}.log", port, (USER, PASSWORD))


#: tipline's own histograms read after each run (absent from the baseline and older trees).
HISTOGRAMS = {"pool": "tipline_db_pool_checkout_seconds", "commit": "tipline_db_commit_seconds"}


def scrape_histograms(server: Server) -> dict[str, dict[str, float]] | None:
    """The HISTOGRAMS from tipline's /metrics, summed over its workers (None for the baseline)."""
    if server.auth is None:
        return None
    try:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    except Exception:
        return None
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for key, name in HISTOGRAMS.items():
            if fam.name != name:
                continue
            h = out.setdefault(key, {})
            for smp in fam.samples:
                if smp.name.endswith("_bucket"):
                    h[f"le={smp.labels['le']}"] = smp.value
                elif smp.name.endswith("_count"):
                    h["count"] = smp.value
                elif smp.name.endswith("_sum"):
                    h["sum"] = smp.value
    return out


def hist_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any] | None:
    """Observations in the window: count, mean, the bucket bounds under which 50 % and 99 %
    fell, and how many took over 1 ms and over 10 ms."""
    if not after:
        return None
    d = {k: v - (before or {}).get(k, 0.0) for k, v in after.items()}
    n = d.get("count", 0.0)
    if n <= 0:
        return {"count": 0}
    bounds = sorted((float(k[3:]), v) for k, v in d.items() if k.startswith("le="))
    under = dict(bounds)

    def le(q: float) -> float:
        return next((b for b, v in bounds if v >= q * n), float("inf")) * 1000

    return {"count": int(n), "mean_ms": d.get("sum", 0.0) / n * 1000, "p50_le_ms": le(0.5),
            "p99_le_ms": le(0.99), "over_1ms": int(n - under.get(0.001, n)),
            "over_10ms": int(n - under.get(0.01, n))}


def fsync_probe(directory: Path, n: int = 25) -> dict[str, float]:
    """fdatasync latency of the disk the data lives on, just before a run: the floor under
    every durable commit (tipline's, the baseline's and PostgreSQL's WAL flush alike)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 8192)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p90_ms": times[int(len(times) * 0.9)], "max_ms": times[-1]}


def start_baseline(db_url: str, workers: int, logs: Path) -> Server:
    baseline.init_db(db_url)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "baseline:app_factory", "--factory",
            "--port", str(port), "--workers", str(workers), "--log-level", "info", "--no-access-log"]
    return start_server("baseline", argv, {"BASELINE_DATABASE_URL": db_url}, logs / "baseline.log", port, None)


# -- CPU accounting ----------------------------------------------------------------------


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class CpuWatch:
    def __init__(self, server: Server, pg: PgCluster | None) -> None:
        self.server, self.pg = server, pg
        self.start: dict[str, float] = {}

    def _procs(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        pg: list[psutil.Process] = []
        if self.pg and (pm := self.pg.postmaster()):
            pg = [pm, *pm.children(recursive=True)]
        return self.server.tree(), pg

    def snapshot(self) -> dict[str, float]:
        srv, pg = self._procs()
        busy, total = machine_busy()
        return {"server": cpu_seconds(srv), "pg": cpu_seconds(pg), "busy": busy, "total": total,
                "t": time.monotonic()}

    def begin(self) -> None:
        self.start = self.snapshot()

    def end(self) -> dict[str, float]:
        s, e = self.start, self.snapshot()
        wall = e["t"] - s["t"]
        return {
            "server_cpu_s": e["server"] - s["server"],
            "postgres_cpu_s": e["pg"] - s["pg"],
            "machine_busy": (e["busy"] - s["busy"]) / max(1.0, e["total"] - s["total"]),
            "wall_s": wall,
        }


def wait_quiet(limit_s: float, threshold: float = 0.15) -> float:
    """Wait (at most ``limit_s``) until the machine is nearly idle: other work (tests run by
    other people on a shared box) would skew the run. Returns the busy share last seen."""
    deadline = time.monotonic() + limit_s
    announced = False
    while True:
        b0, t0 = machine_busy()
        time.sleep(1.0)
        b1, t1 = machine_busy()
        share = (b1 - b0) / max(1.0, t1 - t0)
        if share < threshold or time.monotonic() >= deadline:
            return share
        if not announced:
            log(f"   machine {share:.0%} busy with other work: waiting up to {limit_s:g} s for it to settle")
            announced = True


# -- one run -----------------------------------------------------------------------------


def run_load(server: Server, pg: PgCluster | None, *, client: str, concurrency: int, warmup: float,
             seconds: float, work: Path, on_measure: Any = None) -> dict[str, Any]:
    cfg = {"base": server.base, "user": USER, "password": PASSWORD, "concurrency": concurrency,
           "warmup": warmup, "seconds": seconds, "report": str(work / "report.xml"),
           "image": str(work / "image.png"), "fileinfo": FILEINFO_TEMPLATE}
    cfg_path = work / "client.json"
    cfg_path.write_text(json.dumps(cfg))
    if client == "node":
        argv = ["node", str(HERE / "client.mjs"), str(cfg_path)]
    else:
        argv = [sys.executable, str(HERE / "client_aiohttp.py"), str(cfg_path)]
    watch = CpuWatch(server, pg)
    hist_before: dict[str, dict[str, float]] | None = None
    hist_after: dict[str, dict[str, float]] | None = None
    load_before = os.getloadavg()[0]
    fsync = fsync_probe(work)
    cpu: dict[str, float] = {}
    spread: list[int] = []
    done: dict[str, Any] | None = None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        kind = event["event"]
        if kind == "measure":
            hist_before = scrape_histograms(server)
            watch.begin()
            if on_measure is not None:
                on_measure()
        elif kind == "tick":
            print(f"      {event['elapsed']:5.1f} s  {event['cycles']:6d} cycles "
                  f"({event['cycles'] / max(event['elapsed'], 1e-9):6.1f}/s)", flush=True)
        elif kind == "stop":
            cpu = watch.end()
            spread = server.connections_per_worker()
            hist_after = scrape_histograms(server)
        elif kind == "done":
            done = event
    proc.wait()
    if done is None:
        raise SystemExit(f"client failed: {proc.stderr.read() if proc.stderr else ''}")
    window = float(done["window_s"])
    done.update(cpu)
    done["connections_per_worker"] = spread
    for key in HISTOGRAMS:
        done[key] = (hist_delta((hist_before or {}).get(key), (hist_after or {}).get(key))
                     if hist_before is not None else None)
    done["fsync_before"] = fsync
    done["loadavg_1m"] = [load_before, os.getloadavg()[0]]
    done["cycles_per_s"] = done["cycles"] / window
    done["client_cpu_share"] = done["client_cpu_s"] / window / NCPU
    done["server_cpu_share"] = cpu.get("server_cpu_s", 0.0) / window / NCPU
    done["postgres_cpu_share"] = cpu.get("postgres_cpu_s", 0.0) / window / NCPU
    done["other_cpu_share"] = max(0.0, cpu.get("machine_busy", 0.0) - done["client_cpu_share"]
                                  - done["server_cpu_share"] - done["postgres_cpu_share"])
    done["failed"] = sum(done["failures"].values())
    return done


def describe(r: dict[str, Any]) -> str:
    c = r["cycle_ms"]
    fail = f", {r['failed']} FAILED {r['failures']}" if r["failed"] else ""
    return (f"{r['cycles_per_s']:7.1f} cycles/s  p50 {c['p50'] or 0:6.1f} ms  p99 {c['p99'] or 0:6.1f} ms  "
            f"cpu: client {r['client_cpu_share']:.0%} server {r['server_cpu_share']:.0%} "
            f"pg {r['postgres_cpu_share']:.0%} other {r['other_cpu_share']:.0%} "
            f"conns/worker {r['connections_per_worker']}{fail}")


# -- the whole run -----------------------------------------------------------------------


@contextmanager
def maybe_pg(needed: bool) -> Iterator[PgCluster | None]:
    if not needed:
        yield None
        return
    pg = PgCluster()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def machine_info(pg: PgCluster | None) -> dict[str, Any]:
    disk = "unknown"
    try:
        src = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "--target", str(REPO)],
                             capture_output=True, text=True).stdout.strip()
        dev = Path(src.split()[0]).name
        rota = Path(f"/sys/block/{dev}/queue/rotational").read_text().strip()
        disk = f"{src} (rotational={rota})"
    except (OSError, IndexError):
        pass
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), platform.processor())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpus": NCPU, "cpu_model": cpu_model, "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "node": node, "kernel": platform.release(), "disk": disk,
            "postgresql": pg.settings() if pg else None}


def latency_table(results: list[dict[str, Any]]) -> str:
    """Per target: p50/p95/p99/max of each ISPWS call and of the whole cycle, the pool's
    checkouts (tipline only) and the 1-minute load average before the run."""
    steps = ("submit", "upload", "fileinfo", "finish")
    rows = ["| backend | clients | target | cycles/s | " + " | ".join(f"{s} p50/p95/p99/max ms" for s in steps)
            + " | cycle p50/p95/p99/max ms | pool checkouts >1 ms / >10 ms (mean) | commit mean, p99 ≤ ms "
            "| fdatasync p50/p90 ms | conns/worker | load 1m |",
            "|---|---:|---|---:|" + "---:|" * (len(steps) + 1) + "---:|---:|---:|---|---:|"]

    def q(d: dict[str, Any]) -> str:
        return "/".join(f"{d.get(k) or 0:.0f}" for k in ("p50", "p95", "p99", "max"))

    for r in results:
        pool, commit, fs = r.get("pool"), r.get("commit"), r["fsync_before"]
        pool_s = (f"{pool['over_1ms']} / {pool['over_10ms']} of {pool['count']} ({pool['mean_ms']:.2f} ms)"
                  if pool and pool.get("count") else "–")
        commit_s = (f"{commit['mean_ms']:.1f}, {commit['p99_le_ms']:.0f}" if commit and commit.get("count")
                    else "–")
        rows.append(f"| {r['backend']} | {r['concurrency']} | {r['target']} | {r['cycles_per_s']:.1f} | "
                    + " | ".join(q(r["step_ms"][s]) for s in steps)
                    + f" | {q(r['cycle_ms'])} | {pool_s} | {commit_s} | {fs['p50_ms']:.0f}/{fs['p90_ms']:.0f} "
                    f"| {r['connections_per_worker']} | "
                    f"{r['loadavg_1m'][0]:.1f} |")
    return "\n".join(rows)


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| backend | clients | tipline cycles/s | p50 ms | p99 ms | baseline cycles/s | p50 ms | p99 ms "
            "| ratio | failures (t/b) | client CPU (t/b) | other load (t/b) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    keyed = {(r["backend"], r["concurrency"], r["target"]): r for r in results}
    for backend in dict.fromkeys(r["backend"] for r in results):
        for conc in dict.fromkeys(r["concurrency"] for r in results if r["backend"] == backend):
            t, b = keyed.get((backend, conc, "tipline")), keyed.get((backend, conc, "baseline"))

            def cells(r: dict[str, Any] | None) -> str:
                if r is None:
                    return "– | – | –"
                c = r["cycle_ms"]
                return f"{r['cycles_per_s']:.1f} | {c['p50'] or 0:.1f} | {c['p99'] or 0:.1f}"

            ratio = f"{t['cycles_per_s'] / b['cycles_per_s']:.2f}" if t and b and b["cycles_per_s"] else "–"
            fails = f"{t['failed'] if t else '–'}/{b['failed'] if b else '–'}"
            ccpu = f"{t['client_cpu_share']:.0%}/{b['client_cpu_share']:.0%}" if t and b else "–"
            other = f"{t['other_cpu_share']:.0%}/{b['other_cpu_share']:.0%}" if t and b else "–"
            rows.append(f"| {backend} | {conc} | {cells(t)} | {cells(b)} | {ratio} | {fails} | {ccpu} | {other} |")
            if (m := keyed.get((backend, conc, "before"))) is not None:
                m_ratio = f"{m['cycles_per_s'] / b['cycles_per_s']:.2f}" if b and b["cycles_per_s"] else "–"
                rows.append(f"| {backend} | {conc} | before: {cells(m)} | (same) | – | – | {m_ratio} | "
                            f"{m['failed']}/– | {m['client_cpu_share']:.0%}/– | {m['other_cpu_share']:.0%}/– |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default 20)")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each run (default 3)")
    ap.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts (default 1,8,32)")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers for both servers (default 2)")
    ap.add_argument("--targets", default="tipline,baseline",
                    help="comma-separated: tipline,baseline (before is added by --before-src)")
    ap.add_argument("--src", type=Path, default=None,
                    help="tipline source tree (its src/ directory) for the tipline target; default: the "
                         "tipline installed in the venv")
    ap.add_argument("--before-src", type=Path, default=None,
                    help="add a third target, 'before': tipline from this source tree (e.g. a "
                         "`git archive main src` copy), run interleaved with the other two")
    ap.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the before target only (repeatable), e.g. --before-src src "
                         "--before-env TIPLINE_REUSE_PORT=0 to measure one change alone")
    ap.add_argument("--enrichment", action="store_true",
                    help="let tipline serve hook enrichment to every finish (default: intake only)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run everything (servers, PostgreSQL, client) at this niceness, e.g. -15 on a "
                         "machine shared with other work (needs root for negative values)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="before each run, wait up to this many seconds for other CPU load to settle")
    ap.add_argument("--client", choices=["auto", "node", "aiohttp"], default="auto",
                    help="load generator; auto (default): aiohttp, the cheaper one (see README), "
                         "or node when aiohttp is not installed")
    ap.add_argument("--profile", action="store_true",
                    help="afterwards, profile tipline with py-spy at the highest concurrency on the last backend")
    ap.add_argument("--profile-seconds", type=float, default=15.0)
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    concs = [int(c) for c in args.concurrency.split(",") if c.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(backends) - {"sqlite", "postgresql"}:
        ap.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if args.before_src is not None and "before" not in targets:
        targets.append("before")
    if unknown := set(targets) - {"tipline", "baseline", "before"}:
        ap.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if args.client == "auto":
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            args.client = "node"
        else:
            args.client = "aiohttp"
    if args.client == "node" and shutil.which("node") is None:
        ap.error("node is not installed: use --client aiohttp")

    # A SIGTERM (or SIGINT from a background shell) still stops the servers and PostgreSQL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.nice:
        # Inherited by every process started from here: servers, workers, PostgreSQL, client.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="tipline-bench-"))
    (work / "report.xml").write_bytes(REPORT_XML)
    (work / "image.png").write_bytes(bench_image())
    results: list[dict[str, Any]] = []
    profile_out: dict[str, Any] | None = None
    n_runs = len(backends) * len(concs) * len(targets)
    eta = n_runs * (args.seconds + args.warmup + 1) + len(backends) * 15
    log(f"{n_runs} runs of {args.warmup:g}+{args.seconds:g} s, about {eta / 60:.0f} min; work dir {work}")
    try:
        with maybe_pg("postgresql" in backends) as pg:
            info = machine_info(pg)
            log(f"machine: {info['cpus']} CPU ({info['cpu_model']}), {info['ram_gb']} GB, "
                f"Python {info['python']}, Node {info['node']}; PostgreSQL {info['postgresql']}")
            n = 0
            for backend in backends:
                if backend == "sqlite":
                    t_url, b_url = "", f"sqlite:///{work / 'baseline.db'}"
                else:
                    assert pg is not None
                    t_url, b_url = pg.create_database("tipline"), pg.create_database("baseline")
                servers: dict[str, Server] = {}
                try:
                    if "tipline" in targets:
                        log(f"{backend}: starting tipline serve --workers {args.workers}")
                        servers["tipline"] = start_tipline(work / f"data-{backend}", t_url, args.workers, work,
                                                           args.enrichment, src=args.src)
                    if "before" in targets:
                        log(f"{backend}: starting tipline (before: {args.before_src}) --workers {args.workers}")
                        b_t_url = pg.create_database("tipline_before") if pg and backend == "postgresql" else ""
                        servers["before"] = start_tipline(work / f"data-before-{backend}", b_t_url, args.workers,
                                                          work, args.enrichment, src=args.before_src, name="before",
                                                          extra_env=dict(e.split("=", 1) for e in args.before_env))
                    if "baseline" in targets:
                        log(f"{backend}: starting baseline --workers {args.workers}")
                        servers["baseline"] = start_baseline(b_url, args.workers, work)
                    for i, conc in enumerate(concs):
                        # Interleave, alternating who goes first, so drift hits both alike.
                        order = targets if i % 2 == 0 else list(reversed(targets))
                        for target in order:
                            n += 1
                            idle = wait_quiet(args.quiet_wait)
                            log(f"run {n}/{n_runs}: {backend} {target} x{conc} (machine {idle:.0%} busy before)")
                            r = run_load(servers[target], pg if backend == "postgresql" else None,
                                         client=args.client, concurrency=conc, warmup=args.warmup,
                                         seconds=args.seconds, work=work)
                            r.update(backend=backend, target=target, concurrency=conc, busy_before=idle)
                            results.append(r)
                            log(f"   {describe(r)}")
                    if args.profile and backend == backends[-1] and "tipline" in servers:
                        profile_out = run_profile(servers["tipline"], pg if backend == "postgresql" else None,
                                                  args, max(concs), work, stamp, backend)
                finally:
                    for s in servers.values():
                        s.stop()
    finally:
        for name in ("tipline.log", "baseline.log", "before.log"):
            if (work / name).exists():
                shutil.copy(work / name, RESULTS / f"intake-{stamp}-{name}")
        shutil.rmtree(work, ignore_errors=True)

    out = {"started": stamp, "args": vars(args), "machine": info, "results": results, "profile": profile_out}
    path = RESULTS / f"intake-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str))  # default: the Path arguments
    print()
    print(table(results))
    print()
    print(latency_table(results))
    print()
    if results:
        share = max(r["client_cpu_share"] for r in results)
        print(f"client ({args.client}) CPU: at most {share:.0%} of the {NCPU} cores in any run")
    if profile_out:
        print(f"profile summary: {profile_out['summary_path']}")
    print(f"results: {path}")


def run_profile(server: Server, pg: PgCluster | None, args: argparse.Namespace, conc: int, work: Path,
                stamp: str, backend: str) -> dict[str, Any]:
    """One more tipline run with py-spy sampling every worker; not part of the table."""
    py_spy = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    workers = server.workers()
    raws: list[Path] = []
    spies: list[subprocess.Popen[bytes]] = []
    duration = max(1, int(args.profile_seconds) - 1)

    def attach() -> None:
        for i, pid in enumerate(workers):
            for mode in ("", "gil"):
                raw = RESULTS / f"profile-{stamp}-{backend}-worker{i}{'-' + mode if mode else ''}.txt"
                raws.append(raw)
                spies.append(subprocess.Popen(
                    [py_spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "100",
                     "--nonblocking", "--format", "raw", "--output", str(raw), *(["--gil"] if mode else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    log(f"profile: tipline {backend} x{conc} with py-spy on workers {workers}")
    r = run_load(server, pg, client=args.client, concurrency=conc, warmup=args.warmup,
                 seconds=args.profile_seconds, work=work, on_measure=attach)
    for sp in spies:
        sp.wait(60)
    log(f"   (under py-spy) {describe(r)}")
    text = profile_summary.summarise([p for p in raws if p.exists()], cycles=r["cycles"] * duration
                                     / r["window_s"], rate=100)
    summary_path = RESULTS / f"profile-{stamp}-{backend}-summary.txt"
    summary_path.write_text(text)
    print(text)
    return {"backend": backend, "concurrency": conc, "run": r, "raw": [str(p) for p in raws],
            "summary_path": str(summary_path)}


if __name__ == "__main__":
    main()
