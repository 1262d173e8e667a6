"""The platform's view: own reports only (page, export, API), quality items, gaps by month
against a plain reference, months without reports as no data, RFC 4180 CSV, audit rows."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from people_helpers import login_csrf, make_user, sign_in, user_token
from tipline.model.report import Report as ReportModel
from tipline.people import accounts
from tipline.pipeline.core import StageContext, run_reports
from tipline.pipeline.stages.assess import load_rules
from tipline.platform_view import service
from tipline.platform_view.chart import gaps_svg
from tipline.platform_view.items import GUIDE
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Assessment, Blob, File, Reporter
from tipline.store.tables import Report as ReportRow
from tipline.store.tables_people import AuditEvent, User

_seq = itertools.count(1)
INCIDENT = "Child Pornography (possession, manufacture, and distribution)"


def doc(*, account: str | None = None, ip: str | None = None, ip_time: bool = True,
        when: str | None = "2026-09-01T10:00:00Z", estimate: bool = False) -> dict[str, Any]:
    person: dict[str, Any] = {}
    if account:
        person["espIdentifier"] = account
    if ip:
        ev: dict[str, Any] = {"ipAddress": ip, "eventName": "Login"}
        if ip_time:
            ev["dateTime"] = "2026-09-01T09:00:00Z"
        person["ipCaptureEvent"] = [ev]
    if estimate:
        person["estimatedLocation"] = {"countryCode": "US", "region": "TX", "verified": True}
    summary: dict[str, Any] = {"incidentType": INCIDENT}
    if when:
        summary["incidentDateTime"] = when
    return {"incidentSummary": summary,
            "reporter": {"reportingPerson": {"firstName": "Trust", "lastName": "Safety",
                                             "email": [{"value": "ts@platform.example"}]}},
            "personOrUserReported": [person] if person else []}


def store(rt: Runtime, d: dict[str, Any], *, platform: str = "Acme Social", filed: datetime | None,
          state: str = "finished", files: list[bool | None] | None = None) -> int:
    """A report as intake stores it (finished at ``filed``), with files viewed or not."""
    model = ReportModel.model_validate(d)
    opened = filed or datetime(2026, 11, 1, tzinfo=UTC)
    with transaction(rt.sessions) as s:
        rep_id = s.execute(select(Reporter.id).where(Reporter.name == platform)).scalar_one()
        row = ReportRow(reporter_id=rep_id, source="api", state=state, opened_at=opened, last_change_at=opened,
                        finished_at=filed if state == "finished" else None, incident_type=model.incident_type,
                        incident_at=model.incident_datetime, batched=False,
                        document=model.model_dump(mode="json", exclude_defaults=True), normalisations=[])
        s.add(row)
        s.flush()
        for i, viewed in enumerate(files or [], start=1):
            key = f"file-{next(_seq)}"
            sha = hashlib.sha256(key.encode()).hexdigest()
            s.add(Blob(sha256=sha, size=1, stored_name=None, created_at=opened))
            s.flush()
            details = {"reportId": row.id, "fileId": f"f{next(_seq):031x}"}
            if viewed is not None:
                details["fileViewedByEsp"] = viewed
            s.add(File(id=details["fileId"], report_id=row.id, seq=i, size=1, file_name=f"standin-{i}.png",
                       media_type="image/png", md5=hashlib.md5(key.encode()).hexdigest(),
                       sha1=hashlib.sha1(key.encode()).hexdigest(), sha256=sha, uploaded_at=opened,
                       details=details, viewed_by_esp=viewed))
        return int(row.id)


def enrich(rt: Runtime, ids: list[int]) -> None:
    """Every pipeline stage for the reports (the assessment is the pipeline's own)."""
    run_reports(StageContext(rt), dict.fromkeys(ids))


SEP, OCT, NOV, DEC = (datetime(2026, m, 10, 12, tzinfo=UTC) for m in (9, 10, 11, 12))


@pytest.fixture
def world(runtime: Runtime, esps: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Acme's reports over September-December 2026 (none in October), one of Globex's."""
    rt = runtime
    acme = {
        "full": store(rt, doc(account="u1", ip="8.8.8.8"), filed=SEP, files=[True]),
        "no_ip_time": store(rt, doc(account="u2", ip="8.8.4.4", ip_time=False), filed=SEP, files=[True, False]),
        "bare": store(rt, doc(), filed=SEP),
        "nov_est": store(rt, doc(account="u3", estimate=True), filed=NOV, files=[None]),
        "nov_ip": store(rt, doc(account="u4", ip="1.1.1.1"), filed=NOV, files=[True]),
        "nov_none": store(rt, doc(), filed=NOV),
        "dec_unassessed": store(rt, doc(account="u5"), filed=DEC),
        "open": store(rt, doc(account="u6"), filed=None, state="open"),
        "retracted": store(rt, doc(account="u7"), filed=None, state="retracted"),
    }
    foreign = store(rt, doc(account="g1", ip="9.9.9.9"), platform="Globex Chat", filed=NOV, files=[True])
    enrich(rt, [v for k, v in acme.items() if k not in ("dec_unassessed", "open", "retracted")] + [foreign])
    pat = make_user(rt, "pat", "platform", platform="Acme Social")
    gus = make_user(rt, "gus", "platform", platform="Globex Chat")
    return {"acme": acme, "foreign": foreign, "pat": pat, "gus": gus}


def _principal(rt: Runtime, username: str) -> Any:
    with rt.sessions() as s:
        user = accounts.find_user(s, username)
        assert user is not None
        return accounts.principal_of(user)


def _audit(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def _main(html: str) -> str:
    m = re.search(r"<main[^>]*>(.*)</main>", html, re.S)
    assert m
    return m.group(1)


# --- the page --------------------------------------------------------------------------------


def test_platform_user_signs_in_without_a_code_and_sees_only_own_reports(
        runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    resp = client.post("/login", data={"username": "pat", "password": world["pat"].password, "code": "",
                                       "csrf_token": login_csrf(client)}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/platform"
    resp = client.get("/platform?since=2026-09&until=2026-12")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    body = _main(resp.text)
    for rid in world["acme"].values():
        assert f'href="/platform/reports/{rid}"' in body
    assert f"/platform/reports/{world['foreign']}" not in body
    assert "Acme Social" in resp.text and "Globex" not in resp.text
    assert "9 reports" in body
    # The state, the score and the missing items of each report.
    full = service.report_detail(runtime.sessions(), _principal(runtime, "pat"), world["acme"]["full"])
    assert full.assessed and not full.missing
    assert "not yet assessed" in body


def test_report_page_names_each_gap_and_why(runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    sign_in(client, world["pat"])
    rid = world["acme"]["no_ip_time"]
    resp = client.get(f"/platform/reports/{rid}")
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    body = _main(resp.text)
    assert "No IP capture event with its time</strong>: the agency cannot subpoena the ISP" in body
    assert "A file you did not mark as viewed</strong>" in body and "US v. Wilson" in body
    with runtime.sessions() as s:
        a = s.get(Assessment, rid)
        assert a is not None
        expected = {m["item"] for m in a.missing}
    assert expected == {"ip_event_times", "files_viewed"}
    assert body.count('class="quality-item missing"') == len(expected)
    assert f"{round(a.quality * 100)} %" in body
    # A report without files: "files viewed" does not apply, and says so.
    bare = _main(client.get(f"/platform/reports/{world['acme']['bare']}").text)
    assert 'id="item-files_viewed"' in bare and "Does not apply to this report" in bare
    rows = _audit(runtime, "platform.report.read")
    assert [(r.actor, r.role, r.object_kind, r.object_id) for r in rows] == [
        ("pat", "platform", "report", str(rid)), ("pat", "platform", "report", str(world["acme"]["bare"]))]
    assert rows[0].token_id is None and rows[0].request_id


def test_foreign_missing_and_non_numeric_reports_are_the_same_404(
        runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    sign_in(client, world["pat"])
    foreign = client.get(f"/platform/reports/{world['foreign']}")
    missing = client.get("/platform/reports/987654321")
    word = client.get("/platform/reports/abc")
    huge = client.get("/platform/reports/99999999999999999999999")
    assert foreign.status_code == missing.status_code == word.status_code == huge.status_code == 404
    assert _main(foreign.text) == _main(missing.text) == _main(word.text) == _main(huge.text)
    assert "Globex" not in foreign.text
    # Nothing was read, so nothing is audited as read.
    assert _audit(runtime, "platform.report.read") == []
    # Globex's staff see Globex's report and not Acme's.
    other = TestClient(client.app)
    sign_in(other, world["gus"])
    assert other.get(f"/platform/reports/{world['foreign']}").status_code == 200
    assert other.get(f"/platform/reports/{world['acme']['full']}").status_code == 404


def test_other_roles_get_the_404_page(runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    ana = make_user(runtime, "ana", "analyst")
    sign_in(client, ana)
    for path in ("/platform", f"/platform/reports/{world['acme']['full']}", "/platform/export.csv"):
        resp = client.get(path)
        assert resp.status_code == 404, path
    assert _audit(runtime, "platform.export") == []
    # Not signed in: to the sign-in page.
    anon = TestClient(client.app)
    resp = anon.get("/platform?state=open", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?next=/platform%3Fstate%3Dopen"


def test_filters_pagination_and_bad_filters(runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    sign_in(client, world["pat"])
    acme = world["acme"]

    def ids(query: str) -> set[int]:
        resp = client.get("/platform?" + query)
        assert resp.status_code == 200, resp.text
        table = _main(resp.text).split('id="gaps"')[0]
        return {int(x) for x in re.findall(r'href="/platform/reports/(\d+)"', table)}

    assert ids("state=open") == {acme["open"]}
    assert ids("state=retracted") == {acme["retracted"]}
    assert ids("month=2026-11") == {acme["nov_est"], acme["nov_ip"], acme["nov_none"]}
    assert ids("month=2026-10") == set()
    # A gap filter selects exactly the reports whose assessment names the item.
    with runtime.sessions() as s:
        lacking_ip = {a.report_id for a in s.scalars(select(Assessment))
                      if any(m["item"] == "ip_event_times" for m in a.missing)}
    mine = set(acme.values())
    assert ids("gap=ip_event_times") == lacking_ip & mine
    assert ids("gap=ip_event_times&month=2026-09") == lacking_ip & {acme["full"], acme["no_ip_time"], acme["bare"]}
    for bad, words in (("state=bogus", "state is one of open, finished, retracted"),
                       ("month=2026-13", "a month is written YYYY-MM"),
                       ("gap=nothing", "gap is one of reported_user"),
                       ("since=2026-12&until=2026-01", "is after the last"),
                       ("since=2000-01&until=2026-01", "at most 60 months")):
        resp = client.get("/platform?" + bad)
        assert resp.status_code == 400 and words in resp.text, bad
    # Pages of 50: 120 more reports make three pages, newest first, each report once.
    more = [store(runtime, doc(account=f"p{i}"), filed=None, state="open") for i in range(120)]
    seen: list[int] = []
    for page in (1, 2, 3):
        html = _main(client.get(f"/platform?state=open&page={page}").text)
        seen += [int(x) for x in re.findall(r'href="/platform/reports/(\d+)"', html.split('id="gaps"')[0])]
        assert f"Page {page} of 3" in html
    assert seen == sorted([*more, acme["open"]], reverse=True)
    assert "Page 3 of 3" in client.get("/platform?state=open&page=99").text


# --- gaps over time --------------------------------------------------------------------------


def reference_gaps(rt: Runtime, reporter: str, months: list[str]) -> dict[str, dict[str, tuple[int, int] | None]]:
    """The plain computation: for each month, each item -> (missing, applicable assessed reports),
    None when the month has no assessed report."""
    rules = load_rules()
    out: dict[str, dict[str, tuple[int, int] | None]] = {}
    with rt.sessions() as s:
        rows = s.execute(select(ReportRow.id, ReportRow.finished_at).join(Reporter)
                         .where(Reporter.name == reporter, ReportRow.state == "finished")).all()
        assessments = {a.report_id: a for a in s.scalars(select(Assessment))}
        nfiles: dict[int, int] = {}
        for rid in s.scalars(select(File.report_id)):
            nfiles[rid] = nfiles.get(rid, 0) + 1
    for month in months:
        in_month = [rid for rid, fin in rows if fin.strftime("%Y-%m") == month and rid in assessments]
        out[month] = {}
        for q in rules.quality:
            if not in_month:
                out[month][q.id] = None
                continue
            applicable = [rid for rid in in_month if q.applies_if is None or nfiles.get(rid, 0) > 0]
            missing = [rid for rid in applicable if any(m["item"] == q.id for m in assessments[rid].missing)]
            out[month][q.id] = (len(missing), len(applicable))
    return out


def test_gap_shares_match_a_plain_reference(runtime: Runtime, world: dict[str, Any]) -> None:
    months = ["2026-09", "2026-10", "2026-11", "2026-12"]
    ref = reference_gaps(runtime, "Acme Social", months)
    with runtime.sessions() as s:
        table = service.gaps_by_month(s, _principal(runtime, "pat"), service.Month(2026, 9), service.Month(2026, 12))
    assert [str(m.month) for m in table.months] == months
    for m in table.months:
        for item, expected in ref[str(m.month)].items():
            share = m.shares[item]
            if expected is None:
                assert share.share is None and share.percent == "no data"
            else:
                assert (share.missing, share.of) == expected, (m.month, item)
                assert share.share == pytest.approx(expected[0] / expected[1])
    by = {str(m.month): m for m in table.months}
    assert (by["2026-09"].filed, by["2026-09"].assessed) == (3, 3)
    assert (by["2026-10"].filed, by["2026-10"].has_data) == (0, False)
    assert (by["2026-12"].filed, by["2026-12"].assessed, by["2026-12"].not_yet_assessed) == (1, 0, 1)
    # "Files viewed" counts only reports with files: 2 of September's 3.
    assert by["2026-09"].shares["files_viewed"].of == 2
    assert by["2026-09"].shares["files_viewed"].missing == 1
    # The most common gap of the latest month with data comes first.
    latest = table.latest_with_data()
    assert latest is not None and str(latest.month) == "2026-11"
    ranked = table.ranked(latest)
    assert [s.share for _, s in ranked] == sorted((s.share for _, s in ranked), reverse=True)
    # The other platform's reports count nowhere.
    assert sum(m.filed for m in table.months) == 7


def test_month_without_reports_is_no_data_on_page_and_chart(
        runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    sign_in(client, world["pat"])
    html = _main(client.get("/platform?since=2026-09&until=2026-12").text)
    gaps = html.split('id="gaps"')[1]
    row = re.search(r"<tr class=\"no-data\">\s*<th scope=\"row\">October 2026</th>(.*?)</tr>", gaps, re.S)
    assert row, "October is not marked as a month without data"
    assert "no reports filed this month" in row.group(1) and "0 %" not in row.group(1)
    dec = re.search(r"<th scope=\"row\">December 2026</th>(.*?)</tr>", gaps, re.S)
    assert dec and "1 filed, none assessed yet" in dec.group(1)
    nov = re.search(r"<th scope=\"row\">November 2026</th>(.*?)</tr>", gaps, re.S)
    assert nov and "%" in nov.group(1) and "(" in nov.group(1)  # shares with their denominators
    # The chart: a band for each month without data, labelled, and no inline style (CSP).
    with runtime.sessions() as s:
        table = service.gaps_by_month(s, _principal(runtime, "pat"), service.Month(2026, 9), service.Month(2026, 12))
    svg = str(gaps_svg(table))
    assert svg.count(">no reports</text>") == 1 and svg.count(">not yet assessed</text>") == 1
    assert "style=" not in svg and "<script" not in svg
    assert svg in html
    # Each series has a point for September and November only, and no line across October
    # (a line joins only neighbouring months with data; here there are none).
    for item in table.items:
        series = re.search(rf'<g class="series" data-item="{item.id}">(.*?)</g>', svg, re.S)
        assert series
        assert "<polyline" not in series.group(1), f"{item.id}: a line joins months across a gap"
        assert len(re.findall(r"<(?:circle|rect|polygon|path) ", series.group(1))) == 2, item.id
    # The headline names the most common gap of November with its count.
    assert re.search(r"In November 2026, <strong>\d+ %</strong> of the month's reports \(\d+ of \d+\)", html)


def test_a_month_with_no_report_at_all_is_no_data(runtime: Runtime, esps: dict[str, tuple[str, str]]) -> None:
    make_user(runtime, "pia", "platform", platform="Acme Social")
    with runtime.sessions() as s:
        table = service.gaps_by_month(s, _principal(runtime, "pia"), service.Month(2026, 1), service.Month(2026, 3))
    assert all(not m.has_data and m.filed == 0 for m in table.months)
    assert all(sh.share is None for m in table.months for sh in m.shares.values())
    assert table.latest_with_data() is None


# --- the CSV export --------------------------------------------------------------------------


def test_export_is_rfc4180_scoped_filtered_and_audited(
        runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    sign_in(client, world["pat"])
    resp = client.get("/platform/export.csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8; header=present"
    assert resp.headers["content-disposition"].startswith('attachment; filename="tipline-reports-acme-social-')
    assert resp.headers["cache-control"] == "no-store"
    raw = resp.content.decode("utf-8")
    # RFC 4180: every record ends in CRLF, no bare LF, quoted fields where needed.
    assert raw.endswith("\r\n") and "\n" not in raw.replace("\r\n", "")
    records = list(csv.reader(io.StringIO(raw, newline=""), strict=True))
    header, rows = records[0], records[1:]
    assert header[:3] == ["reportId", "state", "source"] and len({len(r) for r in records}) == 1
    assert '"Child Pornography (possession, manufacture, and distribution)"' in raw
    got = {int(r[0]) for r in rows}
    assert got == set(world["acme"].values()) and world["foreign"] not in got
    by_id = {int(r[0]): dict(zip(header, r, strict=True)) for r in rows}
    with runtime.sessions() as s:
        a = s.get(Assessment, world["acme"]["no_ip_time"])
        assert a is not None
    row = by_id[world["acme"]["no_ip_time"]]
    assert row["missingItems"].split(";") == [m["item"] for m in a.missing]
    assert float(row["qualityScore"]) == pytest.approx(a.quality)
    assert by_id[world["acme"]["dec_unassessed"]]["assessed"] == "no"
    assert by_id[world["acme"]["dec_unassessed"]]["qualityScore"] == ""
    # Filters apply to the export as to the list.
    nov = list(csv.reader(io.StringIO(client.get("/platform/export.csv?month=2026-11").text, newline="")))
    assert {int(r[0]) for r in nov[1:]} == {world["acme"][k] for k in ("nov_est", "nov_ip", "nov_none")}
    assert client.get("/platform/export.csv?gap=nope").status_code == 400
    rows_audited = _audit(runtime, "platform.export")
    assert len(rows_audited) == 2
    assert rows_audited[0].actor == "pat" and rows_audited[0].detail == {"format": "csv", "filters": {}}
    assert rows_audited[1].detail == {"format": "csv", "filters": {"month": "2026-11"}}


def test_csv_quoting_round_trips() -> None:
    from tipline.web.platform_page import csv_line

    values = ['plain', 'with, comma', 'with "quote"', 'two\r\nlines', '']
    line = csv_line(values)
    assert line == 'plain,"with, comma","with ""quote""","two\r\nlines",\r\n'
    assert next(csv.reader(io.StringIO(line, newline=""))) == values


# --- the JSON API with a platform user's token ------------------------------------------------


def test_user_token_reads_own_reports_with_quality_on_the_api(
        runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    token = user_token(runtime, world["pat"], "reporting dashboard")
    auth = {"Authorization": f"Bearer {token}"}
    rid = world["acme"]["no_ip_time"]
    resp = client.get(f"/api/v1/reports/{rid}", headers=auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    with runtime.sessions() as s:
        a = s.get(Assessment, rid)
        assert a is not None
    assert body["reportId"] == rid and body["reporter"] == "Acme Social"
    assert body["quality"]["score"] == pytest.approx(a.quality)
    assert body["quality"]["disposition"] == a.disposition
    assert [m["item"] for m in body["quality"]["missing"]] == [m["item"] for m in a.missing]
    assert all(m["why"] == GUIDE[m["item"]].why for m in body["quality"]["missing"])
    unassessed = client.get(f"/api/v1/reports/{world['acme']['dec_unassessed']}", headers=auth).json()
    assert unassessed["quality"] is None
    # Another platform's report: exactly the answer for a report that does not exist.
    foreign = client.get(f"/api/v1/reports/{world['foreign']}", headers=auth)
    missing = client.get("/api/v1/reports/987654321", headers=auth)
    assert foreign.status_code == missing.status_code == 404

    def strip(p: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p.items() if k not in ("instance", "requestId")}

    assert strip(foreign.json()) == strip(missing.json())
    assert foreign.headers["content-type"] == missing.headers["content-type"] == "application/problem+json"
    # The list: own reports only (expired never; open and retracted too), same paging as credentials.
    listed = client.get("/api/v1/reports?limit=1000", headers=auth).json()
    assert {r["reportId"] for r in listed["reports"]} == set(world["acme"].values())
    page = client.get("/api/v1/reports?limit=2", headers=auth).json()
    assert len(page["reports"]) == 2 and page["nextCursor"]
    # Each read by a person is one audit row, with the token that made it.
    reads = _audit(runtime, "api.report.read")
    assert [r.object_id for r in reads] == [str(rid), str(world["acme"]["dec_unassessed"])]
    assert all(r.actor == "pat" and r.role == "platform" and r.token_id is not None for r in reads)
    lists = _audit(runtime, "api.report.list")
    assert len(lists) == 2 and lists[1].detail is not None and lists[1].detail["count"] == 2


def test_platform_credentials_get_quality_too_without_person_audit(
        runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    rid = world["acme"]["full"]
    body = client.get(f"/api/v1/reports/{rid}", auth=("acme", "acme-secret-1")).json()
    assert body["quality"]["missing"] == [] and body["quality"]["score"] == 1.0
    assert _audit(runtime, "api.report.read") == []


def test_user_tokens_that_may_not_read_or_write(runtime: Runtime, client: TestClient, world: dict[str, Any]) -> None:
    token = user_token(runtime, world["pat"])
    auth = {"Authorization": f"Bearer {token}"}
    # A user token reads; it does not submit (the platform's credentials do).
    resp = client.post("/api/v1/reports", headers=auth, json=doc(account="x"))
    assert resp.status_code == 403 and resp.json()["type"].endswith("not-authorised")
    resp = client.post(f"/api/v1/reports/{world['acme']['open']}/retract", headers=auth)
    assert resp.status_code == 403
    with runtime.sessions() as s:
        row = s.get(ReportRow, world["acme"]["open"])
        assert row is not None and row.state == "open"
    # Another role's token cannot use the platform routes at all.
    from tipline.pipeline.stages.route import ensure_directory

    with transaction(runtime.sessions) as s:
        ensure_directory(s)
    officer = make_user(runtime, "olly", "officer", agency="FBI")
    resp = client.get("/api/v1/reports", headers={"Authorization": f"Bearer {user_token(runtime, officer)}"})
    assert resp.status_code == 403 and "officer" in resp.json()["detail"]
    # A revoked token, a made-up one, a disabled user: 401 like any refused credential.
    with transaction(runtime.sessions) as s:
        user = s.get(User, world["pat"].user_id)
        assert user is not None
        assert accounts.revoke_token(s, user, token)
    for bad in (token, "tlu_0000000000000000_nope"):
        resp = client.get("/api/v1/reports", headers={"Authorization": f"Bearer {bad}"})
        assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    fresh = user_token(runtime, world["pat"])
    with transaction(runtime.sessions) as s:
        user = s.get(User, world["pat"].user_id)
        assert user is not None
        user.disabled_at = datetime.now(UTC)
    assert client.get("/api/v1/reports", headers={"Authorization": f"Bearer {fresh}"}).status_code == 401


def test_openapi_documents_the_quality_object(client: TestClient) -> None:
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    quality = schemas["ReportRead"]["properties"]["quality"]
    assert any(o.get("$ref") == "#/components/schemas/ReportQuality" for o in quality["anyOf"])
    assert set(schemas["ReportQuality"]["required"]) == {"score", "disposition", "assessedAt", "missing"}
    assert set(schemas["QualityGap"]["properties"]) == {"item", "text", "why"}


# --- the guide --------------------------------------------------------------------------------


def test_every_quality_item_is_explained_in_the_guide_and_the_docs() -> None:
    from conftest import REPO

    docs = (REPO / "docs" / "platforms.md").read_text()
    for q in load_rules().quality:
        g = GUIDE.get(q.id)
        assert g is not None, f"quality item {q.id} has no entry in platform_view/items.py"
        assert f"`{q.id}`" in docs, f"docs/platforms.md does not explain {q.id}"
        assert g.headline in docs and g.why in docs.replace("\n", " ")
    for path in ("/platform", "/platform/export.csv", "/platform/reports/{id}", "GET /api/v1/reports/{reportId}"):
        assert path in docs
