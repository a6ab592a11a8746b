"""Durable, exactly-once delivery of resume jobs (the outbox behind ``POST /resume``).

A decision and its ResumeJob are committed together; this module sends the job.

- A job is *leased* before it is sent: a conditional UPDATE (owner + expiry) checked on
  its row count; on PostgreSQL the candidates are first picked with
  ``FOR UPDATE SKIP LOCKED`` so workers do not queue behind each other. A lease left by a
  killed process expires and the job is taken again, but then its last attempt may or
  may not have reached AMP, so the job is marked for a status check first.
- Transient failures (5xx, connection refused) are retried with exponential backoff and
  jitter up to ``RESUME_MAX_ATTEMPTS``, then the job is FAILED for a lead to retry or
  dismiss. An ambiguous failure (timeout after sending) is followed by
  ``GET /status`` before anything is sent again: still waiting for input -> send again;
  anything else -> the resume was applied.
- 400 (not pending) -> the job and round are stale; 404 -> failed; 401 -> the crew's
  token is marked broken and the job waits, without spending attempts, until an admin
  fixes it.
- Every call is recorded as a ResumeAttempt (time, HTTP status, truncated body, error).

Unlike services, these functions commit: the lease must be visible to other processes
before the HTTP call, and no transaction stays open while AMP answers.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm import joinedload

from ..audit.dialect import is_postgres
from ..extensions import db
from ..models import (
    Crew,
    Decision,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    JobState,
    ResumeAttempt,
    ResumeJob,
    ReviewRound,
    RoundState,
    utcnow,
)
from .services import body_fields, job_fields

log = logging.getLogger("reviewapp.delivery")

BODY_KEEP_CHARS = 4000
_JITTER = random.SystemRandom()


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery of a leased job (:func:`deliver_leased`) did."""

    job_id: int
    state: JobState | None = None
    results: tuple[str, ...] = ()  # the attempts' results, e.g. ("status:waiting", "ok")


@dataclass
class CallOutcome:
    kind: str  # "resume" or "status-check"
    started_at: datetime
    finished_at: datetime
    result: str  # ok, not_pending, not_found, rejected, unauthorized, unavailable, ambiguous, error
    http_status: int | None = None
    body_text: str | None = None
    error: str | None = None
    value: Any = None  # ResumeResult / StatusResult when result == "ok"

    @property
    def label(self) -> str:
        """Short result for reports: "ok", "unavailable", or "status:waiting" etc."""
        if self.kind == "resume":
            return self.result
        state = getattr(self.value, "state", "unknown") if self.result == "ok" else self.result
        return f"status:{state}"

    def attempt_values(self, job_id: int) -> dict[str, Any]:
        """The ResumeAttempt row recording this call, as column values."""
        return {
            "job_id": job_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "kind": self.kind,
            "http_status": self.http_status,
            "response_body": (self.body_text or None) and self.body_text[:BODY_KEEP_CHARS],
            "error": self.error and self.error[:BODY_KEEP_CHARS],
            "result": self.label,
        }

    def attempt_row(self, job_id: int) -> ResumeAttempt:
        return ResumeAttempt(**self.attempt_values(job_id))


@dataclass(frozen=True)
class Outbound:
    """A job's ``/resume`` request, and what recording its outcome needs to know about
    the decided round; built from rows already loaded (see :func:`prepare`)."""

    client: Any
    body: dict[str, Any]
    kickoff_id: str
    execution_id: int
    task_id: str
    round_number: int


@dataclass
class _Plan:
    """Everything needed to talk to AMP, gathered before the transaction ends."""

    job_id: int
    outbound: Outbound
    check_status_first: bool
    results: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- entry points


def worker_identity(kind: str = "worker") -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]


