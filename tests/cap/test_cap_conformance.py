"""CAP 1.2 conformance: UTC as -00:00, each language's own <info>, references kept,
areas matched by aliases, ISO 3166-2 codes and geocodes, a source's Cancel, and
messages named by sender and identifier."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.cap import create_draft_alert, export_cap, import_cap, validate_cap
from dispatcher.cap.export import cap_time
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.domain import AlertState
from dispatcher.errors import Refused
from dispatcher.models import Alert, Post, Zone
from dispatcher.roster.posts import ensure_post, zone_aliases
from dispatcher.runtime import Runtime
from dispatcher.text import fold
from tests.cap.conftest import FIXTURES
from tests.conftest import CONFIG_DIR, rt_with_roster

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
SMN = "smn.conagua@conagua.gob.mx"


def _post(rt: Runtime, session: Session) -> Post:
    return ensure_post(session, rt.settings, rt.vault)


def _aliases(rt: Runtime) -> dict[str, str]:
    return zone_aliases(rt.settings.config_dir, "mexico-city")


def smn_warning(identifier: str = "SMN-2026-0917-01", sender: str = SMN, *,
                msg_type: str = "Alert", references: str = "", areas: str = "") -> bytes:
    """A warning shaped like the Mexican SMN's (Servicio Meteorológico Nacional)."""
    refs = f"<references>{references}</references>" if references else ""
    info = "" if msg_type == "Cancel" else f"""
  <info>
    <language>es-MX</language>
    <category>Met</category>
    <event>Tormenta tropical</event>
    <urgency>Expected</urgency><severity>Severe</severity><certainty>Likely</certainty>
    <headline>Aviso de tormenta tropical</headline>
    <description>Lluvias intensas en la costa del Pacífico.</description>
    {areas or '<area><areaDesc>Chis,Oax</areaDesc></area>'}
  </info>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>{sender}</sender>
  <sent>2026-09-17T06:00:00-06:00</sent><status>Actual</status>
  <msgType>{msg_type}</msgType><scope>Public</scope>{refs}{info}
</alert>""".encode()


def test_utc_is_written_minus_zero_zero_in_sent() -> None:
    moment = datetime(2026, 1, 15, 16, 30, 5, 987654, tzinfo=UTC)
    assert cap_time(moment, "UTC") == "2026-01-15T16:30:05-00:00"
    assert cap_time(moment, "Europe/London") == "2026-01-15T16:30:05-00:00"  # GMT in winter
    assert cap_time(moment, "America/Mexico_City") == "2026-01-15T10:30:05-06:00"


def test_an_alert_of_a_utc_post_exports_sent_as_minus_zero_zero(database_url: str) -> None:
    rt = rt_with_roster(database_url)
    try:
        with rt.db.session() as session:
            post = _post(rt, session)
            post.timezone = "UTC"
            alert_id = send_alert(session, rt.settings, post, AlertRequest(
                zones=["Chiapas"], body="Road blocks.", channels=["sms"])).alert_id
        with rt.db.session() as session:
            xml = export_cap(session, alert_id or 0)
        assert etree.fromstring(xml).findtext(f"{CAP}sent").endswith("-00:00")
        assert validate_cap(xml) == []
    finally:
        rt.close()


def test_each_languages_info_carries_its_own_headline_and_event(database_url: str) -> None:
    rt = rt_with_roster(database_url)
    try:
        with rt.db.session() as session:
            alert_id = send_alert(session, rt.settings, _post(rt, session), AlertRequest(
                zones=["Chiapas"], body="Road blocks.", template="security",
                channels=["sms"])).alert_id
        with rt.db.session() as session:
            xml = export_cap(session, alert_id or 0)
    finally:
        rt.close()
    infos = {i.findtext(f"{CAP}language"): i for i in etree.fromstring(xml).iter(f"{CAP}info")}
    assert infos["es"].findtext(f"{CAP}headline") == "Alerta de seguridad"
    assert infos["es"].findtext(f"{CAP}event") == "Alerta de seguridad"
    assert infos["en"].findtext(f"{CAP}headline") == "Security Alert"
    assert infos["ru"].findtext(f"{CAP}event") == "Оповещение о безопасности"
    assert validate_cap(xml) == []


