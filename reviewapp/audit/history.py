"""The decision history: one row per decision with its round, reviewer and resume outcome.

The page and the exports share :func:`history_statement`, so they show the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, or_, select
from sqlalchemy.exc import OperationalError

from ..extensions import db
from ..models import (
    Crew,
    Decision,
    Execution,
    JobState,
    ResumeJob,
    ReviewRound,
    RoundState,
    User,
)
from ..statements import inline
from .dialect import cursor_page_plan, planner_settings, text_matches
from .filters import DateRange, HistoryFilters
from .pagination import (
    FIRST,
    Cursor,
    Page,
    cursor_parameters,
    direction_of,
    keyset_statement,
    page_of,
    reached_newest,
)

EXPORT_BATCH = 1000  # rows fetched from the server-side cursor at a time
KICKOFF_SHORT_CHARS = 8  # of a kickoff id, the page shows this much under the execution


# The statements read table columns (Core), not ORM attributes: no ORM compile and
# row-loading steps (for 51 rows of 17 columns those cost more than the query itself).
_DECISIONS, _ROUNDS, _EXECUTIONS = Decision.__table__, ReviewRound.__table__, Execution.__table__
_ROUNDS_LISTING = "ix_review_rounds_listing"
_CREW_TABLE, _USER_TABLE = Crew.__table__, User.__table__
_JOBS = ResumeJob.__table__


class HistoryRow(NamedTuple):
    """One row of the history page, in :func:`history_statement`'s column order (a
    tuple: the template reads most fields of each of 50 rows, and a tuple field is read
    ten times faster than a SQLAlchemy ``Row``'s attribute)."""

    id: int
    created_at: datetime
    is_approve: bool
    reason_code: str | None
    feedback: str
    reviewer: str
    crew: str
    execution_id: int
    kickoff_id: str
    kickoff_short: str  # its first KICKOFF_SHORT_CHARS characters
    task_id: str
    round_number: int
    job_state: JobState | None
    job_outcome: str | None
    attempts: int | None
    last_http_status: int | None


def _search(q: str) -> ColumnElement:
    """Decisions whose feedback, or whose round's output, matches ``q``.

    Written as two ``IN (subquery)`` so PostgreSQL answers each side from its GIN index;
    a decided round is never pending, and saying so (as a constant) lets PostgreSQL use
    the output index of the rounds that are not.
    """
    decision = _DECISIONS.alias()
    by_feedback = select(decision.c.id).where(text_matches(decision.c.feedback, q))
    by_output = select(_ROUNDS.c.id).where(
        _ROUNDS.c.state != inline(RoundState.PENDING, _ROUNDS.c.state.type), text_matches(_ROUNDS.c.output, q)
    )
    return or_(_DECISIONS.c.id.in_(by_feedback), _DECISIONS.c.round_id.in_(by_output))


@dataclass(frozen=True)
class _Shape:
    """The filters of a request but the text search, with the crew and the reviewer as
    parameters (``crew_id``, ``reviewer_id``): the statements are built once per shape."""

    crew: bool = False
    reviewer: bool = False
    decision: str | None = None
    outcome: str | None = None
    dates: DateRange = DateRange()

    @classmethod
    def of(cls, filters: HistoryFilters) -> _Shape:
        return cls(
            filters.crew_id is not None, filters.reviewer_id is not None, filters.decision, filters.outcome,
            filters.dates,
        )


def _parameters(filters: HistoryFilters) -> dict[str, Any]:
    values = {"crew_id": filters.crew_id, "reviewer_id": filters.reviewer_id}
    return {key: value for key, value in values.items() if value is not None}


def _conditions(shape: _Shape) -> list[ColumnElement]:
    decisions = _DECISIONS.c
    conditions: list[ColumnElement] = []
    if shape.crew:
        conditions.append(_ROUNDS.c.crew_id == bindparam("crew_id", type_=Integer()))
    if shape.reviewer:
        conditions.append(decisions.reviewer_id == bindparam("reviewer_id", type_=Integer()))
    if shape.decision is not None:
        conditions.append(decisions.is_approve.is_(shape.decision == "approve"))
    if shape.outcome is not None:
        conditions.append(_JOBS.c.state == inline(JobState(shape.outcome), _JOBS.c.state.type))
    return conditions + shape.dates.conditions(decisions.created_at)


