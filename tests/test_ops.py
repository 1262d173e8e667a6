"""Operator endpoints: /healthz, /readyz and /metrics, on SQLite and PostgreSQL.

Readiness is shown failing for a database that cannot be reached and for a blob key that
is missing or was replaced; health stays up meanwhile (it touches neither). Metrics are read
back with prometheus-client's own parser: a request counted under its route template and
status code, latency observed, stage runs and failures after real enrichment, and the queue
depth of both queues. A last test runs `tipline serve --workers 2` with
PROMETHEUS_MULTIPROC_DIR and checks that /metrics counts the requests of both processes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families

from helpers import report_xml
from tipline.cli import do_init
from tipline.config import Settings
from tipline.pipeline import core
from tipline.pipeline.core import StageContext
from tipline.pipeline.queue import ProcrastinateQueue, pending_report_ids, run_pending
from tipline.runtime import Runtime
from tipline.web.app import create_app

ACME = ("acme", "acme-secret-1")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient | httpx.Client) -> Samples:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def submit_and_finish(client: TestClient) -> int:
    root = etree.fromstring(client.post("/ispws/submit", content=report_xml(), auth=ACME,
                                        headers={"Content-Type": "text/xml"}).content)
    assert root.findtext("responseCode") == "0", root.findtext("responseDescription")
    rid = int(root.findtext("reportId") or 0)
    done = etree.fromstring(client.post("/ispws/finish", data={"id": str(rid)}, auth=ACME).content)
    assert done.findtext("responseCode") == "0"
    return rid


def unreachable_url(settings: Settings, backend: str, tmp_path: Path) -> str:
    """A database URL on which every connection fails."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/no-such-dir/tipline.db"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/tipline?connect_timeout=2"


# --- health and readiness ------------------------------------------------------------------


def test_healthz_and_readyz_when_all_is_well(client: TestClient) -> None:
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json() == {"status": "ok", "version": h.json()["version"]}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "blobKey": "ok"}}
    assert r.headers["cache-control"] == "no-store"


def test_readyz_fails_when_the_database_is_unreachable(settings: Settings, backend: str,
                                                       tmp_path: Path) -> None:
    down = dataclasses.replace(settings, database_url=unreachable_url(settings, backend, tmp_path))
    rt = Runtime.open(down)
    try:
        with TestClient(create_app(runtime=rt), raise_server_exceptions=False) as c:
            r = c.get("/readyz")
            assert r.status_code == 503
            body = r.json()
            assert body["status"] == "unavailable" and body["reason"] == "database unreachable"
            assert body["checks"] == {"database": "failed", "blobKey": "ok"}
            assert "127.0.0.1" not in r.text and "sqlite" not in r.text  # no connection details
            # Health touches no database: the process itself is fine.
            assert c.get("/healthz").status_code == 200
            # Nor does a scrape fail: the queue gauges are left out, the rest is served.
            samples = scrape(c)
            assert not any(name == "tipline_queue_depth" for name, _ in samples)
    finally:
        rt.close()


def test_readyz_fails_when_the_key_is_missing_or_replaced(client: TestClient, settings: Settings) -> None:
    key = settings.effective_key_file
    original = key.read_bytes()
    key.unlink()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reason"] == "blob encryption key missing"
    assert r.json()["checks"] == {"database": "ok", "blobKey": "failed"}
    key.write_bytes(os.urandom(len(original)))
    r = client.get("/readyz")
    assert r.status_code == 503 and "changed" in r.json()["reason"]
    key.write_bytes(b"short")
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["reason"] == "blob encryption key unreadable"
    key.write_bytes(original)
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200


