"""A WhatsApp status callback failing with 63016 refuses the message, not the path."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from dispatcher.models import Contact, Delivery
from dispatcher.receipts import apply_twilio_status
from dispatcher.runtime import Runtime
from tests.escalation.test_steps import rt, send  # noqa: F401  (the fixture)


@pytest.mark.parametrize(("code", "dead"), [("63016", False), ("30006", True)])
def test_a_63016_callback_leaves_the_whatsapp_path_live(rt: Runtime,  # noqa: F811
                                                        code: str, dead: bool) -> None:
    alert_id = send(rt, policy="drill")  # every message channel at once
    with rt.db.session() as session:
        d = session.scalars(select(Delivery).where(Delivery.alert_id == alert_id,
                                                   Delivery.channel == "whatsapp")).one()
        assert apply_twilio_status(session, {"MessageSid": "SM" + "c" * 32,
                                             "MessageStatus": "failed", "ErrorCode": code},
                                   str(d.id))
        contact = session.get(Contact, d.contact_id)
        assert contact is not None
        assert (contact.dead_reason is not None) is dead
        assert d.state == "failed"