def prepare(job_id: int, body: dict[str, Any], round_: ReviewRound) -> Outbound | None:
    """The ``/resume`` request of a job just created for ``round_`` (whose execution and
    crew are loaded) with the stored ``body``, built before the commit that would expire
    those rows, so sending it inline reads nothing back. None when it cannot be built
    here (e.g. a secret that does not decrypt): :func:`deliver_leased` then builds it from
    the database, and records why it fails."""
    try:
        return _outbound(round_.crew, body_fields(body), round_)
    except Exception:  # never in the way of committing the decision
        log.warning("resume job %s: request not prepared inline", job_id, exc_info=True)
        return None


def inline_lease() -> tuple[str, datetime]:
    """A lease (owner, expiry) for a job created by a request that sends it itself right
    after committing it (see ``services.submit_decision``)."""
    return worker_identity("web"), utcnow() + timedelta(seconds=lease_seconds())


def deliver_leased(job_id: int, *, worker_id: str, outbound: Outbound | None = None) -> DeliveryReport:
    """Send a job committed already leased to ``worker_id`` (nothing was sent for it
    yet, so no status check first)."""
    return _work(job_id, worker_id, outbound, check_status_first=False)


def deliver_due_jobs(*, now: datetime | None = None, limit: int = 20, worker_id: str) -> int:
    """Send up to ``limit`` due jobs, one lease at a time; returns how many were worked on."""
    worked = 0
    for _ in range(limit):
        clock = now or utcnow()
        job_id = _lease_next_due(worker_id, clock)
        db.session.commit()
        if job_id is None:
            break
        _work(job_id, worker_id)
        worked += 1
    return worked


# --------------------------------------------------------------------------- leasing


def lease_seconds() -> float:
    """Long enough for a status check plus a resume, whatever the configuration says."""
    config = current_app.config
    calls = float(config["AMP_CONNECT_TIMEOUT"]) + float(config["AMP_READ_TIMEOUT"])
    return max(float(config.get("JOB_LEASE_SECONDS", 60)), 2 * calls + 5)


# Plain (Core) statements of the delivery's hot path, built once: the values are bound
# at execution. Parameter names differ from column names (a parameter named like a
# column would set that column too).
_JOBS: Table = ResumeJob.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = ResumeAttempt.__table__  # type: ignore[assignment]
_EXECUTIONS: Table = Execution.__table__  # type: ignore[assignment]
_EVENTS: Table = ExecutionEvent.__table__  # type: ignore[assignment]
_ROUNDS: Table = ReviewRound.__table__  # type: ignore[assignment]
_CREWS: Table = Crew.__table__  # type: ignore[assignment]
_ATTEMPT_COLUMNS = ("job_id", "started_at", "finished_at", "kind", "http_status", "response_body", "error", "result")

# A job is due: pending, its time has come, nobody holds a live lease, its crew's token works.
_DUE = (
    _JOBS.c.state == JobState.PENDING,
    _JOBS.c.next_attempt_at <= bindparam("now"),
    or_(_JOBS.c.lease_owner.is_(None), _JOBS.c.lease_expires_at < bindparam("now")),
    _JOBS.c.crew_id.in_(select(_CREWS.c.id).where(_CREWS.c.token_broken.is_(False))),
)
_LEASE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"), *_DUE)
    .values(
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("until"),
        # Taking over an expired lease: its attempt may have reached AMP.
        needs_status_check=case((_JOBS.c.lease_owner.is_not(None), True), else_=_JOBS.c.needs_status_check),
    )
    .returning(_JOBS.c.needs_status_check)
)
_NEXT_DUE = (
    select(_JOBS.c.id)
    .where(*_DUE)
    .order_by(_JOBS.c.next_attempt_at, _JOBS.c.id)
    .limit(5)
    .with_for_update(skip_locked=True, of=_JOBS)  # nothing on SQLite: the UPDATE decides
)


def _lease(job_id: int, worker_id: str, now: datetime) -> Any:
    """Conditional lease update; the leased job's ``needs_status_check`` when this
    worker now owns the job, else None."""
    until = now + timedelta(seconds=lease_seconds())
    return db.session.execute(_LEASE, {"job_id": job_id, "owner": worker_id, "until": until, "now": now}).first()


