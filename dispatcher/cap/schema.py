"""CAP 1.2 vocabulary shared by export and import: namespace, kinds, and XSD validation.

The OASIS schema is bundled beside this module (`CAP-v1.2.xsd`), so validating needs
no network. Validation uses lxml, imported only when `validate_cap` is called: export
and import themselves need nothing beyond the standard library and defusedxml.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.domain import AlertKind

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
#: Namespaces whose <alert> we read: 1.1 has the same elements we use.
READABLE_NAMESPACES = frozenset({CAP_NS, "urn:oasis:names:tc:emergency:cap:1.1"})
SCHEMA_PATH = Path(__file__).with_name("CAP-v1.2.xsd")

#: Every <status> CAP 1.2 defines (§3.2.1); anything else is refused on import.
CAP_STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
#: Parameter names carrying our own texts, so an exported alert imports back unchanged.
PARAM_KIND = "ALN-KIND"
PARAM_BODY_PREFIX = "ALN-"
#: Body fields carried as parameters (description and headline carry the others).
CARRIED_BODY_FIELDS = ("sms", "subject")


@dataclass(frozen=True)
class CapProfile:
    """How an alert kind reads in CAP's fixed vocabularies."""

    category: str
    event: str
    urgency: str
    severity: str
    certainty: str


PROFILES: dict[AlertKind, CapProfile] = {
    AlertKind.SECURITY: CapProfile("Security", "Security alert", "Immediate", "Severe", "Likely"),
    AlertKind.DEMONSTRATION: CapProfile(
        "Security", "Demonstration alert", "Expected", "Moderate", "Likely"),
    AlertKind.HEALTH: CapProfile("Health", "Health alert", "Expected", "Moderate", "Likely"),
    AlertKind.WEATHER: CapProfile("Met", "Weather alert", "Expected", "Severe", "Likely"),
    AlertKind.ADMINISTRATIVE: CapProfile(
        "Other", "Administrative notice", "Future", "Minor", "Observed"),
}
#: For kinds stored by a newer version than this module knows.
FALLBACK_PROFILE = CapProfile("Other", "Notice", "Unknown", "Unknown", "Unknown")

#: CAP category of an incoming message -> our kind. Natural and man-made hazards other
#: than weather and health are what embassies send as "security alerts".
KIND_OF_CATEGORY: dict[str, AlertKind] = {
    "Met": AlertKind.WEATHER,
    "Health": AlertKind.HEALTH,
    "Security": AlertKind.SECURITY,
    "Safety": AlertKind.SECURITY,
    "Geo": AlertKind.SECURITY,
    "Rescue": AlertKind.SECURITY,
    "Fire": AlertKind.SECURITY,
    "Env": AlertKind.SECURITY,
    "CBRNE": AlertKind.SECURITY,
    "Transport": AlertKind.SECURITY,
    "Infra": AlertKind.SECURITY,
    "Other": AlertKind.ADMINISTRATIVE,
}


def profile_of(kind: str) -> CapProfile:
    try:
        return PROFILES[AlertKind(kind)]
    except ValueError:
        return FALLBACK_PROFILE


def q(name: str, ns: str = CAP_NS) -> str:
    """Clark notation of a CAP element name: '{urn:...:1.2}alert'."""
    return f"{{{ns}}}{name}"


@functools.cache
def _schema() -> Any:
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


def validate_cap(xml: bytes) -> list[str]:
    """Errors of the document against the OASIS CAP 1.2 XSD ('line N: ...'); empty if valid."""
    from lxml import etree

    # No DTDs, no entities, no network: the document may come from anywhere.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        doc = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        return [f"not well-formed XML: {exc}"]
    schema = _schema()
    if schema.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
