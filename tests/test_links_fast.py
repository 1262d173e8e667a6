"""The fast `links` path agrees with the plain reference, report by report, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from helpers import NOW, person, report_doc, run, store_report
from tipline.pipeline.core import StageContext
from tipline.pipeline.identifiers import load_rules
from tipline.pipeline.stages.identifiers import extract, load_report
from tipline.pipeline.stages.links import IpTimesCache, compute_links, compute_links_reference, ip_capture_times
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import File, FileMatch, ReportLink
from tipline.store.tables import Report as ReportRow

RULES = load_rules()
CAP = RULES.max_links_per_key


def _at(day: int, hour: int) -> str:
    return f"2024-03-{day:02d}T{hour:02d}:00:00Z"


def _scenario(rt: Runtime) -> list[int]:
    """Reports sharing every kind of key, with known answers, more sharers than the cap."""
    ids: list[int] = []

    def add(persons: list[dict[str, Any]], **kw: Any) -> int:
        extra = {k: kw.pop(k) for k in ("intendedRecipient", "victim", "internetDetails") if k in kw}
        rid = store_report(rt, report_doc(persons, **extra), **kw)
        ids.append(rid)
        return rid

    # An account shared by more reports than the cap (anchors), and by one unfinished report.
    for i in range(CAP + 4):
        add([person("popular", service="Instagram", email=f"own{i}@example.org")])
    store_report(rt, report_doc([person("popular", service="Instagram")]), state="open")
    # E-mails and devices, a few each; a placeholder device never links.
    for _ in range(3):
        add([person(email="Shared.Person@Example.com", device=("IMEI", "35-209900-176148-1"))])
        add([person(device=("AAID", "00000000-0000-0000-0000-000000000000"))])
    # One IP used by more reports than the cap, at times in and out of each other's window.
    for i in range(CAP + 5):
        add([person(f"ipuser{i}", ip="8.8.8.8", ip_at=_at(5 + (i % 3) * 2, 9 + i % 12))])
    # Behind a proxy (shared: never linked), CGNAT, an untimed event, a P2P and an associated
    # account's event (times from every role count for a partner), the file's own event.
    add([person("p1", ip="1.1.1.1", proxy=True)])
    add([person("p2", ip="1.1.1.1")])
    add([person("c1", ip="100.64.0.9")])
    add([person("c2", ip="100.64.0.9")])
    untimed = person("t1", ip="9.9.9.9")
    untimed["ipCaptureEvent"][0].pop("dateTime")
    add([untimed])
    add([person("t2", ip="9.9.9.9")])
    assoc = person("a1", ip="9.9.9.9", ip_at=_at(20, 9))
    assoc["associatedAccount"] = [{"espService": "Instagram", "espIdentifier": "assoc", "type": "Linked",
                                   "ipCaptureEvent": [{"ipAddress": "9.9.9.9", "dateTime": _at(5, 10)}]}]
    add([assoc])
    add([person("a2")], internetDetails=[{"peer2peerIncident": {"client": "x", "ipCaptureEvent": [
        {"ipAddress": "9.9.9.9", "dateTime": _at(5, 11)}, {"ipAddress": "::ffff:8.8.8.8", "dateTime": _at(5, 9)}]}}])
    add([person("f1")], files=["fd1"], file_details=[
        {"reportId": 1, "fileId": "x", "ipCaptureEvent": {"ipAddress": "9.9.9.9", "dateTime": _at(5, 12)}}])
    add([person("r1")], intendedRecipient=[{"espIdentifier": "popular", "espService": "Instagram",
                                            "ipCaptureEvent": [{"ipAddress": "8.8.8.8", "dateTime": _at(5, 9)}]}])
    # Content: identical bytes in more reports than the cap, a pair of identical files, and
    # near-duplicates recorded by the matches stage in both directions and within one report.
    viral = [add([person(f"v{i}")], files=["viral", f"own-v{i}"]) for i in range(CAP + 3)]
    a = add([person("m1")], files=["m-a", "m-a2"])
    b = add([person("m2")], files=["m-b"])
    c = add([person("m3")], files=["m-c"])
    with transaction(rt.sessions) as s:
        fa, fa2 = s.execute(select(File.id).where(File.report_id == a).order_by(File.seq)).scalars().all()
        fb = s.execute(select(File.id).where(File.report_id == b)).scalar_one()
        fc = s.execute(select(File.id).where(File.report_id == c)).scalar_one()
        fv = s.execute(select(File.id).where(File.report_id == viral[-1], File.seq == 2)).scalar_one()
        for f, o, h, d in [(fb, fa, "pdq", 12), (fa, fc, "md5", 0), (fc, fb, "pdq", 0), (fb, fa2, "pdq", 30),
                           (fa, fa2, "pdq", 3), (fv, fa, "pdq", 20)]:
            s.add(FileMatch(file_id=f, kind="duplicate", hash_type=h, distance=d, other_file_id=o, created_at=NOW))
        s.add(FileMatch(file_id=fc, kind="bank", hash_type="md5", distance=0, other_file_id=None, created_at=NOW))
    return ids


def test_fast_links_equal_the_reference_for_every_report(runtime: Runtime) -> None:
    ids = _scenario(runtime)
    run(runtime, ["identifiers"], ids)
    cache = IpTimesCache(size=8)  # small: evictions happen too
    with runtime.sessions() as s:
        for _round in range(2):  # the second round is served largely from the cache
            for rid in ids:
                ref = compute_links_reference(s, rid)
                assert compute_links(s, rid, cache=cache) == ref, rid
                assert compute_links(s, rid) == ref, rid
    assert cache.hits > 0
    with runtime.sessions() as s:
        every = {rid: compute_links_reference(s, rid) for rid in ids}
    reasons = {reason for links in every.values() for _, reason in links}
    assert reasons == {"account", "email", "device", "ip", "content"}  # the scenario covers every kind
    # Anchors: a key with more sharers than the cap links later sharers only to the first CAP.
    assert {o for o, r in every[ids[CAP + 3]] if r == "account"} == set(ids[:CAP])
    assert {o for o, r in every[ids[0]] if r == "account"} >= set(ids[1:CAP + 4])


def test_links_stage_writes_what_the_reference_computes(runtime: Runtime) -> None:
    ids = _scenario(runtime)
    run(runtime, ["identifiers", "links"], ids)
    with runtime.sessions() as s:
        stored = {(a, b, r): (w, d) for a, b, r, w, d in s.execute(
            select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason, ReportLink.weight, ReportLink.detail))}
        expected: dict[tuple[int, int, str], tuple[float, str]] = {}
        for rid in ids:
            for (other, reason), value in compute_links_reference(s, rid).items():
                expected[(min(rid, other), max(rid, other), reason)] = value
    assert stored == expected


def test_ip_capture_times_read_from_json_equal_a_full_parse(runtime: Runtime) -> None:
    ids = _scenario(runtime)
    with runtime.sessions() as s:
        for rid in ids:
            report, files, default = load_report(s, rid)
            assert report is not None
            full: dict[str, list[datetime | None]] = {}
            for f in extract(report, files, default, RULES):
                if f.kind == "ip":
                    full.setdefault(f.value, []).append(f.at)
            doc = s.execute(select(ReportRow.document).where(ReportRow.id == rid)).scalar_one()
            light = ip_capture_times(doc, [d for _, d in files])
            assert {ip: list(t) for ip, t in light.items()} == full, rid


def test_ip_cache_keyed_by_finish_time_never_serves_another_report(runtime: Runtime) -> None:
    """A cached entry is used only for the same report id AND finished_at (ids can be reused on SQLite)."""
    rid = store_report(runtime, report_doc([person("k", ip="8.8.8.8", ip_at=_at(5, 9))]))
    cache = IpTimesCache()
    with runtime.sessions() as s:
        fin = s.execute(select(ReportRow.finished_at).where(ReportRow.id == rid)).scalar_one()
        assert cache.get_many(s, [(rid, fin)])[rid] == {"8.8.8.8": (datetime(2024, 3, 5, 9, tzinfo=UTC),)}
    later = datetime(2024, 4, 1, tzinfo=UTC)
    doc = report_doc([person("k", ip="8.8.4.4", ip_at=_at(6, 9))])
    with transaction(runtime.sessions) as s:  # stands in for another report under the same id
        s.execute(update(ReportRow).where(ReportRow.id == rid).values(finished_at=later, document=doc))
    with runtime.sessions() as s:
        assert cache.get_many(s, [(rid, later)])[rid] == {"8.8.4.4": (datetime(2024, 3, 6, 9, tzinfo=UTC),)}
        assert cache.get_many(s, [(rid, later)])[rid] == {"8.8.4.4": (datetime(2024, 3, 6, 9, tzinfo=UTC),)}
    assert cache.hits == 1


def test_links_stage_keeps_its_ip_cache_in_the_context(runtime: Runtime) -> None:
    ids = [store_report(runtime, report_doc([person(f"s{i}", ip="8.8.8.8")])) for i in range(3)]
    ctx = StageContext(runtime)
    run(runtime, ["identifiers", "links"], ids, ctx)
    cache = ctx.services["links-ip-times"]
    assert isinstance(cache, IpTimesCache) and cache.hits > 0
