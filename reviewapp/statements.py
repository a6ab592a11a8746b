"""Page statements PostgreSQL can keep prepared, and plan once.

psycopg prepares a statement on the server after it has run a few times on a
connection, but it forgets (``DEALLOCATE ALL``) every prepared statement at each
``ROLLBACK``: an object one of them reads may have been dropped in the rolled-back
transaction. Flask-SQLAlchemy ends every request's transaction with a rollback, so each
page's statements were parsed and planned again on every request — on the medium bench
~3 ms of server CPU for the queue page and ~7 ms for the history page (a six-table join),
more than the pages' whole execution.

:func:`init_app` ends a transaction that ran nothing but ``SELECT`` statements with
``COMMIT`` instead (for such a transaction the two are the same: there is nothing to keep
or to undo), so the statements stay prepared. A transaction that ran anything else — an
``INSERT``/``UPDATE``/``DELETE``, DDL, a ``SET``, a ``WITH`` — or that failed rolls back
as before. (A ``SELECT`` with a lasting side effect, such as ``SELECT .. INTO`` or a
session-level ``set_config``, would be kept: the app runs none.)

A prepared statement is planned once (a generic plan) only when the constants that steer
its plan are in its text: :func:`inline` writes such a constant (a state, a page size)
into the SQL instead of sending it as a parameter. Values from the request stay
parameters.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import BindParameter, bindparam, event
from sqlalchemy.engine import Connection

from .extensions import db

_READ_ONLY = "reviewapp.read_only"  # Connection.info: the open transaction only read


def inline(value: Any, type_: Any = None) -> BindParameter[Any]:
    """``value`` written into the SQL text (rendered at execution, so the statement's
    cache key does not depend on it): for constants the planner should see."""
    return bindparam(None, value, type_=type_, literal_execute=True)


def run_core(statement: Any, parameters: Any = None) -> Any:
    """Execute a Core statement (one on tables, not ORM entities) in the session's
    transaction, on its connection: without the ORM's execute step (its execution state,
    events and bind lookup), about a fifth of a small statement's CPU. ORM changes still
    pending are flushed first, as autoflush would before ``Session.execute``. Returns the
    ``CursorResult``."""
    session = db.session()
    session.flush()
    return session.connection().execute(statement, parameters)


def _began(conn: Connection) -> None:
    conn.info[_READ_ONLY] = True


def _executing(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
    if conn.info.get(_READ_ONLY) and statement.lstrip()[:6].upper() != "SELECT":
        conn.info[_READ_ONLY] = False


def _committing(conn: Connection) -> None:
    conn.info.pop(_READ_ONLY, None)


def _rolling_back(conn: Connection) -> None:
    """Before the rollback of a transaction that only read: commit it (the rollback that
    follows finds no transaction open, so psycopg keeps its prepared statements)."""
    if not conn.info.pop(_READ_ONLY, False):
        return
    from psycopg import Error
    from psycopg.pq import TransactionStatus

    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is None or dbapi_connection.info.transaction_status != TransactionStatus.INTRANS:
        return  # failed (INERROR) or already ended: the rollback handles it
    try:
        dbapi_connection.commit()
    except Error:
        pass  # e.g. a lost connection: the rollback that follows reports and handles it


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.driver != "psycopg":
        return
    event.listen(engine, "begin", _began)
    event.listen(engine, "before_cursor_execute", _executing)
    event.listen(engine, "commit", _committing)
    event.listen(engine, "rollback", _rolling_back)
