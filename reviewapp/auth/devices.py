"""Known-device cookies: a browser that logged in to an account before keeps a signed
cookie naming it, and its login attempts for that account are throttled under the
device's own key instead of the account's (see :mod:`.throttle`). Someone guessing
passwords elsewhere therefore cannot lock the owner out of their usual browser.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

_SALT = "reviewapp.known-device"


def _cookie_name() -> str:
    return "__Host-device" if current_app.config.get("SESSION_COOKIE_SECURE") else "reviewapp_device"


def _max_age() -> int:
    return int(current_app.config["KNOWN_DEVICE_DAYS"]) * 24 * 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)  # type: ignore[arg-type]


def _account_tag(username: str) -> str:
    return hashlib.sha256(username.strip().lower().encode("utf-8")).hexdigest()[:24]


def device_id_for(username: str) -> str | None:
    """The id of this browser if it holds a valid known-device cookie for ``username``."""
    raw = request.cookies.get(_cookie_name())
    if not raw:
        return None
    try:
        data = _serializer().loads(raw, max_age=_max_age())
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("a") != _account_tag(username):
        return None
    device = data.get("d")
    return device if isinstance(device, str) else None


def remember_device(response: Response, username: str) -> None:
    """Mark this browser as a known device of ``username`` (after a full login)."""
    value = _serializer().dumps({"a": _account_tag(username), "d": secrets.token_hex(16)})
    response.set_cookie(
        _cookie_name(),
        value,
        max_age=_max_age(),
        path="/",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        httponly=True,
        samesite="Strict",
    )
