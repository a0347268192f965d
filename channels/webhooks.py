"""Webhook signing and TwiML, so the web app never imports a provider SDK.

Twilio: HMAC-SHA1 of the full public URL plus sorted form parameters, with the
auth token; a key sent several times is signed with all its values, sorted (the
SDK's `RequestValidator` does that for any mapping with `getall`, so a form's
repeated keys are handed to it as one). SendGrid: ECDSA P-256/SHA-256 over
timestamp + raw body, with the public key SendGrid shows for its signed event
webhook; the signature's base64 is decoded strictly, so nothing may follow it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

#: Form parameters: a mapping, or the (key, value) pairs of a form whose keys may repeat.
FormParams = Mapping[str, str] | Iterable[tuple[str, str]]


class _MultiForm(dict[str, list[str]]):
    """Every value of every key, offered to the SDK's validator through `getall`."""

    def getall(self, key: str) -> list[str]:
        return self[key]


def _multi(params: FormParams) -> _MultiForm:
    pairs = params.items() if isinstance(params, Mapping) else params
    form = _MultiForm()
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def twilio_signature_valid(auth_token: str, url: str, params: FormParams,
                           signature: str) -> bool:
    try:
        return bool(RequestValidator(auth_token).validate(url, _multi(params), signature))
    except Exception:  # garbage in must never become a 500
        return False


def twilio_sign(auth_token: str, url: str, params: FormParams) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, _multi(params)))


def sendgrid_signature_valid(public_key: str, raw_body: bytes, signature: str,
                             timestamp: str) -> bool:
    try:
        key = EventWebhook().convert_public_key_to_ecdsa(public_key)
        # Strict: the SDK's b64decode ignores whatever follows the padding, so a signature
        # with junk appended would still verify.
        der = binascii.a2b_base64(signature.encode("ascii"), strict_mode=True)
        key.verify(der, timestamp.encode("utf-8") + raw_body, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, TypeError, UnicodeError, binascii.Error):
        return False
    except Exception:  # a malformed key or signature must never become a 500
        return False


def generate_sendgrid_keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A key pair for the simulator and tests; the public half as SendGrid shows it."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def sendgrid_sign(private_key: ec.EllipticCurvePrivateKey, raw_body: bytes,
                  timestamp: str) -> str:
    signature = private_key.sign(timestamp.encode() + raw_body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
TWIML_EMPTY = XML_DECLARATION + "<Response />"


def twiml_message(text: str | None) -> str:
    """A TwiML answer: one message back, or `<Response />` for none.

    Written directly rather than with the SDK's MessagingResponse, which builds an
    ElementTree for each answer: a fifth of a webhook's CPU at a thousand replies a
    second. The same document, byte for byte (tests/channels/test_webhooks_signing.py
    compares the two on arbitrary text).
    """
    if not text:
        return TWIML_EMPTY
    return f"{XML_DECLARATION}<Response><Message>{escape(text)}</Message></Response>"


def twiml_message_sdk(text: str | None) -> str:
    """The same answer built by the Twilio SDK: the reference for `twiml_message`."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)
