"""Login sessions: how they start, renew, end on time, and wait for a second factor.

The session (Flask's signed cookie) carries the login time and the time of the last
request. :func:`enforce_lifetime` runs before the access check on every request and
ends a session idle longer than ``SESSION_IDLE_TIMEOUT`` or older than
``SESSION_ABSOLUTE_TIMEOUT``. "Keep me logged in" makes the cookie outlive the browser
window; it does not lengthen either timeout. Flask-Login's separate remember cookie is
not used: it would bring a login back without the timeouts or the second factor.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import current_app, g, request, session
from flask_login import current_user, login_user, logout_user
from sqlalchemy import Integer, String, bindparam, delete, select

from ..audit.services import record_event
from ..extensions import db
from ..models import RevokedSession, User
from . import clock
from .services import MAX_ID

log = logging.getLogger("reviewapp.security")

LOGIN_AT = "_login_at"
SEEN_AT = "_seen_at"
SID = "_sid"  # this login's id: logout revokes it server-side
PENDING = "_pending_login"


def start(user: User, *, remember: bool) -> None:
    """A brand-new session for ``user`` (no fixation: nothing of the old one survives,
    the CSRF token included)."""
    session.clear()
    login_user(user)
    session.permanent = remember
    now = clock.timestamp()
    session[LOGIN_AT] = now
    session[SEEN_AT] = now
    session[SID] = secrets.token_urlsafe(24)


def revoke_current() -> None:
    """Logout: remember this session's id as dead, so a copy of the cookie is refused.

    The row is only needed until the session's absolute timeout; older rows are pruned."""
    sid = session.get(SID)
    if not isinstance(sid, str):
        return
    now = clock.now()
    login_at = clock.from_timestamp(int(session.get(LOGIN_AT, clock.timestamp())))
    expires = login_at + current_app.config["SESSION_ABSOLUTE_TIMEOUT"]
    db.session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
    if db.session.get(RevokedSession, sid) is None:
        db.session.add(RevokedSession(sid=sid, expires_at=max(expires, now)))


# Built once, values bound: the statements of every authenticated request.
_IS_REVOKED = select(RevokedSession.sid).where(RevokedSession.sid == bindparam("sid", type_=String())).exists()
_USER_AND_REVOKED = select(User, _IS_REVOKED).where(User.id == bindparam("user_id", type_=Integer()))
_REVOKED = select(_IS_REVOKED)


def _revoked() -> bool:
    """Is this session's id on the revoked list? Asked in the statement that loads the
    session's user: kept alive on ``g``, the user stays in the (weak) identity map and
    Flask-Login's loader (``db.session.get``) finds it there instead of querying again."""
    sid = session.get(SID)
    if not isinstance(sid, str):
        return True
    user_pk = str(session.get("_user_id", "")).split(":", 1)[0]  # User.get_id(): "<id>:<version>"
    if user_pk.isascii() and user_pk.isdigit() and len(user_pk) <= 18 and int(user_pk) < MAX_ID:
        row = db.session.execute(_USER_AND_REVOKED, {"sid": sid, "user_id": int(user_pk)}).first()
        if row is not None:
            g.session_user = row[0]
            return bool(row[1])
    return bool(db.session.scalar(_REVOKED, {"sid": sid}))


def renew(user: User) -> None:
    """Re-issue this session after a privilege change, keeping its login time.

    The caller has bumped the user's session version (``end_sessions``), which makes
    every other cookie of theirs worthless; this one gets the new version."""
    login_at = session.get(LOGIN_AT, clock.timestamp())
    remember = bool(session.permanent)
    start(user, remember=remember)
    session[LOGIN_AT] = login_at


# -- between password and second factor ---------------------------------------------


def begin_second_factor(user: User, *, remember: bool, enrol: bool) -> None:
    """The password was right; remember that (briefly) while the second factor is asked."""
    session.clear()
    session[PENDING] = {
        "id": user.get_id(),
        "at": clock.timestamp(),
        "remember": remember,
        "enrol": enrol,
    }


def pending_login() -> tuple[User, dict[str, Any]] | None:
    """The user half-way through logging in, if the wait has not run out."""
    from .services import load_user

    data = session.get(PENDING)
    if not isinstance(data, dict):
        return None
    limit = current_app.config["SECOND_FACTOR_TIMEOUT"].total_seconds()
    user = load_user(str(data.get("id", "")))
    if user is None or clock.timestamp() - int(data.get("at", 0)) > limit:
        session.pop(PENDING, None)
        return None
    return user, data


def set_pending_value(name: str, value: Any) -> None:
    data = dict(session[PENDING])
    data[name] = value
    session[PENDING] = data


# -- lifetime ---------------------------------------------------------------------


def expiry_reason(now: int, login_at: int, seen_at: int) -> str | None:
    cfg = current_app.config
    if timedelta(seconds=now - login_at) > cfg["SESSION_ABSOLUTE_TIMEOUT"]:
        return "absolute"
    if timedelta(seconds=now - seen_at) > cfg["SESSION_IDLE_TIMEOUT"]:
        return "idle"
    return None


def seen_refresh_seconds() -> int:
    """How old the cookie's last-seen time may get before a request renews it: a
    sixtieth of the idle timeout (a minute of the default hour), at least a second.

    Renewing it changes the cookie, which is then signed and sent again; on every request
    that cost about 0.1 ms and a Set-Cookie header. In exchange an idle session may end
    up to that much (1.7%) before its full idle timeout."""
    idle = current_app.config["SESSION_IDLE_TIMEOUT"].total_seconds()
    return max(1, int(idle // 60))


def enforce_lifetime() -> Any:
    """before_request: end sessions past their idle or absolute timeout."""
    if request.endpoint in (None, "static") or "_user_id" not in session:
        return None
    now = clock.timestamp()
    login_at = int(session.setdefault(LOGIN_AT, now))
    seen_at = session.get(SEEN_AT)
    reason = expiry_reason(now, login_at, now if seen_at is None else int(seen_at))
    if reason is None and _revoked():
        reason = "revoked"
    if reason is None:
        if seen_at is None or now - int(seen_at) >= seen_refresh_seconds():
            session[SEEN_AT] = now
        return None
    _end(reason)
    from ..errors import session_expired

    return session_expired(reason)


def _end(reason: str) -> None:
    if current_user.is_authenticated:
        record_event("session_expired", actor=current_user, target=current_user, details={"reason": reason})
        db.session.commit()
        log.info("session ended: user_id=%s reason=%s", current_user.id, reason)
    session.clear()
    logout_user()


def init_app(app: Any) -> None:
    app.before_request(enforce_lifetime)
