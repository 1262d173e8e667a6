"""Stage ``links``: the reports a report shares content or identifiers with.

It writes ``ReportLink`` rows between this report and every other finished report that shares
content (same SHA-256, or a ``FileMatch`` of kind ``duplicate`` from the ``matches`` stage),
a reported account, e-mail, phone, device, or — only within a time window and with a low
weight — a public, non-proxy IP address, from the identifiers the ``identifiers`` stage
stored. The rules are data (``data/identifiers.toml``) and are explained in docs/routing.md.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, delete, func, or_, select, true, union_all
from sqlalchemy.dialects.postgresql import ARRAY as PG_ARRAY
from sqlalchemy.orm import Session, aliased

from tipline.model.report import IpCaptureEvent
from tipline.pipeline.core import (
    Outcome,
    StageContext,
    cross_report_lock,
    insert_rows,
    report_documents,
    stage,
    union_shape,
)
from tipline.pipeline.identifiers import (
    Rules,
    load_rules,
    normalise_ip,
)
from tipline.pipeline.linkchanges import (
    GroupLinkDelta,
    LinkChange,
    LinkTuple,
    diff_links,
    drop_links_delta,
    forget_link_changes,
    hand_over_links,
    record_link_change,
)
from tipline.pipeline.stages.identifiers import (
    CRYPTO_HASHES,
    aware_utc,
    dialect_insert,
    extract,
    load_report,
)
from tipline.store.tables import (
    File,
    FileMatch,
    Identifier,
    PipelineRun,
    Report,
    ReportIdentifier,
    ReportLink,
)


def ip_times(session: Session, report_id: int, ip: str) -> list[datetime | None]:
    """Capture times of ``ip`` in a report (None for an event without time)."""
    report, files, default = load_report(session, report_id)
    if report is None:
        return []
    return [f.at for f in extract(report, files, default, load_rules()) if f.kind == "ip" and f.value == ip]


def _within(a: list[datetime | None], b: list[datetime | None], window: timedelta) -> timedelta | None:
    """The smallest gap between two capture times, if within the window (untimed events never link)."""
    best: timedelta | None = None
    for x in a:
        for y in b:
            if x is None or y is None:
                continue
            gap = abs(x - y)
            if gap <= window and (best is None or gap < best):
                best = gap
    return best


def _partners(session: Session, report_id: int, cap: int, sharers: Any) -> list[int]:
    """The reports a report links to through one shared key (``sharers``: a query of report ids).

    Anchors are the ``cap`` lowest report ids sharing the key. Every sharer links to every
    anchor; an anchor links to every sharer. So a key shared by N reports gives about N * cap
    links instead of N * N, the group stays connected, and the result depends only on the set
    of sharers, not on the order in which reports were processed.
    """
    col = sharers.selected_columns[0]
    anchors = session.execute(sharers.distinct().order_by(col).limit(cap)).scalars().all()
    if report_id in anchors:
        everyone = session.execute(sharers.distinct().order_by(col)).scalars().all()
        return [int(r) for r in everyone if r != report_id]
    return [int(r) for r in anchors if r != report_id]


class _LinkSet:
    """The links of one report as they are collected: what each kind of link says and weighs,
    and which of two links to the same report for the same reason is kept (the stronger, then
    the smaller wording). Shared by the reference and the fast path, which differ only in how
    they find the other reports."""

    def __init__(self, report_id: int, rules: Rules) -> None:
        self.report_id = report_id
        self.rules = rules
        self.out: dict[tuple[int, str], tuple[float, str]] = {}

    def put(self, other: int, reason: str, weight: float, detail: str) -> None:
        if other == self.report_id:
            return
        cur = self.out.get((other, reason))
        if cur is None or weight > cur[0] or (weight == cur[0] and detail < cur[1]):
            self.out[(other, reason)] = (weight, detail[:512])

    def shared_identifier(self, other: int, kind: str, scope: str, value: str, gap: timedelta | None) -> None:
        """A shared account, e-mail, phone or device; for an IP, ``gap`` is the nearest capture times' gap."""
        label = f"{kind} {scope + ':' if scope else ''}{value}"
        if kind == "ip" and gap is not None:
            self.put(other, "ip", self.rules.weights["ip"], f"{label} within {int(gap.total_seconds() // 60)} min")
        else:
            self.put(other, kind, self.rules.weights[kind], label)

    def same_bytes(self, other: int, sha256: str) -> None:
        self.put(other, "content", self.rules.weights["content_exact"], f"identical file sha256:{sha256[:16]}")

    def file_match(self, other: int, hash_type: str, distance: int) -> None:
        """A duplicate found by the matches stage: exact (crypto hash, or PDQ distance 0) or near."""
        exact = hash_type.lower() in CRYPTO_HASHES or distance == 0
        weight = self.rules.weights["content_exact" if exact else "content_near"]
        what = "identical" if exact else "near-identical"
        self.put(other, "content", weight, f"{what} file ({hash_type} distance {distance})")


