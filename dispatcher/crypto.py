"""Contact details at rest: AES-GCM encryption and a keyed hash for look-ups.

Keys are derived from `ALN_SECRET_KEY` with HKDF, one per purpose, so the hash
key never doubles as the encryption key. A phone number never reaches the
database file in clear: only its ciphertext, its HMAC and its mask.

During a key rotation the vault also holds the keys of `ALN_PREVIOUS_SECRET_KEYS`,
read-only: everything is written under the current key, a ciphertext is read with
whichever key opens it (AES-GCM's tag tells a wrong key at once, so no row needs to
record its key), and a look-up hashes the value under every key, so a sender still
matches before `aln keys rotate` has reached their row.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from channels.masking import mask_contact
from dispatcher.errors import AlnError

__all__ = ["Unreadable", "Vault", "mask_contact"]

#: Bytes of random nonce before each AES-GCM ciphertext.
NONCE_BYTES = 12


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"aln-v1", info=purpose).derive(secret)


class Unreadable(AlnError):
    """A ciphertext that no configured key opens: the key it was written with is lost
    (or not among `ALN_PREVIOUS_SECRET_KEYS`)."""

    status = 500


#: What a caller says after naming the row it could not read.
UNREADABLE_HINT = ("cannot be decrypted with ALN_SECRET_KEY or any of "
                   "ALN_PREVIOUS_SECRET_KEYS (was the key it was written with lost?)")


@dataclass(frozen=True)
class Vault:
    """Encrypts, decrypts and hashes contact details with keys derived from one secret,
    and reads (never writes) with the keys of the previous secrets during a rotation."""

    enc_key: bytes
    hash_key: bytes
    token_key: bytes
    #: Read-only vaults of `ALN_PREVIOUS_SECRET_KEYS`, newest first.
    previous: tuple[Vault, ...] = ()

    @classmethod
    def from_secret(cls, secret: bytes, previous: Sequence[bytes] = ()) -> Vault:
        return cls(
            enc_key=_derive(secret, b"contact-encryption"),
            hash_key=_derive(secret, b"contact-lookup"),
            token_key=_derive(secret, b"tokens"),
            previous=tuple(cls.from_secret(old) for old in previous if old != secret),
        )

    @property
    def keyring(self) -> tuple[Vault, ...]:
        """The current key's vault (without the previous ones), then each previous one."""
        return (self.current, *self.previous)

    @property
    def current(self) -> Vault:
        """This vault without its previous keys: what reads only what is under the new key."""
        if not self.previous:
            return self
        return Vault(self.enc_key, self.hash_key, self.token_key)

    @cached_property
    def _aead(self) -> AESGCM:
        # Made once: a fan-out decrypts a contact per message, and setting up the key
        # schedule cost as much as the decryption itself.
        return AESGCM(self.enc_key)

    def encrypt(self, plaintext: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), None)

    def decrypt_current(self, blob: bytes) -> str | None:
        """The plaintext if the current key wrote `blob`, else None."""
        nonce, ciphertext = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, None).decode()
        except InvalidTag:
            return None

    def decrypt(self, blob: bytes) -> str:
        """The plaintext under the current key or, during a rotation, a previous one;
        `Unreadable` when none opens it (callers name the row in their own message)."""
        for vault in self.keyring:
            plaintext = vault.decrypt_current(blob)
            if plaintext is not None:
                return plaintext
        raise Unreadable(f"a ciphertext {UNREADABLE_HINT}")

    def lookup_hash(self, value: str) -> str:
        """Keyed hash of a normalised contact (E.164 phone, lower-cased email)."""
        return hmac.new(self.hash_key, value.strip().lower().encode(), hashlib.sha256).hexdigest()

    def lookup_hashes(self, value: str) -> list[str]:
        """The value's keyed hash under every key, current first: what a look-up matches
        while `aln keys rotate` has not yet rewritten every stored hash."""
        return [vault.lookup_hash(value) for vault in self.keyring]


def hash_token(token: str) -> str:
    """API tokens are stored as SHA-256: they are long random strings, no salt needed."""
    return hashlib.sha256(token.encode()).hexdigest()