def _lease_next_due(worker_id: str, now: datetime) -> int | None:
    for job_id in db.session.scalars(_NEXT_DUE, {"now": now}).all():
        if _lease(job_id, worker_id, now) is not None:
            return job_id
    return None


def _state_of(job_id: int) -> JobState | None:
    return db.session.scalar(select(ResumeJob.state).where(ResumeJob.id == job_id))


# --------------------------------------------------------------------------- one job


def _work(
    job_id: int, worker_id: str, outbound: Outbound | None = None, *, check_status_first: bool | None = None
) -> DeliveryReport:
    """Send a job this worker has leased (its request built already, or read now);
    commits before any HTTP call."""
    try:
        plan = _plan(job_id, outbound, check_status_first)
    except Exception as exc:  # e.g. a token that no longer decrypts: count it, keep the job
        db.session.rollback()
        log.exception("resume job %s could not be prepared", job_id)
        outcome = _outcome("resume", utcnow(), "error", error=f"could not prepare the request: {exc}")
        return _report(job_id, [outcome.result], _finish(job_id, worker_id, outcome))
    db.session.commit()  # the lease (and this read) is visible; nothing stays open during HTTP
    request = plan.outbound
    if plan.check_status_first:
        check = _call("status-check", lambda: request.client.status(request.kickoff_id))
        plan.results.append(check.label)
        if not _after_status_check(job_id, worker_id, check):
            return _report(job_id, plan.results)
    sent = _call("resume", lambda: request.client.resume(request.body))
    plan.results.append(sent.label)
    return _report(job_id, plan.results, _finish(job_id, worker_id, sent, request))


def _report(job_id: int, results: list[str], state: JobState | None = None) -> DeliveryReport:
    return DeliveryReport(job_id=job_id, state=state or _state_of(job_id), results=tuple(results))


# A leased job's request and its round, in one query (jobs are never deleted, and a crew
# with jobs cannot be removed).
_JOB_TO_SEND = (
    select(Crew, ResumeJob.body, ResumeJob.needs_status_check, ReviewRound.execution_id,
           ReviewRound.task_id, ReviewRound.round_number)
    .select_from(ResumeJob)
    .join(Crew, Crew.id == ResumeJob.crew_id)
    .join(Decision, Decision.id == ResumeJob.decision_id)
    .join(ReviewRound, ReviewRound.id == Decision.round_id)
    .where(ResumeJob.id == bindparam("job_id"))
)


def _plan(job_id: int, outbound: Outbound | None, check_status_first: bool | None) -> _Plan:
    if outbound is None:
        row: Any = db.session.execute(_JOB_TO_SEND, {"job_id": job_id}).one()
        outbound = _outbound(row.Crew, job_fields(row), row)
        check_status_first = row.needs_status_check
    return _Plan(job_id=job_id, outbound=outbound, check_status_first=bool(check_status_first))


def _outbound(crew: Crew, fields: dict[str, Any], round_: Any) -> Outbound:
    """The request for ``crew`` with a job's section-1 ``fields``; ``round_`` has the
    decided round's execution_id, task_id and round_number."""
    from ..amp.client import build_resume_body, client_for

    return Outbound(
        client=client_for(crew),
        body=build_resume_body(crew, **fields),
        kickoff_id=str(fields["execution_id"]),
        execution_id=round_.execution_id,
        task_id=round_.task_id,
        round_number=round_.round_number,
    )


def _outcome(kind: str, started: datetime, result: str, **kw: Any) -> CallOutcome:
    return CallOutcome(kind=kind, started_at=started, finished_at=utcnow(), result=result, **kw)