def test_an_imported_bilingual_message_exports_each_languages_headline(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        session.add(Zone(post_id=post.id, name="Los Angeles County",
                         key=fold("Los Angeles County")))
        session.flush()
        alert = create_draft_alert(session, post, import_cap(
            session, post, (FIXTURES / "oasis_a4_amber.xml").read_bytes()))
        xml = export_cap(session, alert.id)
    infos = {i.findtext(f"{CAP}language"): i for i in etree.fromstring(xml).iter(f"{CAP}info")}
    assert infos["es"].findtext(f"{CAP}headline") == "Alerta Amber en el condado de Los Ángeles"
    assert infos["en"].findtext(f"{CAP}headline") == "Amber Alert in Los Angeles County"


def test_an_update_exported_from_an_imported_update_keeps_its_references(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        session.add(Zone(post_id=post.id, name="1 mi. WSW of Brawley, CA",
                         key=fold("1 mi. WSW of Brawley, CA")))
        session.flush()
        alert = create_draft_alert(session, post, import_cap(
            session, post, (FIXTURES / "oasis_a3_earthquake.xml").read_bytes()))
        doc = etree.fromstring(export_cap(session, alert.id))
    assert doc.findtext(f"{CAP}msgType") == "Update"
    assert doc.findtext(f"{CAP}references") == (
        "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00")


def test_an_smn_warning_naming_chis_oax_matches_zones_by_alias(rt: Runtime) -> None:
    with rt.db.session() as session:
        draft = import_cap(session, _post(rt, session), smn_warning(), aliases=_aliases(rt))
    assert draft["zones"] == ["Chiapas", "Oaxaca"]
    assert draft["unmatched_areas"] == []


def test_areas_match_by_iso_3166_2_code_and_by_geocode(rt: Runtime) -> None:
    areas = ("<area><areaDesc>MX-GRO</areaDesc></area>"
             "<area><areaDesc>Costa de Veracruz</areaDesc>"
             "<geocode><valueName>ISO 3166-2</valueName><value>MX-VER</value></geocode></area>"
             "<area><areaDesc>Golfo de Tehuantepec</areaDesc></area>")
    with rt.db.session() as session:
        draft = import_cap(session, _post(rt, session), smn_warning(areas=areas),
                           aliases=_aliases(rt))
    assert draft["zones"] == ["Guerrero", "Veracruz"]
    assert draft["unmatched_areas"] == ["Golfo de Tehuantepec"]


def test_every_alias_in_the_post_config_names_one_of_its_zones() -> None:
    aliases = zone_aliases(CONFIG_DIR, "mexico-city")
    assert aliases["MX-CHP"] == "Chiapas" and aliases["Chis"] == "Chiapas"


def test_a_source_cancel_without_info_cancels_the_draft_it_references(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        draft = create_draft_alert(session, post, import_cap(
            session, post, smn_warning(), aliases=_aliases(rt)))
        cancel = smn_warning("SMN-2026-0917-02", msg_type="Cancel",
                             references=f"{SMN},SMN-2026-0917-01,2026-09-17T06:00:00-06:00")
        cancelled = create_draft_alert(session, post, import_cap(session, post, cancel))
        assert cancelled.id == draft.id and cancelled.state == "cancelled"
        assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_a_cancel_of_an_alert_already_sent_is_left_to_an_officer(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        draft = create_draft_alert(session, post, import_cap(
            session, post, smn_warning(), aliases=_aliases(rt)))
        draft.state = AlertState.ACTIVE  # as if an officer had sent it
        session.flush()
        cancel = smn_warning("SMN-2026-0917-02", msg_type="Cancel",
                             references=f"{SMN},SMN-2026-0917-01,2026-09-17T06:00:00-06:00")
        with pytest.raises(Refused, match=f"aln alert cancel {draft.id}"):
            create_draft_alert(session, post, import_cap(session, post, cancel))


def test_imports_are_deduplicated_on_sender_and_identifier(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        first = create_draft_alert(session, post, import_cap(
            session, post, smn_warning("1"), aliases=_aliases(rt)))
        other_service = create_draft_alert(session, post, import_cap(
            session, post, smn_warning("1", sender="alerts@proteccioncivil.gob.mx"),
            aliases=_aliases(rt)))
        assert other_service.id != first.id
        with pytest.raises(Refused, match=f"already imported as alert {first.id}"):
            create_draft_alert(session, post, import_cap(
                session, post, smn_warning("1"), aliases=_aliases(rt)))

