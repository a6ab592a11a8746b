"""Status sync: poll ``GET /status/{id}`` for executions that are not finished.

One pass (:func:`run_status_pass`, called by the worker) reads the due executions,
asks AMP about each without holding any database write lock (an HTTP call can take the
whole read timeout), then applies what it learned:

- completed / failed: the execution is finished and its pending rounds become stale;
- running: a round still pending (received before the check began) is not waited for
  any more — someone else resumed it — so it becomes stale, with the reason;
- waiting for human input with no pending round: a notification was lost. The round is
  recovered from the status body when it carries the task output (``last_step`` or
  result fields); otherwise the pause is recorded on the execution's timeline.

Failures back off exponentially (``status_check_failures``, ``next_status_check_at``);
a refused token marks the crew's token broken, and its executions wait for an admin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import or_, select

from ..extensions import db
from ..models import (
    Crew,
    Decision,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    JobState,
    ResumeJob,
    ReviewRound,
    RoundState,
    utcnow,
)
from .client import (
    AmpClient,
    AmpError,
    AmpRejected,
    AmpUnauthorized,
    StatusResult,
    as_text,
    client_for,
)
from .crews import mark_token_broken
from .crypto import SecretUnreadable
from .executions import (
    HumanInputNotice,
    finish_execution,
    mark_pending_rounds_stale,
    pick,
    record_execution_event,
    store_round,
)

RAW_LIMIT = 8000
NOT_FOUND_LIMIT = 3  # consecutive 404s before an execution is given up as failed
UNFINISHED = (ExecutionStatus.RUNNING, ExecutionStatus.PENDING_REVIEW)


@dataclass
class Check:
    execution: Execution
    result: StatusResult | None = None
    error: Exception | None = None


def _seconds(key: str, default: int) -> int:
    return int(current_app.config.get(key, default))


def _due(now: datetime, limit: int) -> list[Execution]:
    query = (
        select(Execution)
        .join(Crew)
        .where(
            Execution.status.in_(UNFINISHED),
            Crew.token_broken.is_(False),
            or_(Execution.next_status_check_at.is_(None), Execution.next_status_check_at <= now),
        )
        .order_by(Execution.next_status_check_at.asc().nulls_first(), Execution.id)
        .limit(limit)
    )
    return list(db.session.scalars(query))


def _ask_amp(executions: list[Execution]) -> list[Check]:
    """The HTTP part: no database writes happen here."""
    clients: dict[int, AmpClient | Exception] = {}
    refused: set[int] = set()
    checks = []
    for execution in executions:
        crew = execution.crew
        if crew.id not in clients:
            try:
                clients[crew.id] = client_for(crew)
            except SecretUnreadable as exc:
                clients[crew.id] = exc
        client = clients[crew.id]
        if isinstance(client, Exception):
            checks.append(Check(execution, error=client))
            continue
        if crew.id in refused:
            continue  # the token was just refused: don't hammer AMP with it
        try:
            checks.append(Check(execution, result=client.status(execution.kickoff_id)))
        except AmpError as exc:
            if isinstance(exc, AmpUnauthorized):
                refused.add(crew.id)
            checks.append(Check(execution, error=exc))
    return checks


def run_status_pass(*, now: datetime | None = None, limit: int = 100) -> int:
    """Poll due, unfinished executions once. Flushes; the caller commits.

    Returns how many executions were checked."""
    now = now or utcnow()
    checks = _ask_amp(_due(now, limit))
    for check in checks:
        execution = check.execution
        db.session.refresh(execution)  # a receiver may have changed it meanwhile
        if execution.status.finished:
            continue
        if check.result is not None:
            _apply_status(execution, check.result, now)
        else:
            _apply_failure(execution, check.error, now)
    db.session.flush()
    return len(checks)


# --------------------------------------------------------------------------- success


def _schedule(execution: Execution, now: datetime, seconds: float) -> None:
    limit = _seconds("STATUS_POLL_MAX_SECONDS", 600)
    execution.next_status_check_at = now + timedelta(seconds=min(seconds, limit))


def _apply_status(execution: Execution, status: StatusResult, now: datetime) -> None:
    execution.status_check_failures = 0
    execution.last_status_raw = json.dumps(status.raw, ensure_ascii=False, default=str)[:RAW_LIMIT]
    base = _seconds("STATUS_POLL_MIN_SECONDS", 15)
    if status.state == "completed":
        finish_execution(execution, ExecutionStatus.COMPLETED, result=status.result, source="status poll")
    elif status.state == "failed":
        finish_execution(execution, ExecutionStatus.FAILED,
                         error=status.error or "AMP reports the execution failed.", source="status poll")
    elif status.state == "running":
        _running_again(execution, now)
        _schedule(execution, now, base)
    elif status.state == "waiting":
        _waiting(execution, status)
        _schedule(execution, now, base * 4)  # a human decides; nothing changes quickly
    else:
        _schedule(execution, now, base * 2)


def _running_again(execution: Execution, now: datetime) -> None:
    """AMP is working: a round still pending is not waited for any more."""
    grace = timedelta(seconds=_seconds("STATUS_STALE_GRACE_SECONDS", 30))
    mark_pending_rounds_stale(
        execution,
        "AMP reports the execution running again: it no longer waits for a review of this "
        "output (it was probably resumed elsewhere).",
        received_before=now - grace,
    )
    if execution.status is ExecutionStatus.PENDING_REVIEW and not _pending_tasks(execution):
        execution.status = ExecutionStatus.RUNNING
        record_execution_event(execution, "running", "AMP reports the execution running.")


def _pending_tasks(execution: Execution) -> set[str]:
    return set(db.session.scalars(
        select(ReviewRound.task_id).where(
            ReviewRound.execution_id == execution.id, ReviewRound.state == RoundState.PENDING
        )
    ))


def _resume_in_flight(execution: Execution) -> bool:
    """A decision whose ``/resume`` has not been delivered yet (AMP still waits for it)."""
    return db.session.scalar(
        select(ResumeJob.id)
        .join(Decision, ResumeJob.decision_id == Decision.id)
        .join(ReviewRound, Decision.round_id == ReviewRound.id)
        .where(ReviewRound.execution_id == execution.id,
               ResumeJob.state.in_([JobState.PENDING, JobState.FAILED]))
        .limit(1)
    ) is not None


def _waiting(execution: Execution, status: StatusResult) -> None:
    """AMP waits for human input. A pending round for that task is what it waits for;
    otherwise the notification was lost (unless our own resume is still on its way)."""
    notice = notice_from_status(execution, status.raw)
    pending = _pending_tasks(execution)
    if pending and (notice is None or notice.task_id in pending):
        execution.status = ExecutionStatus.PENDING_REVIEW
        return
    if _resume_in_flight(execution):
        return
    if notice is not None:
        round_, created = store_round(execution.crew, execution, notice, source="recovered from GET /status")
        if created:
            record_execution_event(
                execution, "recovered",
                "The human-input notification never arrived; the round was recovered from GET /status.",
                {"round_id": round_.id},
            )
        return
    execution.status = ExecutionStatus.PENDING_REVIEW
    if _latest_event_kind(execution) != "human_input_detected":
        record_execution_event(
            execution, "human_input_detected",
            "AMP says the execution waits for human input, but no notification arrived and "
            "the status carries no task output to review.",
            {"fields": sorted(str(k) for k in status.raw)[:20]},
        )


def _latest_event_kind(execution: Execution) -> str | None:
    return db.session.scalar(
        select(ExecutionEvent.kind).where(ExecutionEvent.execution_id == execution.id)
        .order_by(ExecutionEvent.id.desc()).limit(1)
    )


def notice_from_status(execution: Execution, raw: dict[str, Any]) -> HumanInputNotice | None:
    """Task id and output from a status body, where AMP put them (tolerantly)."""
    last_step = raw.get("last_step")
    step: dict[str, Any] = last_step if isinstance(last_step, dict) else {}
    task_id = pick(step, "task_id", "task_name", "task", "name") or pick(raw, "current_task", "task_id", "task_name")
    output = pick(step, "output", "task_output", "result", "raw") or pick(raw, "task_output", "output")
    if output is None and isinstance(raw.get("result"), str):
        output = raw["result"]
    if not isinstance(task_id, str | int) or output is None:
        return None
    text = as_text(output)
    if not text:
        return None
    agent = pick(step, "agent", "agent_role")
    return HumanInputNotice(
        execution_id=execution.kickoff_id,
        task_id=str(task_id)[:200],
        output=text,
        agent=str(agent)[:200] if isinstance(agent, str) else None,
    )


# --------------------------------------------------------------------------- failure


def _apply_failure(execution: Execution, error: Exception | None, now: datetime) -> None:
    execution.status_check_failures = (execution.status_check_failures or 0) + 1
    failures = execution.status_check_failures
    base = _seconds("STATUS_POLL_MIN_SECONDS", 15)
    _schedule(execution, now, base * (2 ** min(failures, 16)))
    message = str(error) if error is not None else "unknown error"
    if isinstance(error, AmpUnauthorized | SecretUnreadable):
        mark_token_broken(execution.crew, message)
    if isinstance(error, AmpRejected) and error.not_found and failures >= NOT_FOUND_LIMIT:
        finish_execution(
            execution, ExecutionStatus.FAILED,
            error=f"AMP no longer knows this execution (GET /status answered 404 {failures} times).",
            source="status poll",
        )
        return
    if failures == 1:
        record_execution_event(execution, "status_check_failed", f"GET /status failed: {message}"[:1000],
                               {"http_status": getattr(error, "http_status", None)})
