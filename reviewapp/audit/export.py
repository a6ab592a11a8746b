"""CSV and JSON Lines export of the filtered history, streamed with flat memory.

The export has its own statement (:func:`export_statement`): the history page's rows
and filters, but only the exported columns, already in their final form (ISO times,
``approve``/``revise``, state names). The ``/resume`` call count and the last HTTP
status are the job's own columns (reviewapp/resume_call_counts.py). Each
block of EXPORT_BATCH rows leaves as one chunk.

On PostgreSQL the database writes the CSV itself (:func:`_copied_csv`: ``COPY (...) TO
STDOUT``), and it streams: the server computes the next rows while this process sends
the previous ones (a server-side cursor made the two wait for each other at every
block). Elsewhere, and for JSON Lines, the rows come as plain Core rows and Python's
``csv`` / ``json`` write them. Both CSV paths write the same bytes
(tests/audit/test_export.py holds them to it).

CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or
carriage return) get a leading ``'``; the database does it (:func:`_neutralised`).
JSON Lines keeps the exact values (it is read by programs, not spreadsheets). Nothing
secret is in a history row: no tokens, no resume bodies, no response bodies.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    case,
    func,
    literal,
    type_coerce,
)

from ..extensions import db
from ..models import Crew, Decision, Execution, ResumeJob, ReviewRound, User
from ..statements import inline
from .dialect import is_postgres, iso_utc
from .filters import HistoryFilters
from .history import history_statement

if TYPE_CHECKING:
    import psycopg

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
    """``column`` with a leading ``'`` when it starts like a formula.

    PostgreSQL: an empty text becomes NULL, which ``COPY`` writes as an empty cell, as
    Python's writer writes both ``""`` and ``None`` (``COPY`` would write ``""``)."""
    text = type_coerce(column, String)
    if is_postgres():
        formula = func.ascii(text).in_([inline(ord(start)) for start in FORMULA_STARTS])
        return case((formula, literal("'") + text), else_=func.nullif(text, ""))
    return case((func.substr(text, 1, 1).in_(FORMULA_STARTS), literal("'") + text), else_=text)


def export_statement(filters: HistoryFilters, *, for_csv: bool) -> Select:
    """The history rows matching ``filters``, oldest first, one column per COLUMNS entry."""
    text = _neutralised if for_csv else (lambda column: column)
    stmt = history_statement(filters)
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
        ResumeJob.last_http_status,
        ResumeJob.resume_calls,  # None without a job (the outer join)
    )
    return stmt.with_only_columns(*columns, maintain_column_froms=False).order_by(Decision.created_at, Decision.id)


_STREAMING_PLAN = {"jit": "off", "enable_hashjoin": "off", "enable_mergejoin": "off", "max_parallel_workers_per_gather": "0"}


def _streaming_plan(connection: Connection) -> None:
    """Plan this transaction's export as a cursor would be planned (PostgreSQL): the
    rows in order from the decisions' index, each joined by index probes (nested
    loops). Hash and merge joins would read, join and sort the whole history before
    the first row (spilling the sort to disk at 1M rows). JIT compiling this
    long-running plan costs more than it saves. One backend, no parallel workers: the
    web process sending the rows needs the other core (at 1M rows, serial was 10-15%
    faster than two workers on the 2-core bench machine). Ends with the transaction."""
    for setting, value in _STREAMING_PLAN.items():
        connection.exec_driver_sql(f"SET LOCAL {setting} = {value}")


def export_blocks(filters: HistoryFilters, *, for_csv: bool) -> Iterator[Sequence[Any]]:
    """Blocks of at most EXPORT_BATCH rows (plain tuples in COLUMNS order).

    A generator: the query runs when iteration starts, i.e. inside the streamed
    response's own context, not in the view whose session is closed before streaming.
    On PostgreSQL the rows come from a server-side cursor."""
    connection = db.session.connection()
    options = {}
    if is_postgres():
        options = {"stream_results": True, "max_row_buffer": EXPORT_BATCH}
        _streaming_plan(connection)
    result = connection.execute(export_statement(filters, for_csv=for_csv), execution_options=options)
    yield from result.partitions(EXPORT_BATCH)


