"""argon2id password hashing (argon2-cffi). No truncation; length policy here."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 hashes the whole string; this only bounds the work
LENGTH_MESSAGE = f"Password must be at least {MIN_LENGTH} characters long (at most {MAX_LENGTH})."


class WeakPassword(ValueError):
    pass


def _hasher() -> PasswordHasher:
    cfg = current_app.config
    # Tests set cheaper parameters; production keeps argon2-cffi's RFC 9106 defaults.
    if cfg.get("ARGON2_FAST"):
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Password must be at most {MAX_LENGTH} characters long.")
    if password.strip() == "":
        raise WeakPassword("Password cannot be only spaces.")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


_DUMMY: dict[bool, str] = {}


def burn_time(password: str) -> None:
    """Spend the time of a verification for an unknown user (no username oracle)."""
    fast = bool(current_app.config.get("ARGON2_FAST"))
    if fast not in _DUMMY:
        _DUMMY[fast] = hash_password("dummy-password-for-timing")
    verify_password(_DUMMY[fast], password)


def generate_password() -> str:
    """A one-time password an admin hands over (about 96 bits)."""
    return secrets.token_urlsafe(12)
