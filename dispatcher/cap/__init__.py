"""CAP 1.2 (OASIS Common Alerting Protocol): alerts out as CAP XML, CAP messages in as drafts.

Contract: `export_cap(session, alert_id) -> bytes` gives XML that validates against the
bundled OASIS schema (`validate_cap`); `import_cap(session, post, xml) -> CapDraft`
reads a CAP message (refusing DTDs, entities, malformed XML and non-CAP roots with
`InvalidInput`) and changes nothing; `create_draft_alert(session, post, draft)` stores
it as an alert in state draft, for an officer to review and send.
"""

from dispatcher.cap.export import export_cap
from dispatcher.cap.importer import CapDraft, create_draft_alert, import_cap, parse_cap_xml
from dispatcher.cap.schema import validate_cap

__all__ = [
    "CapDraft",
    "create_draft_alert",
    "export_cap",
    "import_cap",
    "parse_cap_xml",
    "validate_cap",
]