def _call(kind: str, send: Callable[[], Any]) -> CallOutcome:
    """Make one AMP call and classify what happened (never raises)."""
    from ..amp.client import (
        AmpAmbiguous,
        AmpError,
        AmpRejected,
        AmpUnauthorized,
        AmpUnavailable,
    )

    started = utcnow()
    try:
        value = send()
    except AmpUnauthorized as exc:
        return _failed_call(kind, started, "unauthorized", exc)
    except AmpRejected as exc:
        result = "not_pending" if exc.not_pending else "not_found" if exc.not_found else "rejected"
        return _failed_call(kind, started, result, exc)
    except AmpUnavailable as exc:
        return _failed_call(kind, started, "unavailable", exc)
    except AmpAmbiguous as exc:
        return _failed_call(kind, started, "ambiguous", exc)
    except AmpError as exc:  # an answer we do not understand: it may have been applied
        return _failed_call(kind, started, "ambiguous", exc)
    except Exception as exc:
        log.exception("unexpected error during %s", kind)
        return _outcome(kind, started, "ambiguous", error=f"{type(exc).__name__}: {exc}")
    return _outcome(
        kind,
        started,
        "ok",
        http_status=getattr(value, "http_status", 200),
        body_text=getattr(value, "body_text", None) or _raw_text(value),
        value=value,
    )


def _failed_call(kind: str, started: datetime, result: str, exc: Any) -> CallOutcome:
    return _outcome(
        kind,
        started,
        result,
        http_status=getattr(exc, "http_status", None),
        body_text=getattr(exc, "body_text", None),
        error=str(exc) or type(exc).__name__,
    )


def _raw_text(value: Any) -> str | None:
    raw = getattr(value, "raw", None)
    return None if raw is None else str(raw)


# --------------------------------------------------------------------------- recording


# What recording an outcome reads: the job, and (fresh) the decision's round and its
# execution, in one query. The round's large columns (output) are not needed here.
_WITH_ROUND = joinedload(ResumeJob.decision).joinedload(Decision.round)
_JOB_AND_ROUND = (
    _WITH_ROUND.load_only(ReviewRound.id, ReviewRound.execution_id, ReviewRound.task_id,
                          ReviewRound.round_number, ReviewRound.state, ReviewRound.received_at),
    _WITH_ROUND.joinedload(ReviewRound.execution),
)


def _owned(job_id: int, worker_id: str) -> ResumeJob | None:
    """The job, if this worker still holds its lease (else the attempt is only logged)."""
    job = db.session.scalar(
        select(ResumeJob).options(*_JOB_AND_ROUND).where(ResumeJob.id == job_id)
        .execution_options(populate_existing=True)
    )
    if job is None or job.lease_owner != worker_id:
        log.warning("resume job %s: lease lost by %s; recording the attempt only", job_id, worker_id)
        return None
    return job


def _release(job: ResumeJob) -> None:
    job.lease_owner = None
    job.lease_expires_at = None


def _finish(job_id: int, worker_id: str, sent: CallOutcome, request: Outbound | None = None) -> JobState | None:
    """Record a /resume attempt and move the job on; releases the lease; commits.
    Returns the job's state (None when the lease was lost).

    Retries are scheduled from the real clock (the ``now`` a pass was given only decides
    which jobs are due and which leases have expired)."""
    if sent.result == "ok" and request is not None:
        return _finish_delivered(job_id, worker_id, sent, request)
    db.session.add(sent.attempt_row(job_id))
    job = _owned(job_id, worker_id)
    state = None
    if job is not None:
        _apply_resume_outcome(job, sent, utcnow())
        _note_outcome(job)
        _release(job)
        state = job.state
    db.session.commit()
    return state


