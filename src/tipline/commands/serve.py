"""``tipline serve``: the HTTP service (ISPWS, JSON API, public form, pages)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.config import Settings


def serve_http(settings: Settings, host: str, port: int, workers: int | None) -> None:
    """Migrate the database, check the key, and serve until stopped."""
    import uvicorn

    from tipline.runtime import Runtime
    from tipline.store.db import upgrade

    upgrade(settings.effective_database_url)
    Runtime.open(settings).close()  # fail early and clearly if the key is missing
    # Worker processes read their settings from the environment.
    os.environ["TIPLINE_DATA_DIR"] = str(settings.data_dir)
    n = workers or settings.workers
    metrics_dir = prepare_metrics_dir(settings, n)
    click.echo(f"tipline serving on http://{host}:{port}  (data: {settings.data_dir})")
    if metrics_dir is not None:
        click.echo(f"{n} worker processes; /metrics sums them (files in {metrics_dir})")
    # A worker that does not answer the supervisor's ping within this many seconds is killed
    # and replaced. uvicorn's 5 s is shorter than a spawned worker's start-up (re-importing
    # the CLI) on a busy machine: workers were killed while still starting, over and over.
    healthcheck = 30
    if n > 1 and settings.reuse_port:
        from tipline.web.serving import reuse_port_available, run_reuse_port

        if reuse_port_available():
            run_reuse_port("tipline.web.app:app_factory", factory=True, host=host, port=port,
                           workers=n, log_level="info", access_log=False,
                           timeout_worker_healthcheck=healthcheck)
            return
        click.echo("SO_REUSEPORT is not available here: the workers share one socket")
    uvicorn.run("tipline.web.app:app_factory", factory=True, host=host, port=port,
                workers=n, log_level="info", access_log=False, timeout_worker_healthcheck=healthcheck)


def prepare_metrics_dir(settings: Settings, workers: int) -> Path | None:
    """With several worker processes, point prometheus-client's multiprocess mode at a fresh
    directory so that ``/metrics`` from any worker reports the sum over all of them.

    One process needs nothing. An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is respected;
    ours, under the data directory, is emptied first: files of an earlier run would add
    their counts to this one's. Set before any worker imports tipline.metrics.
    """
    if workers <= 1:
        return None
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        return Path(given)
    path = settings.data_dir / "run" / "prometheus"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int, help="Worker processes (env TIPLINE_WORKERS).")
@pass_ctx
def command(c: Ctx, host: str, port: int, workers: int | None) -> None:
    """Run the HTTP service: ISPWS, JSON API, public form.

    ISPWS is at /ispws, the JSON API at /api/v1, the public form at /report.
    """
    serve_http(c.settings, host, port, workers)
