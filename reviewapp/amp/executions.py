"""Executions and review rounds as AMP reports them (webhooks, kickoff, status sync).

Services flush; the view, receiver, CLI or worker commits. Inserts that can race with a
concurrent delivery use ``INSERT ... ON CONFLICT DO NOTHING`` on the table's unique keys
and then read the row back, so a redelivery never creates a second row.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from flask import current_app
from sqlalchemy import Table, and_, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..audit.dialect import is_postgres
from ..audit.services import record_event
from ..extensions import db
from ..models import (
    Crew,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    JobState,
    ReviewRound,
    RoundState,
    User,
    WebhookDelivery,
    WebhookKind,
    output_snippet,
    utcnow,
)
from ..statements import run_core
from . import combined_writes
from .client import AmpUnauthorized, as_text, client_for
from .crews import mark_token_broken
from .webhooks import all_webhooks

SUMMARY_LIMIT = 500

# Tables for the plain (Core) statements of the receivers' hot path.
_CREWS: Table = Crew.__table__  # type: ignore[assignment]
_EXECUTIONS: Table = Execution.__table__  # type: ignore[assignment]
_ROUNDS: Table = ReviewRound.__table__  # type: ignore[assignment]
_EVENTS: Table = ExecutionEvent.__table__  # type: ignore[assignment]
_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]
_TO_PENDING_REVIEW = (
    update(_EXECUTIONS).where(_EXECUTIONS.c.id == bindparam("execution_id"))
    .values(status=ExecutionStatus.PENDING_REVIEW)
)


class CrewRef(Protocol):
    """What the receivers need of a crew: a ``Crew`` row, or the few columns the
    receiver reads with a plain query."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


class PayloadError(ValueError):
    """A delivery that cannot be understood; the message says what is missing."""


# --------------------------------------------------------------------------- small helpers


def record_execution_event(
    execution: Execution, kind: str, message: str | None = None, data: dict[str, Any] | None = None
) -> ExecutionEvent:
    event = ExecutionEvent(execution=execution, kind=kind, message=message, data=data or None)
    db.session.add(event)
    return event


def record_delivery(
    crew: CrewRef | None,
    kind: WebhookKind,
    *,
    outcome: str,
    payload: str | None,
    error: str | None = None,
    execution_id: int | None = None,
    source_ip: str | None = None,
) -> None:
    """One ``WebhookDelivery`` row, inserted at once (a plain INSERT, no unit of work)."""
    run_core(
        _DELIVERIES.insert(),
        {
            "crew_id": crew.id if crew is not None else None,
            "execution_id": execution_id,
            "kind": kind,
            "outcome": outcome,
            "error": error,
            "source_ip": source_ip,
            "payload": payload,
        },
    )


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def _ignoring_insert(dialect: str, table: Table) -> Any:
    """``INSERT .. ON CONFLICT DO NOTHING RETURNING id`` for ``table``, built once: the
    values are bound at execution (no statement building or cache-key walk per row)."""
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - reviewapp supports SQLite and PostgreSQL
        raise RuntimeError(f"unsupported database {dialect}")
    return stmt.returning(table.c.id)


def _insert_ignoring_conflicts(table: Table, values: dict[str, Any]) -> int | None:
    """Insert one row unless it collides with a unique key; the new row's id, or None."""
    stmt = _ignoring_insert(db.session.get_bind().dialect.name, table)
    # rowcount is not reliable here (psycopg reports -1); RETURNING says what happened.
    return run_core(stmt, values).scalar()


def _variants(name: str) -> tuple[str, str]:
    head, *rest = name.split("_")
    return name, head + "".join(part.capitalize() for part in rest)


def pick(payload: dict[str, Any], *names: str) -> Any:
    """First non-empty value among ``names`` (snake_case or camelCase), looking at the
    top level first and then inside a ``data``/``task``/``payload`` wrapper."""
    scopes = [payload] + [payload[k] for k in ("data", "task", "payload") if isinstance(payload.get(k), dict)]
    for scope in scopes:
        for name in names:
            for key in _variants(name):
                value = scope.get(key)
                if value not in (None, ""):
                    return value
    return None


def _short_text(value: Any, limit: int) -> str | None:
    text = as_text(value)
    return text[:limit] if text is not None else None


def _identifier(value: Any, what: str, limit: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"The payload has no {what}.")
    text = str(value).strip()
    if not text:
        raise PayloadError(f"The payload has no {what}.")
    if len(text) > limit or any(not ch.isprintable() for ch in text):
        raise PayloadError(f"The {what} is not a valid identifier (at most {limit} printable characters).")
    return text


def execution_id_of(payload: dict[str, Any]) -> str:
    return _identifier(pick(payload, "execution_id", "kickoff_id"), "execution id (execution_id or kickoff_id)", 64)


def _now():
    return utcnow()


# --------------------------------------------------------------------------- executions


def find_execution(crew: CrewRef, kickoff_id: str) -> Execution | None:
    return db.session.scalar(
        select(Execution).where(Execution.crew_id == crew.id, Execution.kickoff_id == kickoff_id)
    )


