"""How a call's status callbacks map to delivery states, and which language a call speaks."""

from __future__ import annotations

import pytest

from dispatcher.dispatch.wording import voice_language, voice_text
from dispatcher.domain import (
    DEAD_DELIVERY_STATES,
    FINAL_DELIVERY_STATES,
    DeliveryState,
    delivery_can_move,
)
from dispatcher.receipts import call_state

D = DeliveryState


@pytest.mark.parametrize(("params", "state"), [
    ({"CallStatus": "initiated"}, D.SENT),
    ({"CallStatus": "ringing"}, D.SENT),
    ({"CallStatus": "in-progress", "AnsweredBy": "human"}, D.ANSWERED),
    ({"CallStatus": "in-progress", "AnsweredBy": "machine_start"}, D.MACHINE),
    ({"CallStatus": "completed", "AnsweredBy": "human"}, D.DELIVERED),
    ({"CallStatus": "completed"}, D.DELIVERED),
    ({"CallStatus": "completed", "AnsweredBy": "machine_end_beep"}, D.MACHINE),
    ({"CallStatus": "completed", "AnsweredBy": "fax"}, D.MACHINE),
    ({"CallStatus": "no-answer"}, D.NO_ANSWER),
    ({"CallStatus": "busy"}, D.BUSY),
    ({"CallStatus": "failed"}, D.FAILED),
    ({"CallStatus": "canceled"}, D.CANCELLED),
    ({"CallStatus": "something-new"}, None),
])
def test_call_status_maps_to_a_delivery_state(params: dict[str, str],
                                              state: DeliveryState | None) -> None:
    assert call_state(params) == state


def test_unanswered_calls_are_final_but_not_dead_paths() -> None:
    for state in (D.NO_ANSWER, D.BUSY, D.MACHINE):
        assert state in FINAL_DELIVERY_STATES and state not in DEAD_DELIVERY_STATES
        assert not delivery_can_move(state, D.SENT)  # a late "ringing" changes nothing
        assert not delivery_can_move(state, D.DELIVERED)
    assert delivery_can_move(D.SENT, D.ANSWERED)
    assert delivery_can_move(D.ANSWERED, D.MACHINE)
    assert delivery_can_move(D.ANSWERED, D.DELIVERED)
    assert not delivery_can_move(D.DELIVERED, D.MACHINE)
    assert not delivery_can_move(D.ANSWERED, D.SENT)


def test_a_call_falls_back_to_a_language_twilio_speaks() -> None:
    assert voice_language("es", ["en", "es"]) == "es"
    assert voice_language("kk", ["kk", "en", "ru"]) == "en"
    assert voice_language("kk", ["kk", "ru"]) == "ru"
    bodies = {"en": {"sms": "A -aln_zone-. Reply YES 1234.", "voice": "A -aln_zone-."}}
    assert voice_text(bodies, "en", "Oaxaca") == "A Oaxaca."
    # Alerts stored before calls existed have no "voice" text: the SMS is read.
    assert voice_text({"en": {"sms": "B -aln_zone-."}}, "en", "Chiapas") == "B Chiapas."


def test_the_number_to_call_is_the_sms_path_else_whatsapp_else_voice() -> None:
    from dispatcher.models import Contact
    from dispatcher.status import _phone

    def path(channel: str) -> Contact:
        return Contact(channel=channel, value_enc=b"", value_hash=channel, masked=channel)

    assert _phone([path("email"), path("voice"), path("whatsapp")]).masked == "whatsapp"
    assert _phone([path("voice"), path("sms")]).masked == "sms"
    assert _phone([path("voice")]).masked == "voice"
    assert _phone([path("email")]) is None