# The delivered job: succeeded and released, if this worker still holds its lease. (No
# anonymous literals in the SET clause: this UPDATE also runs inside a CTE, see
# amp/combined_writes.py.)
_DELIVERED = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("leased_job"), _JOBS.c.lease_owner == bindparam("owner"))
    .values(state=bindparam("succeeded", JobState.SUCCEEDED, type_=_JOBS.c.state.type),
            outcome=bindparam("answer", type_=_JOBS.c.outcome.type), needs_status_check=false(),
            last_error=null(), lease_owner=null(), lease_expires_at=null(), updated_at=bindparam("now"))
    .returning(_JOBS.c.attempts)
)


def _finish_delivered(job_id: int, worker_id: str, sent: CallOutcome, request: Outbound) -> JobState | None:
    """:func:`_finish` for the common case, AMP took the decision: the attempt, the job
    (conditional on the lease, so a lost lease changes nothing else), the execution
    running again, its timeline entry. Four plain statements, or one on PostgreSQL."""
    now = utcnow()
    answer = sent.value.status
    kind, message, _data = _outcome_entry(JobState.SUCCEEDED, answer, request.task_id, request.round_number,
                                          job_id, 0, None)
    if is_postgres():
        params = {**_prefixed("attempt_", sent.attempt_values(job_id)), "leased_job": job_id, "owner": worker_id,
                  "answer": answer, "now": now, "execution_id": request.execution_id, "entry_kind": kind,
                  "entry_message": message}
        owned = db.session.execute(_delivered_at_once(), params).first()
    else:
        db.session.execute(_ATTEMPTS.insert(), sent.attempt_values(job_id))
        owned = db.session.execute(_DELIVERED, {"leased_job": job_id, "owner": worker_id, "answer": answer,
                                                "now": now}).first()
        if owned is not None:
            _execution_resumed(request.execution_id, now)
            entry = _outcome_entry(JobState.SUCCEEDED, answer, request.task_id, request.round_number, job_id,
                                   owned.attempts, None)
            db.session.execute(_EVENTS.insert(), _entry_values(request.execution_id, entry, now))
    if owned is None:
        log.warning("resume job %s: lease lost by %s; recording the attempt only", job_id, worker_id)
    db.session.commit()
    return JobState.SUCCEEDED if owned is not None else None


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{name}": value for name, value in values.items()}


def _entry_values(execution_id: int, entry: tuple[str, str, dict[str, Any]], now: datetime) -> dict[str, Any]:
    kind, message, data = entry
    return {"execution_id": execution_id, "kind": kind, "message": message, "data": data, "created_at": now}


@functools.cache
def _delivered_at_once() -> Any:
    """PostgreSQL: :func:`_finish_delivered`'s four writes as one statement (CTEs; the
    execution and the timeline entry select from the job's UPDATE, so after a lost
    lease only the attempt is written). Parameters: the attempt's columns prefixed
    ``attempt_``, ``leased_job``, ``owner``, ``answer``, ``now``, ``execution_id``,
    ``entry_kind``, ``entry_message``; returns the job's attempts, or no row."""
    from ..amp.combined_writes import constant, param

    attempt = insert(_ATTEMPTS).values(
        {name: param(f"attempt_{name}", _ATTEMPTS, name) for name in _ATTEMPT_COLUMNS}
    ).cte("attempt")
    job = _DELIVERED.cte("job")
    resumed = (
        update(_EXECUTIONS)
        .where(_EXECUTIONS.c.id == bindparam("execution_id"), *_RESUMABLE, exists(select(job.c.attempts)))
        .values(**_resumed_values())
        .cte("resumed")
    )
    data = func.json_build_object(constant("job_id"), param("leased_job", _JOBS, "id"), constant("attempts"),
                                  job.c.attempts, constant("detail"), null())
    entry = insert(_EVENTS).from_select(
        ["execution_id", "kind", "message", "data", "created_at"],
        select(param("execution_id", _EVENTS, "execution_id"), param("entry_kind", _EVENTS, "kind"),
               param("entry_message", _EVENTS, "message"), data, param("now", _EVENTS, "created_at"))
        .select_from(job),
    ).cte("entry")
    return select(job.c.attempts).add_cte(attempt, resumed, entry)