def _execution_values(crew_id: int, kickoff_id: str, status: ExecutionStatus) -> dict[str, Any]:
    """A new execution's columns (but its times)."""
    first_check = _now() + timedelta(seconds=int(current_app.config["STATUS_POLL_MIN_SECONDS"]))
    return {
        "crew_id": crew_id,
        "kickoff_id": kickoff_id,
        "status": status,
        "next_status_check_at": first_check,
        "status_check_failures": 0,
    }


def _new_execution(crew_id: int, kickoff_id: str, status: ExecutionStatus) -> int | None:
    """Insert the execution unless it exists; its id when this call created it."""
    return _insert_ignoring_conflicts(_EXECUTIONS, _execution_values(crew_id, kickoff_id, status))


def _discovered_message(heard_from: str) -> str:
    return f"First heard of through a {heard_from} notification (not started from reviewapp)."


def ensure_execution(
    crew: CrewRef, kickoff_id: str, *, status: ExecutionStatus, heard_from: str
) -> tuple[Execution, bool]:
    """The execution ``kickoff_id`` of ``crew``, created with ``status`` if new."""
    created = _new_execution(crew.id, kickoff_id, status) is not None
    execution = find_execution(crew, kickoff_id)
    if execution is None:  # pragma: no cover - the row exists by now
        raise RuntimeError("execution vanished after insert")
    if created and heard_from != "kickoff":
        record_execution_event(execution, "discovered", _discovered_message(heard_from))
    return execution, created


_TO_STALE = (
    update(_ROUNDS)
    .where(_ROUNDS.c.id == bindparam("round_id"), _ROUNDS.c.state == RoundState.PENDING)
    .values(state=RoundState.STALE, stale_reason=bindparam("reason"))
)


def _pending_rounds(
    execution_id: int,
    *,
    task_id: str | None = None,
    exclude_round_id: int | None = None,
    received_before: datetime | None = None,
) -> list[Any]:
    """The pending rounds of an execution: (id, task_id, round_number) rows."""
    query = select(_ROUNDS.c.id, _ROUNDS.c.task_id, _ROUNDS.c.round_number).where(
        _ROUNDS.c.execution_id == execution_id, _ROUNDS.c.state == RoundState.PENDING
    )
    if task_id is not None:
        query = query.where(_ROUNDS.c.task_id == task_id)
    if exclude_round_id is not None:
        query = query.where(_ROUNDS.c.id != exclude_round_id)
    if received_before is not None:
        query = query.where(_ROUNDS.c.received_at <= received_before)
    return list(db.session.execute(query).all())


def _make_stale(round_: Any, reason: str, kickoff_id: str) -> bool:
    """One pending round -> STALE, unless it was decided a moment ago (conditional
    UPDATE, so a concurrent decision is never overwritten); audited when it changed."""
    result = db.session.execute(_TO_STALE, {"round_id": round_.id, "reason": reason})
    if getattr(result, "rowcount", 0) != 1:
        return False
    record_event(
        "round_stale",
        actor_name="system",
        target_type="round",
        target_id=round_.id,
        target_name=f"{round_.task_id} round {round_.round_number}",
        details={"reason": reason, "execution": kickoff_id},
    )
    return True


def _stale_event_data(round_: Any) -> dict[str, Any]:
    return {"round_id": round_.id, "task_id": round_.task_id, "round_number": round_.round_number}


def mark_pending_rounds_stale(
    execution: Execution,
    reason: str,
    *,
    task_id: str | None = None,
    exclude_round_id: int | None = None,
    received_before: datetime | None = None,
) -> int:
    """Pending rounds of ``execution`` -> STALE with ``reason``. Returns how many changed.

    Each row is changed with a conditional UPDATE, so a round decided at the same moment
    is never overwritten."""
    changed = 0
    rows = _pending_rounds(execution.id, task_id=task_id, exclude_round_id=exclude_round_id,
                           received_before=received_before)
    for round_ in rows:
        if not _make_stale(round_, reason, execution.kickoff_id):
            continue
        loaded = db.session.identity_map.get(db.session.identity_key(ReviewRound, round_.id))
        if loaded is not None:
            db.session.expire(loaded)
        changed += 1
        record_execution_event(execution, "round_stale", reason, _stale_event_data(round_))
    return changed


def finish_execution(
    execution: Execution,
    status: ExecutionStatus,
    *,
    result: str | None = None,
    error: str | None = None,
    token_usage: dict[str, Any] | None = None,
    source: str,
) -> bool:
    """Mark ``execution`` completed or failed (once). Pending rounds become stale."""
    if execution.status.finished:
        return False
    execution.status = status
    execution.finished_at = _now()
    execution.result = result if result is not None else execution.result
    execution.error = error if error is not None else execution.error
    if token_usage:
        execution.token_usage = token_usage
    execution.next_status_check_at = None
    word = _finish_word(status)
    record_execution_event(execution, word, f"AMP reports the execution {word} ({source}).",
                           {"error": error[:SUMMARY_LIMIT]} if error else None)
    mark_pending_rounds_stale(execution, f"The execution {word} ({source}); it no longer waits for a review.")
    return True


