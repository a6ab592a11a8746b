"""CSV and JSON Lines export of the filtered history, streamed with flat memory.

Rows come from a server-side cursor (``yield_per``) and leave in small text chunks, so
a million decisions never sit in memory at once. CSV cells that a spreadsheet would
run as a formula (starting with ``= + - @``, tab or carriage return) get a leading
``'``. JSON Lines keeps the exact values (it is read by programs, not spreadsheets).
Nothing secret is in a history row: no tokens, no resume bodies, no response bodies.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

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
ROWS_PER_CHUNK = 200


def neutralise(value: Any) -> Any:
    """A spreadsheet shows this cell as text, never runs it."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_values(row: Any) -> tuple[Any, ...]:
    """One history row as plain values, in the order of COLUMNS (written out rather
    than looped over: this runs a million times per export)."""
    state = row.job_state
    return (
        row.id,
        _iso(row.created_at),
        row.reviewer,
        row.crew,
        row.execution_id,
        row.kickoff_id,
        row.task_id,
        row.round_number,
        "approve" if row.is_approve else "revise",
        row.reason_code,
        row.feedback,
        _iso(row.received_at),
        state.value if state is not None else None,
        row.job_outcome,
        row.last_http_status,
        row.attempts,
    )


def _csv_cells(row: Any) -> list[Any]:
    return [
        "'" + value if value.__class__ is str and value.startswith(FORMULA_STARTS) else value
        for value in export_values(row)
    ]


def _batches(rows: Iterable[Any], size: int = ROWS_PER_CHUNK) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def csv_stream(rows: Iterable[Any]) -> Iterator[str]:
    """The header, then one chunk of CSV text per ROWS_PER_CHUNK rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield _drain(buffer)
    for batch in _batches(rows):
        writer.writerows(_csv_cells(row) for row in batch)
        yield _drain(buffer)


def jsonl_stream(rows: Iterable[Any]) -> Iterator[str]:
    """One JSON object per line, one chunk per ROWS_PER_CHUNK rows."""
    for batch in _batches(rows):
        yield "".join(
            json.dumps(dict(zip(COLUMNS, export_values(row), strict=True)), ensure_ascii=False) + "\n"
            for row in batch
        )
