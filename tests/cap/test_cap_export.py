"""Exporting alerts as CAP 1.2: valid against the OASIS schema, faithful to the alert."""

from __future__ import annotations

import pytest

from dispatcher.cap import export_cap, validate_cap
from dispatcher.errors import NotFound
from dispatcher.models import Post
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.cap.conftest import NS, make_alert, parse, texts


def _post(rt: Runtime, session) -> Post:  # type: ignore[no-untyped-def]
    return ensure_post(session, rt.settings, rt.vault)


def test_exercise_alert_exports_valid_cap_with_status_exercise(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        alert = make_alert(session, post, exercise=True)
        xml = export_cap(session, alert.id)
    assert validate_cap(xml) == []
    doc = parse(xml)
    assert texts(doc, "/cap:alert/cap:identifier") == [f"aln-mexico-city-{alert.id}"]
    assert texts(doc, "/cap:alert/cap:sender") == ["aln-mexico-city"]
    assert texts(doc, "/cap:alert/cap:status") == ["Exercise"]
    assert texts(doc, "/cap:alert/cap:msgType") == ["Alert"]
    assert texts(doc, "/cap:alert/cap:scope") == ["Public"]
    # sent_at 16:30:05.987 UTC in the post's zone (Mexico City keeps UTC-6 all year).
    assert texts(doc, "/cap:alert/cap:sent") == ["2026-03-01T10:30:05-06:00"]
    assert texts(doc, "//cap:info/cap:language") == ["es", "en"]
    assert texts(doc, "//cap:info/cap:category") == ["Security", "Security"]
    assert texts(doc, "//cap:info/cap:headline") == ["Road blocks on highway 190"] * 2
    assert texts(doc, "//cap:info[cap:language='es']/cap:description") == [
        "SIMULACRO\nBloqueos\n\nEvento: bloqueos en la carretera 190 & <más>"]
    assert texts(doc, "//cap:info[cap:language='en']/cap:area/cap:areaDesc") == [
        "Chiapas", "Oaxaca"]
    assert texts(doc, "//cap:info[1]/cap:contact") == ["+52 55 5080 2000"]
    assert not doc.xpath("/cap:alert/cap:references", namespaces=NS)


def test_update_references_the_alert_it_updates(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        first = make_alert(session, post)
        update = make_alert(session, post, msg_type="update", exercise=True,
                            references_alert_id=first.id, title="Road blocks lifted",
                            zones=("Chiapas",))
        first_xml, update_xml = export_cap(session, first.id), export_cap(session, update.id)
    assert validate_cap(update_xml) == []
    first_doc, doc = parse(first_xml), parse(update_xml)
    assert texts(doc, "/cap:alert/cap:msgType") == ["Update"]
    assert texts(doc, "/cap:alert/cap:status") == ["Exercise"]
    expected = ",".join(texts(first_doc, f"/cap:alert/cap:{n}")[0]
                        for n in ("sender", "identifier", "sent"))
    assert texts(doc, "/cap:alert/cap:references") == [expected]
    assert texts(doc, "//cap:area/cap:areaDesc") == ["Chiapas", "Chiapas"]


def test_cancel_of_a_real_alert_is_actual_and_valid(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        first = make_alert(session, post, exercise=False, kind="weather")
        cancel = make_alert(session, post, msg_type="cancel", exercise=False, kind="weather",
                            references_alert_id=first.id, sent_at=None)
        xml = export_cap(session, cancel.id)
    assert validate_cap(xml) == []
    doc = parse(xml)
    assert texts(doc, "/cap:alert/cap:msgType") == ["Cancel"]
    assert texts(doc, "/cap:alert/cap:status") == ["Actual"]
    assert texts(doc, "//cap:info/cap:category") == ["Met", "Met"]
    assert texts(doc, "/cap:alert/cap:references")[0].split(",")[1] == (
        f"aln-mexico-city-{first.id}")
    # Never sent: created_at stands in for the sending time.
    assert texts(doc, "/cap:alert/cap:sent") == ["2026-03-01T09:00:00-06:00"]
    assert not doc.xpath("/cap:alert/cap:note", namespaces=NS)


@pytest.mark.parametrize("kind, category", [
    ("security", "Security"), ("demonstration", "Security"), ("health", "Health"),
    ("weather", "Met"), ("administrative", "Other"), ("something-new", "Other"),
])
def test_every_kind_maps_to_a_valid_category(rt: Runtime, kind: str, category: str) -> None:
    with rt.db.session() as session:
        alert = make_alert(session, _post(rt, session), kind=kind)
        xml = export_cap(session, alert.id)
    assert validate_cap(xml) == []
    assert set(texts(parse(xml), "//cap:info/cap:category")) == {category}


def test_stored_cap_identifier_is_kept_and_made_legal(rt: Runtime) -> None:
    with rt.db.session() as session:
        alert = make_alert(session, _post(rt, session), cap_identifier="urn:oid:2.49 0,1")
        xml = export_cap(session, alert.id)
    assert validate_cap(xml) == []
    assert texts(parse(xml), "/cap:alert/cap:identifier") == ["urn:oid:2.49-0-1"]


def test_email_ack_link_tag_and_control_characters_stay_out(rt: Runtime) -> None:
    bodies = {"en": {"sms": "Alert\x07 text", "subject": "S",
                     "email_text": "Road blocks\nConfirm: -ack_url-\nReply YES 4821",
                     "email_html": ""}}
    with rt.db.session() as session:
        alert = make_alert(session, _post(rt, session), bodies=bodies)
        xml = export_cap(session, alert.id)
    assert validate_cap(xml) == []
    assert b"-ack_url-" not in xml and b"\x07" not in xml
    assert texts(parse(xml), "//cap:description") == ["Road blocks\nReply YES 4821"]


def test_alert_without_bodies_or_zones_still_validates(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = _post(rt, session)
        alert = make_alert(session, post, bodies={}, zones=())
        xml = export_cap(session, alert.id)
    assert validate_cap(xml) == []
    assert texts(parse(xml), "//cap:info/cap:language") == ["es"]  # the post's language


def test_unknown_alert_is_not_found(rt: Runtime) -> None:
    with rt.db.session() as session, pytest.raises(NotFound, match="alert 999 not found"):
        export_cap(session, 999)


def test_schema_check_catches_what_cap_forbids() -> None:
    # The validator itself must be able to fail: 'Z' is not a CAP time, 'Urgent' no status.
    xml = (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier>'
           b"<sender>s</sender><sent>2026-03-01T10:00:00Z</sent><status>Urgent</status>"
           b"<msgType>Alert</msgType><scope>Public</scope></alert>")
    errors = validate_cap(xml)
    assert len(errors) == 2 and "sent" in errors[0] and "status" in errors[1]
    assert validate_cap(b"<alert") != []