# --------------------------------------------------------------------------- human input


@dataclass
class HumanInputNotice:
    execution_id: str
    task_id: str
    output: str
    agent: str | None = None
    description: str | None = None
    expected_output: str | None = None
    meta: dict[str, Any] | None = None
    timestamp: str | None = None


def parse_human_input(payload: dict[str, Any]) -> HumanInputNotice:
    """Read a human-input notification tolerantly (contract section 5)."""
    execution_id = execution_id_of(payload)
    task_id = _identifier(pick(payload, "task_id", "task_name", "name"), "task id (task_id, task_name or name)", 200)
    output = as_text(pick(payload, "output", "task_output", "result"))
    if output is None:
        raise PayloadError("The payload has no task output (output, task_output or result).")
    meta = payload.get("meta")
    return HumanInputNotice(
        execution_id=execution_id,
        task_id=task_id,
        output=output,
        agent=_short_text(pick(payload, "agent", "agent_role"), 200),
        description=as_text(pick(payload, "description", "task_description")),
        expected_output=as_text(pick(payload, "expected_output")),
        meta=meta if isinstance(meta, dict) else None,
        timestamp=_short_text(pick(payload, "timestamp"), 64),
    )


def _salted(digest: str, round_number: int) -> str:
    """The digest of a round that repeats an earlier output after a confirmed revision."""
    return sha256_text(f"{digest}:round-{round_number}")


@dataclass(frozen=True)
class StoredRound:
    """A review round as a notification left it: new (``created``) or the one it repeats."""

    id: int
    task_id: str
    round_number: int
    state: RoundState
    created: bool


@dataclass(frozen=True)
class _RoundFacts:
    id: int
    task_id: str
    round_number: int
    output_sha256: str
    state: RoundState


@dataclass
class _ExecutionFacts:
    """An execution's status and its rounds' small columns, read in one query, plus the
    timeline entries not inserted yet (they go in together, in order)."""

    id: int
    status: ExecutionStatus
    rounds: list[_RoundFacts]
    events: list[dict[str, Any]] = field(default_factory=list)

    def add_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append({"execution_id": self.id, "kind": kind, "message": message, "data": data})

    def insert_events(self) -> None:
        if self.events:
            now = _now()
            run_core(_EVENTS.insert(), [{**event, "created_at": now} for event in self.events])
            self.events = []


_FACT_COLUMNS = (_EXECUTIONS.c.id, _EXECUTIONS.c.status, _ROUNDS.c.id, _ROUNDS.c.task_id,
                 _ROUNDS.c.round_number, _ROUNDS.c.output_sha256, _ROUNDS.c.state)
_WITH_ROUNDS = _ROUNDS.c.execution_id == _EXECUTIONS.c.id
_FACTS = select(*_FACT_COLUMNS).select_from(_EXECUTIONS.outerjoin(_ROUNDS, _WITH_ROUNDS))
_FACTS_BY_KICKOFF = _FACTS.where(_EXECUTIONS.c.crew_id == bindparam("crew_id"),
                                 _EXECUTIONS.c.kickoff_id == bindparam("kickoff_id"))
_FACTS_BY_ID = _FACTS.where(_EXECUTIONS.c.id == bindparam("execution_id"))
# The crew a receiver is called for, with the facts of the execution a notification
# names (none when reviewapp has not heard of it): one statement instead of two.
_CREW_COLUMNS = (_CREWS.c.id, _CREWS.c.name, _CREWS.c.inbound_secret_encrypted)
_CREW_WITH_FACTS = (
    select(*_CREW_COLUMNS, *_FACT_COLUMNS)
    .select_from(
        _CREWS.outerjoin(_EXECUTIONS, and_(_EXECUTIONS.c.crew_id == _CREWS.c.id,
                                           _EXECUTIONS.c.kickoff_id == bindparam("kickoff_id")))
        .outerjoin(_ROUNDS, _WITH_ROUNDS)
    )
    .where(_CREWS.c.name == bindparam("name"))
)


def _facts_of(rows: Sequence[Any]) -> _ExecutionFacts | None:
    """The facts in ``rows`` of :data:`_FACT_COLUMNS` (None: no execution)."""
    if not rows or rows[0][0] is None:
        return None
    rounds = [_RoundFacts(*row[2:]) for row in rows if row[2] is not None]
    return _ExecutionFacts(id=rows[0][0], status=rows[0][1], rounds=rounds)


def _execution_facts(stmt: Any, params: dict[str, Any]) -> _ExecutionFacts | None:
    return _facts_of(run_core(stmt, params).all())


@dataclass(frozen=True)
class KnownExecution:
    """What reviewapp knew of execution ``kickoff_id`` when a receiver looked its crew
    up (``facts`` None: nothing). Read before the caller is authenticated, and only
    handed on once it is."""

    kickoff_id: str
    facts: _ExecutionFacts | None


