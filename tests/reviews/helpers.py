"""Small read helpers for the review-loop tests (each opens its own app context)."""

from __future__ import annotations

from sqlalchemy import func, select

from reviewapp.extensions import db
from reviewapp.models import AuditEvent, Decision, ResumeAttempt, ResumeJob, ReviewRound


def claim_as(app, round_id: int, user) -> None:
    """``user`` opens (claims) the round, as if on the review page."""
    from reviewapp.reviews import services

    with app.app_context():
        services.claim_round(db.session.get(ReviewRound, round_id), db.session.merge(user))
        db.session.commit()


def fetch(app, model, row_id):
    with app.app_context():
        row = db.session.get(model, row_id)
        if row is not None:
            db.session.expunge(row)
        return row


def round_row(app, round_id: int) -> ReviewRound:
    return fetch(app, ReviewRound, round_id)


def count(app, model, *where) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def decisions_for(app, round_id: int) -> int:
    return count(app, Decision, Decision.round_id == round_id)


def job_for_round(app, round_id: int) -> ResumeJob | None:
    with app.app_context():
        job = db.session.scalar(
            select(ResumeJob).join(Decision).where(Decision.round_id == round_id)
        )
        if job is not None:
            db.session.expunge(job)
        return job


def attempts_for(app, job_id: int) -> list[ResumeAttempt]:
    with app.app_context():
        rows = list(db.session.scalars(
            select(ResumeAttempt).where(ResumeAttempt.job_id == job_id).order_by(ResumeAttempt.id)
        ))
        for row in rows:
            db.session.expunge(row)
        return rows


def audit_events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))
        for row in rows:
            db.session.expunge(row)
        return rows
