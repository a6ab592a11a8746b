"""Encryption of crew secrets at rest (Bearer tokens, inbound webhook secrets).

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived by HKDF from configuration:
``TOKEN_KEY`` when set, else ``SECRET_KEY``. The key is never stored; a database dump
alone does not reveal a token. Changing the key makes stored secrets unreadable
(:class:`SecretUnreadable`); an admin then re-enters the tokens.
"""

from __future__ import annotations

import base64
import functools
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app

# Fixed, public parameters: they separate this use of the key material from others
# (sessions sign with the same SECRET_KEY), they are not secrets.
_HKDF_SALT = b"reviewapp/crew-secrets/v1"
_HKDF_INFO = b"fernet key for crew bearer tokens and inbound webhook secrets"


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted (the key changed or the value is damaged)."""


def _key_material(app: Flask) -> bytes:
    material = app.config.get("TOKEN_KEY") or app.config.get("SECRET_KEY")
    if not material:
        raise SecretUnreadable("Neither TOKEN_KEY nor SECRET_KEY is configured.")
    return str(material).encode("utf-8")


def _fernet(app: Flask) -> Fernet:
    return _fernet_for(_key_material(app))


@functools.lru_cache(maxsize=8)
def _fernet_for(material: bytes) -> Fernet:
    """The Fernet of one key material, derived once per process (every webhook and every
    resume decrypts a secret; the key material itself is read from the config each time,
    so a changed key takes effect at once)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(material)))


def warm_up(app: Flask) -> None:
    """Derive the app's key and run one encryption and decryption, so that a worker's
    first page that shows a crew's secret masked (the review page's /resume preview) does
    not pay for loading and setting up the cipher (~3 ms)."""
    fernet = _fernet(app)
    fernet.decrypt(fernet.encrypt(b"warm-up"))


def encrypt_secret(app_or_none: Flask | None, plaintext: str) -> str:
    """Encrypt ``plaintext`` with the app's key (``current_app`` when None)."""
    app = app_or_none or current_app._get_current_object()  # type: ignore[attr-defined]
    return _fernet(app).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(ciphertext: str) -> str:
    """Decrypt a value made by :func:`encrypt_secret` (needs an app context)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return _decrypted(_key_material(app), ciphertext)


@functools.lru_cache(maxsize=256)
def _decrypted(material: bytes, ciphertext: str) -> str:
    """Decrypted once per process, key material and value: every webhook authenticates
    with its crew's inbound secret and every resume sends its crew's token, and a Fernet
    decryption (HMAC check, AES) was 5% of a webhook's CPU. Fernet without a TTL gives
    the same answer every time. A changed key misses the cache (the material is part of
    the key) and fails as before; a failure is never cached. The process holds the
    decrypted secrets it used, as it holds the key that decrypts them all."""
    try:
        return _fernet_for(material).decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError, UnicodeError) as exc:
        raise SecretUnreadable(
            "A stored crew secret cannot be decrypted: the encryption key "
            "(REVIEWAPP_TOKEN_KEY / REVIEWAPP_SECRET_KEY) changed, or the value is damaged."
        ) from exc


def secret_hint(secret: str) -> str:
    """What may be shown of a secret: its last four characters."""
    return "…" + secret[-4:] if len(secret) >= 12 else "…"


def generate_inbound_secret() -> str:
    """A fresh secret AMP must present when it calls our receivers."""
    return secrets.token_urlsafe(32)
