"""Layered configuration: defaults, then instance ``config.py``, then ``REVIEWAPP_*`` env.

Nothing here runs at import time; :func:`load_config` is called by the app factory.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

# Placeholder that marks "no secret configured"; refused outside debug/testing.
INSECURE_SECRET = "dev-insecure-secret-key"  # noqa: S105 - a marker the startup check refuses

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": INSECURE_SECRET,
    "SQLALCHEMY_DATABASE_URI": None,  # filled from the instance folder when unset
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "PUBLIC_URL": "http://127.0.0.1:5000",
    # Request bodies (forms, webhooks) above this are refused with 413.
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 4 * 1024 * 1024,
    "WTF_CSRF_TIME_LIMIT": None,  # tokens live as long as the session: long reads are fine
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_DURATION": timedelta(days=7),
    "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
    "SQLITE_BUSY_TIMEOUT_MS": 5000,
    # Review loop
    "CLAIM_MINUTES": 10,
    "REVISION_REASONS": [
        "incorrect",
        "incomplete",
        "off-topic",
        "needs-sources",
        "formatting",
        "other",
    ],
    # AMP client timeouts (seconds): connect, read
    "AMP_CONNECT_TIMEOUT": 3.05,
    "AMP_READ_TIMEOUT": 15.0,
    "RESUME_MAX_ATTEMPTS": 8,
    "RESUME_BACKOFF_BASE": 2.0,
    "RESUME_BACKOFF_MAX": 300.0,
    "JOB_LEASE_SECONDS": 60,
    "STATUS_POLL_MIN_SECONDS": 15,
    "STATUS_POLL_MAX_SECONDS": 600,
}

# Environment variable -> (config key, parser)
ENV_VARS: dict[str, tuple[str, Any]] = {
    "REVIEWAPP_SECRET_KEY": ("SECRET_KEY", str),
    "REVIEWAPP_DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "REVIEWAPP_PUBLIC_URL": ("PUBLIC_URL", lambda v: v.rstrip("/")),
    "REVIEWAPP_TOKEN_KEY": ("TOKEN_KEY", str),
    "REVIEWAPP_CLAIM_MINUTES": ("CLAIM_MINUTES", int),
    "REVIEWAPP_MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int),
    "REVIEWAPP_SESSION_COOKIE_SECURE": ("SESSION_COOKIE_SECURE", lambda v: v.lower() in {"1", "true", "yes"}),
}


class ConfigError(RuntimeError):
    """The configuration is unsafe or invalid; the message says how to fix it."""


def from_environment(environ: os._Environ[str] | dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for var, (key, parse) in ENV_VARS.items():
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[key] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{var} has an invalid value: {exc}") from exc
    return values


def default_database_uri(instance_path: str) -> str:
    return "sqlite:///" + os.path.join(instance_path, "reviewapp.sqlite3")


def check_production_safety(config: dict[str, Any] | Any, *, debug: bool) -> None:
    """Refuse to run outside debug/testing without a real secret key."""
    if debug or config.get("TESTING"):
        return
    secret = config.get("SECRET_KEY")
    if not secret or secret == INSECURE_SECRET or len(str(secret)) < 16:
        raise ConfigError(
            "REVIEWAPP_SECRET_KEY is not set (or too short). Set it to a long random value, e.g.\n"
            "  export REVIEWAPP_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')\n"
            "or run with --debug for local development."
        )
