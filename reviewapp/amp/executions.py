"""Executions and review rounds as AMP reports them (webhooks, kickoff, status sync).

Services flush; the view, receiver, CLI or worker commits. Inserts that can race with a
concurrent delivery use ``INSERT ... ON CONFLICT DO NOTHING`` on the table's unique keys
and then read the row back, so a redelivery never creates a second row.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import Table, Text, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

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
    utcnow,
)
from .client import AmpUnauthorized, as_text, client_for
from .crews import mark_token_broken
from .webhooks import all_webhooks

SUMMARY_LIMIT = 500

# Tables for the plain (Core) statements of the receivers' hot path.
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
    db.session.execute(
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
    return db.session.execute(stmt, values).scalar()


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


def _new_execution(crew_id: int, kickoff_id: str, status: ExecutionStatus) -> int | None:
    """Insert the execution unless it exists; its id when this call created it."""
    first_check = _now() + timedelta(seconds=int(current_app.config["STATUS_POLL_MIN_SECONDS"]))
    return _insert_ignoring_conflicts(
        _EXECUTIONS,
        {
            "crew_id": crew_id,
            "kickoff_id": kickoff_id,
            "status": status,
            "next_status_check_at": first_check,
            "status_check_failures": 0,
        },
    )


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
            db.session.execute(_EVENTS.insert(), [{**event, "created_at": now} for event in self.events])
            self.events = []


_FACTS = (
    select(_EXECUTIONS.c.id, _EXECUTIONS.c.status, _ROUNDS.c.id, _ROUNDS.c.task_id,
           _ROUNDS.c.round_number, _ROUNDS.c.output_sha256, _ROUNDS.c.state)
    .select_from(_EXECUTIONS.outerjoin(_ROUNDS, _ROUNDS.c.execution_id == _EXECUTIONS.c.id))
)
_FACTS_BY_KICKOFF = _FACTS.where(_EXECUTIONS.c.crew_id == bindparam("crew_id"),
                                 _EXECUTIONS.c.kickoff_id == bindparam("kickoff_id"))
_FACTS_BY_ID = _FACTS.where(_EXECUTIONS.c.id == bindparam("execution_id"))


def _execution_facts(stmt: Any, params: dict[str, Any]) -> _ExecutionFacts | None:
    rows = db.session.execute(stmt, params).all()
    if not rows:
        return None
    rounds = [_RoundFacts(*row[2:]) for row in rows if row[2] is not None]
    return _ExecutionFacts(id=rows[0][0], status=rows[0][1], rounds=rounds)


def _known_or_new(
    crew: CrewRef, kickoff_id: str, read: Any, *, status: ExecutionStatus, heard_from: str
) -> _ExecutionFacts:
    """The facts ``read`` finds about execution ``kickoff_id``; the execution is created
    with ``status`` (and noted as discovered) when reviewapp has not heard of it."""
    where = {"crew_id": crew.id, "kickoff_id": kickoff_id}
    facts = read(where)
    if facts is not None:
        return facts
    new_id = _new_execution(crew.id, kickoff_id, status)
    if new_id is None:  # a concurrent delivery created it a moment ago
        facts = read(where)
        if facts is None:  # pragma: no cover - the row exists by now
            raise RuntimeError("execution vanished after insert")
        return facts
    facts = _ExecutionFacts(id=new_id, status=status, rounds=[])
    facts.add_event("discovered", _discovered_message(heard_from))
    return facts


def _facts_with_rounds(where: dict[str, Any]) -> _ExecutionFacts | None:
    return _execution_facts(_FACTS_BY_KICKOFF, where)


def _facts_for_notice(crew: CrewRef, kickoff_id: str) -> _ExecutionFacts:
    """The execution a human-input notification is about (created if new)."""
    return _known_or_new(crew, kickoff_id, _facts_with_rounds,
                         status=ExecutionStatus.PENDING_REVIEW, heard_from="human-input")


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
    crew_id: int, facts: _ExecutionFacts, notice: HumanInputNotice, *, source: str
) -> tuple[StoredRound, _ExecutionFacts]:
    """Create the review round for ``notice`` unless it repeats one already stored.

    Plain INSERT ... ON CONFLICT DO NOTHING RETURNING: a concurrent delivery of the same
    output makes ours insert nothing, and we look again (the facts are read afresh)."""
    for _attempt in range(5):
        place = _place_for(facts, notice)
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
        facts = fresh
    raise PayloadError("Too many concurrent notifications for this task; deliver it again.")


def _after_new_round(facts: _ExecutionFacts, round_: StoredRound, source: str) -> None:
    facts.add_event(
        "human_input",
        f"Task {round_.task_id} waits for a review (round {round_.round_number}, {source}).",
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
    return (round_.created and round_.state is RoundState.PENDING
            and facts.status is not ExecutionStatus.PENDING_REVIEW)


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
    crew: CrewRef, payload: dict[str, Any], *, raw: str, source_ip: str | None = None
) -> StoredRound:
    """Store a human-input notification: the execution (if new), its review round and the
    delivery record, in a few plain statements (the receiver's hot path).

    Idempotent: the same output for the same execution and task is the same round
    (``created=False``); a different output is the next revision round. Raises
    :class:`PayloadError`."""
    notice = parse_human_input(payload)
    facts = _facts_for_notice(crew, notice.execution_id)
    stored, facts = _store_notice(crew.id, facts, notice, source="webhook")
    facts.insert_events()
    if _waits_for_review(facts, stored):
        db.session.execute(_TO_PENDING_REVIEW, {"execution_id": facts.id, "updated_at": _now()})
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
_EVENT_DATA = select(_EVENTS.c.data).where(
    _EVENTS.c.execution_id == bindparam("execution_id"), _EVENTS.c.kind == bindparam("kind")
)


def _execution_status(where: dict[str, Any]) -> _ExecutionFacts | None:
    """The execution's id and status (its rounds are not read: these paths need none)."""
    row = db.session.execute(_STATUS_BY_KICKOFF, where).first()
    return _ExecutionFacts(id=row[0], status=row[1], rounds=[]) if row is not None else None


def _facts_for_progress(crew: CrewRef, payload: dict[str, Any], heard_from: str) -> _ExecutionFacts:
    """The execution a task, step or crew notification is about (created as running)."""
    return _known_or_new(crew, execution_id_of(payload), _execution_status,
                         status=ExecutionStatus.RUNNING, heard_from=heard_from)


def _already_recorded(execution_id: int, kind: str, digest: str) -> bool:
    rows = db.session.scalars(_EVENT_DATA, {"execution_id": execution_id, "kind": kind})
    return any(isinstance(data, dict) and data.get("sha256") == digest for data in rows)


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


def note_progress(crew: CrewRef, kind: WebhookKind, payload: dict[str, Any]) -> tuple[int, bool]:
    """A task-completed or step notification: one timeline entry, deduplicated by the
    payload's canonical digest. Returns (execution id, whether an entry was added), in a
    few plain statements (the receiver's hot path)."""
    facts = _facts_for_progress(crew, payload, kind.value)
    digest = _canonical_digest(payload)
    event_kind, message, data = _progress_entry(kind, payload)
    new = bool(facts.events)  # just discovered: nothing recorded yet
    added = new or not _already_recorded(facts.id, event_kind, digest)
    if added:
        facts.add_event(event_kind, message, {**data, "sha256": digest})
    facts.insert_events()
    return facts.id, added


def _finishing(with_usage: bool) -> Any:
    """UPDATE of a not-yet-finished execution to its final status; ``result`` and
    ``error`` keep their stored value when not given, and so does ``token_usage`` unless
    ``with_usage``."""
    values: dict[str, Any] = {
        "status": bindparam("new_status"),
        "finished_at": bindparam("now"),
        "updated_at": bindparam("now"),
        "result": func.coalesce(bindparam("new_result", type_=Text), _EXECUTIONS.c.result),
        "error": func.coalesce(bindparam("new_error", type_=Text), _EXECUTIONS.c.error),
        "next_status_check_at": None,
    }
    if with_usage:
        values["token_usage"] = bindparam("new_usage", type_=_EXECUTIONS.c.token_usage.type)
    return (
        update(_EXECUTIONS)
        .where(_EXECUTIONS.c.id == bindparam("execution_id"),
               _EXECUTIONS.c.status.not_in([ExecutionStatus.COMPLETED, ExecutionStatus.FAILED]))
        .values(**values)
    )


_FINISH = {False: _finishing(False), True: _finishing(True)}


def _finish_word(status: ExecutionStatus) -> str:
    return "completed" if status is ExecutionStatus.COMPLETED else "failed"


def _finish_facts(
    facts: _ExecutionFacts, kickoff_id: str, status: ExecutionStatus, *, result: str | None,
    error: str | None, token_usage: dict[str, Any] | None, source: str,
) -> bool:
    """:func:`finish_execution` for the receiver's hot path, in plain statements: the
    conditional UPDATE changes the execution once (a concurrent finish wins or loses as
    a whole), then its timeline entry and the stale marking of its pending rounds."""
    if facts.status.finished:
        return False
    # Parameter names differ from the column names: a parameter named like a column
    # would set that column too.
    params = {"execution_id": facts.id, "new_status": status, "now": _now(), "new_result": result,
              "new_error": error}
    if token_usage:
        params["new_usage"] = token_usage
    outcome = db.session.execute(_FINISH[bool(token_usage)], params)
    if getattr(outcome, "rowcount", 0) != 1:
        return False
    word = _finish_word(status)
    facts.add_event(word, f"AMP reports the execution {word} ({source}).",
                    {"error": error[:SUMMARY_LIMIT]} if error else None)
    reason = f"The execution {word} ({source}); it no longer waits for a review."
    for round_ in _pending_rounds(facts.id):
        if _make_stale(round_, reason, kickoff_id):
            facts.add_event("round_stale", reason, _stale_event_data(round_))
    return True


def note_crew_finished(crew: CrewRef, payload: dict[str, Any]) -> tuple[int, bool]:
    """The execution-completed notification (``crewWebhookUrl``). Returns (execution id,
    whether it changed the execution)."""
    facts = _facts_for_progress(crew, payload, "crew")
    error = _short_text(payload.get("error"), 4000)
    state = pick(payload, "status", "state")
    failed = bool(error) or (isinstance(state, str) and state.strip().lower() in {"failed", "error"})
    usage = payload.get("token_usage")
    changed = _finish_facts(
        facts,
        execution_id_of(payload),
        ExecutionStatus.FAILED if failed else ExecutionStatus.COMPLETED,
        result=as_text(payload.get("result")),
        error=error,
        token_usage=usage if isinstance(usage, dict) else None,
        source="crew webhook",
    )
    facts.insert_events()
    return facts.id, changed


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
