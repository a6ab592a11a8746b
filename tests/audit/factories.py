"""Rows for the audit tests, made directly with the models (fixed times, no AMP).

``factory.decided(...)`` builds the usual chain in one call: execution -> round ->
decision -> resume job (-> attempts).
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from reviewapp.extensions import db
from reviewapp.models import (
    AuditEvent,
    Crew,
    Decision,
    Execution,
    ExecutionEvent,
    JobState,
    ResumeAttempt,
    ResumeJob,
    ReviewRound,
    Role,
    RoundState,
    User,
    WebhookDelivery,
    WebhookKind,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def at(minutes: float = 0, *, days: int = 0) -> datetime:
    """T0 plus an offset: at(5) is 09:05 on 2025-03-03, at(days=1) the next day."""
    return T0 + timedelta(days=days, minutes=minutes)


class AuditFactory:
    def __init__(self) -> None:
        self._serial = itertools.count(1)

    def _save(self, row: Any) -> Any:
        db.session.add(row)
        db.session.flush()
        return row

    def commit(self) -> None:
        db.session.commit()

    def crew(self, name: str = "research") -> Crew:
        existing = db.session.scalar(select(Crew).where(Crew.name == name))
        if existing is not None:
            return existing
        return self._save(
            Crew(
                name=name,
                base_url=f"https://{name}.example.test",
                token_encrypted="not-a-real-ciphertext",
                token_hint="…beef",
                inbound_secret_encrypted="not-a-real-ciphertext",
            )
        )

    def user(self, username: str, role: str = "reviewer") -> User:
        existing = db.session.scalar(select(User).where(User.username == username))
        if existing is not None:
            return existing
        return self._save(User(username=username, password_hash="!", role=Role(role)))

    def execution(self, crew: Crew, *, created_at: datetime = T0, kickoff_id: str | None = None) -> Execution:
        kickoff = kickoff_id or f"00000000-0000-4000-8000-{next(self._serial):012d}"
        return self._save(Execution(crew=crew, kickoff_id=kickoff, created_at=created_at, updated_at=created_at))

    def round(
        self,
        execution: Execution,
        *,
        task_id: str = "research_task",
        number: int = 1,
        output: str = "Some output.",
        received_at: datetime = T0,
        state: RoundState = RoundState.PENDING,
    ) -> ReviewRound:
        return self._save(
            ReviewRound(
                execution_id=execution.id,
                crew_id=execution.crew_id,
                task_id=task_id,
                round_number=number,
                output=output,
                output_sha256=hashlib.sha256(output.encode()).hexdigest(),
                received_at=received_at,
                state=state,
            )
        )

    def decision(
        self,
        round_: ReviewRound,
        reviewer: User,
        *,
        approve: bool = True,
        feedback: str = "",
        reason: str | None = None,
        created_at: datetime | None = None,
    ) -> Decision:
        round_.state = RoundState.DECIDED
        return self._save(
            Decision(
                round_id=round_.id,
                reviewer_id=reviewer.id,
                is_approve=approve,
                feedback=feedback,
                reason_code=reason,
                created_at=created_at or round_.received_at + timedelta(minutes=5),
            )
        )

    def job(
        self, decision: Decision, *, state: JobState = JobState.SUCCEEDED, outcome: str | None = "resumed", attempts: int = 1
    ) -> ResumeJob:
        round_ = db.session.get(ReviewRound, decision.round_id)
        return self._save(
            ResumeJob(
                decision_id=decision.id,
                crew_id=round_.crew_id,
                state=state,
                body={"execution_id": "x", "task_id": round_.task_id, "human_feedback": decision.feedback, "is_approve": decision.is_approve},
                attempts=attempts,
                outcome=outcome,
                created_at=decision.created_at,
                updated_at=decision.created_at,
            )
        )

    def attempt(
        self,
        job: ResumeJob,
        *,
        result: str = "ok",
        http_status: int | None = 200,
        started_at: datetime | None = None,
        kind: str = "resume",
        body: str | None = '{"status": "resumed"}',
        error: str | None = None,
    ) -> ResumeAttempt:
        started = started_at or job.created_at + timedelta(seconds=1)
        return self._save(
            ResumeAttempt(
                job_id=job.id,
                started_at=started,
                finished_at=started + timedelta(milliseconds=300),
                kind=kind,
                http_status=http_status,
                response_body=body,
                error=error,
                result=result,
            )
        )

    def decided(
        self,
        *,
        crew: str = "research",
        reviewer: str = "rita",
        approve: bool = True,
        feedback: str = "",
        reason: str | None = None,
        received_at: datetime = T0,
        wait_minutes: float = 5,
        task_id: str = "research_task",
        number: int = 1,
        output: str = "Some output.",
        execution: Execution | None = None,
        job_state: JobState | None = JobState.SUCCEEDED,
        http_status: int | None = 200,
    ) -> Decision:
        """A decided round (with its resume job and one attempt unless job_state is None)."""
        crew_row = self.crew(crew)
        execution = execution or self.execution(crew_row, created_at=received_at - timedelta(minutes=1))
        round_ = self.round(execution, task_id=task_id, number=number, output=output, received_at=received_at)
        decision = self.decision(
            round_, self.user(reviewer), approve=approve, feedback=feedback, reason=reason,
            created_at=received_at + timedelta(minutes=wait_minutes),
        )
        if job_state is not None:
            job = self.job(decision, state=job_state, outcome="resumed" if approve else "retrying")
            self.attempt(job, result="ok" if job_state is JobState.SUCCEEDED else "unavailable", http_status=http_status)
        return decision

    def event(self, execution: Execution, kind: str, *, created_at: datetime, message: str = "", data: dict | None = None) -> ExecutionEvent:
        return self._save(ExecutionEvent(execution_id=execution.id, kind=kind, message=message, data=data, created_at=created_at))

    def webhook(self, execution: Execution, *, received_at: datetime, payload: str, kind: WebhookKind = WebhookKind.HUMAN_INPUT, outcome: str = "accepted") -> WebhookDelivery:
        return self._save(
            WebhookDelivery(crew_id=execution.crew_id, execution_id=execution.id, kind=kind, received_at=received_at, outcome=outcome, payload=payload)
        )

    def audit_event(self, event: str, *, created_at: datetime, actor: str | None = None, target: str | None = None, details: dict | None = None) -> AuditEvent:
        return self._save(
            AuditEvent(event=event, created_at=created_at, actor_name=actor, target_type="user" if target else None, target_name=target, details=details)
        )


@pytest.fixture
def factory(app):
    """An AuditFactory inside an app context; call factory.commit() before requests."""
    with app.app_context():
        yield AuditFactory()
        db.session.rollback()