def compute_links_reference(session: Session, report_id: int,
                            rules: Rules | None = None) -> dict[tuple[int, str], tuple[float, str]]:
    """The links of one report: {(other report, reason): (weight, detail)} (a plain function).

    The reference for :func:`compute_links`: one query per shared key and a full parse of
    every IP partner's document. Slow, but obviously right; tests check both agree.
    """
    rules = rules or load_rules()
    cap = rules.max_links_per_key
    links = _LinkSet(report_id, rules)

    finished = select(Report.id).where(Report.state == "finished")
    roles = sorted(rules.link_roles)
    mine = session.execute(
        select(Identifier.id, Identifier.kind, Identifier.scope, Identifier.value)
        .join(ReportIdentifier, ReportIdentifier.identifier_id == Identifier.id)
        .where(ReportIdentifier.report_id == report_id, ReportIdentifier.role.in_(roles),
               Identifier.shared.is_(False))
        .distinct().order_by(Identifier.id)
    ).all()
    my_ip_times: dict[str, list[datetime | None]] = {}
    window = timedelta(hours=rules.ip_window_hours)
    for ident_id, kind, scope, value in mine:
        others = _partners(session, report_id, cap, select(ReportIdentifier.report_id).where(
            ReportIdentifier.identifier_id == ident_id, ReportIdentifier.role.in_(roles),
            ReportIdentifier.report_id.in_(finished)))
        for other in others:
            gap = None
            if kind == "ip":
                if value not in my_ip_times:
                    my_ip_times[value] = ip_times(session, report_id, value)
                gap = _within(my_ip_times[value], ip_times(session, other, value), window)
                if gap is None:
                    continue
            links.shared_identifier(other, kind, scope, value, gap)

    # Content: identical bytes (same SHA-256) and the matches stage's duplicates, both directions.
    my_files = session.execute(select(File.id, File.sha256).where(File.report_id == report_id)).all()
    my_ids = [f.id for f in my_files]
    for sha in sorted({f.sha256 for f in my_files}):
        for other in _partners(session, report_id, cap, select(File.report_id).where(
                File.sha256 == sha, File.report_id.in_(finished))):
            links.same_bytes(other, sha)
    if my_ids:
        # One query per end of the pair, each served by its (file, kind) index: under one OR
        # with the kind, SQLite's planner reads every duplicate pair through the kind alone.
        pairs = [p for mine in (FileMatch.file_id, FileMatch.other_file_id) for p in session.execute(
            select(FileMatch.file_id, FileMatch.other_file_id, FileMatch.hash_type, FileMatch.distance)
            .where(FileMatch.kind == "duplicate", mine.in_(my_ids)).order_by(FileMatch.id))]
        other_files = {fid for p in pairs for fid in (p.file_id, p.other_file_id)} - set(my_ids) - {None}
        owner = dict(session.execute(
            select(File.id, File.report_id).where(File.id.in_(sorted(other_files)), File.report_id.in_(finished))
        ).all()) if other_files else {}
        for p in pairs:
            theirs = p.other_file_id if p.file_id in my_ids else p.file_id
            other_report = owner.get(theirs) if theirs is not None else None
            if other_report is None:
                continue
            links.file_match(int(other_report), p.hash_type, p.distance)
    return links.out


# --- links: the fast path -------------------------------------------------------------------
#
# Same result as compute_links_reference (tests/test_links_fast.py checks it report by report),
# with a bounded number of queries per report:
#   1. the report's linkable identifiers (as the reference);
#   2. the anchors of all of them in ONE statement: a UNION ALL of one
#      "ORDER BY report_id LIMIT cap" select per key (the shape that an index on
#      (identifier_id, report_id) answers in O(cap); see the module's notes in the reply);
#   3. only for keys where this report is itself an anchor: everyone sharing them;
#   4. the same two steps for the SHA-256 of its files, and two joined FileMatch queries;
#   5. IP capture times of partners from a per-process cache (see IpTimesCache), misses
#      loaded in bulk and read straight from the stored JSON without parsing whole reports.
# "finished" is a join condition, not "IN (SELECT id FROM reports ...)": SQLite materialises
# such a subquery — every finished report — once per statement, which is what made the
# reference's cost grow with the size of the store.

