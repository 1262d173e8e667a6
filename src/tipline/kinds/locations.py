"""Location classes: where a ``Location`` row's place comes from, and how far it is trusted.

The ``location`` stage gives each row one class and scores it with the class's confidence;
``routing.toml``'s ``[jurisdiction] precedence`` ranks the classes (it may name only these);
docs/routing.md explains them. A row ranks in the class it is scored by: an IP captured on an
``Upload`` is ``ip_upload`` for both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocationClass:
    name: str
    #: 0..1, before precedence: how likely the place is the reported user's.
    confidence: float
    title: str
    #: Public-form places: whose place the reporter gave, as the jurisdiction reason says it.
    whose: str | None = None


LOCATION_CLASSES: dict[str, LocationClass] = {c.name: c for c in (
    LocationClass("esp_estimate_verified", 0.9, "platform estimate the platform verified"),
    LocationClass("ip_login", 0.7, "IP address of a login"),
    LocationClass("ip_upload", 0.6, "IP address of an upload"),
    LocationClass("ip_other", 0.5, "IP address of another or unnamed event"),
    LocationClass("public_form_child", 0.5, "where the child is, as a public reporter says", "the child's"),
    LocationClass("public_form_person", 0.4, "where the person responsible is, as a public reporter says",
                  "the person responsible's"),
    LocationClass("esp_estimate_unverified", 0.4, "platform estimate, not verified"),
    LocationClass("user_supplied", 0.3, "address given in the report"),
    # Often, not always, the child's place.
    LocationClass("public_form_reporter", 0.3, "where the public reporter is", "the reporter's"),
    LocationClass("ip_proxy", 0.1, "IP address flagged possibleProxy"),
)}

CLASS_NAMES: tuple[str, ...] = tuple(LOCATION_CLASSES)
#: Class name -> confidence.
CONFIDENCE: dict[str, float] = {c.name: c.confidence for c in LOCATION_CLASSES.values()}
#: IP capture event names with a class of their own (other events rank as ``ip_other``).
IP_EVENT_CLASSES: dict[str, str] = {"Login": "ip_login", "Upload": "ip_upload"}


def ip_class(event: str | None, proxy: bool) -> str:
    """The class of an IP capture: a proxy never decides; else by the event it was captured on."""
    return "ip_proxy" if proxy else IP_EVENT_CLASSES.get(event or "", "ip_other")
