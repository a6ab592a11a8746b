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
from enum import Enum
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


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def export_record(row: Any) -> dict[str, Any]:
    """One history row as a flat record (the export's columns, in order)."""
    values = (
        row.id,
        row.created_at,
        row.reviewer,
        row.crew,
        row.execution_id,
        row.kickoff_id,
        row.task_id,
        row.round_number,
        "approve" if row.is_approve else "revise",
        row.reason_code,
        row.feedback,
        row.received_at,
        row.job_state,
        row.job_outcome,
        row.last_http_status,
        row.attempts,
    )
    return {name: _plain(value) for name, value in zip(COLUMNS, values, strict=True)}


def _chunks(rows: Iterable[Any], render: Any) -> Iterator[str]:
    buffer: list[str] = []
    for row in rows:
        buffer.append(render(export_record(row)))
        if len(buffer) >= ROWS_PER_CHUNK:
            yield "".join(buffer)
            buffer.clear()
    if buffer:
        yield "".join(buffer)


def _csv_line(values: Iterable[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


def csv_stream(rows: Iterable[Any]) -> Iterator[str]:
    yield _csv_line(COLUMNS)
    yield from _chunks(rows, lambda record: _csv_line(neutralise(v) for v in record.values()))


def jsonl_stream(rows: Iterable[Any]) -> Iterator[str]:
    yield from _chunks(rows, lambda record: json.dumps(record, ensure_ascii=False) + "\n")
