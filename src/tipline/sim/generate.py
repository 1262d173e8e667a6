"""The generator of a synthetic CyberTipline year: a deterministic stream of reports.

Random draws that matter for calibration (platform, incident type, location, person,
files per report, escalation, memes, batching) are made with numpy, a chunk of reports at
a time; each report is then materialised as the typed model the intake stores
(``tipline.model.report.Report``) or, for the public, as web-form fields, together with its
files and a ground-truth row the system never sees. Both write paths (ISPWS over HTTP and
the direct bulk path) consume this same stream, and so does the calibration test.

Everything is a function of (year, scale, seed, files mode): the same arguments give the
same reports, files and truth.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np

from tipline.model.report import (
    ChatImIncident,
    Details,
    DeviceId,
    Email,
    EstimatedLocation,
    FileAnnotations,
    IncidentSummary,
    IntendedRecipient,
    InternetDetails,
    IpCaptureEvent,
    NameValuePair,
    OriginalFileHash,
    Person,
    PersonOrUserReported,
    Phone,
    ReportAnnotations,
    Reporter,
    Victim,
    WebPageIncident,
)
from tipline.model.report import Report as ReportModel
from tipline.sim import content as sc
from tipline.sim import ips
from tipline.sim import population as pop
from tipline.sim.calibration import CSAM, ENTICEMENT, Platform, YearTargets, load_year

FilesMode = Literal["images", "hashes"]
CHUNK = 50_000
P_REPEAT_PERSON = 0.25  # assumed: share of reports about a person reported before
P_PROXY_EVENT = 0.015  # assumed: IP events from a proxy/VPN abroad (flagged possibleProxy)
MEME_POOL_PER_REPORT = 0.0005  # assumed: viral items per simulated report (Zipf popularity)
KNOWN_POOL_PER_REPORT = 0.05  # assumed: circulating known items per simulated report
VIRAL_FLAG_P = 0.6  # assumed: share of a meme report's files also flagged `viral` (all are `potentialMeme`)
# Escalation is far likelier for contact offences than for CSAM possession (assumed weights).
ESCALATION_WEIGHT = {CSAM: 1.0}
ESCALATION_OTHER_WEIGHT = 25.0
ESCALATION_TEXTS = (
    "User appears to be arranging to meet a minor in person within days.",
    "Recent uploads suggest ongoing abuse of a child in the user's household.",
    "Minor victim expressed intent to self-harm after sextortion threats.",
    "User offers access to a child for payment; location details included.",
    "Newly produced content; the child appears to be in the uploader's care.",
)
PUBLIC_CHOICE = {
    CSAM: "images", ENTICEMENT: "enticement", "Child Sex Trafficking": "trafficking",
    "Child Sexual Molestation": "abuse", "Unsolicited Obscene Material Sent to a Child": "obscene",
    "Child Sex Tourism": "travel", "Misleading Words or Digital Images on the Internet": "misleading-content",
    "Misleading Domain Name": "misleading-domain",
}
CLASSIFICATIONS = ("A1", "A2", "B1", "B2")
CLASSIFICATION_P = np.array([0.35, 0.25, 0.2, 0.2])
# The cumulative shares as Python floats, for ``bisect``: the same index as
# ``np.searchsorted(np.cumsum(CLASSIFICATION_P), u)`` without two numpy calls per file.
_CLASSIFICATION_CUM = tuple(float(x) for x in np.cumsum(CLASSIFICATION_P))


@dataclass
class SimFile:
    """One file of a simulated report: what it is (truth) and what the platform says about it."""

    seq: int
    item: int
    variant: int
    kind: str  # photo | video | other (intended kind; images mode renders every file as an image)
    content: sc.Content
    file_name: str
    #: fileDetails fields other than reportId/fileId, as model values (see FileDetails).
    details: dict[str, Any]


@dataclass
class SimReport:
    """One simulated report: the submission (model or form fields), its files and the truth."""

    seq: int
    platform: str
    public: bool
    report: ReportModel | None  # ESP submissions
    form: dict[str, str] | None  # public web-form fields
    files: list[SimFile]
    truth: dict[str, Any] = field(default_factory=dict)


class YearGenerator:
    """A synthetic year: ``iter(gen)`` yields ``SimReport`` in order, deterministically."""

    def __init__(self, year: int, scale: float, seed: int, files: FilesMode = "hashes",
                 targets: YearTargets | None = None, truth_only: bool = False) -> None:
        """``truth_only``: yield only the ground truth (no report model, no file content); the
        draws are the same, so the truth is identical to the full stream's (a test checks)."""
        if not 0 < scale <= 1:
            raise ValueError("scale must be in (0, 1]")
        self.year, self.scale, self.seed, self.files_mode = year, scale, seed, files
        self.truth_only = truth_only
        self.t = targets or load_year(year)
        self.n_reports = max(1, round(self.t.reports * scale))
        self.platforms: list[Platform] = self.t.platforms
        rng = np.random.default_rng([seed, year, 0])
        shares = np.array([p.share for p in self.platforms])
        self._platform_of = rng.choice(len(self.platforms), self.n_reports, p=shares / shares.sum()).astype(np.int16)
        # Where people are: US states first, then countries abroad.
        self.keys = [f"US-{s}" for s in self.t.us_states] + self.t.countries
        self.key_probs = np.concatenate([self.t.p_us * self.t.us_state_probs,
                                         (1 - self.t.p_us) * self.t.country_probs])
        self.n_states = len(self.t.us_states)
        self.n_memes = max(3, round(self.n_reports * MEME_POOL_PER_REPORT))
        self.n_known = max(20, round(self.n_reports * KNOWN_POOL_PER_REPORT))
        self._meme_p = _zipf(self.n_memes, 1.0)
        self._known_p = _zipf(self.n_known, 0.8)
        self.year_start = datetime(year, 1, 1, tzinfo=UTC)
        self.year_seconds = int((datetime(year + 1, 1, 1, tzinfo=UTC) - self.year_start).total_seconds())

    # -- what the write paths need up front -------------------------------------------------

    def platforms_used(self) -> list[Platform]:
        """The platforms that file at least one report in this year (register these)."""
        used = set(np.unique(self._platform_of).tolist())
        return [p for i, p in enumerate(self.platforms) if i in used]

    def __len__(self) -> int:
        return self.n_reports

    # -- the stream -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[SimReport]:
        return self.reports()

    def reports(self, owned: Callable[[int], bool] | None = None) -> Iterator[SimReport]:
        """The stream, or with ``owned`` only the reports whose sequence number it accepts.

        A report is the same whether or not the others are made: the year-wide draws are
        made for every chunk either way (cheap, vectorised), and a report's own details come
        from generators seeded by its sequence number. So processes that each take their own
        blocks of a year (``DirectWriter``'s producers) make together exactly the whole stream,
        and none pays for the reports of the others.
        """
        person_key = np.zeros(0, dtype=np.int16)  # location key index of each person so far
        files_before = 0
        for c, start in enumerate(range(0, self.n_reports, CHUNK)):
            stop = min(self.n_reports, start + CHUNK)
            chunk, person_key, nf = self._chunk(c + 1, start, stop, person_key, files_before, owned)
            files_before += nf
            yield from chunk

    def _chunk(self, c: int, start: int, stop: int, person_key: np.ndarray, files_before: int,
               owned: Callable[[int], bool] | None = None) -> tuple[Iterator[SimReport], np.ndarray, int]:
        """The chunk's year-wide draws, made now; its reports, made one by one as they are taken.

        Lazily, so that a consumer gets a chunk's first report after one report's work, not
        after the whole chunk's: a forked producer used to make its whole share of a chunk
        (25,000 reports) before handing over its first block, and the storing process waited
        for it at every chunk. Nothing after the draws touches ``rng``, so when a report is
        made does not change what it is (tests/test_sim_blocks.py).
        """
        t = self.t
        rng = np.random.default_rng([self.seed, self.year, c])
        n = stop - start
        plat = self._platform_of[start:stop].astype(np.intp)
        pl = self.platforms
        is_public = np.array([pl[i].public for i in range(len(pl))])[plat]
        itype = rng.choice(len(t.incident_types), n, p=t.incident_probs)
        is_csam = itype == t.incident_types.index(CSAM)

        # persons: new, or one reported before (uniformly among earlier persons)
        known = len(person_key)
        new = rng.random(n) >= P_REPEAT_PERSON
        if known == 0:
            new[0] = True
        made_before = known + np.cumsum(new) - new  # persons that exist before report i
        person = np.where(new, known + np.cumsum(new) - 1,
                          (rng.random(n) * np.maximum(made_before, 1)).astype(np.int64))
        new_keys = rng.choice(len(self.keys), int(new.sum()), p=self.key_probs).astype(np.int16)
        person_key = np.concatenate([person_key, new_keys])

        # location as the report shows it
        p_noloc = np.array([p.p_no_location for p in pl])[plat]
        no_loc = rng.random(n) < p_noloc
        key = person_key[person]
        is_us = key < self.n_states
        us_no_state = is_us & ~no_loc & (rng.random(n) < t.p_us_no_state)

        # escalation (platforms only: the public form has no such field)
        w = np.where(is_csam, 1.0, ESCALATION_OTHER_WEIGHT) * ~is_public
        p_esc = t.escalation_rate * n * w / max(w.sum(), 1e-9)
        escalated = rng.random(n) < p_esc
        imminent = np.where(escalated, rng.random(n) < 0.8,
                            np.where(is_csam, rng.random(n) < 0.0002, rng.random(n) < 0.01))

        # memes and (2024) batched viral reports
        meme_share = np.array([p.meme_share for p in pl])[plat]
        meme = is_csam & ~is_public & (rng.random(n) < meme_share)
        p_csam = float(t.incident_probs[t.incident_types.index(CSAM)])
        batched_p = np.array([p.batched_share / (p.meme_share * p_csam) if p.meme_share else 0.0 for p in pl])[plat]
        batched = meme & (rng.random(n) < batched_p)
        meme_item = rng.choice(self.n_memes, n, p=self._meme_p)
        batch_users = np.where(batched, 2 + rng.poisson(max(t.batch_users_mean - 2, 0.0), n), 1)
        extra = int((batch_users - 1).sum())
        extra_keys = rng.choice(len(self.keys), extra, p=self.key_probs).astype(np.int16)
        extra_first = len(person_key)
        extra_offset = np.concatenate([[0], np.cumsum(batch_users - 1)])
        person_key = np.concatenate([person_key, extra_keys])

        # files per report: fixed for public (none), memes (1-2) and no-media reports; the
        # rest geometric with the mean that makes the year's files/report come out right
        no_media = ~is_csam & (rng.random(n) < 0.4)
        n_files = np.zeros(n, dtype=np.int64)
        meme_files = np.where(batched, 1, 1 + (rng.random(n) < 0.2))
        fixed = is_public | no_media | meme
        n_files[meme] = meme_files[meme]
        free = ~fixed
        target_total = t.files_per_report * self.n_reports * (n / self.n_reports)
        need = (target_total - n_files.sum()) / max(int(free.sum()), 1)
        p_geo = min(1.0, 1.0 / max(need, 1.0))
        n_files[free] = np.minimum(rng.geometric(p_geo, int(free.sum())), 500)
        # Hit the chunk's file total exactly: the geometric draws alone wander by about ±1 % in a
        # small year. The difference goes one file at a time to (or from) random free reports,
        # never taking a free report below one file.
        idx = np.flatnonzero(free)
        diff = round(target_total) - int(n_files.sum())
        if diff > 0 and idx.size:
            np.add.at(n_files, rng.choice(idx, diff), 1)
        elif diff < 0:
            spare = np.repeat(idx, n_files[idx] - 1)  # one slot per file above the first
            if spare.size:
                np.subtract.at(n_files, rng.choice(spare, min(-diff, spare.size), replace=False), 1)
        n_files[is_public] = 0

        sextortion = (itype == t.incident_types.index(ENTICEMENT)) & (rng.random(n) < t.sextortion_rate_of_enticement)
        gai = (n_files > 0) & (rng.random(n) < t.gai_rate / max(float((n_files > 0).mean()), 1e-9))
        when = rng.integers(0, self.year_seconds, n)
        u = rng.random((n, 24))  # per-report uniforms for field completeness and text choices

        # per-file draws
        total = int(n_files.sum())
        kinds = np.array(list(t.media_probs))
        kind = rng.choice(len(kinds), total, p=np.array(list(t.media_probs.values())))
        uniq_p = np.array([t.unique_media_share.get(k, 1.0) for k in kinds])[kind]
        unique = rng.random(total) < uniq_p
        known_item = rng.choice(self.n_known, total, p=self._known_p)
        variant = np.where(rng.random(total) < 0.3, 0, rng.integers(1, 400, total))
        file_u = rng.random((total, 8))
        offsets = np.concatenate([[0], np.cumsum(n_files)])
        keys = person_key  # every person so far, this chunk's co-sharers included

        def made() -> Iterator[SimReport]:
            for i in range(n):
                # Another process may make it: nothing in one() feeds a later report.
                if owned is None or owned(start + i):
                    yield one(i)

        def one(i: int) -> SimReport:
            seq = start + i
            f0, f1 = int(offsets[i]), int(offsets[i + 1])
            items: list[tuple[int, int, str, list[float]]] = []
            for j in range(f0, f1):
                if meme[i]:
                    # A report about a viral item carries copies of that item only.
                    item, var = int(meme_item[i]), int(variant[j])
                elif unique[j]:
                    # Fresh content: an item of its own, seen once (the original).
                    item, var = self.n_memes + self.n_known + files_before + j, 0
                else:
                    item, var = self.n_memes + int(known_item[j]), int(variant[j])
                items.append((item, var, str(kinds[kind[j]]), file_u[j].tolist()))
            users = [int(person[i])]
            if batched[i]:
                first = extra_first + int(extra_offset[i])
                users += list(range(first, first + int(batch_users[i]) - 1))
            return self._materialise(
                seq=seq, platform=pl[plat[i]], itype=t.incident_types[itype[i]], users=users,
                user_keys=[int(keys[p]) for p in users], no_loc=bool(no_loc[i]),
                us_no_state=bool(us_no_state[i]), escalated=bool(escalated[i]),
                imminent=bool(imminent[i]), meme=bool(meme[i]), meme_item=int(meme_item[i]),
                batched=bool(batched[i]), sextortion=bool(sextortion[i]), gai=bool(gai[i]),
                when=self.year_start + timedelta(seconds=int(when[i])), u=u[i].tolist(), files=items,
                repeat=not bool(new[i]),
            )

        return made(), person_key, total

    # -- one report -------------------------------------------------------------------------

    def _location(self, key_index: int) -> tuple[str, str | None]:
        k = self.keys[key_index]
        return ("US", k[3:]) if k.startswith("US-") else (k, None)

    def _materialise(self, *, seq: int, platform: Platform, itype: str, users: list[int], user_keys: list[int],
                     no_loc: bool, us_no_state: bool, escalated: bool, imminent: bool, meme: bool,
                     meme_item: int, batched: bool, sextortion: bool, gai: bool, when: datetime,
                     u: list[float], files: list[tuple[int, int, str, list[float]]], repeat: bool) -> SimReport:
        seed = self.seed
        country, state = self._location(user_keys[0])
        visible = "none" if no_loc else ("us_country" if us_no_state else ("us_state" if country == "US" else "abroad"))
        truth: dict[str, Any] = {
            "sim_seq": seq, "platform": platform.name, "public": platform.public, "incident_type": itype,
            "true_incident": f"viral-{meme_item}" if meme else f"person-{users[0]}",
            "incidents_counted": len(users), "batched": batched, "persons": " ".join(map(str, users)),
            "repeat_person": repeat, "true_country": country, "true_us_state": state or "",
            "location_visible": visible, "child_in_imminent_danger": imminent, "escalated": escalated,
            "sextortion": sextortion, "generative_ai": gai, "viral_item": meme_item if meme else "",
            "n_files": len(files), "proxy_ip": False,
        }
        if not platform.public:
            ann = self.t.annotations
            annotations = ReportAnnotations(
                sextortion=sextortion,
                csamSolicitation=itype == CSAM and u[14] < ann["csamSolicitation_of_csam"],
                minorToMinorInteraction=itype == ENTICEMENT and u[15] < ann["minorToMinorInteraction_of_enticement"],
                spam=u[16] < ann["spam_of_all"],
                sadisticOnlineExploitation=(itype == ENTICEMENT
                                            and u[17] < ann["sadisticOnlineExploitation_of_enticement"]),
            )
            has_ann = any(annotations.model_dump().values())
            truth.update({k: v for k, v in annotations.model_dump().items() if k != "sextortion"})
        if self.truth_only:
            return SimReport(seq, platform.name, platform.public, None, None, [], truth)
        sim_files = [self._file(seq, k + 1, item, var, kind, fu, platform, itype, meme, gai, when)
                     for k, (item, var, kind, fu) in enumerate(files)]
        if platform.public:
            return SimReport(seq, platform.name, True, None, self._public_form(seq, users[0], itype, when, u),
                             sim_files, truth)
        prof = platform.profile
        rng = random.Random(pop.h64("report", seed, self.year, seq))
        people: list[PersonOrUserReported] = []
        for k, (person, key) in enumerate(zip(users, user_keys, strict=True)):
            pc, ps = self._location(key)
            events: list[IpCaptureEvent] = []
            est: EstimatedLocation | None = None
            # The first user carries the report's location as calibrated; batch co-sharers
            # carry their own, with the same completeness.
            hide = no_loc if k == 0 else rng.random() < platform.p_no_location
            only_country = us_no_state if k == 0 else False
            if not hide:
                lkey = ips.location_key(pc, ps)
                want_ip = not only_country and u[0] < prof.ip_events and ips.has_networks(lkey)
                want_est = only_country or u[1] < prof.est_location or not want_ip
                if want_ip:
                    for e in range(1 + int(u[2] * 3)):
                        draw = pop.h64("ip", seed, person, 0 if e == 0 or u[3] < 0.7 else e)
                        events.append(IpCaptureEvent(
                            ipAddress=ips.address(lkey, draw), eventName=("Login", "Upload", "Registration")[e % 3],
                            dateTime=when - timedelta(minutes=int(draw % 5000)),
                            port=(1024 + draw % 60000) if prof.name == "rich" else None))
                    if rng.random() < P_PROXY_EVENT:
                        other = self.keys[rng.randrange(len(self.keys))]
                        if ips.has_networks(other):
                            events.append(IpCaptureEvent(ipAddress=ips.address(other, rng.getrandbits(32)),
                                                         eventName="Login", possibleProxy=True))
                            truth["proxy_ip"] = True
                if want_est:
                    est = EstimatedLocation(countryCode=pc,  # type: ignore[arg-type]
                                            region=None if only_country else ps,
                                            verified=False if prof.name != "rich" else None)
            dev = pop.device(seed, person)
            first, last = pop.real_name(seed, person)
            people.append(PersonOrUserReported(
                personOrUserReportedPerson=Person(
                    firstName=first if prof.name == "rich" and u[4] < 0.3 else None,
                    lastName=last if prof.name == "rich" and u[4] < 0.3 else None,
                    email=[Email(value=pop.email(seed, person), verified=True)] if u[5] < prof.email else [],
                    phone=[Phone(value=pop.phone(seed, person))] if u[6] < prof.phone else [],
                ) if (u[5] < prof.email or u[6] < prof.phone or (prof.name == "rich" and u[4] < 0.3)) else None,
                espIdentifier=pop.account_id(seed, person, platform.name),
                espService=platform.name if prof.name == "rich" else None,
                screenName=pop.screen_name(seed, person, platform.name) if u[7] < prof.screen_name else None,
                displayName=[pop.display_name(seed, person)] if u[8] < prof.display_name else [],
                ipCaptureEvent=events,
                deviceId=[DeviceId(idType=dev[0], idValue=dev[1])] if u[9] < prof.device else [],
                estimatedLocation=est,
            ))
        s = pop.slug(platform.name)
        details: list[InternetDetails] = []
        if platform.name in pop.MESSAGING:
            details.append(InternetDetails(chatImIncident=ChatImIncident(chatClient=platform.name)))
        elif u[10] < prof.url:
            details.append(InternetDetails(webPageIncident=WebPageIncident(
                url=[f"https://{s}.example/p/{pop.h64('url', seed, seq) % 10**12}"])))
        recipients: list[IntendedRecipient] = []
        victims: list[Victim] = []
        if itype != CSAM:
            if u[11] < prof.recipient:
                recipients.append(IntendedRecipient(espIdentifier=pop.account_id(seed, -1 - seq, platform.name),
                                                    screenName=pop.child_account(seed, seq)))
            if u[12] < prof.victim_age:
                victims.append(Victim(victimPerson=Person(age=int(10 + u[13] * 8))))
        report = ReportModel(
            batchedReport={"reason": "VIRAL_POTENTIAL_MEME"} if batched else None,  # type: ignore[arg-type]
            incidentSummary=IncidentSummary(
                incidentType=itype,  # type: ignore[arg-type]
                platform=platform.name if prof.name == "rich" else None,
                escalateToHighPriority=ESCALATION_TEXTS[int(u[18] * len(ESCALATION_TEXTS))] if escalated else None,
                reportAnnotations=annotations if has_ann else None,
                incidentDateTime=when,
            ),
            internetDetails=details,
            reporter=Reporter(reportingPerson=Person(
                firstName="Trust", lastName="and Safety",
                email=[Email(value=f"cybertip-reports@{s}.example")])),
            personOrUserReported=people,
            intendedRecipient=recipients,
            victim=victims,
        )
        return SimReport(seq, platform.name, False, report, None, sim_files, truth)

    def _file(self, seq: int, n: int, item: int, variant: int, kind: str, fu: list[float], platform: Platform,
              itype: str, is_meme: bool, gai: bool, when: datetime) -> SimFile:
        prof = platform.profile
        if self.files_mode == "images":
            cont = sc.image_content(self.seed, item, variant)
        else:
            cont = sc.synthetic_content(self.seed, item, variant, kind)
        name = f"{pop.h64('fname', self.seed, seq, n):016x}.{cont.ext}"
        if platform.public:
            return SimFile(n, item, variant, kind, cont, name, {})
        # Every copy of a viral item is a reported file: the flags below may only go on those.
        reported = n == 1 or is_meme or fu[0] >= 0.1
        d: dict[str, Any] = {"fileName": name}
        if fu[1] < prof.upload_time:
            d["uploadedToEspTimestamp"] = when - timedelta(seconds=int(fu[2] * 86400))
        if fu[3] < prof.viewed:
            d["fileViewedByEsp"] = fu[4] < 0.9
        d["fileRelevance"] = "Reported" if reported else "Supplemental Reported"
        if reported:
            # A meme report is one the platform recognised as viral/meme: it flags every copy
            # (potentialMeme always, viral on VIRAL_FLAG_P of them; the flags' split is assumed).
            flags = {"potentialMeme": is_meme, "viral": is_meme and fu[5] < VIRAL_FLAG_P,
                     "generativeAi": gai, "infant": itype == CSAM and fu[6] < 0.002}
            if any(flags.values()):
                d["fileAnnotations"] = FileAnnotations(**flags)
            if itype == CSAM and fu[7] < prof.classification:
                d["industryClassification"] = CLASSIFICATIONS[bisect.bisect_left(_CLASSIFICATION_CUM, fu[6])]
        if fu[2] < prof.original_hash:
            d["originalFileHash"] = [OriginalFileHash(value=cont.md5, hashType="MD5")]
        if cont.pdq is not None:
            # How platforms deliver a perceptual hash today: a HASH details block.
            d["details"] = [Details(type="HASH", nameValuePair=[NameValuePair(name="PDQ", value=cont.pdq)])]
        return SimFile(n, item, variant, kind, cont, name, d)

    def _public_form(self, seq: int, person: int, itype: str, when: datetime, u: list[float]) -> dict[str, str]:
        seed = self.seed
        day: date = when.date()
        form = {
            "incident": PUBLIC_CHOICE[itype],
            "description": f"Simulated public report {seq}: I saw something that worried me and want it checked.",
            "incident_date": day.isoformat(),
            "incident_time": f"{when.hour:02d}:{when.minute:02d}",
            "urls": "", "platform": "", "usernames": "", "child_age": "",
            "first_name": "", "last_name": "", "email": "", "phone": "",
        }
        if u[0] < 0.5:
            form["platform"] = self.platforms[int(u[1] * 5)].name
        if u[2] < 0.6:
            form["usernames"] = pop.handle(seed, person)
        if u[3] < 0.3:
            form["urls"] = f"https://site-{pop.h64('purl', seed, seq) % 1000}.example/page"
        if u[4] < 0.4:
            form["child_age"] = str(int(9 + u[5] * 9))
        if u[6] < 0.5:  # the rest report anonymously
            first, last = pop.real_name(seed, 10**9 + seq)
            form.update(first_name=first, last_name=last, email=pop.email(seed, 10**9 + seq))
        return form


def _zipf(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return np.asarray(p / p.sum())