class ReceiverCrew(NamedTuple):
    """The columns of a crew a receiver reads."""

    id: int
    name: str
    inbound_secret_encrypted: str


_CREW_BY_NAME = select(*_CREW_COLUMNS).where(_CREWS.c.name == bindparam("name"))


def crew_named(name: str) -> ReceiverCrew | None:
    """The crew ``name``'s id, name and encrypted inbound secret (None: no such crew)."""
    row = run_core(_CREW_BY_NAME, {"name": name}).first()
    return ReceiverCrew(*row) if row is not None else None


def crew_with_execution(name: str, kickoff_id: str) -> tuple[ReceiverCrew | None, KnownExecution]:
    """The crew ``name`` (id, name and encrypted inbound secret; None if there is no such
    crew) and what reviewapp knows of its execution ``kickoff_id``, in one statement."""
    rows = run_core(_CREW_WITH_FACTS, {"name": name, "kickoff_id": kickoff_id}).all()
    width = len(_CREW_COLUMNS)
    crew = ReceiverCrew(*rows[0][:width]) if rows else None
    return crew, KnownExecution(kickoff_id, _facts_of([row[width:] for row in rows]))


def _known_or_new(
    crew: CrewRef, kickoff_id: str, read: Any, *, status: ExecutionStatus, heard_from: str
) -> _ExecutionFacts:
    """The facts ``read`` finds about execution ``kickoff_id``; the execution is created
    with ``status`` (and noted as discovered) when reviewapp has not heard of it."""
    facts = read({"crew_id": crew.id, "kickoff_id": kickoff_id})
    if facts is not None:
        return facts
    return _created(crew, kickoff_id, read, status=status, heard_from=heard_from)


def _created(
    crew: CrewRef, kickoff_id: str, read: Any, *, status: ExecutionStatus, heard_from: str
) -> _ExecutionFacts:
    """The execution ``kickoff_id``, which ``read`` did not find a moment ago, inserted
    with ``status`` (and noted as discovered), unless a concurrent delivery created it
    meanwhile: then the facts ``read`` finds now."""
    new_id = _new_execution(crew.id, kickoff_id, status)
    if new_id is None:  # a concurrent delivery created it a moment ago
        facts = read({"crew_id": crew.id, "kickoff_id": kickoff_id})
        if facts is None:  # pragma: no cover - the row exists by now
            raise RuntimeError("execution vanished after insert")
        return facts
    facts = _ExecutionFacts(id=new_id, status=status, rounds=[])
    facts.add_event("discovered", _discovered_message(heard_from))
    return facts


def _facts_with_rounds(where: dict[str, Any]) -> _ExecutionFacts | None:
    return _execution_facts(_FACTS_BY_KICKOFF, where)


def _rerun_confirmed(round_: ReviewRound) -> bool:
    """A revision of ``round_`` was requested and AMP accepted it: the task ran again."""
    decision = round_.decision
    if round_.state is not RoundState.DECIDED or decision is None or decision.is_approve:
        return False
    job = decision.job
    return job is not None and job.state is JobState.SUCCEEDED and job.outcome != "completed"


def _place_for(facts: _ExecutionFacts, notice: HumanInputNotice) -> StoredRound | tuple[str, int]:
    """Where ``notice`` goes: the known round it repeats, or (digest, number) of a new one.

    The same output is normally a redelivery. It is a new round only when it answers a
    revision AMP confirmed (the agent produced the same text again): that round gets a
    digest salted with its number, so the unique key still holds. Outputs are compared
    by their SHA-256 (the unique key does the same)."""
    digest = sha256_text(notice.output)
    task_rounds = [r for r in facts.rounds if r.task_id == notice.task_id]
    number = max((r.round_number for r in task_rounds), default=0) + 1
    same = [r for r in task_rounds if r.output_sha256 in (digest, _salted(digest, r.round_number))]
    if not any(r.output_sha256 == digest for r in same):
        return digest, number
    latest = max(task_rounds, key=lambda r: r.round_number)
    if latest in same and latest.state is RoundState.DECIDED:
        latest_row = db.session.get(ReviewRound, latest.id)
        if latest_row is not None and _rerun_confirmed(latest_row):
            return _salted(digest, number), number
    known = max(same, key=lambda r: r.round_number)
    return StoredRound(known.id, known.task_id, known.round_number, known.state, created=False)


def _round_values(crew_id: int, facts: _ExecutionFacts, notice: HumanInputNotice, digest: str,
                  number: int) -> dict[str, Any]:
    finished = facts.status.finished
    return {
        "execution_id": facts.id,
        "crew_id": crew_id,
        "task_id": notice.task_id,
        "round_number": number,
        "output": notice.output,
        "snippet": output_snippet(notice.output),
        "output_sha256": digest,
        "agent": notice.agent,
        "description": notice.description,
        "expected_output": notice.expected_output,
        "meta": notice.meta,
        "state": RoundState.STALE if finished else RoundState.PENDING,
        "stale_reason": "The execution had already finished when this notification arrived."
        if finished else None,
    }


