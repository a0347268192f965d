"""Each volunteer's SMS names their own zone; the email and the board list every zone."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from channels.encoding import is_gsm7, sms_segments
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.models import Delivery, Recipient, Zone
from dispatcher.roster.importer import import_roster
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import CONFIG_DIR, UNREACHABLE_PROVIDERS, make_settings

HEADER = "name,zone,rank,phone,email,languages,term_start,term_end,preferred_channel\n"
#: Mexico's 32 federal entities, accents and all.
MEXICAN_STATES = [
    "Aguascalientes", "Baja California", "Baja California Sur", "Campeche", "Chiapas",
    "Chihuahua", "Ciudad de México", "Coahuila", "Colima", "Durango", "Guanajuato", "Guerrero",
    "Hidalgo", "Jalisco", "Estado de México", "Michoacán", "Morelos", "Nayarit", "Nuevo León",
    "Oaxaca", "Puebla", "Querétaro", "Quintana Roo", "San Luis Potosí", "Sinaloa", "Sonora",
    "Tabasco", "Tamaulipas", "Tlaxcala", "Veracruz", "Yucatán", "Zacatecas",
]


def _open(database_url: str, config_dir: Path = CONFIG_DIR, post: str = "mexico-city") -> Runtime:
    return Runtime.open(make_settings(database_url, config_dir=config_dir, post=post,
                                      **UNREACHABLE_PROVIDERS))


def _roster(rt: Runtime, tmp_path: Path, zones: list[str]) -> None:
    rows = "".join(f"Volunteer {i:03d},{zone},primary,55 5200 {i:04d},,en,2026-01-01,"
                   f"2099-12-31,sms\n" for i, zone in enumerate(zones, start=1))
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + rows, encoding="utf-8")
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        import_roster(session, rt.vault, post, path, create_zones=True)


def _sms_by_zone(rt: Runtime, alert_id: int) -> dict[str, Delivery]:
    with rt.db.session() as session:
        rows = session.execute(
            select(Zone.name, Delivery).join(Recipient, Recipient.id == Delivery.recipient_id)
            .join(Zone, Zone.id == Recipient.zone_id)
            .where(Delivery.alert_id == alert_id, Delivery.channel == "sms")).all()
        return {name: delivery for name, delivery in rows}


def test_an_alert_to_200_zones_is_sent_each_sms_naming_its_own_zone(
        database_url: str, tmp_path: Path) -> None:
    zones = [f"District {i:03d}" for i in range(1, 201)]
    rt = _open(database_url)
    try:
        _roster(rt, tmp_path, zones)
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            sent = send_alert(session, rt.settings, post, AlertRequest(
                zones=zones, body="Flooding on the coast road.", channels=["sms"]))
        assert sent.alert_id is not None
        sms = _sms_by_zone(rt, sent.alert_id)
        assert sorted(sms) == zones
        for zone, delivery in sms.items():
            assert zone in delivery.body
            assert "District" not in delivery.body.replace(zone, "")  # no other zone
            assert delivery.segments == sms_segments(delivery.body).segments == 1
    finally:
        rt.close()


def test_zone_all_on_a_32_state_post_keeps_each_sms_in_its_own_zones_encoding(
        database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    listed = ", ".join(f'"{z}"' for z in MEXICAN_STATES)
    (config / "posts" / "mexico-states.toml").write_text(
        f'name = "Mexico, every state"\ndefault_region = "MX"\ndefault_language = "en"\n'
        f'timezone = "America/Mexico_City"\nhelp_line = "+52 55 5080 2000"\nzones = [{listed}]\n',
        encoding="utf-8")
    rt = _open(database_url, config, "mexico-states")
    try:
        _roster(rt, tmp_path, MEXICAN_STATES)
        body = "Hurricane warning for the Pacific and Gulf coasts. Stay indoors."
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            sent = send_alert(session, rt.settings, post, AlertRequest(
                zones=["all"], body=body, channels=["sms"]))
        assert sent.alert_id is not None
        sms = _sms_by_zone(rt, sent.alert_id)
        assert sorted(sms) == sorted(MEXICAN_STATES)
        for zone, delivery in sms.items():
            others = [z for z in MEXICAN_STATES if z != zone and z not in zone]
            assert not any(f" {z}." in delivery.body for z in others), delivery.body
            # Only a zone whose own name is outside GSM-7 gets UCS-2 (Michoacán: á).
            assert is_gsm7(delivery.body) is is_gsm7(zone), (zone, delivery.body)
            assert delivery.segments == sms_segments(delivery.body).segments
        assert is_gsm7(sms["Querétaro"].body) and not is_gsm7(sms["Michoacán"].body)
        # The preview reports the costliest SMS, naming its zone.
        preview = sent.preview["sms_encoding"]["en"]
        assert preview["encoding"] == "UCS-2" and preview["zone"] in MEXICAN_STATES
    finally:
        rt.close()
