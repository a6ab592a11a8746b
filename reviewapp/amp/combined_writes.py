"""PostgreSQL only: a webhook's writes as one statement.

On PostgreSQL every statement is a round trip and costs the receiver about a quarter of
a millisecond of CPU in the driver, so the hot paths send the writes of a notification
together, as data-modifying CTEs (``WITH a AS (INSERT ...), b AS (UPDATE ...) ...``).
(The resume delivery does the same with :func:`param` and :func:`constant`, see
reviews/delivery.py.)
Each later part only happens when the first one did (it selects from it), so when the
first write finds a conflict nothing at all is written and the caller falls back to its
general, statement-by-statement path (which is also the SQLite path: SQLite has no
data-modifying CTEs).

The statements are built once, with typed bound parameters (PostgreSQL must know the
type of every parameter, also those only used inside ``json_build_object``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    String,
    Table,
    Text,
    bindparam,
    case,
    column,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql

from ..extensions import db
from ..models import (
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    ReviewRound,
    RoundState,
    WebhookDelivery,
    WebhookKind,
)
from ..statements import run_core

_EXECUTIONS: Table = Execution.__table__  # type: ignore[assignment]
_ROUNDS: Table = ReviewRound.__table__  # type: ignore[assignment]
_EVENTS: Table = ExecutionEvent.__table__  # type: ignore[assignment]
_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]

_ROUND_COLUMNS = ("execution_id", "crew_id", "task_id", "round_number", "output", "snippet", "output_sha256", "agent",
                  "description", "expected_output", "meta", "state", "stale_reason", "received_at")
_EVENT_COLUMNS = ("execution_id", "kind", "message", "data", "created_at")
_DELIVERY_COLUMNS = ("crew_id", "execution_id", "kind", "received_at", "outcome", "source_ip", "payload")
# Parameter names carry a prefix: SQLAlchemy adds a parameter named like a column of a
# table an UPDATE changes to that UPDATE's SET clause (here it would set the execution's
# crew_id or meta), also inside a CTE.
_ROUND = "new_"
_HOOK = "hook_"
_EXECUTION = "execution_"


def param(name: str, table: Table, column_name: str) -> Any:
    """A bound parameter typed like ``table``'s column."""
    return bindparam(name, type_=table.c[column_name].type)


def constant(word: str) -> Any:
    """A fixed word written into the SQL. (SQLAlchemy 2.1 loses the value of an anonymous
    literal in the SET clause of an UPDATE inside a CTE when it executes the statement:
    "A value is required for bind parameter". So these statements use none: constants
    are written out, variable values are named parameters.)"""
    assert word.isidentifier()  # noqa: S101 - only the module's own fixed words
    return literal_column(f"'{word}'", String)


def _now(table: Table, column_name: str) -> Any:
    return param("now", table, column_name)


@dataclass(frozen=True)
class DeliveryRecord:
    """The ``WebhookDelivery`` row a notification leaves (its outcome and execution are
    decided by the statement)."""

    crew_id: int
    kind: WebhookKind
    source_ip: str | None
    payload: str | None

    def params(self) -> dict[str, Any]:
        return {f"{_HOOK}{name}": getattr(self, name) for name in ("crew_id", "kind", "source_ip", "payload")}


def _delivery_from(source: Any, execution_id: Any, outcome: Any) -> Any:
    """The delivery record (:class:`DeliveryRecord` parameters), one per row of ``source``."""
    row = select(
        param(f"{_HOOK}crew_id", _DELIVERIES, "crew_id"), execution_id,
        param(f"{_HOOK}kind", _DELIVERIES, "kind"), _now(_DELIVERIES, "received_at"), outcome,
        param(f"{_HOOK}source_ip", _DELIVERIES, "source_ip"), param(f"{_HOOK}payload", _DELIVERIES, "payload"),
    ).select_from(source)
    return insert(_DELIVERIES).from_select(_DELIVERY_COLUMNS, row)


def _earlier_entries() -> Any:
    """``:earlier_entries``, a JSON array of {kind, message, data}, as rows."""
    return func.json_to_recordset(bindparam("earlier_entries", type_=JSON)).table_valued(
        column("kind", String), column("message", Text), column("data", JSON)
    ).render_derived(with_types=True)


_EXECUTION_COLUMNS = ("crew_id", "kickoff_id", "status", "next_status_check_at", "status_check_failures",
                      "created_at", "updated_at")


