"""One webhook writer at a time on SQLite, across the app's threads and processes.

SQLite lets one connection write at a time, and a writer that finds the database locked
sleeps (1, 2, 5, 10 ms ...) before it tries again, however soon the lock is free. Under
a burst of notifications most of a receiver's time went to those sleeps. Receivers
queue on an advisory lock instead, and each is woken as soon as the one before it
commits:

- within a process, a thread lock;
- across the app's processes (gunicorn workers), ``flock`` on a file beside the
  database (``<database>-writers.lock``), opened once per process.

Where no such file can be used (an in-memory database, a read-only directory, a system
without ``fcntl``), the thread lock alone is taken and the other processes meet SQLite's
own lock, as before. PostgreSQL takes row locks itself: nothing is taken there.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # Windows: the thread lock alone
    fcntl = None  # type: ignore[assignment]

from ..extensions import db

log = logging.getLogger("reviewapp.amp.writer_lock")

LOCK_SUFFIX = "-writers.lock"

_THREADS = threading.Lock()
# (process id, lock file) -> descriptor. Keyed by process: a descriptor inherited across
# fork shares its lock with the parent's, so each process opens its own.
_descriptors: dict[tuple[int, str], int | None] = {}


def lock_path(database: str | None) -> str | None:
    """The lock file beside the SQLite ``database`` file (None: no file to lock beside)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database) + LOCK_SUFFIX


def _descriptor(path: str) -> int | None:
    """This process's open lock file (called with ``_THREADS`` held); None if it cannot
    be opened, which is logged once per process."""
    key = (os.getpid(), path)
    if key not in _descriptors:
        try:
            _descriptors[key] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("webhook writers queue only within this process: cannot open %s (%s)", path, exc)
            _descriptors[key] = None
    return _descriptors[key]


@contextmanager
def _across_processes(path: str | None) -> Iterator[None]:
    fd = _descriptor(path) if path is not None and fcntl is not None else None
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def one_writer_at_a_time() -> Iterator[None]:
    """Hold while writing and committing one delivery (SQLite); a no-op on PostgreSQL."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite":
        yield
        return
    with _THREADS, _across_processes(lock_path(url.database)):
        yield
