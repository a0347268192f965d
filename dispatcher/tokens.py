"""Signed, expiring tokens for the acknowledgement link in emails (one alert, one volunteer)."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from dispatcher.crypto import Vault

_SALT = "aln-ack-link"


class BadToken(Exception):
    """Forged, altered or expired; the text says which, for the page shown."""


def _serializer(vault: Vault) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(vault.token_key, salt=_SALT)


def make_ack_token(vault: Vault, recipient_id: int, alert_id: int) -> str:
    return _serializer(vault).dumps({"r": recipient_id, "a": alert_id})


def read_ack_token(vault: Vault, token: str, max_age_seconds: int) -> tuple[int, int]:
    """(recipient_id, alert_id) from a valid token; BadToken otherwise.

    A link signed with a previous key (`ALN_PREVIOUS_SECRET_KEYS`) keeps working until
    it expires: links already in volunteers' mailboxes outlive a key rotation."""
    for key in vault.keyring:
        try:
            data = _serializer(key).loads(token, max_age=max_age_seconds)
            break
        except SignatureExpired:
            raise BadToken("this confirmation link has expired") from None
        except BadSignature:
            continue
    else:
        raise BadToken("this confirmation link is not valid")
    if not isinstance(data, dict) or not isinstance(data.get("r"), int):
        raise BadToken("this confirmation link is not valid")
    return data["r"], int(data.get("a", 0))


def ack_url(public_url: str, vault: Vault, recipient_id: int, alert_id: int) -> str:
    return f"{public_url.rstrip('/')}/ack/{make_ack_token(vault, recipient_id, alert_id)}"