IpTimes = dict[str, tuple[datetime | None, ...]]
Sharer = tuple[int, datetime | None]  # (report id, its finished_at)
_PARTIES = ("personOrUserReported", "intendedRecipient", "victim")
# "The report is finished", written so that no index can serve it (state is NOT NULL, so the
# coalesce changes nothing). Without ANALYZE statistics SQLite takes "reports.state = ?" for a
# selective condition and drives the whole join from ix_reports_state_expires — a scan of every
# finished report, the cost growing with the store — instead of from the key's own index.
_FINISHED = func.coalesce(Report.state, "") == "finished"
_UNION_CHUNK = 200  # selects per UNION ALL (SQLite allows 500 compound terms)
#: A key no report has, per kind: fills a UNION ALL up to its shape (``union_shape``).
_NO_KEY: dict[str, Any] = {"identifier": 0, "sha256": ""}


_IN_CHUNK = 500


def ip_capture_times(document: dict[str, Any], files: Iterable[dict[str, Any] | None]) -> IpTimes:
    """Every IP address of a stored report tree and its files' details, with its capture times.

    Reads the stored JSON directly (validating only the capture events), visiting exactly the
    places :func:`extract` takes IPs from, in every role. Equal to ``ip_times`` for each
    address; a test compares them.
    """
    out: dict[str, list[datetime | None]] = {}

    def add(events: Any) -> None:
        for raw in events or ():
            ev = IpCaptureEvent.model_validate(raw)
            n = normalise_ip(ev.ipAddress, ev.possibleProxy)
            if n is None or not n.value or len(n.value) > 512:
                continue
            out.setdefault(n.value, []).append(aware_utc(ev.dateTime))

    for key in _PARTIES:
        for party in document.get(key) or ():
            add(party.get("ipCaptureEvent"))
            for acc in party.get("associatedAccount") or ():
                add(acc.get("ipCaptureEvent"))
    for det in document.get("internetDetails") or ():
        p2p = det.get("peer2peerIncident")
        if p2p:
            add(p2p.get("ipCaptureEvent"))
    for details in files:
        if details and details.get("ipCaptureEvent"):
            add([details["ipCaptureEvent"]])
    return {ip: tuple(times) for ip, times in out.items()}


def load_ip_times(session: Session, report_ids: Sequence[int]) -> dict[int, tuple[datetime | None, IpTimes]]:
    """{report id: (finished_at, IP capture times)} for the given reports (purged ones: no IPs)."""
    out: dict[int, tuple[datetime | None, IpTimes]] = {}
    ids = sorted(set(report_ids))
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i:i + _IN_CHUNK]
        files: dict[int, list[dict[str, Any] | None]] = {}
        for rid, details in session.execute(select(File.report_id, File.details).where(
                File.report_id.in_(chunk)).order_by(File.report_id, File.seq)):
            files.setdefault(int(rid), []).append(details)
        for rid, finished_at, document in session.execute(
                select(Report.id, Report.finished_at, Report.document).where(Report.id.in_(chunk))):
            times = ip_capture_times(document, files.get(int(rid), [])) if document is not None else {}
            out[int(rid)] = (finished_at, times)
    return out


