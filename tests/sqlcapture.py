"""Recording the SQL statements a piece of a test sends (whitespace folded)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from reviewapp.extensions import db


@contextmanager
def captured_statements(app) -> Iterator[list[str]]:
    """Yields the list the statements sent inside the ``with`` block are appended to."""
    with captured(app, lambda statement, cursor, context: statement) as seen:
        yield seen


@contextmanager
def captured(app, note: Callable[[str, Any], Any]) -> Iterator[list[Any]]:
    """Yields the list ``note(statement, DBAPI cursor, execution context)`` of each
    statement sent inside the ``with`` block is appended to (just before it is sent)."""
    seen: list[Any] = []

    def record(conn, cursor, statement, params, context, executemany):
        seen.append(note(" ".join(statement.split()), cursor, context))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
