"""Published CyberTipline figures a simulated year is calibrated to, read from data files.

Sources (see ``tipline/data/sim/README.md``): NCMEC's tables as transcribed by the open data
project diaphanous (Apache-2.0) for 2019-2023, and DOMAIN.md section B for 2024 and for the
per-ESP counts. Where nothing is published the value is an assumption, marked as such in
``year-targets.json`` and in docs/simulation.md.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from tipline.model.report import INCIDENT_TYPE_TABLE_LABELS, INCIDENT_TYPES

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"
YEARS = (2023, 2024)
PUBLIC = "Public (web form)"  # the reporter the public web form files under

# The report-contents CSV names incident types in NCMEC's table wording (kept with the types).
_CSV_TYPE_NAMES = INCIDENT_TYPE_TABLE_LABELS
CSAM = INCIDENT_TYPES[0]
ENTICEMENT = "Online Enticement of Children for Sexual Acts"


@dataclass(frozen=True)
class Profile:
    """How complete a platform's reports are: the probability that each field is filled."""

    name: str
    screen_name: float
    display_name: float
    email: float
    phone: float
    ip_events: float
    device: float
    est_location: float
    viewed: float
    classification: float
    original_hash: float
    pdq_in_details: float
    url: float
    recipient: float
    victim_age: float
    upload_time: float
    #: Relative weight of reports that carry no location at all (normalised per year).
    no_location_weight: float


# Assumed profiles: Stanford (2024) and ICAC testimony describe a few platforms filing rich
# reports and many filing bare ones; no per-field figures are published.
PROFILES: dict[str, Profile] = {
    "rich": Profile("rich", 1.0, 0.9, 0.8, 0.5, 0.95, 0.6, 0.8, 0.95, 0.8, 0.9, 0.9, 0.7, 0.9, 0.5, 0.9, 0.5),
    "medium": Profile("medium", 0.9, 0.6, 0.4, 0.2, 0.85, 0.3, 0.5, 0.8, 0.5, 0.5, 0.6, 0.5, 0.7, 0.3, 0.5, 1.0),
    "bare": Profile("bare", 0.6, 0.2, 0.1, 0.05, 0.6, 0.05, 0.2, 0.4, 0.15, 0.2, 0.3, 0.3, 0.4, 0.1, 0.1, 2.5),
}
# Assumed: which profile each named platform follows; unnamed (long-tail) platforms are "bare".
PLATFORM_PROFILE = {
    "Facebook": "rich", "Instagram": "rich", "WhatsApp": "medium", "Google": "rich",
    "TikTok": "medium", "Snapchat": "medium", "X (Twitter)": "bare", "Discord": "medium",
    "Reddit": "medium", "Omegle": "bare", "Imgur": "bare", "Kik": "bare", "Microsoft": "rich",
    "Amazon Photos": "medium", "OpenAI": "medium", "Amazon AI": "bare", "Bluesky": "medium",
}  # fmt: skip
LONG_TAIL_PLATFORMS = 12  # the ESP reports not in the per-ESP table, split Zipf-like


@dataclass(frozen=True)
class Platform:
    name: str
    share: float  # of all reports in the year (the public reporter included)
    meta: bool
    profile: Profile
    public: bool = False
    p_no_location: float = 0.0
    meme_share: float = 0.0
    batched_share: float = 0.0  # of this platform's reports (2024 bundling: Meta only)


@dataclass(frozen=True)
class YearTargets:
    """Everything the generator needs for one year, and what the calibration test checks."""

    year: int
    reports: int
    platforms: list[Platform]
    incident_types: list[str]
    incident_probs: np.ndarray
    p_us: float  # of reports with a location (US vs abroad among located reports)
    p_unknown: float  # of all reports: no location at all
    countries: list[str]  # ISO alpha-2 of abroad countries
    country_probs: np.ndarray
    us_states: list[str]
    us_state_probs: np.ndarray
    p_us_no_state: float
    files_per_report: float
    media_probs: dict[str, float]
    unique_media_share: dict[str, float]
    escalation_rate: float
    sextortion_rate_of_enticement: float
    gai_rate: float
    batch_users_mean: float
    incidents_per_report: float | None
    annotations: dict[str, float]
    #: Published actionable (referral) share of reports (B1/B4); the meme and bundling shares are fitted to it.
    referral_share: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def user_location(self) -> dict[str, float]:
        """Published US / abroad / unknown shares of all reports."""
        located = 1.0 - self.p_unknown
        return {"us": located * self.p_us, "abroad": located * (1 - self.p_us), "unknown": self.p_unknown}

    def platform_shares(self) -> dict[str, float]:
        return {p.name: p.share for p in self.platforms}


def _num(raw: str) -> int:
    return int(raw.replace(",", "").strip() or 0)


@cache
def _targets_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "year-targets.json").read_text())
    return data