def _apply_resume_outcome(job: ResumeJob, sent: CallOutcome, now: datetime) -> None:
    if sent.result == "ok":
        _succeed(job, sent.value.status, now)
    elif sent.result == "not_pending":
        _go_stale(job, f"AMP answered {sent.http_status or 400}: {_said(sent)}")
    elif sent.result in ("not_found", "rejected"):
        _fail(job, f"AMP refused the resume ({sent.http_status}): {_said(sent)}")
    elif sent.result == "unauthorized":
        _token_broken(job, sent, now)
    else:
        _retry_later(job, sent, now, ambiguous=sent.result == "ambiguous")


def _after_status_check(job_id: int, worker_id: str, check: CallOutcome) -> bool:
    """Record the status check; True when the resume should be sent (lease kept)."""
    db.session.add(check.attempt_row(job_id))
    job = _owned(job_id, worker_id)
    send = False
    if job is not None:
        send = _apply_status(job, check, utcnow())
        _note_outcome(job)
        if not send:
            _release(job)
    db.session.commit()
    return send


def _apply_status(job: ResumeJob, check: CallOutcome, now: datetime) -> bool:
    if check.result == "ok":
        state = check.value.state
        if state == "waiting" and not _moved_on(job) and not _paused_elsewhere(job, check):
            job.needs_status_check = False
            return True
        if state == "unknown":
            _retry_later(job, check, now, ambiguous=True)
            return False
        applied = "completed" if state == "completed" else _expected_outcome(job)
        _succeed(job, applied, now, note=f"AMP's status was '{state}' after an unclear attempt: "
                 "the resume had been applied, so it was not sent again.")
    elif check.result == "not_found":
        _fail(job, f"AMP does not know this execution ({check.http_status}): {_said(check)}")
    elif check.result == "unauthorized":
        _token_broken(job, check, now)
    else:
        _retry_later(job, check, now, ambiguous=True)
    return False


def _moved_on(job: ResumeJob) -> bool:
    """A newer round of this execution arrived after the decision: AMP acted on it."""
    decision = job.decision
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    ReviewRound.execution_id == decision.round.execution_id,
                    ReviewRound.id != decision.round_id,
                    ReviewRound.received_at > decision.created_at,
                )
            )
        )
    )


def _paused_elsewhere(job: ResumeJob, check: CallOutcome) -> bool:
    """The status shows AMP waiting on a different output (or task) than the one decided:
    the resume was applied and the crew has paused again before its notification came.
    Sending again would make the crew redo the task twice."""
    from ..amp.sync import notice_from_status

    round_ = job.decision.round
    notice = notice_from_status(round_.execution, check.value.raw)
    if notice is None:
        return False
    return notice.task_id != round_.task_id or notice.output.strip() != round_.output.strip()


def _expected_outcome(job: ResumeJob) -> str:
    return "resumed" if job.body.get("is_approve") else "retrying"


def _said(call: CallOutcome) -> str:
    return (call.error or call.body_text or "no details")[:300]


def _succeed(job: ResumeJob, outcome: str, now: datetime, *, note: str | None = None) -> None:
    """AMP took the decision. The execution is running again; whether and how it finished
    is left to the crew webhook and the status poller (which also store its result)."""
    job.state = JobState.SUCCEEDED
    job.outcome = outcome
    job.needs_status_check = False
    job.last_error = note
    _execution_resumed(job.decision.round.execution_id, now)


# After a delivered decision: an execution waiting for review with no other pending
# round is running again, and any unfinished one gets its status checked soon. One
# conditional UPDATE: a crew webhook finishing the execution at the same moment is
# never overwritten (the WHERE is evaluated again after its row lock).
_RESUMABLE = (_EXECUTIONS.c.status.not_in([ExecutionStatus.COMPLETED, ExecutionStatus.FAILED]),)


