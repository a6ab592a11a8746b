"""A decision's writes as plain statements: the round moves pending -> decided, and the
Decision, its ResumeJob and the audit event are inserted.

The ORM's unit of work cost a submit about 2 ms of CPU for these three rows, more than
the statements themselves. On PostgreSQL the four writes are one statement
(data-modifying CTEs, as in amp/combined_writes.py): each later part selects from the
one before, so when the conditional UPDATE matches no row (someone else decided, the
round went stale, another reviewer holds the claim) nothing at all is written and the
statement returns no row. SQLite has no data-modifying CTEs: four statements, the
inserts only after the UPDATE matched.

Parameter names carry a prefix (SQLAlchemy adds a parameter named like a column of the
table an UPDATE changes to its SET clause, also inside a CTE); constants are written
out (see combined_writes.constant).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, Text, bindparam, cast, func, insert, null, select, update

from ..amp.combined_writes import constant, param
from ..audit.dialect import is_postgres
from ..extensions import db
from ..models import AuditEvent, Decision, JobState, ResumeJob, ReviewRound

_ROUNDS: Table = ReviewRound.__table__  # type: ignore[assignment]
_DECISIONS: Table = Decision.__table__  # type: ignore[assignment]
_JOBS: Table = ResumeJob.__table__  # type: ignore[assignment]
_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]

_DECISION_COLUMNS = ("round_id", "reviewer_id", "is_approve", "feedback", "reason_code", "created_at")
_JOB_COLUMNS = ("decision_id", "crew_id", "state", "body", "attempts", "next_attempt_at", "lease_owner",
                "lease_expires_at", "needs_status_check", "created_at", "updated_at")
_EVENT_COLUMNS = ("created_at", "event", "actor_id", "actor_name", "target_type", "target_id", "target_name",
                  "source_ip", "details")
# The audit event's details, in this order, then the job's id.
_DETAIL_KEYS = ("decision", "reason", "crew", "execution")


@dataclass(frozen=True)
class DecisionRow:
    """Everything a decision writes."""

    round_id: int
    round_name: str  # the audit event's target name
    crew_id: int
    reviewer_id: int
    reviewer_name: str
    is_approve: bool
    feedback: str
    reason_code: str | None
    job_body: dict[str, Any]
    lease_owner: str | None
    lease_expires_at: datetime | None
    details: dict[str, Any]  # the audit event's, without the job's id (_DETAIL_KEYS)
    source_ip: str | None
    now: datetime

    def params(self) -> dict[str, Any]:
        decision = {"round_id": self.round_id, "reviewer_id": self.reviewer_id, "is_approve": self.is_approve,
                    "feedback": self.feedback, "reason_code": self.reason_code, "created_at": self.now}
        job = {"crew_id": self.crew_id, "state": JobState.PENDING, "body": self.job_body, "attempts": 0,
               "next_attempt_at": self.now, "lease_owner": self.lease_owner,
               "lease_expires_at": self.lease_expires_at, "needs_status_check": False, "created_at": self.now,
               "updated_at": self.now}
        event = {"created_at": self.now, "event": "decision_submitted", "actor_id": self.reviewer_id,
                 "actor_name": self.reviewer_name, "target_type": "review_round", "target_id": str(self.round_id),
                 "target_name": self.round_name[:128], "source_ip": self.source_ip}
        return {
            "round_id": self.round_id, "reviewer_id": self.reviewer_id, "now": self.now,
            **_prefixed("d_", decision), **_prefixed("j_", job), **_prefixed("e_", event),
            **_prefixed("x_", {key: self.details.get(key) for key in _DETAIL_KEYS}),
        }


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{name}": value for name, value in values.items()}


def record(row: DecisionRow, claimable: Any) -> tuple[int, int] | None:
    """Write the decision ``row`` describes: (decision id, job id), or None when the round
    was not pending or ``claimable`` (a condition on review_rounds with the parameters
    ``reviewer_id`` and ``now``) did not hold, and then nothing was written. The caller
    commits."""
    params = row.params()
    if is_postgres():
        found = db.session.execute(_at_once(claimable), params).first()
        return (found[0], found[1]) if found is not None else None
    if db.session.execute(_decide(claimable), params).rowcount != 1:  # type: ignore[attr-defined]
        return None
    decision_id = db.session.execute(_insert("d_", _DECISIONS, _DECISION_COLUMNS), params).scalar_one()
    job_id = db.session.execute(_insert("j_", _JOBS, _JOB_COLUMNS), {**params, "j_decision_id": decision_id}
                                ).scalar_one()
    details = {**{key: row.details.get(key) for key in _DETAIL_KEYS}, "job_id": job_id}
    db.session.execute(_insert("e_", _EVENTS, _EVENT_COLUMNS), {**params, "e_details": details})
    return decision_id, job_id


def _values(prefix: str, table: Table, names: tuple[str, ...]) -> list[Any]:
    return [param(f"{prefix}{name}", table, name) for name in names]


@functools.cache
def _decide(claimable: Any) -> Any:
    """pending -> decided, claim released, if ``claimable``."""
    return (
        update(_ROUNDS)
        .where(_ROUNDS.c.id == bindparam("round_id"), _ROUNDS.c.state == constant("pending"), claimable)
        .values(state=constant("decided"), claimed_by_id=null(), claim_expires_at=null())
    )


@functools.cache
def _insert(prefix: str, table: Table, names: tuple[str, ...]) -> Any:
    """``INSERT`` of ``names`` from the parameters ``<prefix><name>``, returning the id."""
    values = dict(zip(names, _values(prefix, table, names), strict=True))
    return insert(table).values(values).returning(table.c.id)


@functools.cache
def _at_once(claimable: Any) -> Any:
    """PostgreSQL: the four writes as one statement, returning (decision id, job id)."""
    decided = _decide(claimable).returning(_ROUNDS.c.id).cte("decided")
    decision = (
        insert(_DECISIONS)
        .from_select(_DECISION_COLUMNS,
                     select(decided.c.id, *_values("d_", _DECISIONS, _DECISION_COLUMNS[1:])).select_from(decided))
        .returning(_DECISIONS.c.id).cte("decision")
    )
    job = (
        insert(_JOBS)
        .from_select(_JOB_COLUMNS, select(decision.c.id, *_values("j_", _JOBS, _JOB_COLUMNS[1:])).select_from(decision))
        .returning(_JOBS.c.id, _JOBS.c.decision_id).cte("job")
    )
    pairs = [part for key in _DETAIL_KEYS for part in (constant(key), bindparam(f"x_{key}", type_=Text()))]
    details = cast(func.json_build_object(*pairs, constant("job_id"), job.c.id), _EVENTS.c.details.type)
    event = (
        insert(_EVENTS)
        .from_select(_EVENT_COLUMNS, select(*_values("e_", _EVENTS, _EVENT_COLUMNS[:-1]), details).select_from(job))
        .cte("event")
    )
    return select(job.c.decision_id, job.c.id).add_cte(event)
