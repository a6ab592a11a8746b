"""Keyset pagination on ``(created_at, id)``, newest first. No OFFSET: every page is one
index seek, so page 1 and page 20,000 cost the same.

A cursor is the position of a row: ``<microseconds since the epoch>.<id>``. Links carry
it as ``after`` (older rows, the next page) or ``before`` (newer rows, the previous page).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Select, SQLColumnExpression, bindparam, tuple_

from ..extensions import db
from ..models import UtcDateTime
from ..statements import inline

PAGE_SIZE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"(\d{1,16})\.(\d{1,18})")


class CursorError(ValueError):
    """A cursor that was not made by this app (edited by hand or cut short)."""


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: int

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.id}"

    @classmethod
    def decode(cls, token: str) -> Cursor:
        # The digit limits keep every accepted cursor a valid position: at most 16 digits
        # of microseconds (before the year 2287) and 18 of id (below 2**63).
        match = _CURSOR.fullmatch(token.strip())
        if match is None:
            raise CursorError("The page link is damaged. Start again from the first page.")
        micros, row_id = int(match.group(1)), int(match.group(2))
        return cls(_EPOCH + timedelta(microseconds=micros), row_id)

    @classmethod
    def of(cls, row: Any) -> Cursor:
        return cls(row.created_at, row.id)


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    newer: str | None  # cursor for the "newer" link, None on the first page
    older: str | None  # cursor for the "older" link, None on the last page


def parse_cursors(args: Any) -> tuple[Cursor | None, Cursor | None]:
    """``(after, before)`` from the query string; at most one of them may be given."""
    after, before = args.get("after"), args.get("before")
    if after and before:
        raise CursorError("A page link may go forwards or backwards, not both.")
    return (
        Cursor.decode(after) if after else None,
        Cursor.decode(before) if before else None,
    )


FIRST, AFTER, BEFORE = "first", "after", "before"  # which page: newest, older, newer


def direction_of(after: Cursor | None, before: Cursor | None) -> tuple[str, Cursor | None]:
    if before is not None:
        return BEFORE, before
    if after is not None:
        return AFTER, after
    return FIRST, None


def cursor_parameters(cursor: Cursor | None) -> dict[str, Any]:
    """The values of :func:`keyset_statement`'s position parameters."""
    return {} if cursor is None else {"cursor_at": cursor.created_at, "cursor_id": cursor.id}


def keyset_statement(
    stmt: Select, created: SQLColumnExpression[Any], ident: SQLColumnExpression[Any], direction: str,
    *, size: int = PAGE_SIZE,
) -> Select:
    """``stmt`` (which must select ``created_at`` and ``id`` labels) narrowed to the
    ``size + 1`` rows of one page in ``direction``; the cursor's position is bound as the
    parameters ``cursor_at`` and ``cursor_id`` (:func:`cursor_parameters`), so a caller
    can build the statement once and run it for every cursor."""
    key = tuple_(created, ident)
    position = tuple_(
        bindparam("cursor_at", type_=UtcDateTime()), bindparam("cursor_id", type_=BigInteger())
    )
    if direction == BEFORE:
        stmt = stmt.where(key > position).order_by(created.asc(), ident.asc())
    elif direction == AFTER:
        stmt = stmt.where(key < position).order_by(created.desc(), ident.desc())
    else:
        stmt = stmt.order_by(created.desc(), ident.desc())
    return stmt.limit(inline(size + 1))


def reached_newest(rows: list[Any], direction: str, *, size: int = PAGE_SIZE) -> bool:
    """A "newer" page that reached the newest rows: the first page is shown instead of
    a short one."""
    return direction == BEFORE and len(rows) <= size


def page_of(rows: list[Any], direction: str, *, size: int = PAGE_SIZE) -> Page:
    """The page shown for the ``size + 1`` rows a :func:`keyset_statement` returned
    (unless :func:`reached_newest`)."""
    if direction == BEFORE:
        newest_first = list(reversed(rows[:size]))
        return Page(newest_first, _cursor(newest_first[0]), _cursor(newest_first[-1]))
    if direction == AFTER:
        # Past the end (an old link, or rows beyond it): no links; the page offers the first.
        newer = _cursor(rows[0]) if rows else None
        return Page(rows[:size], newer, _older(rows, size))
    return Page(rows[:size], None, _older(rows, size))


def keyset_page(
    stmt: Select,
    created: SQLColumnExpression[Any],
    ident: SQLColumnExpression[Any],
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """One page of ``stmt`` (which must select ``created_at`` and ``id`` labels)."""
    direction, cursor = direction_of(after, before)
    rows = _fetch(keyset_statement(stmt, created, ident, direction, size=size), cursor)
    if reached_newest(rows, direction, size=size):
        direction, rows = FIRST, _fetch(keyset_statement(stmt, created, ident, FIRST, size=size), None)
    return page_of(rows, direction, size=size)


def _fetch(stmt: Select, cursor: Cursor | None) -> list[Any]:
    return list(db.session.execute(stmt, cursor_parameters(cursor)).all())


def _cursor(row: Any) -> str:
    return Cursor.of(row).encode()


def _older(rows: list[Any], size: int) -> str | None:
    return _cursor(rows[size - 1]) if len(rows) > size else None
