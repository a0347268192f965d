"""Contact details at rest: AES-GCM encryption and a keyed hash for look-ups.

Keys are derived from `ALN_SECRET_KEY` with HKDF, one per purpose, so the hash
key never doubles as the encryption key. A phone number never reaches the
database file in clear: only its ciphertext, its HMAC and its mask.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from channels.masking import mask_contact

__all__ = ["Vault", "mask_contact"]

#: Bytes of random nonce before each AES-GCM ciphertext.
NONCE_BYTES = 12


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"aln-v1", info=purpose).derive(secret)


@dataclass(frozen=True)
class Vault:
    """Encrypts, decrypts and hashes contact details with keys derived from one secret."""

    enc_key: bytes
    hash_key: bytes
    token_key: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> Vault:
        return cls(
            enc_key=_derive(secret, b"contact-encryption"),
            hash_key=_derive(secret, b"contact-lookup"),
            token_key=_derive(secret, b"tokens"),
        )

    def encrypt(self, plaintext: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.enc_key).encrypt(nonce, plaintext.encode(), None)

    def decrypt(self, blob: bytes) -> str:
        nonce, ciphertext = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        return AESGCM(self.enc_key).decrypt(nonce, ciphertext, None).decode()

    def lookup_hash(self, value: str) -> str:
        """Keyed hash of a normalised contact (E.164 phone, lower-cased email)."""
        return hmac.new(self.hash_key, value.strip().lower().encode(), hashlib.sha256).hexdigest()


def hash_token(token: str) -> str:
    """API tokens are stored as SHA-256: they are long random strings, no salt needed."""
    return hashlib.sha256(token.encode()).hexdigest()
