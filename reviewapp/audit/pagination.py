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

from sqlalchemy import Select, SQLColumnExpression, literal, tuple_

from ..extensions import db
from ..models import UtcDateTime

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


def _position(cursor: Cursor) -> Any:
    return tuple_(literal(cursor.created_at, UtcDateTime()), literal(cursor.id))


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
    key = tuple_(created, ident)
    if before is not None:
        rows = _fetch(stmt.where(key > _position(before)), created.asc(), ident.asc(), size)
        if len(rows) > size:
            newest_first = list(reversed(rows[:size]))
            return Page(newest_first, _cursor(newest_first[0]), _cursor(newest_first[-1]))
        # Reached the newest rows: show a full first page instead of a short one.
    elif after is not None:
        rows = _fetch(stmt.where(key < _position(after)), created.desc(), ident.desc(), size)
        # Past the end (an old link, or rows beyond it): no links; the page offers the first.
        newer = _cursor(rows[0]) if rows else None
        return Page(rows[:size], newer, _older(rows, size))
    rows = _fetch(stmt, created.desc(), ident.desc(), size)
    return Page(rows[:size], None, _older(rows, size))


def _fetch(stmt: Select, first: Any, second: Any, size: int) -> list[Any]:
    return list(db.session.execute(stmt.order_by(first, second).limit(size + 1)).all())


def _cursor(row: Any) -> str:
    return Cursor.of(row).encode()


def _older(rows: list[Any], size: int) -> str | None:
    return _cursor(rows[size - 1]) if len(rows) > size else None