class IpTimesCache:
    """Per-process LRU of the IP capture times of finished reports.

    Safe because a finished report's tree and its files' details never change: intake only
    writes them while the report is ``open`` (every update is conditioned on that state),
    finishing is final, and only open reports are purged. Entries are keyed by report id AND
    ``finished_at`` as read in the caller's own transaction, so a report id reused after a
    rolled-back transaction (possible on SQLite) can never be served another report's times.
    Only reports read as finished are cached.
    """

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._data: OrderedDict[int, tuple[datetime | None, IpTimes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, session: Session, sharers: Iterable[Sharer]) -> dict[int, IpTimes]:
        """IP times of each (report id, finished_at); misses are loaded in bulk from ``session``."""
        want = dict(sharers)
        out: dict[int, IpTimes] = {}
        missing: list[int] = []
        with self._lock:
            for rid, fin in want.items():
                hit = self._data.get(rid)
                if hit is not None and fin is not None and hit[0] == fin:
                    self._data.move_to_end(rid)
                    out[rid] = hit[1]
                else:
                    missing.append(rid)
            self.hits += len(out)
            self.misses += len(missing)
        if missing:
            loaded = load_ip_times(session, missing)
            with self._lock:
                for rid, (fin, times) in loaded.items():
                    out[rid] = times
                    if fin is not None and want.get(rid) == fin:
                        self._data[rid] = (fin, times)
                        self._data.move_to_end(rid)
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
        return out


def _key_table(which: str) -> tuple[Any, Any, list[ColumnElement[bool]]]:
    """(key column, report-id column, extra conditions) of a table recording who has which key."""
    if which == "identifier":
        return (ReportIdentifier.identifier_id, ReportIdentifier.report_id,
                [ReportIdentifier.role.in_(bindparam("roles", expanding=True))])
    return File.sha256, File.report_id, []


@lru_cache(maxsize=4)
def _sharers_lateral(which: str) -> Any:
    """PostgreSQL: the :cap earliest sharers of each key of the array :keys, in one statement
    (a LATERAL select per key, each walking the key's index and stopping at :cap). The UNION
    ALL form below is planned anew at each execution, 200 subqueries at a time."""
    key_col, report_col, where = _key_table(which)
    keys = func.unnest(bindparam("keys", type_=PG_ARRAY(key_col.type))).table_valued("k").render_derived(name="keys")
    sub = (select(report_col.label("r"), Report.finished_at.label("f"))
           .join(Report, Report.id == report_col)
           .where(_FINISHED, key_col == keys.c.k, *where).distinct()
           .order_by(report_col).limit(bindparam("cap", type_=Integer)).lateral("s"))
    return select(keys.c.k, sub.c.r, sub.c.f).select_from(keys).join(sub, true())


@lru_cache(maxsize=64)
def _sharers_stmt(which: str, n: int, limited: bool) -> Any:
    """UNION ALL of ``n`` selects "sharers of key :k<i> [ORDER BY report LIMIT :cap]".

    One select per key: with a single "key = ?" each part is driven by the key's index (an
    "IN (...)" over several keys lets SQLite drive the join from reports instead). Built once
    per shape and reused with new parameters: building such a statement costs more than
    running it.
    """
    key_col, report_col, where = _key_table(which)
    selects = []
    for i in range(n):
        q = (select(key_col.label("k"), report_col.label("r"), Report.finished_at.label("f"))
             .join(Report, Report.id == report_col)
             .where(_FINISHED, key_col == bindparam(f"k{i}"), *where).distinct())
        if limited:
            q = q.order_by(report_col).limit(bindparam("cap", type_=Integer))
        sub = q.subquery(f"s{i}")
        selects.append(select(sub.c.k, sub.c.r, sub.c.f))
    return selects[0] if n == 1 else union_all(*selects)


def _sharers(session: Session, report_id: int, cap: int, which: str, keys: Sequence[Any],
             params: dict[str, Any]) -> dict[Any, list[Sharer]]:
    """The partners of ``report_id`` through each key, as :func:`_partners` chooses them.

    ``which``: "identifier" (keys are identifier ids; ``params`` gives the link ``roles``) or
    "sha256" (keys are file SHA-256). Returns {key: [(report id, finished_at), ...]
    ascending}, without ``report_id`` itself.
    """
    def per_key(keys: Sequence[Any], limited: bool) -> dict[Any, list[Sharer]]:
        found: dict[Any, list[Sharer]] = {}
        for i in range(0, len(keys), _UNION_CHUNK):
            chunk = list(keys[i:i + _UNION_CHUNK])
            n = union_shape(len(chunk))
            chunk += [_NO_KEY[which]] * (n - len(chunk))
            values = {f"k{j}": k for j, k in enumerate(chunk)} | params | ({"cap": cap} if limited else {})
            for k, r, f in session.execute(_sharers_stmt(which, n, limited), values):
                found.setdefault(k, []).append((int(r), f))
        return found

    anchors = per_key(keys, True)
    # An anchor links to every sharer of the key. Fewer than ``cap`` anchors means they are
    # all the sharers already; otherwise (a few reports per popular key) fetch them: O(sharers).
    full = [k for k, lst in anchors.items() if len(lst) >= cap and any(r == report_id for r, _ in lst)]
    everyone = per_key(full, False) if full else {}
    out: dict[Any, list[Sharer]] = {}
    for k, lst in anchors.items():
        out[k] = sorted(x for x in everyone.get(k, lst) if x[0] != report_id)
    return out


def compute_links(session: Session, report_id: int, rules: Rules | None = None,
                  cache: IpTimesCache | None = None) -> dict[tuple[int, str], tuple[float, str]]:
    """The links of one report, exactly as :func:`compute_links_reference` computes them, fast.

    ``cache``: IP capture times of finished reports kept between calls (per process); without
    one, a fresh cache serves this call only.
    """
    rules = rules or load_rules()
    cache = cache if cache is not None else IpTimesCache()
    cap = rules.max_links_per_key
    links = _LinkSet(report_id, rules)

    roles = sorted(rules.link_roles)
    mine = session.execute(
        select(Identifier.id, Identifier.kind, Identifier.scope, Identifier.value)
        .join(ReportIdentifier, ReportIdentifier.identifier_id == Identifier.id)
        .where(ReportIdentifier.report_id == report_id, ReportIdentifier.role.in_(roles),
               Identifier.shared.is_(False))
        .distinct().order_by(Identifier.id)
    ).all()
    by_ident = _sharers(session, report_id, cap, "identifier", [int(r.id) for r in mine],
                        {"roles": roles}) if mine else {}
    ip_partners = [x for r in mine if r.kind == "ip" for x in by_ident.get(r.id, [])]
    theirs: dict[int, IpTimes] = cache.get_many(session, ip_partners) if ip_partners else {}
    my_times: IpTimes = load_ip_times(session, [report_id]).get(report_id, (None, {}))[1] if ip_partners else {}
    window = timedelta(hours=rules.ip_window_hours)
    for ident_id, kind, scope, value in mine:
        for other, _ in by_ident.get(ident_id, []):
            gap = None
            if kind == "ip":
                gap = _within(list(my_times.get(value, ())), list(theirs.get(other, {}).get(value, ())), window)
                if gap is None:
                    continue
            links.shared_identifier(other, kind, scope, value, gap)

    # Content: identical bytes (same SHA-256) and the matches stage's duplicates, both directions.
    my_files = session.execute(select(File.id, File.sha256).where(File.report_id == report_id)).all()
    my_ids = [f.id for f in my_files]
    shas = sorted({f.sha256 for f in my_files})
    by_sha = _sharers(session, report_id, cap, "sha256", shas, {}) if shas else {}
    for sha in shas:
        for other, _ in by_sha.get(sha, []):
            links.same_bytes(other, sha)
    if my_ids:
        # A pair whose file_id is ours means its other_file_id is theirs, else the reverse (as
        # in the reference); a pair within this report resolves to this report and is dropped.
        pairs: list[Any] = []
        for mine_col, theirs_col in ((FileMatch.file_id, FileMatch.other_file_id),
                                     (FileMatch.other_file_id, FileMatch.file_id)):
            pairs.extend(session.execute(
                select(File.report_id, FileMatch.hash_type, FileMatch.distance)
                .join(File, File.id == theirs_col)
                .where(FileMatch.kind == "duplicate", mine_col.in_(my_ids))
            ).all())
        done = _finished_among(session, {int(p[0]) for p in pairs})
        for other_report, hash_type, distance in pairs:
            if int(other_report) in done:
                links.file_match(int(other_report), hash_type, distance)
    return links.out


def _finished_among(session: Session, report_ids: set[int]) -> set[int]:
    """Which of ``report_ids`` are finished, by primary key. The duplicate pairs are read
    without a join to ``reports``: with "finished" as a join condition PostgreSQL estimated a
    handful of finished reports (the condition is an expression, ``_FINISHED``, so that SQLite
    never drives a join from the state index) and drove the join from a scan of every one —
    the links stage's cost growing with the store."""
    out: set[int] = set()
    todo = sorted(report_ids)
    for i in range(0, len(todo), 2000):
        out.update(int(r) for r in session.execute(
            select(Report.id).where(Report.id.in_(todo[i:i + 2000]), _FINISHED)).scalars())
    return out


def links_stage(ctx: StageContext, session: Session, report_id: int) -> None:
    """Link the report to other reports sharing content, a reported account/e-mail/phone/device, or an IP."""
    cross_report_lock(session)
    drop_links_delta(session)  # links change here: a group's hand-over no longer describes them
    mine = or_(ReportLink.report_a == report_id, ReportLink.report_b == report_id)
    before = {
        (int(b) if int(a) == report_id else int(a), str(reason), float(weight), detail)
        for a, b, reason, weight, detail in session.execute(
            select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                   ReportLink.detail).where(mine))
    }
    session.execute(delete(ReportLink).where(mine))
    links = compute_links(session, report_id, cache=ctx.service("links-ip-times", IpTimesCache))
    after = {(other, reason, float(weight), detail[:512]) for (other, reason), (weight, detail) in links.items()}
    # What changed, for the bundles stage to bring incidents up to date from (it reads the rows).
    record_link_change(session, report_id, diff_links(before, after))
    # A report enriched after a later-numbered one (finished later, or a worker ahead of
    # another) can change that one's links: it may displace an anchor of a shared key, and it
    # is "earlier" content and a repeat for its assessment. Its links and everything that
    # reads them are due again; the worker runs them next (``queue.stale_neighbours``).
    later = sorted({t[0] for t in after - before if t[0] > report_id})
    for i in range(0, len(later), 500):
        session.execute(delete(PipelineRun).where(PipelineRun.stage == "links",
                                                  PipelineRun.report_id.in_(later[i:i + 500])))
    if not links:
        return
    rows = [
        {"report_a": min(report_id, other), "report_b": max(report_id, other), "reason": reason,
         "detail": detail, "weight": weight}
        for (other, reason), (weight, detail) in sorted(links.items())
    ]
    ins = dialect_insert(session, ReportLink)
    # The other report's own run may have written the same pair concurrently: same content.
    # Rows as parameters (executemany), not .values(rows): one cached statement instead of
    # compiling a new many-row INSERT for every report (it cost more than computing the links).
    session.execute(ins.on_conflict_do_update(
        index_elements=["report_a", "report_b", "reason"],
        set_={"detail": ins.excluded.detail, "weight": ins.excluded.weight}), rows)


