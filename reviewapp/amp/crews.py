"""Crew (deployment) management used by the crew pages and the CLI alike."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select

from ..audit.services import record_event
from ..extensions import db
from ..models import Crew, Decision, ReviewRound, User
from .crypto import encrypt_secret, generate_inbound_secret, secret_hint

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TOKEN_MAX = 4096
RESERVED_NAMES = {"new", "executions"}  # paths of the crew pages themselves


class CrewError(Exception):
    """A domain error whose message can be shown to the user."""


def list_crews() -> list[Crew]:
    return list(db.session.scalars(select(Crew).order_by(Crew.name)))


def get_crew(name: str) -> Crew | None:
    return db.session.scalar(select(Crew).where(Crew.name == name))


def clean_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name) or name in RESERVED_NAMES:
        raise CrewError(
            "Crew name must be 1 to 64 characters: lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit, and not 'new' or 'executions' (it becomes part "
            "of the webhook URLs)."
        )
    return name


def clean_base_url(url: str) -> str:
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise CrewError("The base URL is not a valid URL.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CrewError("The base URL must start with https:// (or http://) and name a host.")
    if parts.username or parts.password:
        raise CrewError("Put the token in the token field, not in the URL.")
    if parts.query or parts.fragment:
        raise CrewError("The base URL must not have a query string or fragment.")
    if len(url) > 500:
        raise CrewError("The base URL is too long (500 characters at most).")
    return url.rstrip("/")


def clean_token(token: str) -> str:
    token = (token or "").strip()
    if not token:
        raise CrewError("Enter the crew's Bearer token.")
    if len(token) > TOKEN_MAX or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise CrewError("The token must be one line of printable characters without spaces.")
    return token


def _set_token(crew: Crew, token: str) -> None:
    crew.token_encrypted = encrypt_secret(None, token)
    crew.token_hint = secret_hint(token)
    crew.token_broken = False
    crew.token_broken_reason = None


def create_crew(name: str, base_url: str, token: str, *, actor: User | None = None) -> Crew:
    name = clean_name(name)
    base_url = clean_base_url(base_url)
    token = clean_token(token)
    if get_crew(name) is not None:
        raise CrewError(f"A crew named '{name}' already exists.")
    crew = Crew(
        name=name,
        base_url=base_url,
        inbound_secret_encrypted=encrypt_secret(None, generate_inbound_secret()),
    )
    _set_token(crew, token)
    db.session.add(crew)
    db.session.flush()
    _audit("crew_created", crew, actor, {"base_url": base_url})
    return crew


def update_crew(
    crew: Crew, *, base_url: str | None = None, token: str | None = None, actor: User | None = None
) -> list[str]:
    """Change the base URL and/or replace the token (which clears ``token_broken``).

    Returns what changed, for the flash message."""
    changed: list[str] = []
    if base_url is not None and base_url.strip():
        url = clean_base_url(base_url)
        if url != crew.base_url:
            crew.base_url = url
            changed.append("base URL")
    if token is not None and token.strip():
        _set_token(crew, clean_token(token))
        changed.append("token")
    if changed:
        _audit("crew_updated", crew, actor, {"changed": changed})
    return changed


def rotate_inbound_secret(crew: Crew, *, actor: User | None = None) -> None:
    crew.inbound_secret_encrypted = encrypt_secret(None, generate_inbound_secret())
    _audit("crew_secret_rotated", crew, actor)


def decision_count(crew: Crew) -> int:
    return db.session.scalar(
        select(func.count(Decision.id)).join(ReviewRound).where(ReviewRound.crew_id == crew.id)
    ) or 0


def remove_crew(crew: Crew, *, force: bool = False, actor: User | None = None) -> None:
    """Delete a crew with its executions and rounds. A crew whose rounds were decided
    keeps its review history unless ``force``."""
    decided = decision_count(crew)
    if decided and not force:
        raise CrewError(
            f"The crew '{crew.name}' has {decided} recorded decision(s); removing it would "
            "delete that review history. Confirm that you want it deleted as well."
        )
    _audit("crew_removed", crew, actor, {"decisions_deleted": decided})
    # The database cascades to executions, rounds, decisions, jobs and deliveries.
    db.session.execute(delete(Crew).where(Crew.id == crew.id))
    db.session.expunge(crew)


def mark_token_broken(crew: Crew, reason: str) -> None:
    """AMP refused the crew's token (401/403): an admin must enter a new one."""
    if crew.token_broken and crew.token_broken_reason == reason:
        return
    crew.token_broken = True
    crew.token_broken_reason = reason[:1000]
    _audit("crew_token_broken", crew, None, {"reason": reason[:300]})


def _audit(event: str, crew: Crew, actor: User | None, details: dict | None = None) -> None:
    record_event(
        event,
        actor=actor,
        actor_name=None if actor is not None else "system",
        target_type="crew",
        target_id=crew.id,
        target_name=crew.name,
        details=details,
    )
