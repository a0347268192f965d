"""Webhook signatures: good ones pass, forged ones fail, garbage never raises."""

from __future__ import annotations

import time
from xml.etree import ElementTree

from hypothesis import given
from hypothesis import strategies as st
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from channels.webhooks import (
    generate_sendgrid_keypair,
    sendgrid_sign,
    sendgrid_signature_valid,
    twilio_sign,
    twilio_signature_valid,
    twiml_message,
    twiml_message_sdk,
)

URL = "https://aln.example/webhooks/twilio/sms"
PARAMS = {"MessageSid": "SM1", "From": "+529611230101", "Body": "Sí 4821"}


def test_twilio_good_and_forged() -> None:
    sig = twilio_sign("token", URL, PARAMS)
    assert twilio_signature_valid("token", URL, PARAMS, sig)
    assert not twilio_signature_valid("other", URL, PARAMS, sig)
    assert not twilio_signature_valid("token", URL + "?x=1", PARAMS, sig)
    assert not twilio_signature_valid("token", URL, {**PARAMS, "Body": "YES"}, sig)


@given(st.text(), st.dictionaries(st.text(), st.text(), max_size=5), st.text())
def test_twilio_garbage_never_raises(url: str, params: dict[str, str], sig: str) -> None:
    assert twilio_signature_valid("token", url, params, sig) in (True, False)


def test_sendgrid_good_forged_and_stale_timestamp() -> None:
    private, public = generate_sendgrid_keypair()
    other, _ = generate_sendgrid_keypair()
    body, ts = b'[{"event":"delivered"}]', str(int(time.time()))
    sig = sendgrid_sign(private, body, ts)
    assert sendgrid_signature_valid(public, body, sig, ts)
    assert not sendgrid_signature_valid(public, body, sendgrid_sign(other, body, ts), ts)
    assert not sendgrid_signature_valid(public, body + b" ", sig, ts)
    assert not sendgrid_signature_valid(public, body, sig, str(int(ts) - 1))


@given(st.binary(max_size=200), st.text(max_size=100), st.text(max_size=20),
       st.text(max_size=100))
def test_sendgrid_garbage_never_raises(body: bytes, sig: str, ts: str, key: str) -> None:
    assert sendgrid_signature_valid(key, body, sig, ts) in (True, False)


def test_twiml() -> None:
    assert twiml_message(None).endswith("<Response />")
    assert "<Message>Gracias &amp; adiós</Message>" in twiml_message("Gracias & adiós")


# XML cannot carry most control characters (neither can the SDK's document); our answers
# are template text and names from the roster.
XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t"))


@given(text=st.none() | XML_TEXT)
def test_twiml_is_the_sdks_document_byte_for_byte(text: str | None) -> None:
    ours = twiml_message(text)
    assert ours == twiml_message_sdk(text)
    message = ElementTree.fromstring(ours.encode()).find("Message")
    said = "" if message is None else message.text or ""
    assert said == (text or "")


class _OracleForm(dict[str, list[str]]):
    """A multi-valued form as the Twilio SDK's validator reads one (Flask's `getall`)."""

    def getall(self, key: str) -> list[str]:
        return self[key]


def _oracle_form(pairs: list[tuple[str, str]]) -> _OracleForm:
    form = _OracleForm()
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


REPEATED = [("MessageSid", "SM1"), ("From", "+529611230101"), ("Body", "YES 4821"),
            ("MediaUrl", "https://media.example/b"), ("MediaUrl", "https://media.example/a")]


def test_twilio_repeated_form_keys_are_signed_with_all_values_sorted() -> None:
    # The official SDK's own validator, given every value, is the oracle.
    sig = RequestValidator("token").compute_signature(URL, _oracle_form(REPEATED))
    assert twilio_signature_valid("token", URL, REPEATED, sig)
    assert twilio_sign("token", URL, REPEATED) == sig
    # Any order of the pairs signs the same; dropping a value does not.
    assert twilio_signature_valid("token", URL, list(reversed(REPEATED)), sig)
    assert not twilio_signature_valid("token", URL, REPEATED[:-1], sig)


_keys = st.sampled_from(["Body", "From", "MediaUrl", "MessageSid", "To", "é"])


@given(st.lists(st.tuples(_keys, st.text(max_size=8)), max_size=8))
def test_twilio_signature_agrees_with_the_sdk_on_any_form(pairs: list[tuple[str, str]]) -> None:
    sig = RequestValidator("token").compute_signature(URL, _oracle_form(pairs))
    assert twilio_signature_valid("token", URL, pairs, sig)


def test_sendgrid_signature_with_data_after_the_padding_is_refused() -> None:
    private, public = generate_sendgrid_keypair()
    body, ts = b'[{"event":"delivered"}]', str(int(time.time()))
    # ECDSA signatures vary in length: take one whose base64 ends in padding.
    sig = next(s for s in (sendgrid_sign(private, body, ts) for _ in range(200))
               if s.endswith("="))
    tampered = sig + "QUJD"
    # The SDK's helper ignores what follows the padding; we do not.
    sdk = EventWebhook(public)
    assert sdk.verify_signature(body.decode(), sig, ts)
    assert sdk.verify_signature(body.decode(), tampered, ts)
    assert sendgrid_signature_valid(public, body, sig, ts)
    assert not sendgrid_signature_valid(public, body, tampered, ts)
    assert not sendgrid_signature_valid(public, body, sig + "\n", ts)


@given(st.binary(max_size=100))
def test_sendgrid_genuine_signatures_verify_like_the_sdk(body: bytes) -> None:
    private, public = _KEYPAIR
    text = body.decode("utf-8", "replace").encode()
    ts = "1700000000"
    sig = sendgrid_sign(private, text, ts)
    assert sendgrid_signature_valid(public, text, sig, ts)
    assert EventWebhook(public).verify_signature(text.decode(), sig, ts)


_KEYPAIR = generate_sendgrid_keypair()