# --- links: the group form ------------------------------------------------------------------
#
# The same links as ``links_stage`` run on each report of the group in turn, with a bounded
# number of statements for the whole group: one read of the group's identifiers and files,
# a sharer query per kind of key (identifiers, SHA-256) and 200 keys of the group, reading the
# ``cap`` earliest sharers of each key (its anchors) from the key's index, one more for the
# keys of which a group report is itself an anchor, two FileMatch queries, and the
# writes. How the per-report runs would have rewritten each other's pairs (a later report's
# run deletes and rewrites every pair it is in) is replayed in memory, so the stored pairs,
# the link-change record the bundles stage reads and the ledger rows made due are exactly
# those of the per-report runs.


def _ranked_sharers(session: Session, which: str, keys: Sequence[Any], params: dict[str, Any],
                    cap: int | None) -> dict[Any, list[Sharer]]:
    """{key: [(report id, finished_at), ...] ascending}: the ``cap`` earliest sharers of each key
    (every sharer when ``cap`` is None), for many keys in one statement per 200 (``cap``) or
    2,000 keys (every sharer).

    The ``cap`` earliest are read per key — on PostgreSQL a LATERAL select per key of an array
    (``_sharers_lateral``), on SQLite a UNION ALL of "ORDER BY report LIMIT cap" selects
    (``_sharers_stmt``) — each walking its key's index and stopping at ``cap``, not ranked by a
    window function over every sharer: a viral file's SHA-256 has tens of thousands of sharers
    in a year, all of which the window read for every group that held a copy."""
    found: dict[Any, list[Sharer]] = {}
    if cap is not None and session.get_bind().dialect.name == "postgresql":
        for i in range(0, len(keys), 2000):
            for k, r, f in session.execute(_sharers_lateral(which),
                                           {"keys": list(keys[i:i + 2000]), "cap": cap} | params):
                found.setdefault(k, []).append((int(r), f))
        for lst in found.values():
            lst.sort()
        return found
    if cap is not None:
        for i in range(0, len(keys), _UNION_CHUNK):
            chunk = list(keys[i:i + _UNION_CHUNK])
            n = union_shape(len(chunk))
            chunk += [_NO_KEY[which]] * (n - len(chunk))
            values = {f"k{j}": k for j, k in enumerate(chunk)} | params | {"cap": cap}
            for k, r, f in session.execute(_sharers_stmt(which, n, True), values):
                found.setdefault(k, []).append((int(r), f))
        for lst in found.values():
            lst.sort()
        return found
    key_col, report_col, where = _key_table(which)
    for i in range(0, len(keys), 2000):
        chunk = list(keys[i:i + 2000])
        pairs = (select(key_col.label("k"), report_col.label("r"), Report.finished_at.label("f"))
                 .join(Report, Report.id == report_col)
                 .where(_FINISHED, key_col.in_(chunk), *where).distinct().subquery("pairs"))
        for k, r, f in session.execute(select(pairs.c.k, pairs.c.r, pairs.c.f), params):
            found.setdefault(k, []).append((int(r), f))
    for lst in found.values():
        lst.sort()
    return found


