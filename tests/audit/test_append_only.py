"""Decisions and audit rows are never updated or deleted, by the ORM or bulk statements."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from reviewapp.extensions import db
from reviewapp.models import AppendOnlyError, AuditEvent, Decision, JobState, ResumeJob
from tests.audit.factories import at


@pytest.fixture
def decision_id(factory):
    decision = factory.decided(feedback="original words", received_at=at(0), job_state=None)
    factory.audit_event("login", created_at=at(0), actor="ann")
    factory.commit()
    return decision.id


def test_a_decision_cannot_be_changed(decision_id):
    decision = db.session.get(Decision, decision_id)
    decision.feedback = "rewritten history"
    with pytest.raises(AppendOnlyError):
        db.session.flush()
    db.session.rollback()
    assert db.session.get(Decision, decision_id).feedback == "original words"


def test_a_decision_cannot_be_deleted(decision_id):
    db.session.delete(db.session.get(Decision, decision_id))
    with pytest.raises(AppendOnlyError):
        db.session.flush()
    db.session.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        update(Decision).values(feedback="x"),
        delete(Decision),
        update(AuditEvent).values(event="x"),
        delete(AuditEvent),
    ],
    ids=["update decisions", "delete decisions", "update audit", "delete audit"],
)
def test_bulk_statements_are_refused(decision_id, statement):
    with pytest.raises(AppendOnlyError):
        db.session.execute(statement)
    db.session.rollback()
    assert db.session.scalar(select(Decision.feedback)) == "original words"
    assert db.session.scalar(select(AuditEvent.event).where(AuditEvent.actor_name == "ann")) == "login"


def test_attaching_a_resume_job_to_a_decision_is_fine(factory, decision_id):
    """Only column changes are refused: relationships (decision.job) may be set."""
    decision = db.session.get(Decision, decision_id)
    decision.job = ResumeJob(crew_id=decision.round.crew_id, state=JobState.PENDING, body={})
    db.session.flush()
    db.session.commit()
    assert db.session.get(Decision, decision_id).job is not None