# --- metrics -------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_and_code(client: TestClient) -> None:
    before = scrape(client)
    assert client.get("/api/v1/reports/123456").status_code == 401
    assert client.get("/api/v1/reports/654321").status_code == 401
    assert client.get("/ispws/status", auth=ACME).status_code == 200
    assert client.get("/no/such/path/42").status_code == 404
    assert client.get("/static/tipline.css").status_code == 200
    assert client.delete("/api/v1/reports/1").status_code == 405
    after = scrape(client)

    def delta(route: str, method: str, code: str) -> float:
        labels = {"route": route, "method": method, "code": code}
        return value(after, "tipline_http_requests_total", **labels) - value(
            before, "tipline_http_requests_total", **labels)

    # Two report ids, one series: the template, not the raw path.
    assert delta("/api/v1/reports/{reportId}", "GET", "401") == 2
    assert not any(dict(labels).get("route") == "/api/v1/reports/123456" for _, labels in after)
    # The same ISPWS route mounted twice keeps its two addresses apart.
    assert delta("/ispws/status", "GET", "200") == 1
    assert delta("/status", "GET", "200") == 0
    assert delta("unmatched", "GET", "404") == 1
    assert delta("/static/{path}", "GET", "200") == 1
    assert delta("/api/v1/reports/{reportId}", "DELETE", "405") == 1
    # The latency histogram saw them too, with buckets.
    key = {"route": "/api/v1/reports/{reportId}", "method": "GET"}
    assert (value(after, "tipline_http_request_duration_seconds_count", **key)
            - value(before, "tipline_http_request_duration_seconds_count", **key)) == 2
    assert value(after, "tipline_http_request_duration_seconds_bucket", **key, le="+Inf") >= 2


def _enrich_all(rt: Runtime, backend: str, rid: int) -> None:
    """Enrich as the deployment does: in-process worker threads (SQLite) or a Procrastinate
    worker (PostgreSQL)."""
    if backend == "sqlite":
        deadline = time.monotonic() + 60
        while pending_report_ids(rt):  # the server's own in-process workers are at it
            assert time.monotonic() < deadline, "in-process enrichment did not finish"
            time.sleep(0.1)
        return
    q = ProcrastinateQueue(rt)
    try:
        # The server's deferrer hands the finished report to Procrastinate after a short
        # linger (to fill a group job): wait for that job rather than defer one of our own,
        # which the server's would then follow once ours had run.
        deadline = time.monotonic() + 30
        while q.job_counts().get("todo", 0) == 0:
            assert time.monotonic() < deadline, "the server did not defer the finished report"
            time.sleep(0.05)
        q.run_worker(once=True)
    finally:
        q.close()
    assert pending_report_ids(rt) == []


def test_stage_runs_and_queue_depth_after_enrichment(runtime: Runtime, esps: object, backend: str) -> None:
    with TestClient(create_app(runtime=runtime, enrich=True), raise_server_exceptions=False) as c:
        before = scrape(c)
        rid = submit_and_finish(c)
        _enrich_all(runtime, backend, rid)
        after = scrape(c)
    names = [st.name for st in core.stages()]
    for name in names:
        runs = (value(after, "tipline_pipeline_stage_runs_total", stage=name)
                - value(before, "tipline_pipeline_stage_runs_total", stage=name))
        assert runs >= 1, f"stage {name} not counted"
        assert value(after, "tipline_pipeline_stage_failures_total", stage=name) == value(
            before, "tipline_pipeline_stage_failures_total", stage=name)
    assert value(after, "tipline_enrichment_pending_reports") == 0
    kind = "inprocess" if backend == "sqlite" else "procrastinate"
    assert (("tipline_queue_depth", frozenset({("queue", kind)})) in after)
    assert value(after, "tipline_queue_depth", queue=kind) == 0


def test_stage_failures_are_counted(runtime: Runtime, esps: object, monkeypatch: pytest.MonkeyPatch) -> None:
    first = core.stages()[0]

    def broken(ctx: StageContext, session: object, report_id: int) -> None:
        raise RuntimeError("stand-in failure")

    monkeypatch.setitem(core._STAGES, first.name, dataclasses.replace(first, func=broken, group=None))
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as c:
        rid = submit_and_finish(c)
        before = scrape(c)
        with pytest.raises(Exception, match="stand-in failure"):
            run_pending(StageContext(runtime), rid)
        after = scrape(c)
    label = {"stage": first.name}
    assert value(after, "tipline_pipeline_stage_failures_total", **label) - value(
        before, "tipline_pipeline_stage_failures_total", **label) == 1
    assert value(after, "tipline_pipeline_stage_runs_total", **label) - value(
        before, "tipline_pipeline_stage_runs_total", **label) == 1