def _group_sharers(session: Session, cap: int, which: str, keys_of: dict[int, list[Any]],
                   params: dict[str, Any]) -> dict[int, dict[Any, list[Sharer]]]:
    """:func:`_sharers` for every report of a group: {report: {key: partners}}, in two statements."""
    keys = sorted({k for ks in keys_of.values() for k in ks})
    if not keys:
        return {rid: {} for rid in keys_of}
    anchors = _ranked_sharers(session, which, keys, params, cap)
    # An anchor links to every sharer of the key: for the keys with a full set of anchors of
    # which a group report is one, every sharer is read (O(sharers), once per group).
    full = sorted({k for rid, ks in keys_of.items() for k in ks
                   if len(anchors.get(k, ())) >= cap and any(r == rid for r, _ in anchors[k])})
    everyone = _ranked_sharers(session, which, full, params, None) if full else {}
    out: dict[int, dict[Any, list[Sharer]]] = {}
    for rid, ks in keys_of.items():
        mine: dict[Any, list[Sharer]] = {}
        for k in ks:
            lst = anchors.get(k)
            if lst is None:
                continue
            if k in everyone and any(r == rid for r, _ in lst):
                lst = everyone[k]
            mine[k] = [x for x in lst if x[0] != rid]
        out[rid] = mine
    return out


