"""SQL expressions that differ between PostgreSQL and SQLite, behind one function each.

Everything the audit pages compute in the database goes through here, so the rest of
the package builds portable ``select()`` statements.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, Float, and_, cast, extract, false, func, literal_column, or_

from ..extensions import db
from ..models import SEARCH_CONFIG, SEARCH_PREFIX_CHARS

_Column = ColumnElement

MAX_SEARCH_WORDS = 8
_WORD = re.compile(r"\w+", re.UNICODE)


def dialect_name() -> str:
    return db.session.get_bind().dialect.name


def is_postgres() -> bool:
    return dialect_name() == "postgresql"


def utc_day(column: _Column) -> ColumnElement:
    """The UTC calendar day of a timestamp column, as an ISO date string on both sides."""
    if is_postgres():
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)


def seconds_between(start: _Column, end: _Column) -> ColumnElement:
    """``end - start`` in seconds (float), rounded to milliseconds."""
    if is_postgres():
        seconds = extract("epoch", end - start)
    else:
        seconds = (func.julianday(end) - func.julianday(start)) * 86400.0
    return cast(func.round(seconds, 3), Float)


def search_words(text: str) -> list[str]:
    """The words of a search box entry (what the SQLite fallback matches)."""
    return _WORD.findall(text)[:MAX_SEARCH_WORDS]


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


def text_matches(column: _Column, text: str) -> ColumnElement:
    """Full-text condition on one column: every word of ``text`` occurs in it.

    PostgreSQL: ``to_tsvector @@ websearch_to_tsquery`` (whole words, quotes and ``-word``
    work), served by the GIN index. SQLite: each word as a case-insensitive substring.
    """
    if is_postgres():
        query = func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), text)
        return _tsvector(column).op("@@")(query)
    words = search_words(text)
    if not words:
        return false()
    return _like_all(column, words)


def any_text_matches(columns: list[_Column], text: str) -> ColumnElement:
    return or_(*(text_matches(column, text) for column in columns))

