"""Contact paths: normalising phone numbers and addresses, storing them encrypted."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType
from sqlalchemy.orm import Session

from dispatcher.crypto import Vault, mask_contact
from dispatcher.models import Contact, Volunteer

_EMAIL_RE = re.compile(
    r"^[^@\s,;<>]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
#: Dialling prefixes Mexicans still write, dropped by the 2019 numbering reform: 044 (local
#: mobile) and 045 (long-distance mobile) before the ten digits, 01 (long distance) before
#: any number, and the mobile "1" after +52. Longest first: "01" must not be read as "0".
_MX_OBSOLETE_PREFIXES = ("044", "045", "01", "1")
#: Line types that receive SMS. libphonenumber cannot tell some countries' (Mexico's,
#: the USA's) mobiles from landlines: FIXED_LINE_OR_MOBILE is given the benefit of the doubt.
SMS_LINE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
#: Line types a call can reach: a landline too (the one path some volunteers answer).
VOICE_LINE_TYPES = SMS_LINE_TYPES | {PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP,
                                     PhoneNumberType.PERSONAL_NUMBER}
#: How a refused line type reads in an error.
_LINE_TYPE_WORDS = {
    PhoneNumberType.FIXED_LINE: "a landline",
    PhoneNumberType.TOLL_FREE: "a toll-free number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal (forwarding) number",
    PhoneNumberType.VOIP: "a VoIP number",
    PhoneNumberType.PAGER: "a pager",
    PhoneNumberType.UAN: "a universal access number",
    PhoneNumberType.VOICEMAIL: "a voicemail access number",
}
_TYPE_NAMES = {value: name for name, value in vars(PhoneNumberType).items() if name.isupper()}


def normalise_phone(raw: str, region: str) -> str:
    """E.164 for a number written as people in `region` write it; ValueError says why not."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"'{raw}' is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number) and number.country_code == 52:
        number = _without_obsolete_mx_prefix(number) or number
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_country_code(number.country_code or 0)
        raise ValueError(f"'{raw}' is not a valid number for {where} (default region {region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _without_obsolete_mx_prefix(number: PhoneNumber) -> PhoneNumber | None:
    # The digits as written after +52, leading zeros included: parse() keeps those only
    # as a flag and a count, so "044 55 ..." has national_number 4455... and 044 is lost.
    zeros = (number.number_of_leading_zeros or 1) if number.italian_leading_zero else 0
    national = "0" * zeros + str(number.national_number)
    for prefix in _MX_OBSOLETE_PREFIXES:
        if national.startswith(prefix) and len(national) == 10 + len(prefix):
            fixed = phonenumbers.parse("+52" + national[len(prefix):], None)
            if phonenumbers.is_valid_number(fixed):
                return fixed
    return None


def normalise_sms_phone(raw: str, region: str) -> str:
    """`normalise_phone`, refusing numbers that cannot receive SMS (landlines, toll-free,
    premium-rate...): ValueError names the number (masked) and its line type."""
    return _of_line_type(raw, region, SMS_LINE_TYPES, "not a mobile number",
                         "it cannot receive SMS")


def normalise_voice_phone(raw: str, region: str) -> str:
    """`normalise_phone` for a call: a landline is fine, a toll-free, premium-rate or
    pager number is refused (ValueError names the number, masked, and its line type)."""
    return _of_line_type(raw, region, VOICE_LINE_TYPES, "not a phone a person answers",
                         "it cannot take an alert call")


def _of_line_type(raw: str, region: str, allowed: frozenset[int], unknown: str,
                  why: str) -> str:
    e164 = normalise_phone(raw, region)
    kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    if kind not in allowed:
        what = _LINE_TYPE_WORDS.get(kind, unknown)
        raise ValueError(f"{mask_contact(e164)} is {what} ({_TYPE_NAMES.get(kind, kind)}): "
                         f"{why}")
    return e164


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
