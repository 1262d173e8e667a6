"""The analyst console on both backends: queue order, filters and counts against a plain
reference; claims; the US v. Wilson gate; blurred thumbnails and the audited unblur; label
propagation; decisions and overrides; the audit rows; CSRF; access by role."""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from people_helpers import make_user, session_csrf, sign_in
from test_console_data import IMG, Store, build, reference_filter, reference_rows
from tipline.console import service as svc
from tipline.people.audit import verify
from tipline.people.principal import Principal
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Assessment, File, Referral
from tipline.store.tables_people import AssessmentOverride, AuditEvent, Claim, FileLabel, ReferralAction


def principal(user: object) -> Principal:
    return Principal(user.user_id, user.username, user.role)  # type: ignore[attr-defined]


@pytest.fixture
def store(runtime: Runtime, client: TestClient) -> Store:
    return build(runtime)


def audit_rows(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def post(client: TestClient, path: str, data: dict[str, str], page: str) -> object:
    return client.post(path, data={**data, "csrf_token": session_csrf(client, page)}, follow_redirects=False)


# --- the queue ---------------------------------------------------------------------------


def test_queue_order_filters_and_counts_match_the_reference(runtime: Runtime, store: Store) -> None:
    ana = make_user(runtime, "ana", "analyst")
    bob = make_user(runtime, "bob", "analyst")
    me, other = principal(ana), principal(bob)
    with transaction(runtime.sessions) as s:
        svc.set_priority(s, me, store.gated, 1, "synthetic: the analyst saw a younger child")
        svc.set_priority(s, me, store.banked, 3, "first change")
        svc.set_priority(s, me, store.banked, 2, "second change wins")
        svc.set_disposition(s, me, store.copies[0], "informational", "a meme")
        svc.close_informational(s, me, store.copies[1], "duplicate of the first")
        svc.claim(s, me, store.shared, minutes=30)
        svc.claim(s, other, store.foreign, minutes=30)
        # An expired claim is no claim.
        s.add(Claim(report_id=store.gated, user_id=bob.user_id, claimed_at=datetime.now(UTC) - timedelta(hours=2),
                    expires_at=datetime.now(UTC) - timedelta(hours=1)))
    now = datetime.now(UTC)
    ref = reference_rows(runtime, ana.user_id, now)
    assert {r["priority"] for r in ref} >= {1, 2}
    filters = [svc.QueueFilter(), svc.QueueFilter(status="all"), svc.QueueFilter(status="closed"),
               svc.QueueFilter(priority=1), svc.QueueFilter(priority=2), svc.QueueFilter(disposition="informational"),
               svc.QueueFilter(claim="mine"), svc.QueueFilter(claim="unclaimed"), svc.QueueFilter(bank_match=True),
               svc.QueueFilter(escalated=True), svc.QueueFilter(country="DE"), svc.QueueFilter(country=""),
               svc.QueueFilter(state="TX"), svc.QueueFilter(state="OH", claim="unclaimed"),
               svc.QueueFilter(platform=ref[0]["platform"]),
               svc.QueueFilter(incident_type=ref[0]["incident_type"], priority=3)]
    with runtime.sessions() as s:
        for f in filters:
            got = svc.queue(s, me, f, now=now)
            want = reference_filter(ref, f)
            assert [r.report_id for r in got.rows] == [r["report_id"] for r in want], f
            assert got.total == len(want), f
            for facet in svc.FACETS:
                expect = Counter(r[facet] for r in reference_filter(ref, f.without(facet)))
                counts = {v.value: v.count for v in got.facets[facet]}
                for value, n in expect.items():
                    if facet == "claim" and value is None:
                        value = "unclaimed"
                    elif facet == "claim" and value == "other" or value is None:
                        continue  # "held by someone else" and "no US state" are no filter values
                    key = ("yes" if value else "no") if isinstance(value, bool) else (
                        "unknown" if facet == "country" and value == "" else str(value))
                    assert counts.get(key) == n, (f, facet, key, counts)
        # Pages: one row per page walks the whole queue in the same order.
        walked = [svc.queue(s, me, svc.QueueFilter(), page=p, per_page=1, now=now).rows for p in range(1, 8)]
        in_order = [r["report_id"] for r in reference_filter(ref, svc.QueueFilter())]
        assert [r[0].report_id for r in walked if r] == in_order


def test_queue_page_filters_and_bad_filters(runtime: Runtime, store: Store, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    for rid in store.all:
        assert f'href="/console/reports/{rid}"' in page.text
    only_de = client.get("/console?country=DE")
    assert f'/console/reports/{store.foreign}"' in only_de.text
    assert f'/console/reports/{store.shared}"' not in only_de.text
    assert "1 report matches" in only_de.text
    bad = client.get("/console?priority=9&country=Germany&escalated=maybe&page=x")
    assert bad.status_code == 200
    assert "Ignored filters that are not one of the choices: country, escalated, priority" in bad.text
    banked = client.get("/console?bank_match=yes")
    assert f'/console/reports/{store.banked}"' in banked.text and "1 report matches" in banked.text
    # The next / previous links' keys: the page from just after (before) a row of the queue.
    with runtime.sessions() as s:
        order = [(r.priority, r.report_id) for r in svc.queue(s, principal(ana)).rows]
    after = client.get(f"/console?after={order[0][0]},{order[0][1]}&page=2")
    assert f'/console/reports/{order[0][1]}"' not in after.text and f'/console/reports/{order[1][1]}"' in after.text
    before = client.get(f"/console?before={order[2][0]},{order[2][1]}&page=2")
    assert [rid for _, rid in order if f'/console/reports/{rid}"' in before.text] == [order[0][1], order[1][1]]
    assert "not one of the choices: after" in client.get("/console?after=1,x").text


# --- claims ------------------------------------------------------------------------------


def test_one_holder_at_a_time_expiry_release_and_reassign(runtime: Runtime, store: Store,
                                                         client: TestClient) -> None:
    ana, bob = make_user(runtime, "ana", "analyst"), make_user(runtime, "bob", "analyst")
    sup = make_user(runtime, "sue", "supervisor")
    rid = store.shared
    sign_in(client, ana)
    r = post(client, f"/console/reports/{rid}/claim", {}, f"/console/reports/{rid}")
    assert r.status_code == 303  # type: ignore[attr-defined]
    assert "You hold this report now" in client.get(r.headers["location"]).text  # type: ignore[attr-defined]
    with TestClient(client.app, raise_server_exceptions=False) as other:
        sign_in(other, bob)
        r2 = post(other, f"/console/reports/{rid}/claim", {}, f"/console/reports/{rid}")
        assert r2.status_code == 409  # type: ignore[attr-defined]
        assert f"Report {rid} is claimed by ana until" in r2.text  # type: ignore[attr-defined]
        # Bob cannot decide on it either, nor release it.
        r3 = post(other, f"/console/reports/{rid}/decide", {"action": "priority", "priority": "1", "reason": "x"},
                  f"/console/reports/{rid}")
        assert r3.status_code == 409 and "claimed by ana" in r3.text  # type: ignore[attr-defined]
        r4 = post(other, f"/console/reports/{rid}/release", {}, f"/console/reports/{rid}")
        assert r4.status_code == 409  # type: ignore[attr-defined]
        # Bob may not reassign: not a supervisor (the route answers as for nothing there).
        r5 = post(other, f"/console/reports/{rid}/reassign", {"username": "bob"}, f"/console/reports/{rid}")
        assert r5.status_code == 404  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        row = s.get(Claim, rid)
        assert row is not None and row.user_id == ana.user_id
        assert s.scalar(select(func.count()).select_from(AssessmentOverride)) == 0
        claim_expiry = row.expires_at
    minutes = runtime.settings.claim_minutes
    assert minutes == 30
    assert timedelta(minutes=29) < claim_expiry - datetime.now(UTC) <= timedelta(minutes=30)
    # Expiry releases it: bob takes it after the claim ran out.
    with transaction(runtime.sessions) as s:
        s.get(Claim, rid).expires_at = datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[union-attr]
        assert svc.claim(s, principal(bob), rid, minutes=minutes).holder == "bob"
    # Release by hand, then the supervisor reassigns it to ana.
    with transaction(runtime.sessions) as s:
        svc.release(s, principal(bob), rid)
        assert svc.current_claim(s, rid).holder is None
    with TestClient(client.app, raise_server_exceptions=False) as boss:
        sign_in(boss, sup)
        r6 = post(boss, f"/console/reports/{rid}/reassign", {"username": "ana"}, f"/console/reports/{rid}")
        assert r6.status_code == 303  # type: ignore[attr-defined]
        wl = boss.get("/console/workload")
        assert wl.status_code == 200 and "ana" in wl.text and f"report {rid}" in wl.text
        r7 = post(boss, f"/console/reports/{rid}/reassign?from=workload", {"username": "nobody"}, "/console/workload")
        assert r7.status_code == 409 and "no active analyst called" in r7.text  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        assert s.get(Claim, rid).user_id == ana.user_id  # type: ignore[union-attr]
    assert [e.detail for e in audit_rows(runtime, "report.reassign")] == [{"to": "ana"}]
    assert len(audit_rows(runtime, "report.claim")) == 1
    # An analyst has no workload page.
    assert client.get("/console/workload").status_code == 404


# --- files: the gate, thumbnails, unblur -------------------------------------------------


def test_files_the_platform_did_not_view_are_never_shown(runtime: Runtime, store: Store,
                                                        client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    with runtime.sessions() as s:
        files = list(s.scalars(select(File).where(File.report_id == store.gated).order_by(File.seq)))
    viewed, unviewed, unknown = files
    assert (viewed.viewed_by_esp, unviewed.viewed_by_esp, unknown.viewed_by_esp) == (True, False, None)
    page = client.get(f"/console/reports/{store.gated}")
    assert page.status_code == 200
    for f in (unviewed, unknown):
        # Hashes and the reason, but no picture, no unblur button, no address of its bytes.
        assert f.sha256 in page.text and f.md5 in page.text
        assert f"/console/files/{f.id}/" not in page.text
        for kind in ("thumb.jpg", "clear.jpg"):
            assert client.get(f"/console/files/{f.id}/{kind}").status_code == 404
        assert post(client, f"/console/files/{f.id}/unblur", {},
                    f"/console/reports/{store.gated}").status_code == 404  # type: ignore[attr-defined]
        assert post(client, f"/console/files/{f.id}/label", {"classification": "A1"},
                    f"/console/reports/{store.gated}").status_code == 404  # type: ignore[attr-defined]
    assert "fileViewedByEsp is false" in page.text and "fileViewedByEsp is not given" in page.text
    assert "United States v. Wilson" in page.text
    assert f"/console/files/{viewed.id}/thumb.jpg" in page.text
    # Nothing of the unviewed pictures reaches any answer, blurred or not.
    for resp in (page, client.get(f"/console/files/{viewed.id}/thumb.jpg")):
        assert IMG[4] not in resp.content and IMG[6] not in resp.content
    # The report.view row names what was shown and what was gated.
    detail = audit_rows(runtime, "report.view")[-1].detail
    assert detail == {"files_shown_blurred": [viewed.id], "files_gated": [unviewed.id, unknown.id]}


def _pixels(body: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(body))
    assert img.format == "JPEG"
    return img


def test_thumbnail_blurred_grey_and_unblur_audited(runtime: Runtime, store: Store, client: TestClient) -> None:
    from PIL import ImageChops, ImageFilter, ImageStat

    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    with runtime.sessions() as s:
        f = s.scalars(select(File).where(File.report_id == store.banked)).one()
    thumb = client.get(f"/console/files/{f.id}/thumb.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["cache-control"] == "no-store"
    t = _pixels(thumb.content)
    assert t.mode == "L" and max(t.size) <= 240
    # Blurred: hardly any edge left compared with the same picture unblurred, in grey.
    original = Image.open(io.BytesIO(IMG[5])).convert("L").resize(t.size)

    def edges(im: Image.Image) -> float:
        return float(ImageStat.Stat(ImageChops.difference(im, im.filter(ImageFilter.BoxBlur(1)))).sum[0])
    assert edges(t) * 5 < edges(original)
    # The clear rendering needs an explicit unblur first.
    clear = f"/console/files/{f.id}/clear.jpg"
    assert client.get(clear).status_code == 404
    r = post(client, f"/console/files/{f.id}/unblur", {}, f"/console/reports/{store.banked}")
    assert r.status_code == 303 and f"clear={f.id}" in r.headers["location"]  # type: ignore[attr-defined]
    page = client.get(r.headers["location"])  # type: ignore[attr-defined]
    assert f'src="/console/files/{f.id}/clear.jpg"' in page.text
    got = client.get(clear)
    assert got.status_code == 200
    c = _pixels(got.content)
    assert c.mode == "RGB" and max(c.size) <= 800 and got.content != IMG[5]
    assert [e.object_id for e in audit_rows(runtime, "file.unblur")] == [f.id]
    assert [e.object_id for e in audit_rows(runtime, "file.view")] == [f.id]
    # Another analyst's unblur is not hers: bob must unblur for himself.
    with TestClient(client.app, raise_server_exceptions=False) as other:
        sign_in(other, make_user(runtime, "bob", "analyst"))
        assert other.get(clear).status_code == 404


def test_video_without_a_decoder_says_so(runtime: Runtime, store: Store, client: TestClient,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Without PyAV no frame can be decoded (with it: tests/test_thumbs.py).
    monkeypatch.setattr(svc, "frame_decoder_available", lambda: False)
    from tipline.store.tables import FileSignal

    with transaction(runtime.sessions) as s:
        f = s.scalars(select(File).where(File.report_id == store.foreign)).one()
        sig = s.get(FileSignal, f.id)
        assert sig is not None
        sig.media_kind, sig.video_frames = "video", [{"frame": 0, "ts": 0.0, "pdq": "0" * 64, "quality": 80}]
        f.media_type = "video/mp4"
    sign_in(client, make_user(runtime, "ana", "analyst"))
    page = client.get(f"/console/reports/{store.foreign}")
    assert "No frame available" in page.text and "1 representative frames are kept as vPDQ hashes" in page.text
    assert f"/console/files/{f.id}/thumb.jpg" not in page.text


# --- labels ------------------------------------------------------------------------------


def test_label_applies_to_exact_copies_in_the_incident(runtime: Runtime, store: Store, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    with runtime.sessions() as s:
        first = s.scalars(select(File).where(File.report_id == store.shared, File.seq == 1)).one()
        copies = list(s.scalars(select(File).where(File.sha256 == first.sha256, File.id != first.id)))
    assert {c.report_id for c in copies} == set(store.copies)
    r = post(client, f"/console/files/{first.id}/label",
             {"classification": "B2", "age_range": "13-15", "apparent_minor": "1", "self_generated": "1",
              "known_series": "S-9"}, f"/console/reports/{store.shared}")
    assert r.status_code == 303  # type: ignore[attr-defined]
    page = client.get(r.headers["location"])  # type: ignore[attr-defined]
    assert re.search(r"also applied to 2 copies in incident \d+", page.text), page.text[:2000]
    with runtime.sessions() as s:
        labels = {lab.file_id: lab for lab in s.scalars(select(FileLabel))}
    assert set(labels) == {first.id, *(c.id for c in copies)}
    for c in copies:
        assert labels[c.id].copied_from_file_id == first.id and labels[c.id].classification == "B2"
    assert labels[first.id].copied_from_file_id is None and labels[first.id].self_generated is True
    assert labels[first.id].generative_ai is False
    # The copy's own page shows the label.
    assert "B2" in client.get(f"/console/reports/{store.copies[0]}").text
    # A value not among the choices is refused, nothing written.
    bad = post(client, f"/console/files/{first.id}/label", {"classification": "C9"},
               f"/console/reports/{store.shared}")
    assert bad.status_code == 409 and "Choose a classification" in bad.text  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(FileLabel)) == 3
    assert len(audit_rows(runtime, "file.label")) == 1


# --- decisions ---------------------------------------------------------------------------


def test_decisions_keep_the_pipeline_beside_them_and_are_audited(runtime: Runtime, store: Store,
                                                                client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    rid = store.banked
    page = f"/console/reports/{rid}"
    with runtime.sessions() as s:
        pipeline = s.get(Assessment, rid)
        assert pipeline is not None
        before = (pipeline.priority, pipeline.disposition)
    # No reason: refused, nothing written.
    r = post(client, f"{page}/decide", {"action": "priority", "priority": "1", "reason": "  "}, page)
    assert r.status_code == 409 and "Give a reason" in r.text  # type: ignore[attr-defined]
    assert audit_rows(runtime, "report.priority") == []
    r = post(client, f"{page}/decide", {"action": "priority", "priority": "1", "reason": "synthetic: worse"}, page)
    assert r.status_code == 303  # type: ignore[attr-defined]
    shown = client.get(page).text
    assert "synthetic: worse" in shown and f"P{before[0]}" in shown and "P1" in shown
    with runtime.sessions() as s:
        a = s.get(Assessment, rid)
        assert (a.priority, a.disposition) == before  # type: ignore[union-attr]
        assert svc.effective(s, rid).priority == 1
    assert audit_rows(runtime, "report.priority")[-1].detail["to"] == 1  # type: ignore[index]
    # Escalate: the override and every referral of the report.
    assert post(client, f"{page}/decide", {"action": "escalate", "reason": "synthetic"}, page
                ).status_code == 303  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        refs = list(s.scalars(select(Referral).where(Referral.report_id == rid)))
        assert refs and all(x.escalated for x in refs)
    # Route by hand to an agency: a referral with rule "manual" and the reason, and its action.
    assert post(client, f"{page}/decide", {"action": "route", "agency": "HSI", "reason": "synthetic: border"}, page
                ).status_code == 303  # type: ignore[attr-defined]
    again = post(client, f"{page}/decide", {"action": "route", "agency": "HSI", "reason": "twice"}, page)
    assert again.status_code == 409 and "already available to HSI" in again.text  # type: ignore[attr-defined]
    unknown = post(client, f"{page}/decide", {"action": "route", "agency": "NOPE", "reason": "x"}, page)
    assert unknown.status_code == 409 and "no active agency" in unknown.text  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        manual = s.scalars(select(Referral).where(Referral.report_id == rid, Referral.rule == "manual")).one()
        assert manual.reason == "synthetic: border" and manual.escalated
        act = s.scalars(select(ReferralAction).where(ReferralAction.referral_id == manual.id)).one()
        assert act.action == "route" and act.user_id == ana.user_id
    # Close as informational: off the open queue, on the closed one.
    assert post(client, f"{page}/decide", {"action": "close", "reason": "synthetic: nothing to act on"}, page
                ).status_code == 303  # type: ignore[attr-defined]
    assert f'/console/reports/{rid}"' not in client.get("/console").text
    assert f'/console/reports/{rid}"' in client.get("/console?status=closed").text
    for action in ("report.priority", "report.escalate", "report.route", "report.close"):
        assert len(audit_rows(runtime, action)) == 1, action
    with runtime.sessions() as s:
        assert verify(s).intact


def test_the_same_decision_on_a_whole_incident(runtime: Runtime, store: Store, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    page = client.get(f"/console/reports/{store.shared}").text
    m = re.search(r'action="/console/incidents/(\d+)/decide"', page)
    assert m, "the report page offers the incident's decisions"
    iid = m.group(1)
    members = sorted([store.shared, *store.copies])
    r = post(client, f"/console/incidents/{iid}/decide",
             {"action": "priority", "priority": "1", "reason": "synthetic: one offender", "from": str(store.shared)},
             f"/console/reports/{store.shared}")
    assert r.status_code == 303  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        assert [svc.effective(s, x).priority for x in members] == [1, 1, 1]
    rows = audit_rows(runtime, "report.priority")
    assert sorted(int(e.object_id or 0) for e in rows) == members
    assert all(e.detail["incident"] == int(iid) for e in rows)  # type: ignore[index]
    assert client.get("/console/incidents/999999/decide").status_code in (404, 405)
    missing = post(client, "/console/incidents/999999/decide", {"action": "close", "reason": "x"}, "/console")
    assert missing.status_code == 404  # type: ignore[attr-defined]
    # Refused (no reason) when sent without the report it came from: the reason on the
    # incident's first report, not a 404 that would read as "no such incident".
    bare = post(client, f"/console/incidents/{iid}/decide", {"action": "close"}, "/console")
    assert bare.status_code == 409, bare.status_code  # type: ignore[attr-defined]
    assert "reason" in bare.text.lower()  # type: ignore[attr-defined]


# --- safety ------------------------------------------------------------------------------


def test_csrf_is_required_on_every_console_form(runtime: Runtime, store: Store, client: TestClient) -> None:
    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    with runtime.sessions() as s:
        fid = s.scalars(select(File.id).where(File.report_id == store.banked)).one()
    rid = store.banked
    for path, data in [(f"/console/reports/{rid}/claim", {}), (f"/console/reports/{rid}/release", {}),
                       (f"/console/reports/{rid}/reassign", {"username": "ana"}),
                       (f"/console/reports/{rid}/decide", {"action": "close", "reason": "x"}),
                       (f"/console/files/{fid}/label", {"classification": "A1"}),
                       (f"/console/files/{fid}/unblur", {}),
                       ("/console/incidents/1/decide", {"action": "close", "reason": "x"})]:
        for token in (None, "wrong"):
            body = dict(data, **({"csrf_token": token} if token else {}))
            r = client.post(path, data=body, follow_redirects=False)
            assert r.status_code == 403, (path, token)
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Claim)) == 0
        assert s.scalar(select(func.count()).select_from(FileLabel)) == 0
        assert s.scalar(select(func.count()).select_from(AssessmentOverride)) == 0
    assert audit_rows(runtime, "file.unblur") == []


def test_who_may_open_the_console(runtime: Runtime, store: Store, client: TestClient) -> None:
    rid = store.shared
    # Signed out: to the sign-in page.
    r = client.get(f"/console/reports/{rid}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/login?next=/console/reports/{rid}"
    for role, extra in [("officer", {"agency": "FBI"}), ("platform", {"platform": "Acme Social"}),
                        ("auditor", {}), ("admin", {})]:
        with TestClient(client.app, raise_server_exceptions=False) as c:
            sign_in(c, make_user(runtime, f"u-{role}", role, **extra))
            for path in ("/console", f"/console/reports/{rid}", "/console/workload"):
                assert c.get(path).status_code == 404, (role, path)
    sign_in(client, make_user(runtime, "ana", "analyst"))
    for path in ("/console/reports/abc", "/console/reports/999999", "/console/reports/-1",
                 "/console/files/zz/thumb.jpg", "/console/files/" + "0" * 32 + "/thumb.jpg"):
        r = client.get(path, headers={"Accept": "text/html"})
        assert r.status_code == 404, path
        assert "Page not found" in r.text
    # An oversized reason: a clear message, nothing written.
    big = post(client, f"/console/reports/{rid}/decide", {"action": "close", "reason": "x" * 5000},
               f"/console/reports/{rid}")
    assert big.status_code in (400, 409) and "too long" in big.text.lower()  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AssessmentOverride)) == 0
