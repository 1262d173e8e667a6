"""``tipline pipeline``: run, re-run and inspect the enrichment stages; run a queue worker."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from tipline.commands.context import Ctx, pass_ctx
from tipline.kinds.queues import QUEUE_NAMES

if TYPE_CHECKING:
    from tipline.pipeline.core import StageContext
    from tipline.runtime import Runtime

# The pipeline's modules (stages, queue, SQLAlchemy) are imported inside each command: listing
# the commands or reading one's --help needs none of them.

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


def _since(value: datetime | None) -> datetime | None:
    # Dates on the command line are UTC, like every stored timestamp.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _check_stages(names: tuple[str, ...]) -> list[str] | None:
    from tipline.pipeline.core import get_stage

    if not names:
        return None
    for n in names:
        try:
            get_stage(n)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--stage") from None
    return list(names)


def _drive(rt: Runtime, ids: list[int], job: Callable[[StageContext, list[int]], dict[int, str]],
           concurrency: int, group_size: int, label: str) -> tuple[int, int, int]:
    """Run ``job`` over groups of ``group_size`` report ids on ``concurrency`` threads, with a
    progress bar; ``job`` returns {report id: why it failed}."""
    from tqdm import tqdm

    from tipline.pipeline.core import StageContext

    ctx = StageContext(rt)
    failed = 0
    started = time.monotonic()
    groups = [ids[i:i + group_size] for i in range(0, len(ids), group_size)]
    with tqdm(total=len(ids), desc=label, unit="report", disable=None) as bar, \
            ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(job, ctx, group): group for group in groups}
        for fut in as_completed(futures):
            group = futures[fut]
            try:
                for rid, why in sorted(fut.result().items()):
                    failed += 1
                    tqdm.write(f"failed: report {rid}: {why}")
            except Exception as exc:  # a group that cannot be read must not stop the others
                failed += len(group)
                tqdm.write(f"failed: reports {group[0]}..{group[-1]}: {type(exc).__name__}: {exc}")
            bar.update(len(group))
    secs = time.monotonic() - started
    stage_runs = sum(ctx.outcomes.values())
    ran = len(ids) - failed
    click.echo(f"{label}: {len(ids)} report(s), {ran} enriched, {stage_runs} stage run(s), {failed} failed "
               f"in {secs:.1f} s" + (f" ({len(ids) / secs:.1f} reports/s)" if secs > 0 and ids else ""))
    return ran, failed, stage_runs


def _group_seconds(rt: Runtime) -> float | None:
    # On SQLite a group holds the one write lock: bound its transaction so that intake beside
    # it (a running server) never waits long. PostgreSQL writers do not block each other.
    from tipline.pipeline.queue import GROUP_SECONDS

    return None if rt.engine.dialect.name == "postgresql" else 4 * GROUP_SECONDS


GROUP_SIZE_HELP = ("Reports per group: one transaction, each stage once over the whole group "
                   "(default 200; docs/pipeline.md, The group path).")


@click.group("pipeline")
def command() -> None:
    """Enrichment pipeline: run, re-run, serve a queue, list.

    Run pending stages, re-run stages, run a queue worker, list the stages.
    """


@command.command("run")
@click.option("--since", type=click.DateTime(DATE_FORMATS), default=None,
              help="Only reports finished at or after this UTC date/time.")
@click.option("--stage", "stage_names", multiple=True, metavar="NAME",
              help="Only these stages (repeatable); default every stage.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many reports.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Groups processed at once (default TIPLINE_PIPELINE_CONCURRENCY).")
@click.option("--group-size", type=click.IntRange(min=1), default=None, help=GROUP_SIZE_HELP)
@pass_ctx
def run_cmd(c: Ctx, since: datetime | None, stage_names: tuple[str, ...], limit: int | None,
            concurrency: int | None, group_size: int | None) -> None:
    """Run the pending stages of finished reports.

    Pending: not yet done, done at an older version, or failed.
    """
    only = _check_stages(stage_names)
    with c.opened() as rt:
        failed = run_pipeline(rt, since=_since(since), only=only, limit=limit, concurrency=concurrency,
                              group_size=group_size)
    if failed:
        raise click.exceptions.Exit(1)


def run_pipeline(rt: Runtime, *, since: datetime | None = None, only: list[str] | None = None,
                 limit: int | None = None, concurrency: int | None = None,
                 report_ids: list[int] | None = None, group_size: int | None = None) -> int:
    """Run the pending stages of finished reports (of ``report_ids``, if given), with progress;
    returns how many reports failed."""
    from tipline.pipeline.queue import GROUP_SIZE, enrich_many, pending_report_ids

    ids = pending_report_ids(rt, since=since, limit=limit, report_ids=report_ids)
    if not ids:
        click.echo("nothing pending")
        return 0
    size = group_size or GROUP_SIZE
    seconds = _group_seconds(rt)
    _, failed, _ = _drive(rt, ids, lambda ctx, group: enrich_many(ctx, group, only=only, max_seconds=seconds,
                                                                   group_size=size),
                          concurrency or rt.settings.pipeline_concurrency, size, "pipeline run")
    return failed


@command.command("rerun")
@click.option("--stage", "stage_names", multiple=True, metavar="NAME",
              help="Re-run these stages (repeatable) and, unless --no-downstream, every stage that reads them.")
@click.option("--since", type=click.DateTime(DATE_FORMATS), default=None,
              help="Only reports finished at or after this UTC date/time.")
@click.option("--report", "report_ids", multiple=True, type=int, metavar="ID", help="Only these reports (repeatable).")
@click.option("--no-downstream", is_flag=True, help="Only the stages named, not the stages that read them.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Groups processed at once (default TIPLINE_PIPELINE_CONCURRENCY).")
@click.option("--group-size", type=click.IntRange(min=1), default=None, help=GROUP_SIZE_HELP)
@click.option("--all", "whole_store", is_flag=True,
              help="With --stage bundles: rebuild every incident from the stored links in one pass.")
@pass_ctx
def rerun_cmd(c: Ctx, stage_names: tuple[str, ...], since: datetime | None, report_ids: tuple[int, ...],
              no_downstream: bool, concurrency: int | None, group_size: int | None, whole_store: bool) -> None:
    """Force stages to run again for finished reports.

    For instance after importing a hash bank or changing the triage rules.
    """
    from tipline.pipeline.queue import GROUP_SIZE, finished_report_ids, rerun_many

    names = _check_stages(stage_names)
    if whole_store:
        _rebuild_bundles(c, names, since, report_ids)
        return
    rt = c.runtime()
    try:
        ids = finished_report_ids(rt, since=_since(since), report_ids=report_ids or None)
        if report_ids:
            unknown = sorted(set(report_ids) - set(ids))
            if unknown:
                click.echo(f"skipped (unknown or not finished): {', '.join(map(str, unknown))}", err=True)
        if not ids:
            click.echo("no finished reports match")
            return
        size = group_size or GROUP_SIZE
        seconds = _group_seconds(rt)
        _, failed, _ = _drive(rt, ids, lambda ctx, group: rerun_many(ctx, group, stage_names=names,
                                                                       downstream=not no_downstream,
                                                                       max_seconds=seconds, group_size=size),
                              concurrency or rt.settings.pipeline_concurrency, size, "pipeline rerun")
    finally:
        rt.close()
    if failed:
        raise click.exceptions.Exit(1)


def _rebuild_bundles(c: Ctx, names: list[str] | None, since: datetime | None, report_ids: tuple[int, ...]) -> None:
    """``rerun --stage bundles --all``: the whole store's incidents in one pass (docs/pipeline.md)."""
    if names != ["bundles"]:
        raise click.BadParameter("--all rebuilds the bundles stage only: use it with --stage bundles",
                                 param_hint="--all")
    if since is not None or report_ids:
        raise click.BadParameter("--all covers every finished report: drop --since and --report", param_hint="--all")
    from tipline.pipeline.stages.bundles import rebuild_bundles
    from tipline.store.db import transaction

    started = time.monotonic()
    with c.opened() as rt, transaction(rt.sessions, background=True) as s:
        w = rebuild_bundles(s)
    click.echo(f"bundles rebuilt in {time.monotonic() - started:.1f} s: {w.incidents_created} incident(s) created, "
               f"{w.incidents_updated} updated, {w.incidents_removed} removed; {w.members_written} membership(s) "
               f"written, {w.members_removed} removed")


