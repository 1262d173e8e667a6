"""The outcome-code registry holds exactly the codes the issue names, each well formed."""

from __future__ import annotations

from tipline.kinds.outcomes import DETAIL_KEYS, code_names, registry

ISSUE_CODES = (
    "ACKNOWLEDGED", "ASSIGNED", "TRANSFERRED", "LINKED_DUPLICATE", "INVESTIGATION_OPENED",
    "LEGAL_PROCESS", "FORENSIC_EXAM", "SUSPECT_IDENTIFIED", "ARREST", "CHARGED", "DISPOSITION",
    "CHILD_IDENTIFIED", "CLEARED_EXCEPTIONALLY", "CLOSED_NOT_ACTIONABLE", "CLOSED_NOT_PURSUED",
)


def test_registry_holds_the_issue_codes_in_order() -> None:
    assert code_names() == ISSUE_CODES


def test_terminal_codes_are_the_closing_three() -> None:
    assert registry().terminal == ("CLEARED_EXCEPTIONALLY", "CLOSED_NOT_ACTIONABLE", "CLOSED_NOT_PURSUED")


def test_details_and_values() -> None:
    reg = registry()
    arrest = reg.codes["ARREST"]
    assert set(arrest.required) == {"persons", "arrestType"}
    assert set(reg.allowed(arrest, "arrestType") or {}) == {"O", "S", "T"}
    assert set(reg.allowed(reg.codes["CLEARED_EXCEPTIONALLY"], "nibrsCode") or {}) == set("ABCDE")
    assert set(reg.allowed(reg.codes["DISPOSITION"], "result") or {}) == {"convicted", "acquitted", "dismissed"}
    assert reg.allowed(arrest, "persons") is None
    for oc in reg.codes.values():
        assert set(oc.details) <= set(DETAIL_KEYS)
    assert reg.version
