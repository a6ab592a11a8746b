"""Account management used by the admin pages and the CLI alike."""

from __future__ import annotations

import re

from sqlalchemy import select

from ..audit.services import record_event
from ..auth import passwords
from ..auth.services import AuthError, end_sessions, get_by_username, set_password
from ..extensions import db
from ..models import Role, User

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")


class AccountError(AuthError):
    pass


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def create_user(
    username: str, role: Role, password: str | None, *, actor: User | None = None
) -> tuple[User, str | None]:
    """Create an account. Without ``password`` a one-time password is generated,
    returned once, and must be changed at first login."""
    username = username.strip()
    if not USERNAME_RE.match(username):
        raise AccountError(
            "Username must be 2 to 64 characters: letters, digits, and . _ @ - only."
        )
    if get_by_username(username) is not None:
        raise AccountError(f"The username '{username}' is already taken.")
    one_time = None
    if password is None or password == "":
        one_time = passwords.generate_password()
        password = one_time
    try:
        passwords.check_policy(password)
    except passwords.WeakPassword as exc:
        raise AccountError(str(exc)) from exc
    user = User(
        username=username,
        role=role,
        password_hash=passwords.hash_password(password),
        must_change_password=one_time is not None,
        active=True,
        session_version=1,
    )
    db.session.add(user)
    db.session.flush()
    record_event("account_created", actor=actor, target=user, details={"role": role.value})
    return user, one_time


def _guard_self(user: User, actor: User | None, what: str) -> None:
    if actor is not None and actor.id == user.id:
        raise AccountError(f"You cannot {what} your own account.")


def change_role(user: User, role: Role, *, actor: User | None = None) -> None:
    if user.role == role:
        return
    if actor is not None and actor.id == user.id and not role.allows(user.role):
        raise AccountError("You cannot demote your own account.")
    old = user.role
    user.role = role
    end_sessions(user)
    record_event(
        "role_changed", actor=actor, target=user, details={"from": old.value, "to": role.value}
    )


def set_active(user: User, active: bool, *, actor: User | None = None) -> None:
    if user.active == active:
        return
    if not active:
        _guard_self(user, actor, "deactivate")
    user.active = active
    end_sessions(user)
    record_event("reactivated" if active else "deactivated", actor=actor, target=user)


def reset_password(
    user: User, temporary: str | None = None, *, actor: User | None = None
) -> str | None:
    """Give the user a new password that must be changed at next login.

    Returns the generated one-time password when ``temporary`` is not given."""
    one_time = None
    if not temporary:
        one_time = temporary = passwords.generate_password()
    try:
        set_password(user, temporary, temporary=True)
    except passwords.WeakPassword as exc:
        raise AccountError(str(exc)) from exc
    record_event(
        "password_reset",
        actor=actor,
        target=user,
        details={"generated": one_time is not None},
    )
    return one_time