def test_queue_depth_counts_waiting_work(runtime: Runtime, esps: object, backend: str) -> None:
    # No workers: what was finished waits.
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as c:
        rids = [submit_and_finish(c) for _ in range(3)]
        if backend == "postgresql":
            q = ProcrastinateQueue(runtime)
            try:
                for rid in rids[:2]:
                    q.defer_now(rid)
            finally:
                q.close()
        samples = scrape(c)
    assert value(samples, "tipline_enrichment_pending_reports") == 3
    if backend == "sqlite":
        assert value(samples, "tipline_queue_depth", queue="inprocess") == 3
    else:
        # Two jobs were deferred; the third report waits for the reconciler.
        assert value(samples, "tipline_queue_depth", queue="procrastinate") == 2
        assert value(samples, "tipline_queue_jobs", queue="procrastinate", status="todo") == 2
        assert value(samples, "tipline_queue_jobs", queue="procrastinate", status="doing") == 0


# --- several processes ------------------------------------------------------------------------


@pytest.fixture(params=["operator's directory", "serve's own directory"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`tipline serve --workers 2` (SQLite), with a multiprocess directory the operator names
    or, when none is named, the one serve makes (emptied) under the data directory."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
                "TIPLINE_DATABASE_URL": ""})
    if request.param == "operator's directory":
        mp_dir = tmp_path / "prom"
        mp_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    else:
        mp_dir = data / "run" / "prometheus"
        mp_dir.mkdir(parents=True)
        (mp_dir / "counter_99999.db").write_bytes(b"left by an earlier run")  # must be cleared
    do_init(Settings.from_env(data, database_url=""))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tipline", "--data-dir", str(data), "serve",
                             "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                # Stopped first: reading the log of a server still running would wait forever.
                proc.kill()
                pytest.fail(f"serve did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.2)
        if request.param != "operator's directory":
            assert not (mp_dir / "counter_99999.db").exists()
        yield url, mp_dir
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow
def test_metrics_sum_over_worker_processes(served: tuple[str, Path]) -> None:
    url, mp_dir = served
    with httpx.Client(base_url=url) as http:
        before = value(scrape(http), "tipline_http_requests_total", route="/readyz", method="GET", code="200")
    # A new connection each time, so that both workers take some; until both have counted.
    sent = 0
    while len(list(mp_dir.glob("counter_*.db"))) < 2 or sent < 20:
        assert sent < 500, "the requests never reached a second worker process"
        assert httpx.get(url + "/readyz", headers={"Connection": "close"}).status_code == 200
        sent += 1
    for _ in range(3):  # whichever process answers the scrape, it counts every process
        with httpx.Client(base_url=url, headers={"Connection": "close"}) as http:
            total = value(scrape(http), "tipline_http_requests_total", route="/readyz", method="GET", code="200")
        assert total - before == sent


def _listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (IPv4), from /proc/net/tcp (state 0A: LISTEN)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            n += 1
    return n


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT and /proc/net/tcp: Linux")
def test_each_worker_listens_on_its_own_socket(served: tuple[str, Path]) -> None:
    # One shared socket let one worker accept 31 of 32 keep-alive connections opened in a
    # burst (benchmarks/intake); with SO_REUSEPORT there is one listener per worker.
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    assert _listeners(port) == 2
    # A burst of keep-alive connections opened at once is spread over both workers: a
    # fixed hash of 32 client ports puts them all on one socket with probability 2**-31.
    import concurrent.futures

    clients = [httpx.Client(base_url=url) for _ in range(32)]
    try:
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(lambda c: c.get("/healthz").status_code, clients))
        assert codes == [200] * 32
        worker_pids = _worker_pids()
        held = {pid: _connections_of(pid, port) for pid in worker_pids}
        assert sum(1 for n in held.values() if n > 0) == 2, held
    finally:
        for c in clients:
            c.close()


