"""The decision history: one row per decision with its round, reviewer and resume outcome.

The page and the exports share :func:`history_statement`, so they show the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, or_, select, union_all
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import (
    Crew,
    Decision,
    Execution,
    JobState,
    ResumeAttempt,
    ResumeJob,
    ReviewRound,
    User,
)
from .dialect import text_matches
from .filters import HistoryFilters
from .pagination import Cursor, Page, keyset_page

EXPORT_BATCH = 1000  # rows fetched from the server-side cursor at a time


def _last_http_status() -> Any:
    """HTTP status of the job's latest attempt (an index probe per row)."""
    return (
        select(ResumeAttempt.http_status)
        .where(ResumeAttempt.job_id == ResumeJob.id)
        .order_by(ResumeAttempt.id.desc())
        .limit(1)
        .correlate(ResumeJob)
        .scalar_subquery()
    )


def _resume_calls() -> Any:
    """How many times the decision was sent to AMP: its logged ``/resume`` calls (None
    without a job). Not ``ResumeJob.attempts``: that counts only the failed tries (it
    drives the backoff), so a job delivered at the first try has 0 there."""
    calls = (
        select(func.count(ResumeAttempt.id))
        .where(ResumeAttempt.job_id == ResumeJob.id, ResumeAttempt.kind == "resume")
        .correlate(ResumeJob)
        .scalar_subquery()
    )
    return case((ResumeJob.id.is_(None), None), else_=calls)


def _search(q: str) -> ColumnElement:
    """Decisions whose feedback, or whose round's output, matches ``q``.

    Written as two ``IN (subquery)`` so PostgreSQL answers each side from its GIN index.
    """
    decision = aliased(Decision)
    by_feedback = select(decision.id).where(text_matches(decision.feedback, q))
    by_output = select(ReviewRound.id).where(text_matches(ReviewRound.output, q))
    return or_(Decision.id.in_(by_feedback), Decision.round_id.in_(by_output))


def _conditions(filters: HistoryFilters) -> list[ColumnElement]:
    conditions: list[ColumnElement] = []
    if filters.crew_id is not None:
        conditions.append(ReviewRound.crew_id == filters.crew_id)
    if filters.reviewer_id is not None:
        conditions.append(Decision.reviewer_id == filters.reviewer_id)
    if filters.decision is not None:
        conditions.append(Decision.is_approve.is_(filters.decision == "approve"))
    if filters.outcome is not None:
        conditions.append(ResumeJob.state == JobState(filters.outcome))
    conditions += filters.dates.conditions(Decision.created_at)
    if filters.q:
        conditions.append(_search(filters.q))
    return conditions


def history_statement(filters: HistoryFilters) -> Select:
    """Every decision matching ``filters`` (unordered; callers order and limit)."""
    return (
        select(
            Decision.id.label("id"),
            Decision.created_at.label("created_at"),
            Decision.is_approve,
            Decision.reason_code,
            Decision.feedback,
            User.username.label("reviewer"),
            Crew.name.label("crew"),
            ReviewRound.id.label("round_id"),
            ReviewRound.execution_id,
            Execution.kickoff_id,
            ReviewRound.task_id,
            ReviewRound.round_number,
            ReviewRound.received_at,
            ResumeJob.state.label("job_state"),
            ResumeJob.outcome.label("job_outcome"),
            _resume_calls().label("attempts"),
            _last_http_status().label("last_http_status"),
        )
        .select_from(Decision)
        .join(ReviewRound, ReviewRound.id == Decision.round_id)
        .join(Execution, Execution.id == ReviewRound.execution_id)
        .join(Crew, Crew.id == ReviewRound.crew_id)
        .join(User, User.id == Decision.reviewer_id)
        .outerjoin(ResumeJob, ResumeJob.decision_id == Decision.id)
        .where(*_conditions(filters))
    )


def history_page(
    filters: HistoryFilters, *, after: Cursor | None = None, before: Cursor | None = None
) -> Page:
    return keyset_page(
        history_statement(filters), Decision.created_at, Decision.id, after=after, before=before
    )


def history_in_order(filters: HistoryFilters) -> Iterator[Any]:
    """All matching rows, oldest first, from a server-side cursor (``yield_per``).

    A generator: the query runs when iteration starts, i.e. inside the streamed
    response's own context, not in the view whose session is closed before streaming."""
    stmt = history_statement(filters).order_by(Decision.created_at, Decision.id)
    yield from db.session.execute(stmt.execution_options(yield_per=EXPORT_BATCH))


def crew_choices() -> list[tuple[int, str]]:
    return [(row.id, row.name) for row in db.session.execute(select(Crew.id, Crew.name).order_by(Crew.name))]


def crew_and_reviewer_choices() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The crew and the reviewer filter lists, each ``(id, name)`` by name, read in one
    statement (a lead's history page shows both)."""
    crews = select(literal("crew").label("kind"), Crew.id.label("id"), Crew.name.label("name"))
    users = select(literal("user").label("kind"), User.id.label("id"), User.username.label("name"))
    both = union_all(crews, users).subquery()
    lists: dict[str, list[tuple[int, str]]] = {"crew": [], "user": []}
    for row in db.session.execute(select(both).order_by(both.c.kind, both.c.name)):
        lists[row.kind].append((row.id, row.name))
    return lists["crew"], lists["user"]
