"""`aln demo` runs a whole exercise on the simulator: a call wakes a volunteer who slept
through the text, a volunteer acknowledges on WhatsApp, and escalation, HELP and STOP
happen as the cast says."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from dispatcher.demo import run_demo


def test_the_demo_wakes_a_sleeper_by_phone_and_takes_a_whatsapp_yes(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(tmp_path / "demo", Console(file=out, width=200))
    status = result["status"]
    zones = {z["zone"]: z for z in status["zones"]}
    people = {r["name"]: r for r in status["recipients"]}
    # Yolanda ignored the SMS; the policy's call after 8 s woke her and she pressed 1.
    yolanda = people["Yolanda Pérez"]
    assert yolanda["acknowledged_via"] == "voice", yolanda
    assert {d["channel"] for d in yolanda["deliveries"]} == {"sms", "voice"}
    assert zones["Veracruz"]["state"] == "acknowledged"
    # Victor reads WhatsApp only, and said "Sí" there.
    victor = people["Victor Castillo"]
    assert victor["acknowledged_via"] == "whatsapp", victor
    assert {d["channel"] for d in victor["deliveries"]} == {"whatsapp"}
    # Ana never answers: Chiapas escalates to Brian, who does.
    assert zones["Chiapas"]["state"] == "acknowledged"
    assert people["Brian Keller"]["state"] == "acknowledged"
    assert zones["Guerrero"]["state"] == "unreached"  # Karla asked for HELP
    assert status["outcomes"]["voice"] == {"delivered": 1}
    assert Path(result["report"]).is_file()
