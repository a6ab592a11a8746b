"""Login throttling, shared by every app process through the database.

Each attempt is counted under several keys (``LoginThrottle`` rows):

- ``account:<name>`` for the username typed, whether or not such an account exists
  (so the throttle tells nothing about which names are real);
- ``device:<id>`` *instead of* the account key when the browser presents a valid
  known-device cookie for that name (set at the owner's last successful login). An
  attacker hammering a name therefore cannot lock its owner out of their own browser;
- ``ip:<address>`` for the client address (an IPv6 client counts by its /64); a known
  device's attempts count here too, but the address's lock does not stop them;
- ``totp:<user id>`` for second-factor codes.

A key may fail ``free`` times. From then on every failure locks it for
``first_lock * 2 ** (failures - free)`` seconds, capped at ``max_lock``: short locks
that grow, never a long lockout. Counters start over once ``window`` seconds have
passed since the first failure and no lock is running; a successful login clears the
account/device key (not the address key).

The check happens before the password hash is computed. Updates are conditional
single statements (insert-if-absent, ``failures = failures + 1 ... RETURNING``,
``locked_until`` only ever moved forward), so concurrent processes on SQLite or
PostgreSQL never lose a failure.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy import insert as insert_row
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ..audit.services import record_security_event
from ..extensions import db
from ..models import LoginThrottle
from . import clock

log = logging.getLogger("reviewapp.security")


@dataclass(frozen=True)
class Policy:
    free: int
    first_lock: int
    max_lock: int
    window: int

    def lock_seconds(self, failures: int) -> int:
        if failures < self.free:
            return 0
        doublings = min(failures - self.free, 30)
        return min(self.first_lock * 2**doublings, self.max_lock)


@dataclass(frozen=True)
class Key:
    scope: str  # "account" | "device" | "ip" | "totp"
    value: str
    policy: Policy
    enforced: bool = True  # False: failures count, but its lock does not stop this attempt

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.value}"[:160]


class Throttled(Exception):
    """Too many failures under one key; ``retry_after`` is in whole seconds."""

    def __init__(self, scope: str, retry_after: int) -> None:
        self.scope = scope
        self.retry_after = max(1, retry_after)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        who = "from your network" if self.scope == "ip" else "for this account"
        return f"Too many failed attempts {who}. Please try again in {_human(self.retry_after)}."


def _human(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _policy(prefix: str) -> Policy:
    cfg = current_app.config
    return Policy(
        free=int(cfg[f"LOGIN_THROTTLE_{prefix}_FAILURES"]),
        first_lock=int(cfg["LOGIN_THROTTLE_FIRST_LOCK"]),
        max_lock=int(cfg[f"LOGIN_THROTTLE_{prefix}_MAX_LOCK"]),
        window=int(cfg["LOGIN_THROTTLE_WINDOW"]),
    )


def client_network(address: str | None) -> str:
    """The unit an address is counted by: the address itself, or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def login_keys(username: str, address: str | None, device_id: str | None = None) -> list[Key]:
    """The keys one login attempt counts under. A known device answers for itself: neither
    the account's lock nor its address's (a shared office NAT, say) stops it."""
    address_key = Key("ip", client_network(address), _policy("IP"), enforced=device_id is None)
    if device_id:
        return [Key("device", device_id, _policy("ACCOUNT")), address_key]
    return [Key("account", username.strip().lower()[:64], _policy("ACCOUNT")), address_key]


def second_factor_keys(user_id: int) -> list[Key]:
    return [Key("totp", str(user_id), _policy("ACCOUNT"))]


def _enabled() -> bool:
    return bool(current_app.config.get("LOGIN_THROTTLE_ENABLED", True))