def _resumed_values() -> dict[str, Any]:
    return {
        "status": case(
            (and_(_EXECUTIONS.c.status == ExecutionStatus.PENDING_REVIEW,
                  ~exists().where(_ROUNDS.c.execution_id == bindparam("execution_id"),
                                  _ROUNDS.c.state == RoundState.PENDING)),
             bindparam("running", ExecutionStatus.RUNNING, type_=_EXECUTIONS.c.status.type)),
            else_=_EXECUTIONS.c.status,
        ),
        "next_status_check_at": bindparam("now"),  # let the status poller look soon
        "updated_at": bindparam("now"),
    }


_RESUMED = update(_EXECUTIONS).where(_EXECUTIONS.c.id == bindparam("execution_id"), *_RESUMABLE).values(
    **_resumed_values()
)


def _execution_resumed(execution_id: int, now: datetime) -> None:
    db.session.execute(_RESUMED, {"execution_id": execution_id, "now": now})
    loaded = db.session.identity_map.get(db.session.identity_key(Execution, execution_id))
    if loaded is not None:  # the ORM copy is out of date now
        db.session.expire(loaded, ["status", "next_status_check_at", "updated_at"])


def _go_stale(job: ResumeJob, detail: str) -> None:
    from ..amp.executions import mark_pending_rounds_stale

    job.state = JobState.STALE
    job.needs_status_check = False
    job.last_error = detail
    round_ = job.decision.round
    reason = "AMP says the execution is no longer waiting for input (resumed elsewhere or ended)"
    round_.state = RoundState.STALE
    round_.stale_reason = f"{reason}; the decision was recorded but not applied"
    mark_pending_rounds_stale(round_.execution, reason)


def _fail(job: ResumeJob, detail: str) -> None:
    job.state = JobState.FAILED
    job.last_error = detail


