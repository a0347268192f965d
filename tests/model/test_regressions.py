"""Discrepancies the model test found, each as a small explicit example.

Each was found as a bug (marked xfail(strict=True) until its fix landed); they now
guard the fixes. A new discrepancy gets a regression here, marked xfail(strict=True)
with the bug it shows, and a tag in `tests.model.model.KNOWN` (which the model test steers
around while it is listed).
"""

from __future__ import annotations

import pytest

from tests.model.harness import World, message_sid

DANIEL = "+525551000201"  # Daniel Ortega, primary of Mexico City
EMILY = "+525551000202"  # Emily Carter, primary of Mexico City


def sent(world: World, zones: list[str]) -> tuple[int, str]:
    """An alert sent and fanned out: its id and reply code."""
    alert_id = world.send(zones, "default", "Regression alert")
    world.fan_out()
    row = world.alert_row(alert_id)
    assert row is not None
    return alert_id, row.reply_code


def recipient_state(world: World, alert_id: int, phone_name: str) -> str:
    rows = world.query("SELECT r.state FROM recipients r JOIN volunteers v ON v.id = "
                       "r.volunteer_id WHERE r.alert_id = :a AND v.name = :n",
                       a=alert_id, n=phone_name)
    assert rows, f"{phone_name} is no recipient of alert {alert_id}"
    return str(rows[0][0])


def zone_state(world: World, alert_id: int, zone: str) -> str:
    return str(world.query("SELECT az.state FROM alert_zones az JOIN zones z ON "
                           "z.id = az.zone_id WHERE az.alert_id = :a AND z.name = :z",
                           a=alert_id, z=zone)[0][0])


def opted_out(world: World, name: str) -> bool:
    return bool(world.query("SELECT c.opted_out FROM contacts c JOIN volunteers v ON "
                            "v.id = c.volunteer_id WHERE v.name = :n AND c.channel = 'sms'",
                            n=name)[0][0])


def test_phones_are_the_rosters(world: World) -> None:
    """The numbers these examples text from are Daniel's and Emily's."""
    alert_id, _ = sent(world, ["Mexico City"])
    assert world.reply(DANIEL, "YES", message_sid()).acknowledged_alert == alert_id
    assert recipient_state(world, alert_id, "Daniel Ortega") == "acknowledged"


def test_reply_with_code_to_a_cancelled_alert_acknowledges_it(world: World) -> None:
    alert_id, code = sent(world, ["Mexico City"])
    world.cancel(alert_id)
    result = world.reply(DANIEL, f"YES {code}", message_sid())
    assert result.acknowledged_alert == alert_id
    assert recipient_state(world, alert_id, "Daniel Ortega") == "acknowledged"


def test_bare_yes_with_only_a_cancelled_alert_acknowledges_it(world: World) -> None:
    alert_id, _ = sent(world, ["Veracruz"])
    world.cancel(alert_id)
    result = world.reply("+522299301201", "Да", message_sid())  # Yolanda Pérez
    assert result.acknowledged_alert == alert_id


@pytest.mark.parametrize("word", ["REVOKE", "OPTOUT"])
def test_revoke_and_optout_opt_the_number_out(world: World, word: str) -> None:
    world.reply(DANIEL, word, message_sid())
    assert opted_out(world, "Daniel Ortega")


def test_yes_opts_back_in_and_still_acknowledges(world: World) -> None:
    alert_id, _ = sent(world, ["Mexico City"])
    world.reply(DANIEL, "STOP", message_sid())
    assert opted_out(world, "Daniel Ortega")
    result = world.reply(DANIEL, "YES", message_sid())
    assert result.acknowledged_alert == alert_id
    assert not opted_out(world, "Daniel Ortega")


def test_bare_yes_after_an_update_acknowledges_the_alert(world: World) -> None:
    alert_id, code = sent(world, ["Mexico City"])
    world.update(alert_id, "Roads reopened.")
    world.fan_out()
    result = world.reply(DANIEL, "YES", message_sid())
    assert result.acknowledged_alert == alert_id, result.answer
    assert zone_state(world, alert_id, "Mexico City") == "acknowledged"


def test_reply_with_code_after_an_update_covers_the_zone(world: World) -> None:
    alert_id, code = sent(world, ["Mexico City"])
    world.update(alert_id, "Roads reopened.")
    world.fan_out()
    result = world.reply(DANIEL, f"YES {code}", message_sid())
    assert result.acknowledged_alert == alert_id
    assert zone_state(world, alert_id, "Mexico City") == "acknowledged"


def test_cancel_stops_an_update_not_yet_sent(world: World) -> None:
    alert_id, _ = sent(world, ["Mexico City"])
    world.update(alert_id, "Roads reopened.")
    world.cancel(alert_id)
    world.new_requests()
    world.fan_out()
    handed = [r["delivery"] for r in world.new_requests()]
    purposes = [world.query("SELECT purpose FROM deliveries WHERE id = :d", d=d)[0][0]
                for d in handed]
    assert set(purposes) <= {"cancel"}, f"sent after the cancel: {purposes}"


KARLA = "+527444810401"  # Karla Mendoza, primary of Guerrero (its only active tier)


def test_bare_yes_goes_to_the_one_alert_whose_zone_still_waits(world: World) -> None:
    first, _ = sent(world, ["Guerrero"])
    world.deadlines_due(first)  # Guerrero's one tier was silent: unreached, first completed
    assert zone_state(world, first, "Guerrero") == "unreached"
    second, _ = sent(world, ["Guerrero"])
    result = world.reply(KARLA, "YES", message_sid())
    assert result.acknowledged_alert == second, result.answer
    assert zone_state(world, second, "Guerrero") == "acknowledged"


def test_a_bare_yes_after_answering_every_alert_is_a_repeat_for_the_newest(
        world: World) -> None:
    """Nothing waits and every alert was answered: the model had expected no alert; the
    engine's rule (replies.inbound.choose) records it on the newest, changing nothing."""
    first, code1 = sent(world, ["Mexico City"])
    assert world.reply(DANIEL, f"YES {code1}", message_sid()).acknowledged_alert == first
    second, code2 = sent(world, ["Mexico City"])
    assert world.reply(DANIEL, f"YES {code2}", message_sid()).acknowledged_alert == second
    states = [zone_state(world, a, "Mexico City") for a in (first, second)]
    assert world.reply(DANIEL, "YES", message_sid()).acknowledged_alert == second
    assert [zone_state(world, a, "Mexico City") for a in (first, second)] == states