def ensure_allowed(keys: list[Key]) -> None:
    """Raise :class:`Throttled` if any key is locked now. Reads only: cheap, no hashing."""
    if not _enabled():
        return
    now = clock.now()
    rows = db.session.execute(
        select(LoginThrottle.key, LoginThrottle.locked_until).where(
            LoginThrottle.key.in_([k.key for k in keys if k.enforced]),
            LoginThrottle.locked_until > now,
        )
    ).all()
    if not rows:
        return
    by_key = {k.key: k for k in keys}
    key, until = max(rows, key=lambda row: row.locked_until)
    retry = math.ceil(((until or now) - now).total_seconds())
    log.info("login refused while throttled: scope=%s retry_after=%ss", by_key[key].scope, retry)
    raise Throttled(by_key[key].scope, retry)


def register_failure(keys: list[Key], *, actor_name: str | None = None) -> None:
    """Count one failure under every key; start or extend locks as the policy says."""
    if not _enabled():
        return
    now = clock.now()
    for key in keys:
        failures = _count_failure(key, now)
        seconds = key.policy.lock_seconds(failures)
        if seconds and _lock(key, now + timedelta(seconds=seconds)):
            record_security_event(
                "login_throttled",
                actor_name=actor_name,
                details={"scope": key.scope, "failures": failures, "locked_seconds": seconds},
                commit=False,
            )


def clear(keys: list[Key]) -> None:
    """Forget the failures under ``keys`` (after a successful login)."""
    db.session.execute(
        delete(LoginThrottle).where(LoginThrottle.key.in_([k.key for k in keys])),
        execution_options={"synchronize_session": False},
    )


def forget_account_failures(keys: list[Key]) -> None:
    """After a right password: the account (or device) starts over; the address does not."""
    clear([k for k in keys if k.scope != "ip"])


def advance_marker(name: str, value: int) -> bool:
    """Move a monotonic marker (kept in the ``failures`` column of row ``name``) up to
    ``value``. True only for the one caller that moved it: a TOTP step is used once."""
    _insert_if_absent(name, clock.now())
    result = db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == name, LoginThrottle.failures < value)
        .values(failures=value, window_start=clock.now()),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _count_failure(key: Key, now: datetime) -> int:
    if _insert_if_absent(key.key, now):
        _prune(now)
    db.session.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.key == key.key,
            LoginThrottle.window_start < now - timedelta(seconds=key.policy.window),
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now),
        )
        .values(failures=0, window_start=now, locked_until=None),
        execution_options={"synchronize_session": False},
    )
    return db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key.key)
        .values(failures=LoginThrottle.failures + 1)
        .returning(LoginThrottle.failures),
        execution_options={"synchronize_session": False},
    ).scalar_one()


def _lock(key: Key, until: datetime) -> bool:
    """Move the lock forward to ``until`` (never backward); True if it moved."""
    result = db.session.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.key == key.key,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < until),
        )
        .values(locked_until=until),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Dialects with INSERT ... ON CONFLICT DO NOTHING; others fall back to a savepoint.
_UPSERT_INSERTS: dict[str, Callable[..., Any]] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert_if_absent(key: str, now: datetime) -> bool:
    """Create the counter row unless another request already did; True if created."""
    insert = _UPSERT_INSERTS.get(db.session.get_bind().dialect.name)
    values = {"key": key, "failures": 0, "window_start": now, "locked_until": None}
    if insert is not None:
        result = db.session.execute(
            insert(LoginThrottle).values(**values).on_conflict_do_nothing(index_elements=["key"])
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
    try:
        with db.session.begin_nested():
            db.session.execute(insert_row(LoginThrottle).values(**values))
    except IntegrityError:
        return False
    return True


def _prune(now: datetime) -> None:
    """Drop counters that can no longer lock anything (keeps the table small)."""
    longest = max(current_app.config["LOGIN_THROTTLE_WINDOW"], current_app.config["LOGIN_THROTTLE_IP_MAX_LOCK"])
    db.session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.window_start < now - timedelta(seconds=2 * int(longest)),
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now),
        ),
        execution_options={"synchronize_session": False},
    )
