"""SQL expressions that differ between PostgreSQL and SQLite, behind one function each.

Everything the audit pages compute in the database goes through here, so the rest of
the package builds portable ``select()`` statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    String,
    Table,
    and_,
    case,
    false,
    func,
    literal_column,
    text,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles

from ..extensions import db
from ..models import SEARCH_CONFIG, SEARCH_PREFIX_CHARS

# A column or ORM attribute (Decision.created_at) used in an SQL expression.
_Column = SQLColumnExpression[Any]

MAX_SEARCH_WORDS = 8
_WORD = re.compile(r"\w+", re.UNICODE)


def dialect_name() -> str:
    return db.session.get_bind().dialect.name


# A page after a cursor, on PostgreSQL: with the cursor's values in hand the planner
# estimates a handful of rows and keeps planning the page's six-table join anew for every
# execution (~2 ms of the database's CPU at 1M decisions, more than running it); the
# generic plan (an ordered index walk from the cursor, whatever its values) is as good.
GENERIC_PLAN = {"plan_cache_mode": "force_generic_plan"}


@contextmanager
def planner_settings(**settings: str) -> Iterator[None]:
    """PostgreSQL: run the statements inside with these transaction-local settings
    (``enable_seqscan="off"``, ``statement_timeout="5000"``...), restored on the way out;
    nothing elsewhere. Set with ``SELECT set_config()``, which keeps a read-only
    transaction read-only (see reviewapp/statements.py) where ``SET LOCAL`` ended it.
    If a statement inside fails, the caller rolls back, which drops the settings too.

    Both statements go straight to the driver, on the session's connection and in its
    transaction: through SQLAlchemy they cost a cursor page (GENERIC_PLAN) 0.6 ms of
    CPU, 17% of a history page at 1M decisions, which made page 20,000 cost more than
    page 1 (psycopg alone, with the statements prepared after a few runs: ~0.1 ms)."""
    if not settings or dialect_name() != "postgresql":
        yield
        return
    names = list(settings)
    # Names are ours (keyword arguments), values are bound: nothing from a request is spliced.
    read = ", ".join(f"current_setting('{name}')" for name in names)
    write = ", ".join(f"set_config('{name}', %s, true)" for name in names)
    driver = db.session.connection().connection.driver_connection
    assert driver is not None  # noqa: S101 - a live connection of the session
    row = driver.execute(f"SELECT {read}, {write}", list(settings.values())).fetchone()
    before = list(row[: len(names)])
    yield
    driver.execute(f"SELECT {write}", before)


def cursor_page_plan(cursor: object | None) -> AbstractContextManager[None]:
    """The settings a keyset page runs with: GENERIC_PLAN after a cursor, none on the
    first page (its statement has no cursor values to plan around)."""
    return planner_settings(**GENERIC_PLAN) if cursor is not None else nullcontext()


def is_postgres() -> bool:
    return dialect_name() == "postgresql"


def _text(expression: Any) -> ColumnElement:
    return type_coerce(expression, String)


def iso_utc(column: _Column) -> ColumnElement:
    """A timestamp column as ``datetime.isoformat()`` writes a UTC time, computed by the
    database: ``2025-03-03T09:05:00+00:00``, ``.ffffff`` before the offset only when
    the microseconds are not zero."""
    if is_postgres():
        # One to_char with the microseconds, then ".000000" dropped (it can only stand there).
        iso = func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
        return _text(func.replace(iso, ".000000+", "+"))
    # SQLite keeps UTC times as 'YYYY-MM-DD HH:MM:SS.ffffff' text (see models.UtcDateTime)
    stored = _text(column)
    fraction = _text(func.substr(stored, 20))
    return (
        _text(func.substr(stored, 1, 10)) + "T" + _text(func.substr(stored, 12, 8))
        + case((fraction.in_(("", ".000000")), ""), else_=fraction) + "+00:00"
    )


def roomy_sorts(megabytes: int = 64) -> None:
    """Let this transaction's aggregations sort and hash in memory (PostgreSQL's default
    4 MB spills a million-row report to disk). Ends with the transaction."""
    if is_postgres():
        db.session.execute(text(f"SET LOCAL work_mem = '{int(megabytes)}MB'"))


def search_words(query_text: str) -> list[str]:
    """The words of a search box entry (what the SQLite fallback matches)."""
    return _WORD.findall(query_text)[:MAX_SEARCH_WORDS]


def _tsvector(column: _Column) -> ColumnElement:
    # Must stay identical to models._search_index so the GIN index is used.
    return func.to_tsvector(
        literal_column(f"'{SEARCH_CONFIG}'"),
        func.left(column, literal_column(str(SEARCH_PREFIX_CHARS))),
    )


def _like_all(column: _Column, words: list[str]) -> ColumnElement:
    return and_(*(column.ilike(f"%{_escape_like(w)}%", escape="\\") for w in words))


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_matches(column: _Column, query_text: str) -> ColumnElement:
    """Full-text condition on one column: every word of ``query_text`` occurs in it.

    PostgreSQL: ``to_tsvector @@ websearch_to_tsquery`` (whole words, quotes and ``-word``
    work), served by the GIN index. SQLite: each word as a case-insensitive substring.
    """
    if is_postgres():
        query = func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), query_text)
        return _tsvector(column).op("@@")(query)
    words = search_words(query_text)
    if not words:
        return false()
    return _like_all(column, words)



@compiles(Table, "sqlite")
def _sqlite_table(table: Table, compiler: Any, fromhints: Any = None, **kw: Any) -> str:
    """A table in a SQLite statement, followed by its ``with_hint(..., dialect_name=
    "sqlite")`` hint, such as ``INDEXED BY ix_name`` (SQLAlchemy drops table hints on
    SQLite: they are only rendered for dialects with hint syntax of their own)."""
    sql = compiler.visit_table(table, fromhints=fromhints, **kw)
    if fromhints and table in fromhints and kw.get("asfrom"):
        sql += f" {fromhints[table]}"
    return sql