def compute_links_group(session: Session, report_ids: Sequence[int], rules: Rules | None = None,
                        cache: IpTimesCache | None = None) -> dict[int, dict[tuple[int, str], tuple[float, str]]]:
    """:func:`compute_links` for every report of a group, with a bounded number of statements."""
    rules = rules or load_rules()
    cache = cache if cache is not None else IpTimesCache()
    cap = rules.max_links_per_key
    roles = sorted(rules.link_roles)
    ids = sorted(set(report_ids))
    mine: dict[int, list[Any]] = {rid: [] for rid in ids}
    my_files: dict[int, list[Any]] = {rid: [] for rid in ids}
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i:i + _IN_CHUNK]
        for row in session.execute(
                select(ReportIdentifier.report_id, Identifier.id, Identifier.kind, Identifier.scope, Identifier.value)
                .join(ReportIdentifier, ReportIdentifier.identifier_id == Identifier.id)
                .where(ReportIdentifier.report_id.in_(chunk), ReportIdentifier.role.in_(roles),
                       Identifier.shared.is_(False))
                .distinct().order_by(ReportIdentifier.report_id, Identifier.id)):
            mine[int(row.report_id)].append(row)
        for frow in session.execute(select(File.report_id, File.id, File.sha256).where(File.report_id.in_(chunk))):
            my_files[int(frow.report_id)].append(frow)
    by_ident = _group_sharers(session, cap, "identifier",
                              {rid: [int(r.id) for r in rows] for rid, rows in mine.items()}, {"roles": roles})
    ip_partners: dict[int, list[Sharer]] = {}
    for rid, rows in mine.items():
        lst = [x for r in rows if r.kind == "ip" for x in by_ident[rid].get(int(r.id), [])]
        if lst:
            ip_partners[rid] = lst
    theirs: dict[int, IpTimes] = cache.get_many(session, [x for lst in ip_partners.values() for x in lst]) \
        if ip_partners else {}
    # The group's own documents are decoded once for all its stages (``report_documents``).
    own_times = {rid: ip_capture_times(doc.document, [f.details for f in doc.files])
                 for rid, doc in report_documents(session, sorted(ip_partners)).items()
                 if doc.document is not None} if ip_partners else {}
    shas = {rid: sorted({f.sha256 for f in files}) for rid, files in my_files.items()}
    by_sha = _group_sharers(session, cap, "sha256", shas, {})
    owner = {f.id: rid for rid, files in my_files.items() for f in files}
    pairs: dict[int, list[tuple[int, str, int]]] = {}
    all_files = sorted(owner)
    my_file = aliased(File)
    for i in range(0, len(all_files), 2000):
        chunk = all_files[i:i + 2000]
        for mine_col, theirs_col in ((FileMatch.file_id, FileMatch.other_file_id),
                                     (FileMatch.other_file_id, FileMatch.file_id)):
            # DISTINCT by (report, other report, hash kind, distance): the copies of a viral
            # file are hundreds of pairs per file, and only these four say what link they make.
            for my_report, other_report, hash_type, distance in session.connection().execute(
                    select(my_file.report_id, File.report_id, FileMatch.hash_type, FileMatch.distance)
                    .join(my_file, my_file.id == mine_col)
                    .join(File, File.id == theirs_col)
                    .where(FileMatch.kind == "duplicate", mine_col.in_(chunk)).distinct()):
                pairs.setdefault(int(my_report), []).append((int(other_report), hash_type, int(distance)))
    # Of finished reports only (``_finished_among``: not a join, which PostgreSQL drove from
    # every finished report).
    done = _finished_among(session, {o for found in pairs.values() for o, _, _ in found})
    pairs = {rid: [p for p in found if p[0] in done] for rid, found in pairs.items()}
    for found in pairs.values():
        found.sort()  # the order the per-report form meets them in does not matter: _LinkSet keeps the best
    window = timedelta(hours=rules.ip_window_hours)
    out: dict[int, dict[tuple[int, str], tuple[float, str]]] = {}
    for rid in ids:
        links = _LinkSet(rid, rules)
        my_times = own_times.get(rid, {})
        for ident_id, kind, scope, value in ((int(r.id), r.kind, r.scope, r.value) for r in mine[rid]):
            for other, _ in by_ident[rid].get(ident_id, []):
                gap = None
                if kind == "ip":
                    gap = _within(list(my_times.get(value, ())), list(theirs.get(other, {}).get(value, ())), window)
                    if gap is None:
                        continue
                links.shared_identifier(other, kind, scope, value, gap)
        for sha in shas[rid]:
            for other, _ in by_sha[rid].get(sha, []):
                links.same_bytes(other, sha)
        for other_report, hash_type, distance in pairs.get(rid, []):
            links.file_match(other_report, hash_type, distance)
        out[rid] = links.out
    return out


