"""Contact paths: normalising phone numbers and addresses, storing them encrypted."""

from __future__ import annotations

import re

import phonenumbers
from sqlalchemy.orm import Session

from dispatcher.crypto import Vault, mask_contact
from dispatcher.models import Contact, Volunteer

_EMAIL_RE = re.compile(
    r"^[^@\s,;<>]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
#: Dialling prefixes Mexicans still write for mobiles, dropped by the 2019 numbering reform.
_MX_OBSOLETE_MOBILE = ("1", "044", "045")


def normalise_phone(raw: str, region: str) -> str:
    """E.164 for a number written as people in `region` write it; ValueError says why not."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"'{raw}' is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number) and number.country_code == 52:
        national = str(number.national_number)
        for prefix in _MX_OBSOLETE_MOBILE:
            if national.startswith(prefix) and len(national) == 10 + len(prefix):
                fixed = phonenumbers.parse("+52" + national[len(prefix) :], None)
                if phonenumbers.is_valid_number(fixed):
                    number = fixed
                    break
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_country_code(number.country_code or 0)
        raise ValueError(f"'{raw}' is not a valid number for {where} (default region {region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    text = raw.strip()
    if not _EMAIL_RE.match(text):
        raise ValueError(f"'{raw}' is not an email address")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def set_contact(
    session: Session, vault: Vault, volunteer: Volunteer, channel: str, value: str
) -> Contact:
    """Create or replace a volunteer's path on a channel; stored only encrypted and hashed."""
    digest = vault.lookup_hash(value)
    contact = next((c for c in volunteer.contacts if c.channel == channel), None)
    if contact is None:
        contact = Contact(
            channel=channel,
            value_enc=vault.encrypt(value),
            value_hash=digest,
            masked=mask_contact(value),
        )
        volunteer.contacts.append(contact)
    elif contact.value_hash not in vault.lookup_hashes(value):
        contact.value_enc = vault.encrypt(value)
        contact.value_hash = digest
        contact.masked = mask_contact(value)
        contact.dead_reason = None
        contact.dead_at = None
    elif contact.value_hash != digest:
        # The same path, stored under a key being rotated away from: rewrite it under the
        # current key, and keep what we know about it.
        contact.value_enc, contact.value_hash = vault.encrypt(value), digest
    return contact
