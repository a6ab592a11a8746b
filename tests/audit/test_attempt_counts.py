"""The history, its export and the timeline count the /resume calls actually made.

Regression (found by the browser audit journey): they showed ``ResumeJob.attempts``,
which the delivery code uses for the failed tries only, so a decision delivered at the
first try read "HTTP 200 · 0 attempts"."""

from __future__ import annotations

import csv
import io

import pytest

from reviewapp.models import JobState
from tests.audit.factories import at


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
