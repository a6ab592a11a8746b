"""TOTP second factor (RFC 6238 via pyotp): enrol, verify, disable, admin reset.

The secret is stored encrypted (``amp.crypto`` Fernet, key derived from configuration).
A code is accepted one step either side of now, and each time step only once per user
(the last used step is kept in a ``LoginThrottle`` row, moved forward atomically).
Wrong codes are throttled under the ``totp:<user id>`` key.
"""

from __future__ import annotations

import hmac

import pyotp
from flask import current_app

from ..amp.crypto import SecretUnreadable, decrypt_secret, encrypt_secret
from ..audit.services import record_event, record_security_event
from ..models import Role, User
from . import clock, throttle
from .services import AuthError, end_sessions

STEP_SECONDS = 30
CODE_DIGITS = 6


class BadCode(AuthError):
    def __init__(self) -> None:
        super().__init__("That code is not right, or it was used already. Enter the current 6-digit code.")


def new_secret() -> str:
    """A fresh 160-bit secret, base32 (what authenticator apps expect)."""
    return pyotp.random_base32()


def seal(secret: str) -> str:
    """A secret being enrolled, encrypted for the (signed, not encrypted) session cookie."""
    return encrypt_secret(None, secret)


def unseal(sealed: object) -> str | None:
    if not isinstance(sealed, str):
        return None
    try:
        return decrypt_secret(sealed)
    except SecretUnreadable:
        return None


def provisioning_uri(user: User, secret: str) -> str:
    issuer = current_app.config.get("TOTP_ISSUER", "reviewapp")
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=issuer)


def required_for(user: User) -> bool:
    return bool(current_app.config.get("REQUIRE_TOTP")) and user.has_role(Role.LEAD)


def is_enrolled(user: User) -> bool:
    return bool(user.totp_secret)


def second_factor_needed(user: User) -> bool:
    return is_enrolled(user) or required_for(user)


def _normalise(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace())


def matching_step(secret: str, code: str) -> int | None:
    """The time step ``code`` belongs to (now, or one step either side), else None."""
    code = _normalise(code)
    if len(code) != CODE_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS)
    current = clock.timestamp() // STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def check_code(user: User, secret: str, code: str) -> None:
    """Accept ``code`` for ``user`` or raise :class:`BadCode` / ``throttle.Throttled``."""
    keys = throttle.second_factor_keys(user.id)
    throttle.ensure_allowed(keys)
    step = matching_step(secret, code)
    if step is None or not throttle.advance_marker(f"totp-used:{user.id}", step):
        throttle.register_failure(keys, actor_name=user.username)
        record_security_event("totp_failed", actor_name=user.username, target=user, commit=False)
        raise BadCode()
    throttle.clear(keys)


def stored_secret(user: User) -> str:
    try:
        return decrypt_secret(user.totp_secret or "")
    except SecretUnreadable as exc:
        raise AuthError(
            "Your second factor cannot be read on this server (its key changed). "
            "Ask an admin to reset your two-factor login."
        ) from exc


def verify_login(user: User, code: str) -> None:
    check_code(user, stored_secret(user), code)


def enable(user: User, secret: str, code: str) -> None:
    """Store ``secret`` once the user proved their app has it; ends their other sessions."""
    check_code(user, secret, code)
    user.totp_secret = encrypt_secret(None, secret)
    end_sessions(user)
    record_event("totp_enabled", actor=user, target=user)


def disable(user: User, code: str) -> None:
    if required_for(user):
        raise AuthError("Your role requires two-factor login; it cannot be turned off.")
    verify_login(user, code)
    user.totp_secret = None
    end_sessions(user)
    record_event("totp_disabled", actor=user, target=user)


def reset(user: User, *, actor: User | None) -> bool:
    """Admin: forget ``user``'s second factor and end their sessions. False if none was set."""
    if not is_enrolled(user):
        return False
    user.totp_secret = None
    end_sessions(user)
    record_security_event("totp_reset", actor=actor, target=user, commit=False)
    return True