def _token_broken(job: ResumeJob, call: CallOutcome, now: datetime) -> None:
    """401: the crew needs an admin; the job waits (no attempt spent) for the fix."""
    from ..amp.crews import mark_token_broken

    job.last_error = f"the crew's token was refused ({call.http_status}); waiting for an admin to fix it."
    job.next_attempt_at = now
    mark_token_broken(job.crew, f"AMP answered {call.http_status} to a resume at {now:%Y-%m-%d %H:%M} UTC: {_said(call)}")


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with jitter: between half and all of min(max, base ** attempts)."""
    config = current_app.config
    ceiling = min(float(config["RESUME_BACKOFF_MAX"]), float(config["RESUME_BACKOFF_BASE"]) ** attempts)
    return ceiling / 2 + _JITTER.uniform(0, ceiling / 2)


def _retry_later(job: ResumeJob, call: CallOutcome, now: datetime, *, ambiguous: bool) -> None:
    job.attempts += 1
    if ambiguous:
        job.needs_status_check = True
    what = "No clear answer" if ambiguous else "Not delivered"
    job.last_error = f"{what} ({call.http_status or call.result}): {_said(call)}"
    limit = int(current_app.config["RESUME_MAX_ATTEMPTS"])
    if job.attempts >= limit:
        job.state = JobState.FAILED
        job.last_error = f"Gave up after {job.attempts} attempts. {job.last_error}"
        return
    job.next_attempt_at = now + timedelta(seconds=backoff_seconds(job.attempts))


def _note_outcome(job: ResumeJob) -> None:
    """A timeline entry when a job reaches a final state (each attempt is on the timeline
    already, as its ResumeAttempt row)."""
    if job.state is JobState.PENDING:
        return
    from ..amp.executions import record_execution_event

    round_ = job.decision.round
    record_execution_event(round_.execution, *_outcome_entry(
        job.state, job.outcome, round_.task_id, round_.round_number, job.id, job.attempts, job.last_error
    ))


def _outcome_entry(
    state: JobState, outcome: str | None, task_id: str, round_number: int, job_id: int, attempts: int,
    last_error: str | None,
) -> tuple[str, str, dict[str, Any]]:
    """The timeline entry (kind, message, data) of a job that reached a final state."""
    words = {
        JobState.SUCCEEDED: f"delivered: AMP answered '{outcome}'",
        JobState.STALE: "not applied: the execution was no longer waiting for input",
        JobState.FAILED: "not delivered: the resume failed",
    }
    message = f"Decision on {task_id} round {round_number} {words.get(state, state.value)}."
    data = {"job_id": job_id, "attempts": attempts, "detail": (last_error or "")[:300] or None}
    return f"resume_{state.value}", message, data


# --------------------------------------------------------------------------- presentation


@dataclass(frozen=True)
class JobSummary:
    state: str
    outcome: str | None
    headline: str
    detail: str
    tone: str  # ok, info, warn, bad
    final: bool
    attempts: int
    next_attempt_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "outcome": self.outcome,
            "headline": self.headline,
            "detail": self.detail,
            "tone": self.tone,
            "final": self.final,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
        }


_SUCCESS = {
    "resumed": ("Approved: the crew resumed.", "AMP accepted the decision and the execution continues."),
    "retrying": (
        "Revision requested: the crew is redoing the task.",
        "Its next output will arrive in the queue as round {next} of this task.",
    ),
    "completed": ("Delivered: the execution has completed.", "AMP reports the execution finished."),
}


def describe(job: ResumeJob) -> JobSummary:
    """What the reviewer sees about a job: outcome, or failure and what happens next."""
    headline, detail, tone, final = _words(job)
    return JobSummary(
        state=job.state.value,
        outcome=job.outcome,
        headline=headline,
        detail=detail,
        tone=tone,
        final=final,
        attempts=job.attempts,
        next_attempt_at=job.next_attempt_at if job.state is JobState.PENDING else None,
    )


def _words(job: ResumeJob) -> tuple[str, str, str, bool]:
    if job.state is JobState.SUCCEEDED:
        headline, detail = _SUCCESS.get(job.outcome or "", ("Delivered.", "AMP accepted the decision."))
        detail = detail.format(next=job.decision.round.round_number + 1)
        return headline, (f"{detail} {job.last_error}" if job.last_error else detail), "ok", True
    if job.state is JobState.STALE:
        return (
            "Not applied: the execution was no longer waiting for input.",
            f"Someone else resumed it or it ended, so the round is marked stale. {job.last_error or ''}".strip(),
            "warn",
            True,
        )
    if job.state is JobState.FAILED:
        return (
            "Delivery failed.",
            f"{job.last_error or 'No details.'} A lead or admin can retry or dismiss it "
            "on the Failed deliveries page; your decision is kept.",
            "bad",
            True,
        )
    if job.state is JobState.DISMISSED:
        return ("Dismissed.", "A lead or admin dismissed this delivery; nothing will be sent.", "warn", True)
    return _pending_words(job)


def _pending_words(job: ResumeJob) -> tuple[str, str, str, bool]:
    if job.crew.token_broken:
        return (
            "Waiting for an admin: AMP refused the crew's token.",
            "Your decision is stored and will be sent as soon as an admin updates the "
            "crew's token. Nothing is lost.",
            "bad",
            False,
        )
    if job.attempts == 0 and not job.last_error:
        return ("Sending to AMP…", "Your decision is stored; delivery is under way.", "info", False)
    limit = int(current_app.config["RESUME_MAX_ATTEMPTS"])
    when = f"{job.next_attempt_at:%H:%M:%S} UTC"
    detail = (
        f"Attempt {job.attempts} of {limit} did not get through ({job.last_error}). "
        f"The next try is at {when}; nothing is lost."
    )
    if job.needs_status_check:
        detail += " Before sending again, reviewapp asks AMP for the execution's status so the decision is never applied twice."
    return ("Delivery is being retried automatically.", detail, "warn", False)