def _store_notice(
    crew_id: int, facts: _ExecutionFacts, notice: HumanInputNotice, *, source: str,
    place: StoredRound | tuple[str, int] | None = None,
) -> tuple[StoredRound, _ExecutionFacts]:
    """Create the review round for ``notice`` unless it repeats one already stored
    (``place``: where :func:`_place_for` put it in ``facts``, if asked already).

    Plain INSERT ... ON CONFLICT DO NOTHING RETURNING: a concurrent delivery of the same
    output makes ours insert nothing, and we look again (the facts are read afresh)."""
    for _attempt in range(5):
        place = place or _place_for(facts, notice)
        if isinstance(place, StoredRound):
            return place, facts
        digest, number = place
        values = _round_values(crew_id, facts, notice, digest, number)
        new_id = _insert_ignoring_conflicts(_ROUNDS, values)
        if new_id is not None:
            stored = StoredRound(new_id, notice.task_id, number, values["state"], created=True)
            _after_new_round(facts, stored, source)
            return stored, facts
        fresh = _execution_facts(_FACTS_BY_ID, {"execution_id": facts.id})
        assert fresh is not None  # noqa: S101 - executions are not deleted while in use
        fresh.events = facts.events
        facts, place = fresh, None
    raise PayloadError("Too many concurrent notifications for this task; deliver it again.")


def _waiting_message(task_id: str, round_number: int, source: str) -> str:
    return f"Task {task_id} waits for a review (round {round_number}, {source})."


def _after_new_round(facts: _ExecutionFacts, round_: StoredRound, source: str) -> None:
    facts.add_event(
        "human_input",
        _waiting_message(round_.task_id, round_.round_number, source),
        {"round_id": round_.id, "task_id": round_.task_id, "round_number": round_.round_number},
    )
    facts.insert_events()
    if round_.state is RoundState.PENDING and any(r.state is RoundState.PENDING for r in facts.rounds):
        # AMP pauses one task at a time: an older pending round is not waited for any more.
        execution = db.session.get(Execution, facts.id)
        assert execution is not None  # noqa: S101 - read a moment ago
        mark_pending_rounds_stale(
            execution,
            f"Superseded: AMP paused again on task {round_.task_id} (round {round_.round_number}).",
            exclude_round_id=round_.id,
        )


def _waits_for_review(facts: _ExecutionFacts, round_: StoredRound) -> bool:
    """The new round means the execution now waits for a review (and did not before)."""
    return round_.created and _now_waits(facts, round_.state)


def _now_waits(facts: _ExecutionFacts, new_round_state: RoundState) -> bool:
    return new_round_state is RoundState.PENDING and facts.status is not ExecutionStatus.PENDING_REVIEW


def _new_round_at_once(
    crew: CrewRef, facts: _ExecutionFacts | None, notice: HumanInputNotice,
    place: StoredRound | tuple[str, int] | None, *, raw: str, source_ip: str | None,
) -> StoredRound | None:
    """PostgreSQL: a new round and everything it records (timeline entries, the
    execution's status, the delivery), with the execution itself when ``facts`` is None
    (reviewapp has not heard of it), in one statement
    (:func:`combined_writes.insert_new_round`). None when that does not apply (an older
    pending round to supersede) or after a conflict, and then nothing was written."""
    new_execution = None
    if facts is None:
        new_execution = _execution_values(crew.id, notice.execution_id, ExecutionStatus.PENDING_REVIEW)
        facts = _ExecutionFacts(id=0, status=ExecutionStatus.PENDING_REVIEW, rounds=[])  # id: the insert's
        facts.add_event("discovered", _discovered_message("human-input"))
        place = _place_for(facts, notice)
    elif any(r.state is RoundState.PENDING for r in facts.rounds):
        return None
    assert isinstance(place, tuple)  # noqa: S101 - the callers' condition
    digest, number = place
    values = _round_values(crew.id, facts, notice, digest, number)
    new_id = combined_writes.insert_new_round(
        values,
        earlier_entries=[{key: e[key] for key in ("kind", "message", "data")} for e in facts.events],
        waiting_message=_waiting_message(notice.task_id, number, "webhook"),
        waits=_now_waits(facts, values["state"]),
        delivery=combined_writes.DeliveryRecord(crew.id, WebhookKind.HUMAN_INPUT, source_ip, raw),
        now=_now(),
        new_execution=new_execution,
    )
    if new_id is None:
        return None
    facts.events = []  # written with it
    return StoredRound(new_id, notice.task_id, number, values["state"], created=True)


def store_round(
    crew: Crew, execution: Execution, notice: HumanInputNotice, *, source: str
) -> tuple[ReviewRound, bool]:
    """Create the review round for ``notice`` unless it repeats one already stored
    (for callers holding the execution as an ORM object, e.g. the status poller)."""
    db.session.flush()
    facts = _execution_facts(_FACTS_BY_ID, {"execution_id": execution.id})
    assert facts is not None  # noqa: S101 - the caller holds the row
    stored, facts = _store_notice(crew.id, facts, notice, source=source)
    if _waits_for_review(facts, stored):
        execution.status = ExecutionStatus.PENDING_REVIEW
    round_ = db.session.get(ReviewRound, stored.id)
    assert round_ is not None  # noqa: S101 - stored in this transaction
    return round_, stored.created