def _worker_pids() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"spawn_main" in (proc / "cmdline").read_bytes():
                    pids.add(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT and /proc/net/tcp: Linux")
def test_a_killed_worker_is_replaced_on_its_own_socket(served: tuple[str, Path]) -> None:
    # Connections the kernel hashes to a dead worker's socket wait in its backlog (the parent
    # keeps the socket open) until the replacement accepts them: none is refused.
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    before = _worker_pids()
    victim = min(pid for pid in before if _listens_on(pid, port))
    os.kill(victim, 9)
    deadline = time.monotonic() + 60
    while True:
        now = _worker_pids()
        if victim not in now and len({p for p in now if _listens_on(p, port)}) >= 2:
            break
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
    assert _listeners(port) == 2
    for _ in range(40):  # new connections, hashed over both sockets
        assert httpx.get(url + "/healthz", headers={"Connection": "close"}, timeout=30).status_code == 200


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening socket on ``port``."""
    return _connections_of(pid, port, state="0A") > 0


def _connections_of(pid: int, port: int, state: str = "01") -> int:
    """Established connections to ``port`` held by process ``pid`` (its socket inodes)."""
    inodes = set()
    try:
        for fd in (Path("/proc") / str(pid) / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == state and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
            n += 1
    return n


def test_reuse_port_sockets_share_one_address() -> None:
    from tipline.web.serving import bind_reuse_port, reuse_port_available

    if not reuse_port_available():
        pytest.skip("no SO_REUSEPORT here")
    socks = bind_reuse_port("127.0.0.1", 0, 3, 16)
    try:
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == 1 and _listeners(ports.pop()) == 3
    finally:
        for s in socks:
            s.close()


def test_route_label_memo_agrees_with_the_scan(client: TestClient) -> None:
    from fastapi.routing import iter_route_contexts

    from tipline.web.ops import RouteLabels

    app = client.app
    fast, reference = RouteLabels(app), RouteLabels(app)  # type: ignore[arg-type]
    paths = {"/", "/no/such/path", "/ispws", "/ispws/", "/static/tipline.css", "/api/v1/reports/123"}
    for rc in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        template = getattr(rc, "path_format", None)
        if isinstance(template, str):
            paths.add(template)
            paths.add(template.replace("{", "x").replace("}", ""))
            for value in ("1", "abc"):
                paths.add(re.sub(r"\{[^}]+\}", value, template))
    methods = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "FOO")
    for _ in range(2):  # the second round is answered from the memo
        for path in sorted(paths):
            for method in methods:
                scope = {"type": "http", "path": path, "root_path": "", "method": method}
                assert fast.label(scope) == reference.scan(path, method), (path, method)
    assert fast._memo, "nothing was remembered: the fast path was never taken"
    assert all(template == path for (path, _), template in fast._memo.items())
    assert "/ispws/submit" in {p for p, _ in fast._memo}


# --- docs -------------------------------------------------------------------------------------


def test_every_metric_and_endpoint_is_documented(client: TestClient) -> None:
    # Docs that cannot drift: a new metric or label fails here until operations.md names it.
    guide = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f"`GET {path}`" in guide
    client.get("/healthz")
    resp = client.get("/metrics")
    for family in text_string_to_metric_families(resp.text):
        if not family.name.startswith("tipline_"):
            continue
        shown = family.name + ("_total" if family.type == "counter" else "")
        row = next((line for line in guide.splitlines() if line.startswith(f"| `{shown}` |")), None)
        assert row is not None, f"{shown} missing from the metrics table of docs/operations.md"
        for s in family.samples:
            for label in s.labels:
                if label != "le":
                    assert f"`{label}`" in row, f"label {label} of {shown} not documented"