@command.command("worker")
@click.option("--queue", "kind", type=click.Choice(QUEUE_NAMES), default=None,
              help="Queue to serve (default TIPLINE_QUEUE).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Jobs at once (default TIPLINE_PIPELINE_CONCURRENCY).")
@click.option("--once", is_flag=True, help="Exit when no job is left instead of waiting for more.")
@click.option("--group-size", type=click.IntRange(min=1), default=None, help=GROUP_SIZE_HELP)
@pass_ctx
def worker_cmd(c: Ctx, kind: str | None, concurrency: int | None, once: bool, group_size: int | None) -> None:
    """Run a queue worker: enrich reports as jobs arrive.

    Jobs that crashed workers left behind are retried.
    """
    from tipline.pipeline.core import StageContext
    from tipline.pipeline.queue import open_queue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = c.runtime()
    ctx = StageContext(rt)
    q = open_queue(rt, kind, concurrency=concurrency, ctx=ctx, group_size=group_size)
    stop = threading.Event()
    if q.kind == "inprocess" and threading.current_thread() is threading.main_thread():
        # SIGTERM (systemd, docker stop) and Ctrl-C: each thread finishes the group of reports
        # in hand, which commits, and the worker exits. (Procrastinate installs its own.) Set
        # even when SIGINT was ignored at start, as for a background job of a shell.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: stop.set())
    click.echo(f"tipline pipeline worker: queue {q.kind}, concurrency "
               f"{concurrency or rt.settings.pipeline_concurrency}" + (" (until empty)" if once else ""), err=True)
    try:
        q.run_worker(once=once, stop=stop)
    except KeyboardInterrupt:
        pass
    finally:
        q.close()
        rt.close()
        click.echo(_bundling_summary(ctx), err=True)


def _bundling_summary(ctx: StageContext) -> str:
    """How the bundles stage handled reports in this process: incrementally, or by a full re-plan."""
    from tipline.pipeline.core import Outcome

    fast, full = ctx.outcomes[("bundles", Outcome.UPDATED)], ctx.outcomes[("bundles", Outcome.RECOMPUTED)]
    return (f"bundles: {fast} report(s) updated incrementally, {full} re-planned in full"
            " (why: debug log of tipline.pipeline.bundles)")


@command.command("stages")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stages_cmd(as_json: bool) -> None:
    """List the stages in the order they run, and what each does."""
    from tipline.pipeline.core import stages

    rows: list[dict[str, Any]] = [{"name": st.name, "version": st.version, "after": list(st.after), "doc": st.doc}
                                  for st in stages()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no stages registered")
    for i, r in enumerate(rows, 1):
        after = f"  (after {', '.join(r['after'])})" if r["after"] else ""
        click.echo(f"{i:>2}. {r['name']} v{r['version']}{after}")
        for line in str(r["doc"] or "(no description)").splitlines():
            click.echo(f"      {line.strip()}")
