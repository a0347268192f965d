"""The roster's optional `channels` column, and the volunteers reachable on one channel only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dispatcher.cli.main import app
from dispatcher.models import Contact, Volunteer
from dispatcher.roster.gaps import find_gaps
from dispatcher.roster.importer import RosterError
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.roster.test_importer import counts, do_import, import_sample

HEADER = ("name,zone,rank,phone,email,languages,term_start,term_end,preferred_channel,"
          "channels\n")
ROW = ("Ana Morales,Chiapas,primary,961 123 0101,ana@example.org,es,2026-03-01,2027-02-28,,"
       "{channels}\n")
#: An Almaty landline (Mexico's numbers do not tell landlines from mobiles): refused for
#: SMS, a valid path for a call.
LANDLINE = "+7 727 255 0201"


def write(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def channels_of(rt: Runtime, name: str = "Ana Morales") -> list[str]:
    with rt.db.session() as session:
        return sorted(session.scalars(select(Contact.channel).join(Volunteer)
                                      .where(Volunteer.name == name)))


def test_channels_column_gives_one_path_per_channel(rt: Runtime, tmp_path: Path) -> None:
    do_import(rt, write(tmp_path, ROW.format(channels="sms;whatsapp;voice;email")))
    assert channels_of(rt) == ["email", "sms", "voice", "whatsapp"]
    with rt.db.session() as session:
        phones = {c.channel: rt.vault.decrypt(c.value_enc) for c in session.scalars(
            select(Contact).where(Contact.channel != "email"))}
    assert set(phones.values()) == {"+529611230101"}


def test_without_the_column_sms_and_email_as_before(rt: Runtime, tmp_path: Path) -> None:
    do_import(rt, write(tmp_path, ROW.format(channels="")))
    assert channels_of(rt) == ["email", "sms"]


def test_an_unknown_channel_names_line_and_value_and_imports_nothing(
        rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(RosterError, match=r"line 2: channels: 'fax' is not a channel \(use "
                                          r"sms, whatsapp, voice, email"):
        do_import(rt, write(tmp_path, ROW.format(channels="sms;fax")))
    assert counts(rt)[0] == 0


def test_a_channel_without_its_column_is_refused(rt: Runtime, tmp_path: Path) -> None:
    row = ROW.replace("ana@example.org", "").format(channels="whatsapp;email")
    with pytest.raises(RosterError, match="line 2: channels: 'email' needs a email"):
        do_import(rt, write(tmp_path, row))


def test_a_landline_is_refused_for_text_but_taken_for_a_call(rt: Runtime,
                                                            tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="landline"):
        do_import(rt, write(tmp_path, ROW.replace("961 123 0101", LANDLINE)
                            .format(channels="sms;email")))
    do_import(rt, write(tmp_path, ROW.replace("961 123 0101", LANDLINE)
                        .format(channels="voice;email")))
    assert channels_of(rt) == ["email", "voice"]


def test_gaps_name_volunteers_reachable_on_one_channel_only(rt: Runtime) -> None:
    import_sample(rt)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        gaps = find_gaps(session, post)
        # Opting out of WhatsApp leaves Ana two channels; of SMS too, one.
        ana = session.scalars(select(Volunteer).where(Volunteer.name == "Ana Morales")).one()
        for c in ana.contacts:
            c.opted_out = c.channel in ("sms", "whatsapp")
        session.flush()
        after = find_gaps(session, post)
    assert {(g["name"], g["channel"]) for g in gaps.single_channel} == {
        ("Hector Lima", "sms"), ("Samuel Ortiz", "sms")}
    assert ("Ana Morales", "email") in {(g["name"], g["channel"]) for g in after.single_channel}


def test_roster_gaps_cli_lists_single_channel_volunteers(rt: Runtime,
                                                          cli_env: dict[str, str]) -> None:
    import_sample(rt)
    result = CliRunner().invoke(app, ["roster", "gaps", "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert {"name": "Samuel Ortiz", "channel": "sms"} in json.loads(result.output)[
        "single_channel"]
