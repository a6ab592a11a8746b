"""Layered configuration: defaults, then instance ``config.py``, then ``REVIEWAPP_*`` env.

Nothing here runs at import time; :func:`load_config` is called by the app factory.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

# Placeholder that marks "no secret configured"; refused outside debug/testing.
INSECURE_SECRET = "dev-insecure-secret-key"  # noqa: S105 - a marker the startup check refuses

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": INSECURE_SECRET,
    "SQLALCHEMY_DATABASE_URI": None,  # filled from the instance folder when unset
    "SQLALCHEMY_ENGINE_OPTIONS": {},  # see engine_options
    "PUBLIC_URL": "http://127.0.0.1:5000",
    # Request bodies (forms, webhooks) above this are refused with 413.
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 4 * 1024 * 1024,
    "WTF_CSRF_TIME_LIMIT": None,  # tokens live as long as the session: long reads are fine
    # Cookies. Secure is None = "automatic": on when PUBLIC_URL is https (see derive_settings).
    "SESSION_COOKIE_SECURE": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    # Sessions end after this long without a request, and this long after login at most.
    # PERMANENT_SESSION_LIFETIME and REMEMBER_COOKIE_DURATION are derived from the latter.
    "SESSION_IDLE_TIMEOUT": timedelta(minutes=60),
    "SESSION_ABSOLUTE_TIMEOUT": timedelta(hours=12),
    # Between the password and the second factor a login may wait this long.
    "SECOND_FACTOR_TIMEOUT": timedelta(minutes=5),
    # Leads and admins must use a TOTP second factor (they enrol at their next login).
    "REQUIRE_TOTP": False,
    "TOTP_ISSUER": "reviewapp",
    # Login throttling (reviewapp/auth/throttle.py; README "Security").
    "LOGIN_THROTTLE_ENABLED": True,
    "LOGIN_THROTTLE_ACCOUNT_FAILURES": 5,  # free failures per account before locks start
    "LOGIN_THROTTLE_ACCOUNT_MAX_LOCK": 15 * 60,  # seconds
    "LOGIN_THROTTLE_IP_FAILURES": 20,  # free failures per client address (or IPv6 /64)
    "LOGIN_THROTTLE_IP_MAX_LOCK": 60 * 60,
    "LOGIN_THROTTLE_FIRST_LOCK": 30,  # seconds; doubles with each further failure
    "LOGIN_THROTTLE_WINDOW": 60 * 60,  # counters start over this long after the first failure
    "KNOWN_DEVICE_DAYS": 30,  # lifetime of the cookie that exempts a user's own browser
    # Host header allow-list (None = any host) and reverse-proxy hops to trust.
    "TRUSTED_HOSTS": None,
    "PROXY_FIX": 0,
    # Serving plain http on a non-loopback PUBLIC_URL in production needs this opt-in.
    "ALLOW_INSECURE_HTTP": False,
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
    "HISTORY_SEARCH_TIMEOUT_SECONDS": 5,  # PostgreSQL: a history text search stops after this
    "FILTER_LISTS_SECONDS": 10,  # the filter forms' crew/reviewer lists are read this often (audit/filter_lists.py)
    "STATUS_POLL_MIN_SECONDS": 15,
    "STATUS_POLL_MAX_SECONDS": 600,
}

def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected 1/0, true/false or yes/no, got {value!r}")


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"must be a positive whole number, got {value!r}")
    return number


def _minutes(value: str) -> timedelta:
    return timedelta(minutes=_positive_int(value))


def _hours(value: str) -> timedelta:
    return timedelta(hours=_positive_int(value))


def _host_list(value: str) -> list[str]:
    hosts = [h.strip() for h in value.split(",") if h.strip()]
    if not hosts:
        raise ValueError("give at least one host name")
    return hosts


def _hops(value: str) -> int:
    hops = int(value)
    if not 0 <= hops <= 5:
        raise ValueError(f"must be the number of proxies in front of the app (0-5), got {value!r}")
    return hops


# Environment variable -> (config key, parser)
ENV_VARS: dict[str, tuple[str, Any]] = {
    "REVIEWAPP_SECRET_KEY": ("SECRET_KEY", str),
    "REVIEWAPP_DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "REVIEWAPP_PUBLIC_URL": ("PUBLIC_URL", lambda v: v.rstrip("/")),
    "REVIEWAPP_TOKEN_KEY": ("TOKEN_KEY", str),
    "REVIEWAPP_CLAIM_MINUTES": ("CLAIM_MINUTES", int),
    "REVIEWAPP_MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int),
    "REVIEWAPP_SESSION_COOKIE_SECURE": ("SESSION_COOKIE_SECURE", _flag),
    "REVIEWAPP_SESSION_IDLE_MINUTES": ("SESSION_IDLE_TIMEOUT", _minutes),
    "REVIEWAPP_SESSION_MAX_HOURS": ("SESSION_ABSOLUTE_TIMEOUT", _hours),
    "REVIEWAPP_REQUIRE_TOTP": ("REQUIRE_TOTP", _flag),
    "REVIEWAPP_LOGIN_THROTTLE": ("LOGIN_THROTTLE_ENABLED", _flag),
    "REVIEWAPP_TRUSTED_HOSTS": ("TRUSTED_HOSTS", _host_list),
    "REVIEWAPP_PROXY_FIX": ("PROXY_FIX", _hops),
    "REVIEWAPP_ALLOW_INSECURE_HTTP": ("ALLOW_INSECURE_HTTP", _flag),
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


def _as_timedelta(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def is_https(config: dict[str, Any] | Any) -> bool:
    return str(config.get("PUBLIC_URL") or "").lower().startswith("https://")


def derive_settings(config: dict[str, Any] | Any) -> None:
    """Fill in the settings that follow from others. Called by the factory before
    :func:`check_production_safety`, for every configuration source."""
    for key in ("SESSION_IDLE_TIMEOUT", "SESSION_ABSOLUTE_TIMEOUT", "SECOND_FACTOR_TIMEOUT"):
        config[key] = _as_timedelta(config[key])
    if config.get("SESSION_COOKIE_SECURE") is None:
        config["SESSION_COOKIE_SECURE"] = is_https(config)
    config["REMEMBER_COOKIE_SECURE"] = bool(config["SESSION_COOKIE_SECURE"])
    if config["SESSION_COOKIE_SECURE"] and config.get("SESSION_COOKIE_NAME") == "session":
        # __Host- cookies are Secure, host-only and path "/" by browser rule.
        config["SESSION_COOKIE_NAME"] = "__Host-session"
    # The signed cookie itself is refused past the absolute lifetime as well.
    config["PERMANENT_SESSION_LIFETIME"] = config["SESSION_ABSOLUTE_TIMEOUT"]
    config["REMEMBER_COOKIE_DURATION"] = config["SESSION_ABSOLUTE_TIMEOUT"]
    if isinstance(config.get("TRUSTED_HOSTS"), str):
        config["TRUSTED_HOSTS"] = _host_list(config["TRUSTED_HOSTS"])
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(
        str(config.get("SQLALCHEMY_DATABASE_URI") or ""), config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    )


def engine_options(database_uri: str, configured: dict[str, Any]) -> dict[str, Any]:
    """The engine options for ``database_uri``: ``configured`` plus, on a database
    server, a ping of each connection as the pool hands it out (``pool_pre_ping``: one
    dropped by a server restart is replaced, not failed on; a SQLite file has no
    connection to lose, and the ping was a statement on every request), and on PostgreSQL

    - sessions in UTC (``TimeZone``, a startup parameter: no round trip). The driver
      then returns times in ``datetime.UTC``, which UtcDateTime passes through as they
      are instead of converting each (every SQL expression here names UTC already);
    - the pool hands out the connection returned last (LIFO): the fewest connections
      stay busy, and their prepared statements (psycopg prepares a statement at its
      fifth execution on a connection) are the ones reused. Taken in turn (FIFO), each
      of the pool's connections planned a decision's statements anew for its first
      five decisions.
    Settings given in ``configured`` win."""
    options = dict(configured)
    if not database_uri.startswith("sqlite"):
        options.setdefault("pool_pre_ping", True)
    if database_uri.startswith("postgresql"):
        options.setdefault("pool_use_lifo", True)
        connect_args = dict(options.get("connect_args") or {})
        connect_args.setdefault("options", "-c TimeZone=UTC")
        options["connect_args"] = connect_args
    return options


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _secret_problem(config: dict[str, Any] | Any) -> str | None:
    secret = config.get("SECRET_KEY")
    if not secret or secret == INSECURE_SECRET or len(str(secret)) < 16:
        return (
            "REVIEWAPP_SECRET_KEY is not set (or too short). Set it to a long random value, e.g.\n"
            "    export REVIEWAPP_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return None


def _transport_problems(config: dict[str, Any] | Any) -> list[str]:
    problems = []
    if is_https(config) and not config.get("SESSION_COOKIE_SECURE"):
        problems.append(
            "PUBLIC_URL is https but session cookies are not Secure: remove "
            "REVIEWAPP_SESSION_COOKIE_SECURE=0 (Secure is automatic with an https PUBLIC_URL)."
        )
    host = urlsplit(str(config.get("PUBLIC_URL") or "")).hostname or ""
    if not is_https(config) and host not in LOOPBACK_HOSTS and not config.get("ALLOW_INSECURE_HTTP"):
        problems.append(
            f"REVIEWAPP_PUBLIC_URL ({config.get('PUBLIC_URL')}) is not https: serve the app behind "
            "TLS, or set REVIEWAPP_ALLOW_INSECURE_HTTP=1 if a closed network really has no TLS."
        )
    return problems


def _limit_problems(config: dict[str, Any] | Any) -> list[str]:
    problems = []
    limit = config.get("MAX_CONTENT_LENGTH")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        problems.append("MAX_CONTENT_LENGTH must be a positive number of bytes (REVIEWAPP_MAX_CONTENT_LENGTH).")
    if config.get("WTF_CSRF_ENABLED") is False:
        problems.append("WTF_CSRF_ENABLED is off: CSRF protection may only be disabled in tests.")
    if config.get("LOGIN_THROTTLE_ENABLED") is False:
        problems.append("Login throttling is off (REVIEWAPP_LOGIN_THROTTLE=0): only tests may do that.")
    if not config.get("SESSION_COOKIE_HTTPONLY"):
        problems.append("SESSION_COOKIE_HTTPONLY must stay on.")
    if config.get("SESSION_COOKIE_SAMESITE") not in {"Lax", "Strict"}:
        problems.append("SESSION_COOKIE_SAMESITE must be Lax or Strict.")
    idle, absolute = config.get("SESSION_IDLE_TIMEOUT"), config.get("SESSION_ABSOLUTE_TIMEOUT")
    if not idle or not absolute or idle.total_seconds() <= 0 or idle > absolute:
        problems.append("SESSION_IDLE_TIMEOUT must be positive and at most SESSION_ABSOLUTE_TIMEOUT.")
    return problems


def production_problems(config: dict[str, Any] | Any) -> list[str]:
    """Everything that makes ``config`` unsafe to serve real users with."""
    problems = [p for p in [_secret_problem(config)] if p]
    return problems + _transport_problems(config) + _limit_problems(config)


def check_production_safety(config: dict[str, Any] | Any, *, debug: bool) -> None:
    """Outside debug/testing, refuse to start with an unsafe configuration."""
    if debug or config.get("TESTING"):
        return
    problems = production_problems(config)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            "reviewapp refuses to start in production mode:\n"
            f"{listed}\n"
            "Fix the settings above, or run with --debug for local development."
        )
