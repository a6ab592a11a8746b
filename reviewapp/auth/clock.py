"""The one clock the security code reads (session timeouts, throttling, TOTP).

Tests freeze or move time by patching :func:`now` in this module.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def timestamp() -> int:
    """Whole seconds since the epoch, as stored in the session."""
    return int(now().timestamp())


def from_timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
