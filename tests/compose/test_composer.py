"""Composing: every language's SMS and email, EXERCISE first, the code and the link."""

from __future__ import annotations

import pytest

from channels.encoding import sms_segments
from dispatcher.compose.composer import ACK_URL_TAG, ZONE_TAG, compose, sms_preview
from dispatcher.compose.templates import load_template, pick_language, wording
from dispatcher.errors import InvalidInput, NotFound
from tests.conftest import CONFIG_DIR

KINDS = ["security", "demonstration", "health", "weather", "administrative"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("exercise", [True, False])
def test_every_template_has_the_alert_structure(kind: str, exercise: bool) -> None:
    template = load_template(CONFIG_DIR, kind)
    assert template.kind == kind and set(template.languages) >= {"en", "es"}
    bodies = compose(CONFIG_DIR, template, title=None, body="Road blocks near the centre.",
                     zones=["Chiapas", "Oaxaca"], exercise=exercise, code="4821",
                     help_line="+52 55 5080 2000")
    for lang, b in bodies.items():
        for text in (b["sms"], b["subject"], b["email_text"]):
            assert text.startswith("EXERCISE") is exercise, (lang, text)
        assert b["sms"].rstrip(".").endswith(
            wording(CONFIG_DIR, lang, "sms_reply", code="4821").rstrip("."))
        assert "4821" in b["sms"] and ZONE_TAG in b["sms"] and "Chiapas" not in b["sms"]
        assert "Chiapas, Oaxaca" in b["email_text"]
        assert ACK_URL_TAG in b["email_text"] and ACK_URL_TAG in b["email_html"]
        for label in ("location", "event", "actions", "assistance"):
            assert wording(CONFIG_DIR, lang, label) in b["email_text"]
        assert "+52 55 5080 2000" in b["email_text"]


def test_officer_text_is_escaped_in_html() -> None:
    bodies = compose(CONFIG_DIR, load_template(CONFIG_DIR, "security"), title="<b>x</b>",
                     body="<script>alert(1)</script>", zones=["Chiapas"], exercise=False,
                     code="1234", help_line="")
    assert "<script>" not in bodies["en"]["email_html"]
    assert "&lt;script&gt;" in bodies["en"]["email_html"]


def test_body_per_language_is_used_when_given() -> None:
    bodies = compose(CONFIG_DIR, load_template(CONFIG_DIR, "weather"), title=None,
                     body={"en": "Hurricane approaching.", "es": "Se acerca un huracán."},
                     zones=["Veracruz"], exercise=False, code="1234", help_line="")
    assert "Se acerca un huracán." in bodies["es"]["sms"]
    assert "Hurricane approaching." in bodies["en"]["sms"]


def test_too_long_or_empty_bodies_are_refused() -> None:
    template = load_template(CONFIG_DIR, "security")
    with pytest.raises(InvalidInput, match="1600"):
        compose(CONFIG_DIR, template, title=None, body="x" * 1700, zones=["Chiapas"],
                exercise=False, code="1234", help_line="")
    with pytest.raises(InvalidInput, match="empty"):
        compose(CONFIG_DIR, template, title=None, body="  ", zones=["Chiapas"],
                exercise=False, code="1234", help_line="")


def test_unknown_template_names_the_known_ones() -> None:
    with pytest.raises(NotFound, match="demonstration"):
        load_template(CONFIG_DIR, "riot")


def test_language_choice() -> None:
    assert pick_language(["es", "en"], ["en", "es", "ru"], "en") == "es"
    assert pick_language(["kk", "ru"], ["en", "es", "ru"], "en") == "ru"
    assert pick_language(["fr"], ["en", "es"], "es") == "es"
    assert pick_language(["pt-BR"], ["en", "pt"], "en") == "pt"


def test_preview_reports_encoding_and_segments() -> None:
    bodies = compose(CONFIG_DIR, load_template(CONFIG_DIR, "demonstration"), title=None,
                     body="Manifestación en el Zócalo.", zones=["Mexico City"],
                     exercise=True, code="4821", help_line="")
    preview = sms_preview(bodies)
    assert preview["ru"]["encoding"] == "UCS-2"
    assert preview["es"]["segments"] == sms_segments(bodies["es"]["sms"]).segments
