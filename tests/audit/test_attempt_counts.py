"""The history, its export and the timeline count the /resume calls actually made.

Regression (found by the browser audit journey): they showed ``ResumeJob.attempts``,
which the delivery code uses for the failed tries only, so a decision delivered at the
first try read "HTTP 200 · 0 attempts"."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import text

from reviewapp import create_app
from reviewapp.extensions import db
from reviewapp.models import JobState, ResumeJob
from tests.audit.factories import AuditFactory, at
from tests.test_migrations import downgrade_and_upgrade, empty_db_url  # noqa: F401 - fixture


@pytest.fixture
def delivered(factory):
    """Two decisions on one execution, their jobs as the delivery code leaves them:
    round 1 went through at the first try (attempts=0, one call); round 2 failed once,
    was status-checked, then went through (attempts=1, two resume calls and a check)."""
    crew = factory.crew("research")
    execution = factory.execution(crew, created_at=at(0))
    first = factory.round(execution, received_at=at(1))
    d1 = factory.decision(first, factory.user("rita"), approve=False, feedback="first try", created_at=at(2))
    j1 = factory.job(d1, outcome="retrying", attempts=0)
    factory.attempt(j1, started_at=at(3))
    second = factory.round(execution, number=2, output="Better output.", received_at=at(4))
    d2 = factory.decision(second, factory.user("rita"), approve=True, feedback="after a retry", created_at=at(5))
    j2 = factory.job(d2, outcome="resumed", attempts=1)
    factory.attempt(j2, result="unavailable", http_status=500, started_at=at(6))
    factory.attempt(j2, kind="status-check", started_at=at(7), body='{"state": "PENDING_HUMAN_INPUT"}')
    factory.attempt(j2, started_at=at(8))
    factory.commit()
    return execution.id


def test_history_counts_calls_made(client, login_as, delivered):
    login_as("lead")
    page = client.get("/audit/history").get_data(as_text=True)
    assert "HTTP 200 · 1 attempt<" in page
    assert "HTTP 200 · 2 attempts<" in page
    assert "0 attempts" not in page


def test_export_counts_calls_made(client, login_as, delivered):
    login_as("lead")
    rows = list(csv.DictReader(io.StringIO(client.get("/audit/history/export.csv").get_data(as_text=True))))
    assert {r["feedback"]: r["attempts"] for r in rows} == {"first try": "1", "after a retry": "2"}


def test_export_without_a_job_has_no_count(client, login_as, factory):
    factory.decided(feedback="no job yet", job_state=None)
    factory.decided(feedback="sent", job_state=JobState.SUCCEEDED)
    factory.commit()
    login_as("lead")
    rows = list(csv.DictReader(io.StringIO(client.get("/audit/history/export.csv").get_data(as_text=True))))
    assert {r["feedback"]: r["attempts"] for r in rows} == {"no job yet": "", "sent": "1"}


def test_timeline_counts_calls_made(client, login_as, delivered):
    login_as("lead")
    page = client.get(f"/audit/executions/{delivered}").get_data(as_text=True)
    assert "retrying · 1 attempt<" in page
    assert "resumed · 2 attempts<" in page


BEFORE_CALL_COUNTS = "d5a8f3c60e17"  # the revision before resume_jobs kept its counts


def kept_and_recounted(conn) -> tuple[list, list]:
    """Each job's kept (calls, last status), and the same recounted from its attempts."""
    kept = conn.execute(text("SELECT id, resume_calls, last_http_status FROM resume_jobs ORDER BY id")).all()
    recounted = conn.execute(text(
        "SELECT j.id, (SELECT count(*) FROM resume_attempts a WHERE a.job_id = j.id AND a.kind = 'resume'),"
        " (SELECT a.http_status FROM resume_attempts a WHERE a.job_id = j.id ORDER BY a.id DESC LIMIT 1)"
        " FROM resume_jobs j ORDER BY j.id")).all()
    return [tuple(row) for row in kept], [tuple(row) for row in recounted]


def test_migration_backfills_the_counts_and_the_trigger_keeps_them(empty_db_url):  # noqa: F811 - fixture
    """Jobs and attempts written before the counts existed get theirs from the attempt
    log; attempts written afterwards are counted by the trigger."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    factory = AuditFactory()
    with app.app_context():
        first = factory.job(factory.decided(feedback="one call", job_state=None), attempts=0)
        factory.attempt(first, started_at=at(3))
        second = factory.job(factory.decided(feedback="retried", job_state=None), outcome=None)
        factory.attempt(second, result="unavailable", http_status=503, started_at=at(4))
        factory.attempt(second, kind="status-check", http_status=None, started_at=at(5))
        factory.job(factory.decided(feedback="never sent", job_state=None), state=JobState.PENDING, outcome=None)
        factory.commit()
        jobs = (first.id, second.id)
        db.session.remove()
        db.engine.dispose()
    downgrade_and_upgrade(runner, BEFORE_CALL_COUNTS)
    with app.app_context():
        with db.engine.connect() as conn:
            kept, recounted = kept_and_recounted(conn)
        assert kept == recounted
        assert [row[1:] for row in kept] == [(1, 200), (1, None), (0, None)]
        job = db.session.get(ResumeJob, jobs[1])
        factory.attempt(job, started_at=at(6))  # the retry goes through
        factory.commit()
        with db.engine.connect() as conn:
            kept, recounted = kept_and_recounted(conn)
        assert kept == recounted and kept[1][1:] == (2, 200)
        db.session.remove()
        db.engine.dispose()