def receive_human_input(
    crew: CrewRef, payload: dict[str, Any], *, raw: str, source_ip: str | None = None,
    known_execution: KnownExecution | None = None,
) -> StoredRound:
    """Store a human-input notification: the execution (if new), its review round and the
    delivery record, in a few plain statements (the receiver's hot path).
    ``known_execution``: what :func:`crew_with_execution` read of it in this transaction.

    Idempotent: the same output for the same execution and task is the same round
    (``created=False``); a different output is the next revision round. Raises
    :class:`PayloadError`."""
    notice = parse_human_input(payload)
    if known_execution is not None and known_execution.kickoff_id == notice.execution_id:
        known = known_execution.facts
    else:
        known = _facts_with_rounds({"crew_id": crew.id, "kickoff_id": notice.execution_id})
    place = _place_for(known, notice) if known is not None else None
    if is_postgres() and not isinstance(place, StoredRound):
        at_once = _new_round_at_once(crew, known, notice, place, raw=raw, source_ip=source_ip)
        if at_once is not None:
            return at_once
    facts = known or _created(crew, notice.execution_id, _facts_with_rounds,
                              status=ExecutionStatus.PENDING_REVIEW, heard_from="human-input")
    stored, facts = _store_notice(crew.id, facts, notice, source="webhook", place=place if known else None)
    facts.insert_events()
    if _waits_for_review(facts, stored):
        run_core(_TO_PENDING_REVIEW, {"execution_id": facts.id, "updated_at": _now()})
    record_delivery(
        crew,
        WebhookKind.HUMAN_INPUT,
        outcome="accepted" if stored.created else "duplicate",
        payload=raw,
        execution_id=facts.id,
        source_ip=source_ip,
    )
    return stored


def ingest_human_input(
    crew: Crew, payload: dict[str, Any], *, raw: str, source_ip: str | None = None
) -> tuple[ReviewRound, bool]:
    """:func:`receive_human_input`, answering with the round as an ORM object."""
    stored = receive_human_input(crew, payload, raw=raw, source_ip=source_ip)
    round_ = db.session.get(ReviewRound, stored.id)
    assert round_ is not None  # noqa: S101 - stored or found in this transaction
    return round_, stored.created


# --------------------------------------------------------------------------- other webhooks


_STATUS_BY_KICKOFF = select(_EXECUTIONS.c.id, _EXECUTIONS.c.status).where(
    _EXECUTIONS.c.crew_id == bindparam("crew_id"), _EXECUTIONS.c.kickoff_id == bindparam("kickoff_id")
)
# A timeline entry, unless one of its kind with its digest (``data.sha256``) is there
# already; RETURNING says whether it was added. (Parameters named unlike the columns.)
_ENTRY_UNLESS_RECORDED = (
    insert(_EVENTS)
    .from_select(
        ["execution_id", "kind", "message", "data", "created_at"],
        select(
            bindparam("entry_execution", type_=_EVENTS.c.execution_id.type),
            bindparam("entry_kind", type_=_EVENTS.c.kind.type),
            bindparam("entry_message", type_=_EVENTS.c.message.type),
            bindparam("entry_data", type_=_EVENTS.c.data.type),
            bindparam("now", type_=_EVENTS.c.created_at.type),
        ).where(
            ~exists().where(
                _EVENTS.c.execution_id == bindparam("entry_execution"), _EVENTS.c.kind == bindparam("entry_kind"),
                _EVENTS.c.data["sha256"].as_string() == bindparam("digest"),
            )
        ),
    )
    .returning(_EVENTS.c.id)
)


def _execution_status(where: dict[str, Any]) -> _ExecutionFacts | None:
    """The execution's id and status (its rounds are not read: these paths need none)."""
    row = db.session.execute(_STATUS_BY_KICKOFF, where).first()
    return _ExecutionFacts(id=row[0], status=row[1], rounds=[]) if row is not None else None


def _facts_for_progress(crew: CrewRef, payload: dict[str, Any], heard_from: str) -> _ExecutionFacts:
    """The execution a task, step or crew notification is about (created as running)."""
    return _known_or_new(crew, execution_id_of(payload), _execution_status,
                         status=ExecutionStatus.RUNNING, heard_from=heard_from)


def _entry_unless_recorded(execution_id: int, entry: tuple[str, str, dict[str, Any]], digest: str) -> bool:
    """Add the timeline ``entry`` (kind, message, data) unless one of its kind with this
    ``digest`` is there; whether it was added. One statement."""
    kind, message, data = entry
    params = {"entry_execution": execution_id, "entry_kind": kind, "entry_message": message, "entry_data": data,
              "digest": digest, "now": _now()}
    return db.session.execute(_ENTRY_UNLESS_RECORDED, params).first() is not None


