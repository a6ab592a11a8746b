"""Append-only audit log. Services add rows; nothing updates or deletes them."""

from __future__ import annotations

import logging
from typing import Any

from flask import has_request_context, request

from ..extensions import db
from ..models import AuditEvent, User

log = logging.getLogger("reviewapp.audit")


def client_ip() -> str | None:
    if not has_request_context():
        return None
    return request.remote_addr


def _clean(value: str) -> str:
    """Neutralise log injection: no newlines or control characters in log lines."""
    return "".join(ch if ch.isprintable() else "?" for ch in value)[:200]


def record_event(
    event: str,
    *,
    actor: User | None = None,
    actor_name: str | None = None,
    target: User | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    target_name: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit row to the session (the caller commits)."""
    if target is not None:
        target_type, target_id, target_name = "user", target.id, target.username
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    row = AuditEvent(
        event=event,
        actor_id=actor.id if actor is not None else None,
        actor_name=actor.username if actor is not None else actor_name,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        target_name=target_name,
        source_ip=client_ip(),
        details=details or None,
    )
    db.session.add(row)
    return row


# Detail keys whose values are never stored or logged by record_security_event.
_SECRET_KEY_PARTS = ("password", "secret", "token", "authorization", "cookie", "otp", "bearer")


def redact(value: Any) -> Any:
    """``value`` with every entry under a secret-looking key replaced by "•••"."""
    if isinstance(value, dict):
        return {
            k: "•••" if any(p in str(k).lower() for p in _SECRET_KEY_PARTS) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def record_security_event(
    event: str, *, actor: User | None = None, commit: bool = True, **kwargs: Any
) -> None:
    """Security-relevant events are committed at once (the request may fail after)
    and logged to the application log too, without secrets or control characters.
    Services pass ``commit=False`` and leave the commit to their caller."""
    if kwargs.get("details"):
        kwargs["details"] = redact(kwargs["details"])
    record_event(event, actor=actor, **kwargs)
    who = actor.username if actor is not None and actor.is_authenticated else kwargs.get("actor_name")
    log.warning(
        "security event=%s actor=%s ip=%s details=%s",
        _clean(event),
        _clean(str(who)),
        _clean(str(client_ip())),
        _clean(str(kwargs.get("details") or "")),
    )
    if commit:
        db.session.commit()