def _driver(connection: Connection) -> psycopg.Connection[Any]:
    return cast("psycopg.Connection[Any]", connection.connection.driver_connection)


def _copy_statement(stmt: Select, connection: Connection) -> str:
    """``COPY (stmt) TO STDOUT`` as CSV, ``stmt``'s parameter values merged in.

    ``COPY`` takes no server-side parameters, so psycopg merges them into the text
    (client-side binding: its own quoting, the one its ``ClientCursor`` uses), after
    each value is processed as SQLAlchemy processes it for an ordinary execution."""
    from psycopg import ClientCursor  # PostgreSQL only: not loaded on SQLite

    compiled = stmt.compile(dialect=connection.dialect)
    expanded = compiled.construct_expanded_state(escape_names=False)  # inline() values rendered
    parameters = {}
    for name, value in expanded.parameters.items():
        process = expanded.processors.get(name)
        parameters[compiled.escaped_bind_names.get(name, name)] = process(value) if process else value
    with ClientCursor(_driver(connection)) as cursor:
        query = cursor.mogrify(expanded.statement, parameters)
    return f"COPY ({query}) TO STDOUT WITH (FORMAT csv)"


def _crlf_lines(lines: list[Any]) -> bytes:
    """CSV lines as ``COPY`` ends them (LF), ended as Python's writer ends them (CR LF).
    A line break inside a quoted cell stays as it is."""
    return b"\r\n".join(line[:-1] for line in lines) + b"\r\n"


def _copied_csv(filters: HistoryFilters) -> Iterator[bytes]:
    """The CSV lines, written by PostgreSQL (:func:`_copy_statement`), one chunk per
    EXPORT_BATCH lines (``COPY`` hands them over one at a time). If the client goes
    away, the statement is cancelled rather than read to its end."""
    connection = db.session.connection()
    _streaming_plan(connection)
    statement = _copy_statement(export_statement(filters, for_csv=True), connection)
    driver = _driver(connection)
    encoding = driver.info.encoding
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        try:
            lines: list[Any] = []
            for line in copy:
                lines.append(line)
                if len(lines) == EXPORT_BATCH:
                    yield _utf8(_crlf_lines(lines), encoding)
                    lines = []
            if lines:
                yield _utf8(_crlf_lines(lines), encoding)
        except GeneratorExit:
            driver.cancel_safe()
            raise


def _utf8(chunk: bytes, encoding: str) -> bytes:
    """``chunk`` (in the connection's encoding) as UTF-8, which the response declares."""
    return chunk if encoding == "utf-8" else chunk.decode(encoding).encode()


def _csv_lines(rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


CSV_HEADER = _csv_lines([COLUMNS])


def csv_stream(filters: HistoryFilters) -> Iterator[bytes]:
    """The header, then one chunk of CSV (UTF-8) per block of rows: written by
    PostgreSQL there, by Python's ``csv`` elsewhere (the same bytes)."""
    yield CSV_HEADER
    yield from _copied_csv(filters) if is_postgres() else written_csv(filters)


def written_csv(filters: HistoryFilters) -> Iterator[bytes]:
    """The CSV lines (no header) written by Python's ``csv``, one chunk per block of
    rows. On PostgreSQL the tests hold :func:`_copied_csv` to these bytes."""
    for block in export_blocks(filters, for_csv=True):
        yield _csv_lines(block)


def _json_line(values: tuple[Any, ...]) -> str:
    return json.dumps(dict(zip(COLUMNS, values, strict=True)), ensure_ascii=False) + "\n"


def jsonl_stream(filters: HistoryFilters) -> Iterator[bytes]:
    """One JSON object per line, one chunk (UTF-8) per block of rows (exact values)."""
    for block in export_blocks(filters, for_csv=False):
        yield "".join(_json_line(values) for values in block).encode()
