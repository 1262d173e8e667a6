"""A synthetic fill of the tables the analyst queue reads, at the size of a simulated year.

Simulating and enriching a scale-0.01 year (362,104 reports) takes hours on this machine, so
this writes rows straight into the tables :func:`tipline.console.service.queue` and its
counts are derived from (then rebuilds the queue's read model, ``queue_entries``, from
them) — reporters, reports (with a document of realistic size), blobs, files, hash banks
and their matches, assessments, jurisdictions, users, claims and overrides — with the
proportions of the simulator's calibration (:func:`tipline.sim.calibration.load_year`):
platform shares, incident types, US / abroad / unknown location, countries and US states,
files per report, the escalation rate and the referral share. It is **not** an enriched
simulated year: no identifiers, links, incidents, referrals or pipeline runs are written
(the queue reads none of them), and the priorities are drawn, not derived by the assess rules.

The fill is cached: a SQLite data dir under ``benchmarks/.cache/``, or a PostgreSQL
database, each with a marker table ``bench_console_fill`` written last. A store whose marker
names the same size, seed and fill version is reused as it is.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, insert, inspect, text

# The caller puts the tipline tree to fill with (and tests/, for people_helpers) on sys.path:
# benchmarks/console_queue.py fills with the tree it measures, at that tree's own schema.

#: Bump when the rows written change: a cached store of another version is rebuilt.
FILL_VERSION = 1
#: One simulated 2023 year at scale 0.01 (36,210,368 reports × 0.01, rounded).
YEAR_REPORTS_001 = 362_104
MARKER = "bench_console_fill"
# Assumed (no published figure): the assess rules give about 2 % priority 1 and 25 %
# priority 2 on simulated years (benchmarks/README.md, console_queue at scale 0.001).
P1, P2 = 0.02, 0.25
# Assumed: share of files that match a hash bank, and that duplicate a file of another report.
BANK_MATCH_FILES, DUPLICATE_FILES = 0.05, 0.15
# Assumed: reports still open at the platform (not finished, so never in the queue).
OPEN_SHARE = 0.003
ANALYSTS, CLAIMS_EACH = 20, 5
OVERRIDE_SHARE, CLOSED_SHARE = 0.01, 0.003
BATCH = 20_000


@dataclass
class Filled:
    """What a benchmark needs to know about a filled store."""

    reports: int
    finished: int
    analyst: dict[str, Any]  # username, password, totp_secret, user_id of one analyst with claims
    fill_seconds: float
    reused: bool


def _marker(engine: Engine) -> dict[str, Any] | None:
    if not inspect(engine).has_table(MARKER):
        return None
    with engine.connect() as c:
        row = c.execute(text(f"SELECT detail FROM {MARKER}")).first()
    return json.loads(row[0]) if row else None


def _document(rng: random.Random, rid: int, platform: str, itype: str, when: datetime) -> dict[str, Any]:
    # Shaped like a parsed ISPWS report (model_dump of tipline.model.report), about 1.3 KB of
    # JSON, so that a scan of the reports table costs what it costs on real rows.
    user = f"user{rng.randrange(10**9):09d}"
    return {
        "incidentSummary": {"incidentType": itype, "platform": platform,
                            "incidentDateTime": when.isoformat(), "reportAnnotations": {"sextortion": False}},
        "reporter": {"reportingPerson": {"firstName": "Trust", "lastName": "Safety",
                                         "email": [{"value": "safety@example.org"}]}},
        "personOrUserReported": {
            "screenName": user, "displayName": f"Synthetic {rid}",
            "email": [{"value": f"{user}@example.net", "verified": rng.random() < 0.5}],
            "ipCaptureEvent": [{"ipAddress": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
                                "eventName": "Login", "dateTime": when.isoformat()}
                               for _ in range(rng.randrange(1, 4))],
            "deviceId": [{"idType": "IMEI", "idValue": f"{rng.randrange(10**15):015d}"}],
            "estimatedLocation": {"countryCode": "XX", "city": "Synthetic"}},
        "internetDetails": [{"webPageIncident": {"url": [f"https://example.com/p/{rid}"]}}],
        "additionalInfo": "Synthetic benchmark row; no content. " * 6,
    }


def _bulk(c: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``; on PostgreSQL with COPY (about ten times faster than INSERT batches)."""
    if not rows:
        return
    if c.dialect.name != "postgresql":
        c.execute(insert(table), rows)
        return
    cols = list(rows[0])
    raw = c.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table.__tablename__} ({', '.join(cols)}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row([json.dumps(v) if isinstance(v, dict | list) else v for v in (r[k] for k in cols)])


def fill(engine: Engine, sessions: Any, reports: int = YEAR_REPORTS_001, seed: int = 7) -> Filled:
    """Fill an initialised, empty store (or reuse one filled with the same parameters)."""
    from people_helpers import PASSWORD
    from tipline.people import accounts
    from tipline.sim.calibration import load_year
    from tipline.store.db import transaction
    from tipline.store.tables import (
        Assessment,
        BankEntry,
        Blob,
        File,
        FileMatch,
        HashBank,
        Jurisdiction,
        Report,
        Reporter,
    )
    from tipline.store.tables_people import AssessmentOverride, Claim

    want = {"reports": reports, "seed": seed, "version": FILL_VERSION}
    found = _marker(engine)
    if found is not None:
        if {k: found.get(k) for k in want} != want:
            raise SystemExit(f"this store holds another fill ({found}); use another --cache-dir / database")
        return Filled(found["reports"], found["finished"], found["analyst"], found["fill_seconds"], True)
    with engine.connect() as c:
        if c.execute(text("SELECT count(*) FROM reports")).scalar_one():
            raise SystemExit("the store has reports but no fill marker: give an empty store")

    t0 = time.monotonic()
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    year = load_year(2023)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)

    with engine.begin() as c:
        names = [p.name for p in year.platforms]
        c.execute(insert(Reporter), [{"name": n, "kind": "public" if p.public else "esp", "enabled": True,
                                      "created_at": start} for n, p in zip(names, year.platforms, strict=True)])
        reporter_ids = dict(c.execute(text("SELECT name, id FROM reporters")).all())
        bank = c.execute(insert(HashBank).returning(HashBank.id), [{"name": "bench", "description": None,
                         "enabled": True, "pdq_threshold": 31, "created_at": start}]).scalar_one()
        c.execute(insert(BankEntry), [{"bank_id": bank, "hash_type": "md5", "value": f"{i:032x}", "label": "bench",
                                       "added_at": start} for i in range(500)])
        entries = [r[0] for r in c.execute(text("SELECT id FROM bank_entries"))]

    shares = np.array([p.share for p in year.platforms])
    platform_of = np_rng.choice(len(year.platforms), size=reports, p=shares / shares.sum())
    itype_of = np_rng.choice(len(year.incident_types), size=reports, p=year.incident_probs)
    # Files per report: a geometric count with the published mean (many reports carry one file).
    files_of = np_rng.geometric(1.0 / year.files_per_report, size=reports)
    loc_of = np_rng.random(reports)
    country_of = np_rng.choice(len(year.countries), size=reports, p=year.country_probs)
    state_of = np_rng.choice(len(year.us_states), size=reports, p=year.us_state_probs)
    span = 365 * 24 * 3600
    finished = 0
    file_no = 0
    matches: list[dict[str, Any]] = []
    for lo in range(0, reports, BATCH):
        rows, blobs, files, assess, juris = [], [], [], [], []
        for i in range(lo, min(reports, lo + BATCH)):
            rid = i + 1
            p = year.platforms[int(platform_of[i])]
            itype = year.incident_types[int(itype_of[i])]
            opened = start + timedelta(seconds=span * i / reports)
            is_open = rng.random() < OPEN_SHARE
            nfiles = int(files_of[i])
            rows.append({"id": rid, "reporter_id": reporter_ids[p.name], "source": "web" if p.public else "ispws",
                         "state": "open" if is_open else "finished", "opened_at": opened,
                         "last_change_at": opened + timedelta(minutes=5), "file_count": nfiles,
                         "finished_at": None if is_open else opened + timedelta(minutes=5),
                         "incident_type": itype, "incident_at": opened - timedelta(days=1), "batched": False,
                         "document": _document(rng, rid, p.name, itype, opened), "normalisations": []})
            for seq in range(nfiles):
                file_no += 1
                sha = f"{file_no:064x}"
                blobs.append({"sha256": sha, "size": 200_000, "stored_name": None, "md5": f"{file_no:032x}",
                              "sha1": f"{file_no:040x}", "created_at": opened})
                fid = f"{file_no:032x}"
                files.append({"id": fid, "report_id": rid, "seq": seq, "file_name": f"f{seq}.jpg",
                              "media_type": "image/jpeg", "size": 200_000, "md5": f"{file_no:032x}",
                              "sha1": f"{file_no:040x}", "sha256": sha, "uploaded_at": opened,
                              "viewed_by_esp": rng.random() < p.profile.viewed})
                x = rng.random()
                if x < BANK_MATCH_FILES:
                    matches.append({"file_id": fid, "kind": "bank", "hash_type": "md5", "distance": 0,
                                    "bank_entry_id": rng.choice(entries), "other_file_id": None, "created_at": opened})
                elif x < BANK_MATCH_FILES + DUPLICATE_FILES and file_no > 1:
                    other = f"{rng.randrange(1, file_no):032x}"
                    matches.append({"file_id": fid, "kind": "duplicate", "hash_type": "sha256", "distance": 0,
                                    "bank_entry_id": None, "other_file_id": other, "created_at": opened})
            if is_open:
                continue
            finished += 1
            pr = 1 if (y := rng.random()) < P1 else 2 if y < P1 + P2 else 3
            # Escalations are the most urgent priority-1 reports; their published rate (of all reports).
            esc = pr == 1 and rng.random() < year.escalation_rate / P1
            disp = "referral" if rng.random() < (year.referral_share or 0.5) else "informational"
            assess.append({"report_id": rid, "quality": round(rng.random(), 2), "missing": [],
                           "disposition": disp, "disposition_reasons": [{"text": "synthetic"}], "priority": pr,
                           "priority_reasons": [{"text": "synthetic"}], "escalate": esc, "rules_version": "bench",
                           "assessed_at": opened + timedelta(minutes=6)})
            located = not p.public and loc_of[i] >= p.p_no_location
            if not located:
                country, state = None, None
            elif rng.random() < year.p_us:
                country = "US"
                state = None if rng.random() < year.p_us_no_state else year.us_states[int(state_of[i])]
            else:
                country, state = year.countries[int(country_of[i])], None
            juris.append({"report_id": rid, "country": country, "us_state": state,
                          "source": "ip" if country else None, "confidence": 0.8 if country else 0.0,
                          "reason": "synthetic", "resolved_at": opened + timedelta(minutes=6)})
        with engine.begin() as c:
            for table, batch in ((Report, rows), (Blob, blobs), (File, files), (Assessment, assess),
                                 (Jurisdiction, juris), (FileMatch, matches)):
                _bulk(c, table, batch)
            matches = []
        print(f"  filled {min(reports, lo + BATCH):,} of {reports:,} reports "
              f"({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)

    # People's work: analysts holding reports, and overrides (1 %; a few closed).
    with transaction(sessions) as s:
        made = [accounts.create_user(s, f"bench-{i:02d}", "analyst", PASSWORD) for i in range(ANALYSTS)]
        sup = accounts.create_user(s, "bench-supervisor", "supervisor", PASSWORD)
        s.flush()
        ids = [r[0] for r in s.execute(text("SELECT report_id FROM assessments"))]
        held = rng.sample(ids, ANALYSTS * CLAIMS_EACH)
        s.execute(insert(Claim), [{"report_id": rid, "user_id": made[k // CLAIMS_EACH].user.id,
                                   "claimed_at": now, "expires_at": now + timedelta(days=3650)}
                                  for k, rid in enumerate(held)])
        over = rng.sample(ids, int(len(ids) * OVERRIDE_SHARE))
        rows = []
        for rid in over:
            rows.append({"report_id": rid, "user_id": sup.user.id, "priority": rng.choice((1, 2, 3)),
                         "disposition": None, "escalate": None, "closed": None, "reason": "bench override",
                         "at": now})
            if rng.random() < 0.2:  # then a second change: the latest wins
                rows.append({"report_id": rid, "user_id": sup.user.id, "priority": None,
                             "disposition": rng.choice(("referral", "informational")), "escalate": None,
                             "closed": None, "reason": "bench second change", "at": now})
        for rid in rng.sample(ids, int(len(ids) * CLOSED_SHARE)):
            rows.append({"report_id": rid, "user_id": sup.user.id, "priority": None, "disposition": "informational",
                         "escalate": None, "closed": True, "reason": "bench close", "at": now})
        s.execute(insert(AssessmentOverride), rows)
    me = made[0]
    analyst = {"username": me.user.username, "password": PASSWORD, "totp_secret": me.totp_secret,
               "user_id": me.user.id}
    try:  # a tree with the queue's read model (migration 0013): these rows went around its writers
        from tipline.console import queue_model
    except ImportError:
        queue_model = None  # type: ignore[assignment]
    if queue_model is not None:
        with transaction(sessions) as s:
            queue_model.rebuild(s)
    took = round(time.monotonic() - t0, 1)
    with engine.begin() as c:
        if c.dialect.name == "postgresql":
            c.execute(text("ANALYZE"))
        c.execute(text(f"CREATE TABLE {MARKER} (detail TEXT NOT NULL)"))
        c.execute(text(f"INSERT INTO {MARKER} (detail) VALUES (:d)"),
                  {"d": json.dumps({**want, "finished": finished, "analyst": analyst, "fill_seconds": took})})
    return Filled(reports, finished, analyst, took, False)