def links_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The links stage over a group (see the notes above ``_ranked_sharers``)."""
    cross_report_lock(session)
    order = list(report_ids)
    group = set(order)
    chunks = [order[i:i + _IN_CHUNK] for i in range(0, len(order), _IN_CHUNK)]
    # Every pair touching the group as it is now: {(a, b, reason): (weight, detail)}.
    state: dict[tuple[int, int, str], tuple[float, str | None]] = {}
    for chunk in chunks:
        for col in (ReportLink.report_a, ReportLink.report_b):
            for a, b, reason, weight, detail in session.execute(
                    select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight,
                           ReportLink.detail).where(col.in_(chunk))):
                state[(int(a), int(b), str(reason))] = (float(weight), detail)
    stored = dict(state)  # as read: only the pairs that differ from it are written at the end
    computed = compute_links_group(session, order, cache=ctx.service("links-ip-times", IpTimesCache))
    # Replay the per-report runs in the group's order over ``state``: each deletes every pair
    # it is in and writes its own (so of a pair within the group, the later report's wording stays).
    touching: dict[int, set[tuple[int, int, str]]] = {}
    for key in state:
        for end in key[:2]:
            touching.setdefault(end, set()).add(key)
    made_due: set[int] = set()
    last_change: LinkChange | None = None
    for rid in order:
        keys = touching.pop(rid, set())
        before: set[LinkTuple] = set()
        for key in keys:
            a, b, reason = key
            if key not in state:
                continue
            weight, detail = state.pop(key)
            other = b if a == rid else a
            touching.get(other, set()).discard(key)
            before.add((other, reason, weight, detail))
        after = {(other, reason, float(weight), detail[:512])
                 for (other, reason), (weight, detail) in computed[rid].items()}
        for other, reason, weight, detail in after:
            key = (min(rid, other), max(rid, other), reason)
            state[key] = (weight, detail)
            touching.setdefault(rid, set()).add(key)
            touching.setdefault(other, set()).add(key)
        last_change = diff_links(before, after)
        # Later-numbered reports outside this run whose links this report changed: due again.
        made_due.update(t[0] for t in after - before if t[0] > rid and t[0] not in group)
    # Only the pairs that changed are written: a group's reports are mostly linked as they were
    # (to earlier groups' reports, which linked to them first; all of them on a re-run), and
    # deleting and rewriting every pair touching the group cost more than computing them.
    gone = [{"k_a": a, "k_b": b, "k_r": reason} for (a, b, reason), v in sorted(stored.items())
            if state.get((a, b, reason)) != v]
    if gone:
        t = ReportLink.metadata.tables["report_links"]  # Core: an executemany keyed DELETE
        session.execute(delete(t).where(t.c.report_a == bindparam("k_a"), t.c.report_b == bindparam("k_b"),
                                         t.c.reason == bindparam("k_r")), gone)
    due = sorted(made_due)
    for i in range(0, len(due), 500):
        session.execute(delete(PipelineRun).where(PipelineRun.stage == "links",
                                                  PipelineRun.report_id.in_(due[i:i + 500])))
    # What the last per-report run would have left for the bundles stage: every earlier run's
    # record is dropped by the next one (``record_link_change``), and for a group of one the
    # record is exactly the per-report run's (an unread earlier record of it included).
    assert last_change is not None
    if len(order) > 1:
        forget_link_changes(session)
    record_link_change(session, order[-1], last_change)
    rows = [{"report_a": a, "report_b": b, "reason": reason, "detail": detail, "weight": weight}
            for (a, b, reason), (weight, detail) in sorted(state.items())
            if stored.get((a, b, reason)) != (weight, detail)]
    insert_rows(session, ReportLink, rows)
    # Every pair touching the group, before and after: the bundles stage of this transaction
    # brings incidents up to date from the difference instead of re-reading their components.
    hand_over_links(session, GroupLinkDelta(frozenset(order), stored, dict(state)))
    return dict.fromkeys(order, Outcome.DONE)


# Registered here, below its group form.
stage("links", version="1", after=("identifiers", "matches"), group=links_group,
      reads_others=True)(links_stage)