def _csv(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as fh:
        return list(csv.DictReader(fh))


def iso3_to_iso2() -> dict[str, str]:
    return {r["iso3"]: r["iso2"] for r in _csv("iso3-to-iso2.csv")}


def _contents(year: int) -> dict[tuple[str, str], int]:
    return {(r["category"], r["label"]): _num(r["quantity"])
            for r in _csv("ocse-report-contents.csv") if int(r["year"]) == year}


@cache
def load_year(year: int) -> YearTargets:
    """The calibration targets of ``year`` (2023 or 2024)."""
    if year not in YEARS:
        raise ValueError(f"simulated years are {', '.join(map(str, YEARS))}; got {year}")
    cfg = _targets_json()[str(year)]
    reports = int(cfg["reports"])
    notes: list[str] = []

    # -- platforms: published per-ESP counts, a long tail for the rest, and the public
    esp_rows = [r for r in _csv("esps.csv") if int(r["year"]) == year]
    named = sum(int(r["reports"]) for r in esp_rows)
    rest = int(cfg["esp_reports"]) - named
    zipf = 1.0 / np.arange(1, LONG_TAIL_PLATFORMS + 1)
    zipf /= zipf.sum()
    meme = cfg["meme_report_share"]
    raw: list[tuple[str, float, bool, str]] = [
        (r["esp"], int(r["reports"]) / reports, r["meta"] == "1", PLATFORM_PROFILE.get(r["esp"], "bare"))
        for r in esp_rows
    ]
    raw += [(f"Small platform {i + 1:02d}", rest * float(z) / reports, False, "bare") for i, z in enumerate(zipf)]
    public_share = (reports - int(cfg["esp_reports"])) / reports
    notes.append(f"{LONG_TAIL_PLATFORMS} simulated long-tail platforms share the {rest:,} ESP reports "
                 "not in the per-ESP table (Zipf weights)")

    # -- location: US / abroad / unknown, and no-location weight per platform profile
    loc = cfg["user_location"]
    total_loc = float(loc["us"] + loc["abroad"] + loc["unknown"])
    p_unknown = loc["unknown"] / total_loc
    p_us = loc["us"] / (loc["us"] + loc["abroad"])
    # The public form carries no location: those reports are all "unknown"; the rest of the
    # unknown share falls on platforms by profile weight.
    esp_unknown = max(0.0, p_unknown - public_share)
    wsum = sum(share * PROFILES[prof].no_location_weight for _, share, _, prof in raw)
    scale = esp_unknown / wsum
    batched = float(cfg["batched_share_of_meta_reports"])
    platforms = [
        Platform(name, share, is_meta, PROFILES[prof],
                 p_no_location=min(1.0, PROFILES[prof].no_location_weight * scale),
                 meme_share=meme["meta"] if is_meta else meme["other"], batched_share=batched if is_meta else 0.0)
        for name, share, is_meta, prof in raw
    ]
    platforms.append(Platform(PUBLIC, public_share, False, PROFILES["bare"], public=True, p_no_location=1.0))

    # -- incident types
    if "incident_types" in cfg:
        counts = {k: float(v) for k, v in cfg["incident_types"].items()}
    else:
        c = _contents(year)
        counts = {_CSV_TYPE_NAMES[label]: float(q) for (cat, label), q in c.items() if cat == "kind of exploitation"}
    types = list(INCIDENT_TYPES)
    probs = np.array([counts[t] for t in types], dtype=float)
    probs /= probs.sum()

    # -- countries abroad (the per-country table, USA and "no country" excluded)
    to2 = iso3_to_iso2()
    by_country: dict[str, float] = {}
    for r in _csv("ocse-reports-per-country.csv"):
        iso3 = r["iso3"]
        if not iso3 or iso3 in ("USA", "EEE", "ANT") or not r.get("2023"):
            continue  # EU / Netherlands Antilles are no longer countries an IP resolves to
        cc = to2[iso3]
        by_country[cc] = by_country.get(cc, 0.0) + _num(r["2023"])
    overrides = cfg.get("country_overrides") or {}
    if overrides:
        base = float(cfg["country_overrides_base"])
        abroad_share = loc["abroad"] / total_loc
        fixed = {cc: n / base / abroad_share for cc, n in overrides.items()}  # share of abroad
        others = {cc: v for cc, v in by_country.items() if cc not in fixed}
        left = 1.0 - sum(fixed.values())
        tot = sum(others.values())
        by_country = {**{cc: v / tot * left for cc, v in others.items()}, **fixed}
        notes.append(cfg["country_overrides_note"])
    countries = sorted(by_country)
    cprobs = np.array([by_country[c] for c in countries], dtype=float)
    cprobs /= cprobs.sum()

    # -- US states (2023 table, used for both years)
    states: dict[str, float] = {}
    for r in _csv("ocse-reports-by-state.csv"):
        if len(r["state"]) == 2:
            states[r["state"]] = _num(r["reports"])
    snames = sorted(states)
    sprobs = np.array([states[s] for s in snames], dtype=float)
    sprobs /= sprobs.sum()

    media = {k: float(v) for k, v in cfg["media"].items()}
    msum = sum(media.values())
    esc = cfg["escalated"] / reports if cfg.get("escalated") else float(cfg["escalated_assumed_rate"])
    if not cfg.get("escalated"):
        notes.append(f"escalations: no published {year} figure; {esc:.3%} assumed (the 2023 rate)")
    enticement = counts[ENTICEMENT]
    ann = _targets_json()["annotations_assumed"]
    return YearTargets(
        year=year, reports=reports, platforms=platforms, incident_types=types, incident_probs=probs,
        p_us=p_us, p_unknown=p_unknown, countries=countries, country_probs=cprobs,
        us_states=snames, us_state_probs=sprobs, p_us_no_state=float(cfg["us_state_unspecified_share"]),
        files_per_report=float(cfg["files"]) / reports,
        media_probs={k: v / msum for k, v in media.items()},
        unique_media_share={k: float(v) for k, v in cfg["unique_media_share"].items()},
        escalation_rate=esc,
        sextortion_rate_of_enticement=min(1.0, float(cfg["sextortion"]) / enticement),
        gai_rate=float(cfg["generative_ai"]) / reports,
        batch_users_mean=float(cfg.get("batch_users_mean", 1.0)),
        incidents_per_report=(float(cfg["incidents"]) / reports) if cfg.get("incidents") else None,
        annotations={k: float(v) for k, v in ann.items()},
        referral_share=float(cfg["referral_share"]) if cfg.get("referral_share") is not None else None,
        notes=notes,
    )