@lru_cache(maxsize=128)
def _statement(shape: _Shape) -> Select:
    decisions, rounds = _DECISIONS.c, _ROUNDS.c
    return (
        select(
            decisions.id.label("id"),
            decisions.created_at.label("created_at"),
            decisions.is_approve,
            decisions.reason_code,
            decisions.feedback,
            _USER_TABLE.c.username.label("reviewer"),
            _CREW_TABLE.c.name.label("crew"),
            rounds.execution_id,
            _EXECUTIONS.c.kickoff_id,
            func.substr(_EXECUTIONS.c.kickoff_id, inline(1), inline(KICKOFF_SHORT_CHARS)).label("kickoff_short"),
            rounds.task_id,
            rounds.round_number,
            _JOBS.c.state.label("job_state"),
            _JOBS.c.outcome.label("job_outcome"),
            _JOBS.c.resume_calls.label("attempts"),  # None without a job (the outer join)
            _JOBS.c.last_http_status,
        )
        .select_from(
            _DECISIONS.join(_ROUNDS, rounds.id == decisions.round_id)
            .join(_EXECUTIONS, _EXECUTIONS.c.id == rounds.execution_id)
            .join(_CREW_TABLE, _CREW_TABLE.c.id == rounds.crew_id)
            .join(_USER_TABLE, _USER_TABLE.c.id == decisions.reviewer_id)
            .outerjoin(_JOBS, _JOBS.c.decision_id == decisions.id)
        )
        .where(*_conditions(shape))
        # SQLite: the round's columns from its listing index, never from a row that may
        # hold a long output before received_at (see ReviewRound.__table_args__).
        .with_hint(_ROUNDS, f"INDEXED BY {_ROUNDS_LISTING}", dialect_name="sqlite")
    )


def history_statement(filters: HistoryFilters) -> Select:
    """Every decision matching ``filters`` (unordered; callers order and limit)."""
    stmt = _statement(_Shape.of(filters)).params(_parameters(filters))
    return stmt.where(_search(filters.q)) if filters.q else stmt


@lru_cache(maxsize=256)
def _page_statement(shape: _Shape, direction: str) -> Select:
    return keyset_statement(_statement(shape), _DECISIONS.c.created_at, _DECISIONS.c.id, direction)


class SearchTooBroad(Exception):
    """A text search whose page could not be listed within the time allowed."""


# PostgreSQL gathers every match of the words before it sorts by date: a word in most of
# a million outputs took 70 s with the default work_mem (a lossy bitmap, every output
# parsed again), 2.5-4 s with this one. The time allowed bounds what one request may cost.
SEARCH_WORK_MEM = "64MB"
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement stopped by statement_timeout


def _search_timeout_ms() -> str:
    return str(int(float(current_app.config["HISTORY_SEARCH_TIMEOUT_SECONDS"]) * 1000))


def _rows(filters: HistoryFilters, direction: str, cursor: Cursor | None) -> list[HistoryRow]:
    parameters = _parameters(filters) | cursor_parameters(cursor)
    if not filters.q:
        with cursor_page_plan(cursor):
            rows = db.session.execute(_page_statement(_Shape.of(filters), direction), parameters).all()
        return [HistoryRow._make(row) for row in rows]
    # not cached: the search condition's shape depends on the words
    stmt = keyset_statement(history_statement(filters), _DECISIONS.c.created_at, _DECISIONS.c.id, direction)
    try:
        with planner_settings(work_mem=SEARCH_WORK_MEM, statement_timeout=_search_timeout_ms()):
            return [HistoryRow._make(row) for row in db.session.execute(stmt, parameters)]
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != QUERY_CANCELED:
            raise
        db.session.rollback()
        raise SearchTooBroad(
            "These words match too many decisions to list in time. Narrow the search: a date "
            "range, a crew or a reviewer, or more words."
        ) from exc


def history_page(
    filters: HistoryFilters, *, after: Cursor | None = None, before: Cursor | None = None
) -> Page:
    direction, cursor = direction_of(after, before)
    rows = _rows(filters, direction, cursor)
    if reached_newest(rows, direction):
        direction, rows = FIRST, _rows(filters, FIRST, None)
    return page_of(rows, direction)


def history_in_order(filters: HistoryFilters) -> Iterator[Any]:
    """All matching rows, oldest first, from a server-side cursor (``yield_per``).

    A generator: the query runs when iteration starts, i.e. inside the streamed
    response's own context, not in the view whose session is closed before streaming."""
    stmt = history_statement(filters).order_by(Decision.created_at, Decision.id)
    yield from db.session.execute(stmt.execution_options(yield_per=EXPORT_BATCH))
