"""Prometheus metrics: the metric objects, and the recorders the HTTP layer and the pipeline call.

The objects live in prometheus-client's default registry, so a process that runs stages
(``tipline serve`` with the in-process queue, or ``tipline pipeline worker``) counts them
wherever they run. ``/metrics`` (``tipline.web.ops``) exposes them.

Several processes (``tipline serve --workers N``, workers beside it): prometheus-client's
multiprocess mode. When ``PROMETHEUS_MULTIPROC_DIR`` names a directory *before this module
is first imported*, every process writes its samples to files there and ``/metrics`` sums
them over all processes that share the directory (see docs/operations.md). Without it,
each process serves its own counts.

Importing prometheus-client costs about 0.1 s, so modules on the CLI's start-up path (the
pipeline core) import this one only when they first record something.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import Counter, Histogram, disable_created_metrics

# The *_created series (a start time per label set) double the output and say nothing a
# scraper does not already know from the counter resets.
disable_created_metrics()

#: Seconds: from 5 ms (a health check) to 60 s (a large upload over a slow link).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "tipline_http_requests",
    "HTTP requests answered, by route template (not the raw path), method and status code.",
    ["route", "method", "code"],
)
HTTP_LATENCY = Histogram(
    "tipline_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
#: Seconds: from 50 µs (a free pooled connection) to 30 s (the pool's own timeout).
POOL_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
POOL_CHECKOUT = Histogram(
    "tipline_db_pool_checkout_seconds",
    "Time to get a database connection from the pool: waiting for a free one, or opening one.",
    buckets=POOL_BUCKETS,
)
DB_COMMIT = Histogram(
    "tipline_db_commit_seconds",
    "Time a COMMIT took: the wait for the database's durable flush (WAL fsync).",
    buckets=POOL_BUCKETS,
)
STAGE_RUNS = Counter(
    "tipline_pipeline_stage_runs",
    "Enrichment stage runs recorded in the ledger (successful and failed), by stage.",
    ["stage"],
)
STAGE_FAILURES = Counter(
    "tipline_pipeline_stage_failures",
    "Enrichment stage runs that failed (their error is in the ledger), by stage.",
    ["stage"],
)

#: The route label of a request that matched no route: one value, whatever the path.
UNMATCHED = "unmatched"


def multiprocess_dir() -> str | None:
    """The multiprocess directory in force, if any (prometheus-client reads the same variable)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def record_request(route: str, method: str, code: int, seconds: float) -> None:
    """Count one answered HTTP request and its latency."""
    HTTP_REQUESTS.labels(route=route, method=method, code=str(code)).inc()
    HTTP_LATENCY.labels(route=route, method=method).observe(seconds)


def record_pool_checkout(seconds: float) -> None:
    """One connection taken from a pool (``tipline.store.db.TimedQueuePool``)."""
    POOL_CHECKOUT.observe(seconds)


def record_commit(seconds: float) -> None:
    """One committed transaction (``tipline.store.db``)."""
    DB_COMMIT.observe(seconds)


def record_stage_runs(runs: Iterable[tuple[str, str | None]]) -> None:
    """Count stage runs that were committed to the ledger: ``(stage name, error or None)``."""
    for name, error in runs:
        STAGE_RUNS.labels(stage=name).inc()
        if error is not None:
            STAGE_FAILURES.labels(stage=name).inc()
