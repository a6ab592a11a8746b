"""Accounts: authentication, session loading, password changes."""

from __future__ import annotations

from sqlalchemy import func, select

from ..audit.services import record_event, record_security_event
from ..extensions import db
from ..models import User, utcnow
from . import passwords, throttle


class AuthError(Exception):
    """A domain error whose message can be shown to the user."""


class InvalidCredentials(AuthError):
    def __init__(self) -> None:
        super().__init__("Invalid username or password.")


def get_by_username(username: str) -> User | None:
    return db.session.scalar(
        select(User).where(func.lower(User.username) == username.strip().lower())
    )


MAX_ID = 2**31  # the id and session_version columns are 32-bit integers


def load_user(user_id: str) -> User | None:
    """Flask-Login loader. The id carries the session version: a bumped version
    (deactivation, role or password change) makes every older cookie worthless."""
    try:
        raw_id, raw_version = user_id.split(":", 1)
        uid, version = int(raw_id), int(raw_version)
    except ValueError:
        return None
    if not (0 < uid < MAX_ID and 0 <= version < MAX_ID):
        return None  # out of the integer column's range: no such user
    user = db.session.get(User, uid)
    if user is None or not user.active or user.session_version != version:
        return None
    return user


def end_sessions(user: User) -> None:
    user.session_version = (user.session_version or 0) + 1


def _failed(reason: str, username: str, user: User | None = None) -> InvalidCredentials:
    record_security_event(
        "login_failed", actor_name=username[:64], target=user, details={"reason": reason}, commit=False
    )
    return InvalidCredentials()


def authenticate(username: str, password: str) -> User:
    """Check a username and password (hashing once, known user or not)."""
    user = get_by_username(username)
    if user is None:
        passwords.burn_time(password)
        raise _failed("unknown user", username)
    if not passwords.verify_password(user.password_hash, password):
        raise _failed("wrong password", username, user)
    if not user.active:
        raise _failed("deactivated", username, user)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def password_login(username: str, password: str, keys: list[throttle.Key]) -> User:
    """The password step of a login, throttled under ``keys`` *before* any hashing."""
    throttle.ensure_allowed(keys)
    try:
        user = authenticate(username, password)
    except InvalidCredentials:
        throttle.register_failure(keys, actor_name=username[:64])
        raise
    throttle.forget_account_failures(keys)
    return user


def complete_login(user: User) -> None:
    """Every factor passed: record the login."""
    user.last_login_at = utcnow()
    record_event("login", actor=user, target=user)


def set_password(user: User, new_password: str, *, temporary: bool = False) -> None:
    passwords.check_policy(new_password)
    user.password_hash = passwords.hash_password(new_password)
    user.must_change_password = temporary
    end_sessions(user)


def change_own_password(user: User, current: str, new: str) -> None:
    if not passwords.verify_password(user.password_hash, current):
        raise AuthError("Your current password is not correct.")
    if current == new:
        raise AuthError("The new password must differ from the current one.")
    try:
        set_password(user, new)
    except passwords.WeakPassword as exc:
        raise AuthError(str(exc)) from exc
    record_event("password_changed", actor=user, target=user)
