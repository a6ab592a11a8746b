"""The receiver URLs reviewapp hands to AMP (at kickoff and on every resume).

Layout, below ``PUBLIC_URL``:

- ``/hooks/amp/<crew>/human-input`` — AMP's ``humanInputWebhook``; AMP presents
  ``Authorization: Bearer <inbound secret>`` (the authentication we gave it).
- ``/hooks/amp/<crew>/task/<inbound secret>`` (and ``step``, ``crew``) — AMP sends no
  credentials with these, so the secret travels in the URL itself.

Every receiver also accepts the other form (bearer header or secret in the path), so a
system that starts executions on its own can be configured either way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import current_app

from ..models import Crew, WebhookKind
from .crypto import decrypt_secret

HOOKS_PREFIX = "/hooks/amp"

# URL segment -> kind of delivery
SEGMENT_KINDS: dict[str, WebhookKind] = {
    "human-input": WebhookKind.HUMAN_INPUT,
    "task": WebhookKind.TASK,
    "step": WebhookKind.STEP,
    "crew": WebhookKind.CREW,
}

# contract field name -> URL segment
URL_FIELDS: dict[str, str] = {
    "taskWebhookUrl": "task",
    "stepWebhookUrl": "step",
    "crewWebhookUrl": "crew",
}

REDACTED = "•••"


def inbound_secret(crew: Crew) -> str:
    return decrypt_secret(crew.inbound_secret_encrypted)


def receiver_url(crew: Crew, segment: str, secret: str | None = None) -> str:
    """Absolute URL of one receiver of ``crew`` (with the secret appended when given)."""
    base = str(current_app.config["PUBLIC_URL"]).rstrip("/")
    url = f"{base}{HOOKS_PREFIX}/{quote(crew.name, safe='')}/{segment}"
    return f"{url}/{quote(secret, safe='')}" if secret is not None else url


def webhook_urls(crew: Crew, secret: str) -> dict[str, str]:
    """``taskWebhookUrl`` / ``stepWebhookUrl`` / ``crewWebhookUrl`` for ``crew``, whose
    inbound ``secret`` each carries."""
    return {field: receiver_url(crew, segment, secret) for field, segment in URL_FIELDS.items()}


def human_input_webhook(crew: Crew, secret: str) -> dict[str, Any]:
    """The ``humanInputWebhook`` object: our URL and the bearer (``secret``) AMP must present."""
    return {"url": receiver_url(crew, "human-input"), "authentication": {"strategy": "bearer", "token": secret}}


def all_webhooks(crew: Crew) -> dict[str, Any]:
    """Everything reviewapp sends with ``/kickoff`` and ``/resume`` to keep notifications
    (the inbound secret decrypted once for all four)."""
    secret = inbound_secret(crew)
    return {**webhook_urls(crew, secret), "humanInputWebhook": human_input_webhook(crew, secret)}


def receivers_for_display(crew: Crew, *, reveal: bool) -> list[dict[str, str]]:
    """Receiver URLs for the crew page; the secret is masked unless ``reveal``."""
    secret = inbound_secret(crew) if reveal else None
    shown = secret if reveal else REDACTED
    rows = [
        {
            "name": "Human input (humanInputWebhook.url)",
            "url": receiver_url(crew, "human-input"),
            "auth": f"Authorization: Bearer {shown}",
        }
    ]
    for field, segment in URL_FIELDS.items():
        url = receiver_url(crew, segment, secret) if reveal else receiver_url(crew, segment) + "/" + REDACTED
        rows.append({"name": field, "url": url, "auth": "secret in the URL"})
    return rows
