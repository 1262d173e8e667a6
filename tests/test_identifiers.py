"""Identifiers and links: normalisers (pure) and the `identifiers` / `links` stages on both backends."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from helpers import NOW, person, report_doc, run, store_report
from tipline.pipeline.identifiers import (
    load_rules,
    normalise_device,
    normalise_email,
    normalise_handle,
    normalise_ip,
    normalise_phone,
    normalise_service,
)
from tipline.pipeline.stages.links import compute_links
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import File, FileMatch, Identifier, ReportIdentifier, ReportLink

RULES = load_rules()


# --- normalisers ----------------------------------------------------------------------------------


def test_services_and_handles_follow_per_service_rules() -> None:
    assert normalise_service("X/Twitter", RULES) == "x"
    assert normalise_service("Twitter", RULES) == "x"
    assert normalise_service("Instagram", RULES) == "instagram"
    assert normalise_service("Some New App", RULES) == "somenewapp"
    assert normalise_service("  ", RULES) is None
    assert normalise_handle("@Alice_01", "instagram", RULES) == "alice_01"
    assert normalise_handle("u/SomeOne", "reddit", RULES) == "someone"
    # Unknown service: the case is kept, never guessed.
    assert normalise_handle("MixedCase", "somenewapp", RULES) == "MixedCase"
    # WhatsApp is not listed as case-insensitive.
    assert normalise_handle("Name", "whatsapp", RULES) == "Name"


def test_email_gmail_rules_only_for_gmail() -> None:
    assert normalise_email("John.Doe+promo@GoogleMail.com", RULES) == "johndoe@gmail.com"
    assert normalise_email("j.o.h.n.doe@gmail.com", RULES) == "johndoe@gmail.com"
    # Elsewhere dots, plus-tags and the local part's case are kept; the domain is lowercased.
    assert normalise_email("John.Doe+x@Example.ORG", RULES) == "John.Doe+x@example.org"
    assert normalise_email("mailto:a@b.example", RULES) == "a@b.example"
    for bad in ("not-an-email", "@x.org", "a@", "a@localhost", "a b@c.org"):
        assert normalise_email(bad, RULES) is None


def test_phone_e164_with_calling_code_and_national_otherwise() -> None:
    assert normalise_phone("(202) 555-0147", "+1").value == "+12025550147"  # type: ignore[union-attr]
    assert normalise_phone("+44 20 7946 0958").value == "+442079460958"  # type: ignore[union-attr]
    assert normalise_phone("020 7946 0958", "+44").value == "+442079460958"  # type: ignore[union-attr]
    assert normalise_phone("0044 20 7946 0958").value == "+442079460958"  # type: ignore[union-attr]
    # Italy keeps the leading 0 in E.164.
    assert normalise_phone("06 1234 5678", "+39").value == "+390612345678"  # type: ignore[union-attr]
    national = normalise_phone("555-0147 ext 12")
    assert national is not None and national.value == "5550147" and not national.e164
    assert normalise_phone("abc") is None


def test_ip_canonical_form_and_flags() -> None:
    assert normalise_ip("::ffff:8.8.8.8").value == "8.8.8.8"  # type: ignore[union-attr]
    assert normalise_ip("2001:0DB8:0000::1").value == "2001:db8::1"  # type: ignore[union-attr]
    assert normalise_ip("8.8.8.8:443").value == "8.8.8.8"  # type: ignore[union-attr]
    cases = {"10.1.2.3": ("private",), "100.64.7.1": ("cgnat",), "192.0.2.5": ("documentation",),
             "2001:db8::5": ("documentation",), "127.0.0.1": ("loopback",), "8.8.8.8": ()}
    for ip, flags in cases.items():
        n = normalise_ip(ip)
        assert n is not None and n.flags == flags, ip
    proxied = normalise_ip("8.8.8.8", possible_proxy=True)
    assert proxied is not None and proxied.shared and proxied.routable
    assert normalise_ip("999.1.1.1") is None


def test_devices_scoped_by_type_and_placeholders_flagged() -> None:
    d = normalise_device("IDFA", "6D92078A-8246-4BA4-AE5B-76104861E7DC", RULES)
    assert d is not None
    assert (d.scope, d.value, d.placeholder) == ("idfa", "6d92078a-8246-4ba4-ae5b-76104861e7dc", False)
    imei = normalise_device("IMEI", "35-209900-176148-1", RULES)
    assert imei is not None and (imei.scope, imei.value) == ("imei", "352099001761481")
    zero = normalise_device("AAID", "00000000-0000-0000-0000-000000000000", RULES)
    assert zero is not None and zero.placeholder and zero.scope == "adid"


# --- stages -----------------------------------------------------------------------------------------


def _identifiers(rt: Runtime, rid: int) -> set[tuple[str, str, str, str, bool]]:
    with rt.sessions() as s:
        rows = s.execute(select(Identifier.kind, Identifier.scope, Identifier.value, ReportIdentifier.role,
                                Identifier.shared)
                         .join(ReportIdentifier, ReportIdentifier.identifier_id == Identifier.id)
                         .where(ReportIdentifier.report_id == rid)).all()
    return {tuple(r) for r in rows}  # type: ignore[misc]


def test_identifiers_stage_writes_roles_and_is_idempotent(runtime: Runtime) -> None:
    doc = report_doc(
        [person("12345", service="Instagram", screen="@Bad_Actor", email="Bad.Actor+x@gmail.com",
                ip="100.64.1.2", device=("IDFA", "6D92078A-8246-4BA4-AE5B-76104861E7DC"))],
        victim=[{"victimPerson": {"email": [{"value": "kid@example.org"}]}, "screenName": "kid1",
                 "espService": "Instagram"}],
    )
    rid = store_report(runtime, doc, files=["f1"], file_details=[
        {"reportId": 1, "fileId": "x", "ipCaptureEvent": {"ipAddress": "8.8.4.4", "eventName": "Upload"}}])
    run(runtime, ["identifiers"], [rid])
    first = _identifiers(runtime, rid)
    assert ("account", "instagram", "id:12345", "reported", False) in first
    assert ("account", "instagram", "handle:bad_actor", "reported", False) in first
    assert ("email", "", "badactor@gmail.com", "reported", False) in first
    assert ("ip", "", "100.64.1.2", "reported", True) in first  # CGNAT: shared, never linked
    assert ("ip", "", "8.8.4.4", "reported", False) in first  # from the file's details
    assert ("device", "idfa", "6d92078a-8246-4ba4-ae5b-76104861e7dc", "reported", False) in first
    assert ("email", "", "kid@example.org", "victim", False) in first
    assert ("email", "", "ts@platform.example", "reporter", False) in first
    run(runtime, ["identifiers"], [rid])
    assert _identifiers(runtime, rid) == first
    with runtime.sessions() as s:
        src = s.execute(select(ReportIdentifier.source).join(Identifier).where(
            Identifier.value == "id:12345")).scalar_one()
    assert src == "personOrUserReported[0].espIdentifier"


def _links(rt: Runtime) -> set[tuple[int, int, str]]:
    with rt.sessions() as s:
        return {(a, b, r) for a, b, r in s.execute(select(ReportLink.report_a, ReportLink.report_b, ReportLink.reason))}


def test_links_by_account_email_device_and_content(runtime: Runtime) -> None:
    a = store_report(runtime, report_doc([person("u1", service="Snapchat", email="x@example.com")]), files=["same"])
    b = store_report(runtime, report_doc([person("u1", service="snapchat")]))  # same account, other spelling
    c = store_report(runtime, report_doc([person(email="x@EXAMPLE.com")]))  # same e-mail (domain case)
    d = store_report(runtime, report_doc([person(device=("imei", "352099001761481"))]), files=["same"])
    e = store_report(runtime, report_doc([person(device=("IMEI", "35-209900-176148-1"))]))
    f = store_report(runtime, report_doc([person("u1", service="TikTok")]))  # same id, other service: no link
    ids = [a, b, c, d, e, f]
    run(runtime, ["identifiers", "links"], ids)
    links = _links(runtime)
    assert (a, b, "account") in links
    assert (a, c, "email") in links
    assert (d, e, "device") in links
    assert (a, d, "content") in links
    assert not {(x, y) for x, y, _ in links} & {(a, f), (b, f)}
    # Idempotent, and the same whichever order the reports ran in.
    run(runtime, ["links"], list(reversed(ids)))
    assert _links(runtime) == links


def test_ip_links_only_public_non_proxy_within_window(runtime: Runtime) -> None:
    r1 = store_report(runtime, report_doc([person(ip="8.8.8.8", ip_at="2024-03-05T09:00:00Z")]))
    r2 = store_report(runtime, report_doc([person(ip="8.8.8.8", ip_at="2024-03-05T20:00:00Z")]))  # 11 h later
    r3 = store_report(runtime, report_doc([person(ip="8.8.8.8", ip_at="2024-03-09T09:00:00Z")]))  # 4 days later
    p1 = store_report(runtime, report_doc([person(ip="1.1.1.1", proxy=True)]))
    p2 = store_report(runtime, report_doc([person(ip="1.1.1.1")]))
    c1 = store_report(runtime, report_doc([person(ip="100.64.0.9")]))
    c2 = store_report(runtime, report_doc([person(ip="100.64.0.9")]))
    ids = [r1, r2, r3, p1, p2, c1, c2]
    run(runtime, ["identifiers", "links"], ids)
    links = _links(runtime)
    assert (r1, r2, "ip") in links
    assert (r1, r3, "ip") not in links and (r2, r3, "ip") not in links
    assert not any(r == "ip" and {x, y} & {p1, p2, c1, c2} for x, y, r in links)
    with runtime.sessions() as s:
        w_ip = s.execute(select(ReportLink.weight).where(ReportLink.reason == "ip")).scalar_one()
    assert w_ip < RULES.weights["account"]


def test_links_use_file_matches_of_the_matches_stage(runtime: Runtime) -> None:
    a = store_report(runtime, report_doc([person("p")]), files=["img-a"])
    b = store_report(runtime, report_doc([person("q")]), files=["img-b"])
    with transaction(runtime.sessions) as s:
        fa = s.execute(select(File.id).where(File.report_id == a)).scalar_one()
        fb = s.execute(select(File.id).where(File.report_id == b)).scalar_one()
        s.add(FileMatch(file_id=fb, kind="duplicate", hash_type="pdq", distance=12, other_file_id=fa,
                        created_at=NOW))
    run(runtime, ["identifiers", "links"], [a, b])
    with runtime.sessions() as s:
        row = s.execute(select(ReportLink)).scalar_one()
    assert (row.report_a, row.report_b, row.reason) == (a, b, "content")
    assert row.weight == RULES.weights["content_near"] and "near-identical" in (row.detail or "")


def test_many_sharers_link_through_anchors_not_all_pairs(runtime: Runtime) -> None:
    cap = RULES.max_links_per_key
    ids = [store_report(runtime, report_doc([person(f"x{i}")]), files=["viral"]) for i in range(cap + 6)]
    run(runtime, ["identifiers", "links"], ids)
    links = _links(runtime)
    n = len(ids)
    anchors = set(ids[:cap])
    expected = {(x, y, "content") for x, y in itertools.combinations(ids, 2) if x in anchors or y in anchors}
    assert links == expected
    assert len(links) < n * (n - 1) // 2
    # The reference: a report's computed links equal what is stored for it.
    with runtime.sessions() as s:
        last = compute_links(s, ids[-1])
    assert {o for o, _ in last} == anchors


@pytest.mark.parametrize("state", ["open"])
def test_unfinished_reports_are_never_linked(runtime: Runtime, state: str) -> None:
    a = store_report(runtime, report_doc([person("same")]))
    b = store_report(runtime, report_doc([person("same")]), state=state)
    run(runtime, ["identifiers"], [a, b])
    run(runtime, ["links"], [a])
    assert _links(runtime) == set()