@functools.cache
def _new_round_statement(with_execution: bool) -> Any:
    columns = {name: param(f"{_ROUND}{name}", _ROUNDS, name) for name in _ROUND_COLUMNS}
    if with_execution:  # the execution is new too: the round belongs to the row inserted here
        new_execution = (
            postgresql.insert(_EXECUTIONS)
            .values({name: param(f"{_EXECUTION}{name}", _EXECUTIONS, name) for name in _EXECUTION_COLUMNS})
            .on_conflict_do_nothing()
            .returning(_EXECUTIONS.c.id)
            .cte("new_execution")
        )
        columns["execution_id"] = new_execution.c.id
        rows = select(*columns.values()).select_from(new_execution)
    else:
        rows = select(*columns.values())
    new_round = (
        postgresql.insert(_ROUNDS)
        .from_select(list(columns), rows)
        .on_conflict_do_nothing()
        .returning(_ROUNDS.c.id, _ROUNDS.c.execution_id)
        .cte("new_round")
    )
    created_at = _now(_EVENTS, "created_at")
    earlier = _earlier_entries()
    entries = union_all(
        select(new_round.c.execution_id, earlier.c.kind, earlier.c.message, earlier.c.data, created_at)
        .select_from(new_round).join(earlier, true()),
        select(
            new_round.c.execution_id, constant("human_input"), bindparam("waiting_message", type_=Text),
            func.json_build_object(constant("round_id"), new_round.c.id,
                                   constant("task_id"), param(f"{_ROUND}task_id", _ROUNDS, "task_id"),
                                   constant("round_number"), param(f"{_ROUND}round_number", _ROUNDS, "round_number")),
            created_at,
        ).select_from(new_round),
    )
    timeline = insert(_EVENTS).from_select(_EVENT_COLUMNS, entries).cte("timeline")
    waiting = (
        update(_EXECUTIONS)
        .where(_EXECUTIONS.c.id == new_round.c.execution_id, bindparam("waits", type_=Boolean))
        .values(status=param("waiting_status", _EXECUTIONS, "status"), updated_at=_now(_EXECUTIONS, "updated_at"))
        .cte("waiting")
    )
    delivery = _delivery_from(new_round, new_round.c.execution_id, constant("accepted")).cte("delivery")
    return select(new_round.c.id).add_cte(timeline, waiting, delivery)


def finish_values(with_usage: bool) -> dict[str, Any]:
    """The SET clause moving an execution to its final status (``:new_status``, at
    ``:now``); ``result`` and ``error`` keep their stored value when ``:new_result`` /
    ``:new_error`` are NULL, and so does ``token_usage`` unless ``with_usage``
    (``:new_usage``). Shared with the general path (executions.py)."""
    values: dict[str, Any] = {
        "status": param("new_status", _EXECUTIONS, "status"),
        "finished_at": _now(_EXECUTIONS, "finished_at"),
        "updated_at": _now(_EXECUTIONS, "updated_at"),
        "result": func.coalesce(bindparam("new_result", type_=Text), _EXECUTIONS.c.result),
        "error": func.coalesce(bindparam("new_error", type_=Text), _EXECUTIONS.c.error),
        "next_status_check_at": null(),
    }
    if with_usage:
        values["token_usage"] = param("new_usage", _EXECUTIONS, "token_usage")
    return values


FINISHED = (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)


def _known_execution() -> Any:
    """The execution ``:hook_kickoff_id`` of the crew ``:hook_crew_id`` (id, status)."""
    return select(_EXECUTIONS.c.id, _EXECUTIONS.c.status).where(
        _EXECUTIONS.c.crew_id == param(f"{_HOOK}crew_id", _EXECUTIONS, "crew_id"),
        _EXECUTIONS.c.kickoff_id == param(f"{_HOOK}kickoff_id", _EXECUTIONS, "kickoff_id"),
    ).cte("execution")


def _entry_from(source: Any) -> Any:
    """The timeline entry ``:entry_kind``, ``:entry_message``, ``:entry_data`` of the
    execution ``source`` selects (one per row of it)."""
    return select(source.c.id, bindparam("entry_kind", type_=String), bindparam("entry_message", type_=Text),
                  param("entry_data", _EVENTS, "data"), _now(_EVENTS, "created_at")).select_from(source)


def _accepted_if(condition: Any) -> Any:
    return case((condition, constant("accepted")), else_=constant("duplicate"))


@functools.cache
def _progress_statement() -> Any:
    execution = _known_execution()
    recorded = exists().where(
        _EVENTS.c.execution_id == execution.c.id, _EVENTS.c.kind == bindparam("entry_kind", type_=String),
        _EVENTS.c.data.op("->>", return_type=Text)(constant("sha256")) == bindparam("digest", type_=Text),
    )
    entry = (
        insert(_EVENTS).from_select(_EVENT_COLUMNS, _entry_from(execution).where(~recorded))
        .returning(_EVENTS.c.id).cte("entry")
    )
    added = exists(select(entry.c.id))
    delivery = _delivery_from(execution, execution.c.id, _accepted_if(added)).cte("delivery")
    return select(execution.c.id, added).add_cte(delivery)


