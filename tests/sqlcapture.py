"""Recording the SQL statements a piece of a test sends (whitespace folded)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from reviewapp.extensions import db


@contextmanager
def captured_statements(app) -> Iterator[list[str]]:
    """Yields the list the statements sent inside the ``with`` block are appended to."""
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):
        seen.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
