"""Which phone numbers can be SMS paths: the line type, and Mexico's obsolete prefixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.masking import mask_contact
from dispatcher.roster.contacts import normalise_phone
from dispatcher.roster.contacts import normalise_phone as normalise_sms_phone
from dispatcher.roster.importer import RosterError, import_roster
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import CONFIG_DIR, make_settings
from tests.roster.test_importer import GOOD, counts, do_import, write

ROWS = (GOOD
        + "Luis Ortega,Oaxaca,primary,951 510 1001,,es,2026-03-01,2027-02-28,\n"
        + "Rosa Pérez,Querétaro,primary,442 210 3001,,es,2026-03-01,2027-02-28,\n")
BAD_ROW = "Yerlan Sadykov,Chiapas,alternate1,{phone},,ru,2026-03-01,2027-02-28,sms\n"


@pytest.mark.parametrize(("phone", "e164", "what"), [
    ("+7 727 255 0201", "+77272550201", "a landline (FIXED_LINE)"),
    ("+52 800 123 4567", "+528001234567", "a toll-free number (TOLL_FREE)"),
    ("+1 900 555 0100", "+19005550100", "a premium-rate number (PREMIUM_RATE)"),
    ("+33 8 10 12 34 56", "+33810123456", "a shared-cost number (SHARED_COST)"),
    ("+44 70 1234 5678", "+447012345678", "a personal (forwarding) number (PERSONAL_NUMBER)"),
    ("01 800 123 4567", "+528001234567", "a toll-free number (TOLL_FREE)"),
])
def test_numbers_that_cannot_receive_sms_are_refused_naming_line_and_type(
        rt: Runtime, tmp_path: Path, phone: str, e164: str, what: str) -> None:
    masked = mask_contact(e164)  # never the number in full
    before = counts(rt)
    with pytest.raises(RosterError) as caught:
        do_import(rt, write(tmp_path, ROWS + BAD_ROW.format(phone=phone)))
    assert f"line 5: phone: {masked} is {what}: it cannot receive SMS" in str(caught.value)
    assert phone.replace(" ", "")[-7:] not in str(caught.value)  # masked, never in full
    assert counts(rt) == before  # all or nothing


@pytest.mark.parametrize(("phone", "e164"), [
    ("+44 7400 123456", "+447400123456"),  # MOBILE
    ("+7 701 555 0201", "+77015550201"),  # MOBILE
    ("55 1234 5678", "+525512345678"),  # FIXED_LINE_OR_MOBILE: Mexico cannot tell them apart
])
def test_mobiles_and_maybe_mobiles_are_sms_paths(phone: str, e164: str) -> None:
    assert normalise_sms_phone(phone, "MX") == e164


@pytest.mark.parametrize(("written", "e164"), [
    ("044 55 1234 5678", "+525512345678"),  # local mobile prefix
    ("045 33 1234 5678", "+523312345678"),  # long-distance mobile prefix
    ("044 961 123 0101", "+529611230101"),
    ("01 55 1234 5678", "+525512345678"),  # the old long-distance prefix
    ("+52 1 55 1234 5678", "+525512345678"),  # the old mobile 1 after +52
    ("55 1234 5678", "+525512345678"),
])
def test_obsolete_mexican_prefixes_are_dropped(written: str, e164: str) -> None:
    assert normalise_phone(written, "MX") == e164


def test_the_kazakhstan_sample_post_and_roster_import(database_url: str) -> None:
    rt = Runtime.open(make_settings(database_url, post="kazakhstan"))
    try:
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)  # its duty officer too
            result = import_roster(session, rt.vault, post,
                                   CONFIG_DIR / "rosters" / "kazakhstan.csv")
        assert result.rows == 6
    finally:
        rt.close()