def record_progress(
    kickoff_id: str, entry: tuple[str, str, dict[str, Any]], *, digest: str, delivery: DeliveryRecord,
    now: datetime,
) -> tuple[int, bool] | None:
    """A task or step notification of a known execution: its timeline entry (``entry``:
    kind, message, data), unless one of that kind with this ``digest`` (``data.sha256``)
    is there already, and the delivery record (accepted, or duplicate). Returns
    (execution id, whether the entry was added); None when reviewapp does not know the
    execution (and then nothing was written)."""
    kind, message, data = entry
    params = {**delivery.params(), f"{_HOOK}kickoff_id": kickoff_id, "entry_kind": kind, "entry_message": message,
              "entry_data": data, "digest": digest, "now": now}
    row = db.session.execute(_progress_statement(), params).first()
    return (row[0], bool(row[1])) if row is not None else None


@functools.cache
def _finish_statement(with_usage: bool) -> Any:
    execution = _known_execution()
    finish = (
        update(_EXECUTIONS)
        .where(_EXECUTIONS.c.id == execution.c.id, _EXECUTIONS.c.status.not_in(FINISHED))
        .values(**finish_values(with_usage))
        .returning(_EXECUTIONS.c.id)
        .cte("finish")
    )
    entry = insert(_EVENTS).from_select(_EVENT_COLUMNS, _entry_from(finish)).cte("entry")
    finished = exists(select(finish.c.id))
    delivery = _delivery_from(execution, execution.c.id, _accepted_if(finished)).cte("delivery")
    pending = (
        select(func.count()).select_from(_ROUNDS)
        .where(_ROUNDS.c.execution_id == execution.c.id, _ROUNDS.c.state == RoundState.PENDING)
        .scalar_subquery()
    )
    return select(execution.c.id, finished, pending).add_cte(entry, delivery)


def record_finish(
    kickoff_id: str, finish: dict[str, Any], entry: tuple[str, str, dict[str, Any] | None], *,
    delivery: DeliveryRecord, now: datetime,
) -> tuple[int, bool, int] | None:
    """An execution-completed notification of a known execution: the execution moved to
    its final status unless it has one already (``finish``: ``new_status``,
    ``new_result``, ``new_error`` and, when given, ``new_usage``, see
    :func:`finish_values`), then its timeline entry (only if it was moved), and the
    delivery record (accepted, or duplicate). Returns (execution id, whether it finished
    it, how many of its rounds were pending at that moment); None when reviewapp does not
    know the execution (and then nothing was written)."""
    kind, message, data = entry
    params = {**delivery.params(), **finish, f"{_HOOK}kickoff_id": kickoff_id, "entry_kind": kind,
              "entry_message": message, "entry_data": data, "now": now}
    row = db.session.execute(_finish_statement("new_usage" in finish), params).first()
    return (row[0], bool(row[1]), int(row[2])) if row is not None else None


def insert_new_round(
    values: dict[str, Any], *, earlier_entries: list[dict[str, Any]], waiting_message: str, waits: bool,
    delivery: DeliveryRecord, now: datetime, new_execution: dict[str, Any] | None = None,
) -> int | None:
    """A new review round (``values``: its columns but ``received_at``; ``INSERT .. ON
    CONFLICT DO NOTHING``) and, only if it was inserted: the execution's timeline entries
    not written yet (``earlier_entries``: kind, message, data) and the "waits for a
    review" one, the execution's status moved to pending review (when ``waits``), the
    delivery record (accepted). With ``new_execution`` (its columns but the times) the
    execution is inserted first (``ON CONFLICT DO NOTHING`` too) and the round is its
    own. Returns the new round's id, or None after a conflict (and then nothing at all
    was written)."""
    params = {f"{_ROUND}{name}": value for name, value in {**values, "received_at": now}.items()}
    if new_execution is not None:
        execution = {**new_execution, "created_at": now, "updated_at": now}
        params.update({f"{_EXECUTION}{name}": value for name, value in execution.items()})
        params.pop(f"{_ROUND}execution_id", None)
    params.update(delivery.params(), now=now, earlier_entries=earlier_entries, waiting_message=waiting_message,
                  waits=waits, waiting_status=ExecutionStatus.PENDING_REVIEW)
    return run_core(_new_round_statement(new_execution is not None), params).scalar()