def _canonical_digest(payload: dict[str, Any]) -> str:
    return sha256_text(json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str))


def _progress_entry(kind: WebhookKind, payload: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The timeline entry (kind, message, data) of a task-completed or step notification."""
    if kind is WebhookKind.TASK:
        name = _short_text(pick(payload, "name", "task_name", "description"), 200) or "a task"
        summary = _short_text(pick(payload, "summary", "output"), SUMMARY_LIMIT)
        data = {"name": name, "agent": _short_text(payload.get("agent"), 200), "summary": summary}
        return "task_completed", f"Task {name} completed.", data
    return "step", "Agent step.", {
        "thought": _short_text(payload.get("thought"), SUMMARY_LIMIT),
        "tool": _short_text(payload.get("tool"), 200),
        "result": _short_text(payload.get("result"), SUMMARY_LIMIT),
    }


def receive_progress(
    crew: CrewRef, kind: WebhookKind, payload: dict[str, Any], *, raw: str, source_ip: str | None = None
) -> bool:
    """A task-completed or step notification and its delivery record (accepted, or
    duplicate); whether its timeline entry was added. On PostgreSQL, for an execution
    reviewapp knows, in one statement (:func:`combined_writes.record_progress`)."""
    if is_postgres():
        entry_kind, message, data = _progress_entry(kind, payload)
        digest = _canonical_digest(payload)
        done = combined_writes.record_progress(
            execution_id_of(payload), (entry_kind, message, {**data, "sha256": digest}), digest=digest,
            delivery=combined_writes.DeliveryRecord(crew.id, kind, source_ip, raw), now=_now(),
        )
        if done is not None:
            return done[1]
    execution_id, added = note_progress(crew, kind, payload)
    _record_accepted_or_duplicate(crew, kind, added, raw=raw, execution_id=execution_id, source_ip=source_ip)
    return added


def _record_accepted_or_duplicate(
    crew: CrewRef, kind: WebhookKind, accepted: bool, *, raw: str, execution_id: int, source_ip: str | None
) -> None:
    record_delivery(crew, kind, outcome="accepted" if accepted else "duplicate", payload=raw,
                    execution_id=execution_id, source_ip=source_ip)


def note_progress(crew: CrewRef, kind: WebhookKind, payload: dict[str, Any]) -> tuple[int, bool]:
    """A task-completed or step notification: one timeline entry, deduplicated by the
    payload's canonical digest. Returns (execution id, whether an entry was added), in a
    few plain statements (the receiver's hot path)."""
    facts = _facts_for_progress(crew, payload, kind.value)
    digest = _canonical_digest(payload)
    event_kind, message, data = _progress_entry(kind, payload)
    entry = (event_kind, message, {**data, "sha256": digest})
    if not facts.events:
        return facts.id, _entry_unless_recorded(facts.id, entry, digest)
    facts.add_event(*entry)  # just discovered: nothing recorded yet; its entries go in together
    facts.insert_events()
    return facts.id, True


def _finishing(with_usage: bool) -> Any:
    """UPDATE of a not-yet-finished execution to its final status (the SET clause:
    :func:`combined_writes.finish_values`); it returns how many of its rounds are
    pending (mostly none: then they need no second look)."""
    pending = (
        select(func.count()).select_from(_ROUNDS)
        .where(_ROUNDS.c.execution_id == bindparam("execution_id"), _ROUNDS.c.state == RoundState.PENDING)
        .scalar_subquery()
    )
    return (
        update(_EXECUTIONS)
        .where(_EXECUTIONS.c.id == bindparam("execution_id"), _EXECUTIONS.c.status.not_in(combined_writes.FINISHED))
        .values(**combined_writes.finish_values(with_usage))
        .returning(pending)
    )


_FINISH = {False: _finishing(False), True: _finishing(True)}


def _finish_word(status: ExecutionStatus) -> str:
    return "completed" if status is ExecutionStatus.COMPLETED else "failed"


@dataclass(frozen=True)
class _Finish:
    """How an execution ended, as a notification or status check reports it."""

    status: ExecutionStatus
    result: str | None
    error: str | None
    token_usage: dict[str, Any] | None
    source: str

    def params(self) -> dict[str, Any]:
        """The parameters of the finishing UPDATE (:func:`combined_writes.finish_values`;
        named unlike any column: a parameter named like a column would set it too)."""
        params: dict[str, Any] = {"new_status": self.status, "new_result": self.result, "new_error": self.error}
        if self.token_usage:
            params["new_usage"] = self.token_usage
        return params

    @property
    def word(self) -> str:
        return _finish_word(self.status)

    def entry(self) -> tuple[str, str, dict[str, Any] | None]:
        """The timeline entry (kind, message, data) of the finish."""
        return (self.word, f"AMP reports the execution {self.word} ({self.source}).",
                {"error": self.error[:SUMMARY_LIMIT]} if self.error else None)

    @property
    def stale_reason(self) -> str:
        return f"The execution {self.word} ({self.source}); it no longer waits for a review."


def _finish_facts(facts: _ExecutionFacts, kickoff_id: str, finish: _Finish) -> bool:
    """:func:`finish_execution` for the receiver's hot path, in plain statements: the
    conditional UPDATE changes the execution once (a concurrent finish wins or loses as
    a whole), then its timeline entry and the stale marking of its pending rounds."""
    if facts.status.finished:
        return False
    params = {"execution_id": facts.id, "now": _now(), **finish.params()}
    finished = db.session.execute(_FINISH[bool(finish.token_usage)], params).first()
    if finished is None:
        return False
    facts.add_event(*finish.entry())
    if finished[0]:  # pending rounds
        _stale_after_finish(facts, kickoff_id, finish)
    return True


def _stale_after_finish(facts: _ExecutionFacts, kickoff_id: str, finish: _Finish) -> None:
    """The finished execution's pending rounds -> stale (each with its timeline entry)."""
    for round_ in _pending_rounds(facts.id):
        if _make_stale(round_, finish.stale_reason, kickoff_id):
            facts.add_event("round_stale", finish.stale_reason, _stale_event_data(round_))


def _crew_finish(payload: dict[str, Any]) -> _Finish:
    """How the execution-completed notification says the execution ended."""
    error = _short_text(payload.get("error"), 4000)
    state = pick(payload, "status", "state")
    failed = bool(error) or (isinstance(state, str) and state.strip().lower() in {"failed", "error"})
    usage = payload.get("token_usage")
    return _Finish(
        ExecutionStatus.FAILED if failed else ExecutionStatus.COMPLETED,
        result=as_text(payload.get("result")),
        error=error,
        token_usage=usage if isinstance(usage, dict) else None,
        source="crew webhook",
    )


def note_crew_finished(crew: CrewRef, payload: dict[str, Any]) -> tuple[int, bool]:
    """The execution-completed notification (``crewWebhookUrl``). Returns (execution id,
    whether it changed the execution)."""
    facts = _facts_for_progress(crew, payload, "crew")
    changed = _finish_facts(facts, execution_id_of(payload), _crew_finish(payload))
    facts.insert_events()
    return facts.id, changed


def receive_crew_finished(
    crew: CrewRef, payload: dict[str, Any], *, raw: str, source_ip: str | None = None
) -> bool:
    """The execution-completed notification and its delivery record (accepted, or
    duplicate); whether it changed the execution. On PostgreSQL, for an execution
    reviewapp knows, the finish, its timeline entry and the record are one statement
    (:func:`combined_writes.record_finish`); pending rounds are then marked stale."""
    if is_postgres():
        kickoff_id, finish = execution_id_of(payload), _crew_finish(payload)
        done = combined_writes.record_finish(
            kickoff_id, finish.params(), finish.entry(),
            delivery=combined_writes.DeliveryRecord(crew.id, WebhookKind.CREW, source_ip, raw), now=_now(),
        )
        if done is not None:
            execution_id, finished, pending = done
            if finished and pending:
                facts = _ExecutionFacts(id=execution_id, status=finish.status, rounds=[])
                _stale_after_finish(facts, kickoff_id, finish)
                facts.insert_events()
            return finished
    execution_id, changed = note_crew_finished(crew, payload)
    _record_accepted_or_duplicate(crew, WebhookKind.CREW, changed, raw=raw, execution_id=execution_id,
                                  source_ip=source_ip)
    return changed


# --------------------------------------------------------------------------- kickoff


def kickoff_execution(
    crew: Crew, inputs: dict[str, str], *, actor: User | None = None
) -> Execution:
    """Start ``crew`` on AMP with our webhooks; the execution is recorded as running.

    AMP errors propagate (:mod:`reviewapp.amp.client`); a refused token marks the
    crew's token broken before the error is re-raised."""
    meta = {"reviewapp_crew": crew.name}
    try:
        kickoff_id = client_for(crew).kickoff(inputs, meta=meta, webhooks=all_webhooks(crew))
    except AmpUnauthorized as exc:
        mark_token_broken(crew, str(exc))
        raise
    execution, created = ensure_execution(
        crew, _identifier(kickoff_id, "kickoff id", 64), status=ExecutionStatus.RUNNING, heard_from="kickoff"
    )
    execution.inputs = dict(inputs)
    execution.meta = meta
    if actor is not None and getattr(actor, "is_authenticated", False):
        execution.started_by_id = actor.id
    who = actor.username if actor is not None and getattr(actor, "is_authenticated", False) else "the system"
    record_execution_event(execution, "kickoff", f"Kicked off by {who}.", {"inputs": sorted(inputs)})
    record_event(
        "crew_kicked_off",
        actor=actor,
        actor_name=None if actor is not None else "system",
        target_type="execution",
        target_id=execution.id,
        target_name=kickoff_id,
        details={"crew": crew.name, "inputs": sorted(inputs), "new": created},
    )
    return execution
