"""CSV and JSON Lines export of the filtered history, streamed with flat memory.

The export has its own statement (:func:`export_statement`): the history page's rows
and filters, but only the exported columns, already in their final form (ISO times,
``approve``/``revise``, state names), fetched as plain Core rows in blocks of
EXPORT_BATCH from a server-side cursor on PostgreSQL. The ``/resume`` call count and
the last HTTP status come from one lookup of the job's attempts (see
:func:`_attempt_stats`). Each block leaves as one text chunk.

CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or
carriage return) get a leading ``'``; the database does it (:func:`_neutralised`), so
the CSV writer gets each block as it comes. JSON Lines keeps the exact values (it is
read by programs, not spreadsheets). Nothing secret is in a history row: no tokens, no
resume bodies, no response bodies.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    case,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Crew, Decision, Execution, ResumeAttempt, ResumeJob, ReviewRound, User
from .dialect import is_postgres, iso_utc
from .filters import HistoryFilters
from .history import history_statement

COLUMNS = (
    "decision_id",
    "decided_at",
    "reviewer",
    "crew",
    "execution_id",
    "kickoff_id",
    "task_id",
    "round",
    "decision",
    "reason_code",
    "feedback",
    "notified_at",
    "resume_state",
    "resume_outcome",
    "last_http_status",
    "attempts",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_BATCH = 1000  # rows fetched from the cursor, and written, per chunk


def neutralise(value: Any) -> Any:
    """A spreadsheet shows this cell as text, never runs it (Python twin of
    :func:`_neutralised`, for single values)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _neutralised(column: Any) -> ColumnElement:
    """``column`` with a leading ``'`` when it starts like a formula."""
    text = type_coerce(column, String)
    return case((func.substr(text, 1, 1).in_(FORMULA_STARTS), literal("'") + text), else_=text)


def _attempt_stats() -> Any:
    """Per resume job: its ``/resume`` calls and its latest attempt's id.

    PostgreSQL: a LATERAL subquery, one index probe per row, so the rows stream in
    order from the decisions' index from the first one on (a grouped pass over all the
    attempts makes PostgreSQL hash-join and sort a million rows before the first).
    SQLite: one grouped pass, joined on the job id.

    The call count is not ``ResumeJob.attempts``: that counts only the failed tries (it
    drives the backoff), so a job delivered at the first try has 0 there."""
    stats = select(
        func.count(case((ResumeAttempt.kind == "resume", 1))).label("calls"),
        func.max(ResumeAttempt.id).label("last_id"),
    )
    if is_postgres():
        lateral = stats.where(ResumeAttempt.job_id == ResumeJob.id).lateral("attempt_stats")
        return lateral, true()
    grouped = stats.add_columns(ResumeAttempt.job_id).group_by(ResumeAttempt.job_id).subquery("attempt_stats")
    return grouped, grouped.c.job_id == ResumeJob.id


def export_statement(filters: HistoryFilters, *, for_csv: bool) -> Select:
    """The history rows matching ``filters``, oldest first, one column per COLUMNS entry."""
    stats, on = _attempt_stats()
    last = aliased(ResumeAttempt, name="last_attempt")
    text = _neutralised if for_csv else (lambda column: column)
    calls = case((ResumeJob.id.is_(None), None), else_=func.coalesce(stats.c.calls, 0))
    columns = (
        Decision.id,
        iso_utc(Decision.created_at),
        text(User.username),
        text(Crew.name),
        ReviewRound.execution_id,
        text(Execution.kickoff_id),
        text(ReviewRound.task_id),
        ReviewRound.round_number,
        case((Decision.is_approve, "approve"), else_="revise"),
        text(Decision.reason_code),
        text(Decision.feedback),
        iso_utc(ReviewRound.received_at),
        type_coerce(ResumeJob.state, String),
        text(ResumeJob.outcome),
        last.http_status,
        type_coerce(calls, Integer),
    )
    return (
        history_statement(filters)
        .with_only_columns(*columns, maintain_column_froms=False)
        .outerjoin(stats, on)
        .outerjoin(last, last.id == stats.c.last_id)
        .order_by(Decision.created_at, Decision.id)
    )


def export_blocks(filters: HistoryFilters, *, for_csv: bool) -> Iterator[Sequence[Any]]:
    """Blocks of at most EXPORT_BATCH rows (plain tuples in COLUMNS order).

    A generator: the query runs when iteration starts, i.e. inside the streamed
    response's own context, not in the view whose session is closed before streaming.
    On PostgreSQL the rows come from a server-side cursor."""
    connection = db.session.connection()
    options = {}
    if is_postgres():
        options = {"stream_results": True, "max_row_buffer": EXPORT_BATCH}
        # Compiling this long-running plan costs more than it saves; ends with the transaction.
        connection.exec_driver_sql("SET LOCAL jit = off")
    result = connection.execute(export_statement(filters, for_csv=for_csv), execution_options=options)
    yield from result.partitions(EXPORT_BATCH)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def csv_stream(filters: HistoryFilters) -> Iterator[str]:
    """The header, then one chunk of CSV text per block of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield _drain(buffer)
    for block in export_blocks(filters, for_csv=True):
        writer.writerows(block)
        yield _drain(buffer)


def _json_line(values: tuple[Any, ...]) -> str:
    return json.dumps(dict(zip(COLUMNS, values, strict=True)), ensure_ascii=False) + "\n"


def jsonl_stream(filters: HistoryFilters) -> Iterator[str]:
    """One JSON object per line, one chunk per block of rows (exact values)."""
    for block in export_blocks(filters, for_csv=False):
        yield "".join(_json_line(values) for values in block)
