"""Executions and review rounds as AMP reports them (webhooks, kickoff, status sync).

Services flush; the view, receiver, CLI or worker commits. Inserts that can race with a
concurrent delivery use ``INSERT ... ON CONFLICT DO NOTHING`` on the table's unique keys
and then read the row back, so a redelivery never creates a second row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
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
    crew: Crew | None,
    kind: WebhookKind,
    *,
    outcome: str,
    payload: str | None,
    error: str | None = None,
    execution: Execution | None = None,
    source_ip: str | None = None,
) -> WebhookDelivery:
    row = WebhookDelivery(
        crew_id=crew.id if crew is not None else None,
        execution_id=execution.id if execution is not None else None,
        kind=kind,
        outcome=outcome,
        error=error,
        source_ip=source_ip,
        payload=payload,
    )
    db.session.add(row)
    return row


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _insert_ignoring_conflicts(model: type[Any], values: dict[str, Any]) -> bool:
    """Insert one row unless it collides with a unique key; True when it was inserted."""
    dialect = db.session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(model).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(model).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - reviewapp supports SQLite and PostgreSQL
        raise RuntimeError(f"unsupported database {dialect}")
    # rowcount is not reliable here (psycopg reports -1); RETURNING says what happened.
    inserted = db.session.execute(stmt.returning(model.__table__.c.id)).first()
    return inserted is not None


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


def find_execution(crew: Crew, kickoff_id: str) -> Execution | None:
    return db.session.scalar(
        select(Execution).where(Execution.crew_id == crew.id, Execution.kickoff_id == kickoff_id)
    )


def ensure_execution(
    crew: Crew, kickoff_id: str, *, status: ExecutionStatus, heard_from: str
) -> tuple[Execution, bool]:
    """The execution ``kickoff_id`` of ``crew``, created with ``status`` if new."""
    first_check = _now() + timedelta(seconds=int(current_app.config["STATUS_POLL_MIN_SECONDS"]))
    created = _insert_ignoring_conflicts(
        Execution,
        {
            "crew_id": crew.id,
            "kickoff_id": kickoff_id,
            "status": status,
            "next_status_check_at": first_check,
            "status_check_failures": 0,
        },
    )
    execution = find_execution(crew, kickoff_id)
    if execution is None:  # pragma: no cover - the row exists by now
        raise RuntimeError("execution vanished after insert")
    if created and heard_from != "kickoff":
        record_execution_event(
            execution,
            "discovered",
            f"First heard of through a {heard_from} notification (not started from reviewapp).",
        )
    return execution, created


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
    query = select(ReviewRound).where(
        ReviewRound.execution_id == execution.id, ReviewRound.state == RoundState.PENDING
    )
    if task_id is not None:
        query = query.where(ReviewRound.task_id == task_id)
    if exclude_round_id is not None:
        query = query.where(ReviewRound.id != exclude_round_id)
    if received_before is not None:
        query = query.where(ReviewRound.received_at <= received_before)
    changed = 0
    for round_ in list(db.session.scalars(query)):
        result = db.session.execute(
            update(ReviewRound)
            .where(ReviewRound.id == round_.id, ReviewRound.state == RoundState.PENDING)
            .values(state=RoundState.STALE, stale_reason=reason)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            continue
        db.session.expire(round_)
        changed += 1
        record_execution_event(
            execution, "round_stale", reason, {"round_id": round_.id, "task_id": round_.task_id,
                                               "round_number": round_.round_number}
        )
        record_event(
            "round_stale",
            actor_name="system",
            target_type="round",
            target_id=round_.id,
            target_name=f"{round_.task_id} round {round_.round_number}",
            details={"reason": reason, "execution": execution.kickoff_id},
        )
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
    word = "completed" if status is ExecutionStatus.COMPLETED else "failed"
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


def _round_by_output(execution: Execution, task_id: str, digest: str) -> ReviewRound | None:
    return db.session.scalar(
        select(ReviewRound).where(
            ReviewRound.execution_id == execution.id,
            ReviewRound.task_id == task_id,
            ReviewRound.output_sha256 == digest,
        )
    )


def _next_round_number(execution: Execution, task_id: str) -> int:
    highest = db.session.scalar(
        select(func.max(ReviewRound.round_number)).where(
            ReviewRound.execution_id == execution.id, ReviewRound.task_id == task_id
        )
    )
    return (highest or 0) + 1


def _latest_round(execution: Execution, task_id: str) -> ReviewRound | None:
    return db.session.scalar(
        select(ReviewRound)
        .where(ReviewRound.execution_id == execution.id, ReviewRound.task_id == task_id)
        .order_by(ReviewRound.round_number.desc())
        .limit(1)
    )


def _rerun_confirmed(round_: ReviewRound) -> bool:
    """A revision of ``round_`` was requested and AMP accepted it: the task ran again."""
    decision = round_.decision
    if round_.state is not RoundState.DECIDED or decision is None or decision.is_approve:
        return False
    job = decision.job
    return job is not None and job.state is JobState.SUCCEEDED and job.outcome != "completed"


def _digest_for(execution: Execution, notice: HumanInputNotice) -> str | None:
    """The ``output_sha256`` for a new round, or None when ``notice`` repeats a known one.

    The same output is normally a redelivery. It is a new round only when it answers a
    revision AMP confirmed (the agent produced the same text again): that round gets a
    digest salted with its number, so the unique key still holds."""
    digest = sha256_text(notice.output)
    if _round_by_output(execution, notice.task_id, digest) is None:
        return digest
    latest = _latest_round(execution, notice.task_id)
    if latest is not None and latest.output == notice.output and _rerun_confirmed(latest):
        return sha256_text(f"{digest}:round-{latest.round_number + 1}")
    return None


def _known_round(execution: Execution, notice: HumanInputNotice) -> ReviewRound | None:
    """The round a repeated notification belongs to (the latest with that output)."""
    return db.session.scalar(
        select(ReviewRound)
        .where(ReviewRound.execution_id == execution.id, ReviewRound.task_id == notice.task_id,
               ReviewRound.output == notice.output)
        .order_by(ReviewRound.round_number.desc())
        .limit(1)
    )


def store_round(
    crew: Crew, execution: Execution, notice: HumanInputNotice, *, source: str
) -> tuple[ReviewRound, bool]:
    """Create the review round for ``notice`` unless it repeats one already stored."""
    finished = execution.status.finished
    for _attempt in range(5):
        digest = _digest_for(execution, notice)
        if digest is None:
            known = _known_round(execution, notice)
            if known is not None:
                return known, False
            continue  # pragma: no cover - the row changed under us; look again
        number = _next_round_number(execution, notice.task_id)
        values = {
            "execution_id": execution.id,
            "crew_id": crew.id,
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
        if _insert_ignoring_conflicts(ReviewRound, values):
            round_ = _round_by_output(execution, notice.task_id, digest)
            assert round_ is not None  # noqa: S101 - just inserted in this transaction
            _after_new_round(execution, round_, source)
            return round_, True
    raise PayloadError("Too many concurrent notifications for this task; deliver it again.")


def _after_new_round(execution: Execution, round_: ReviewRound, source: str) -> None:
    record_execution_event(
        execution,
        "human_input",
        f"Task {round_.task_id} waits for a review (round {round_.round_number}, {source}).",
        {"round_id": round_.id, "task_id": round_.task_id, "round_number": round_.round_number},
    )
    if round_.state is RoundState.PENDING:
        # AMP pauses one task at a time: an older pending round is not waited for any more.
        mark_pending_rounds_stale(
            execution,
            f"Superseded: AMP paused again on task {round_.task_id} (round {round_.round_number}).",
            exclude_round_id=round_.id,
        )
        execution.status = ExecutionStatus.PENDING_REVIEW


def ingest_human_input(
    crew: Crew, payload: dict[str, Any], *, raw: str, source_ip: str | None = None
) -> tuple[ReviewRound, bool]:
    """Store a human-input notification: the execution (if new) and its review round.

    Idempotent: the same output for the same execution and task is the same round
    (returned with ``created=False``); a different output is the next revision round.
    The delivery itself is recorded with its raw payload. Raises :class:`PayloadError`."""
    notice = parse_human_input(payload)
    execution, _ = ensure_execution(
        crew, notice.execution_id, status=ExecutionStatus.PENDING_REVIEW, heard_from="human-input"
    )
    round_, created = store_round(crew, execution, notice, source="webhook")
    record_delivery(
        crew,
        WebhookKind.HUMAN_INPUT,
        outcome="accepted" if created else "duplicate",
        payload=raw,
        execution=execution,
        source_ip=source_ip,
    )
    return round_, created


# --------------------------------------------------------------------------- other webhooks


def _already_recorded(execution: Execution, kind: str, digest: str) -> bool:
    rows = db.session.scalars(
        select(ExecutionEvent.data).where(
            ExecutionEvent.execution_id == execution.id, ExecutionEvent.kind == kind
        )
    )
    return any(isinstance(data, dict) and data.get("sha256") == digest for data in rows)


def _canonical_digest(payload: dict[str, Any]) -> str:
    return sha256_text(json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str))


def note_progress(crew: Crew, kind: WebhookKind, payload: dict[str, Any]) -> tuple[Execution, bool]:
    """A task-completed or step notification: one timeline entry (deduplicated)."""
    execution, _ = ensure_execution(
        crew, execution_id_of(payload), status=ExecutionStatus.RUNNING, heard_from=kind.value
    )
    digest = _canonical_digest(payload)
    event_kind = "task_completed" if kind is WebhookKind.TASK else "step"
    if _already_recorded(execution, event_kind, digest):
        return execution, False
    if kind is WebhookKind.TASK:
        name = _short_text(pick(payload, "name", "task_name", "description"), 200) or "a task"
        message = f"Task {name} completed."
        summary = _short_text(pick(payload, "summary", "output"), SUMMARY_LIMIT)
        data = {"name": name, "agent": _short_text(payload.get("agent"), 200), "summary": summary}
    else:
        message = "Agent step."
        data = {
            "thought": _short_text(payload.get("thought"), SUMMARY_LIMIT),
            "tool": _short_text(payload.get("tool"), 200),
            "result": _short_text(payload.get("result"), SUMMARY_LIMIT),
        }
    data["sha256"] = digest
    record_execution_event(execution, event_kind, message, data)
    return execution, True


def note_crew_finished(crew: Crew, payload: dict[str, Any]) -> tuple[Execution, bool]:
    """The execution-completed notification (``crewWebhookUrl``)."""
    execution, _ = ensure_execution(
        crew, execution_id_of(payload), status=ExecutionStatus.RUNNING, heard_from="crew"
    )
    error = _short_text(payload.get("error"), 4000)
    state = pick(payload, "status", "state")
    failed = bool(error) or (isinstance(state, str) and state.strip().lower() in {"failed", "error"})
    usage = payload.get("token_usage")
    changed = finish_execution(
        execution,
        ExecutionStatus.FAILED if failed else ExecutionStatus.COMPLETED,
        result=as_text(payload.get("result")),
        error=error,
        token_usage=usage if isinstance(usage, dict) else None,
        source="crew webhook",
    )
    return execution, changed


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
