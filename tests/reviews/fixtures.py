"""Factories for the review-loop tests: crews and review rounds built through the AMP
services (``create_crew``, ``ingest_human_input``), as the receiver would.

Registered for tests/reviews by its conftest; browser tests import them too."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest
from sqlalchemy import select

from reviewapp.extensions import db
from reviewapp.models import Crew


@pytest.fixture
def make_crew(app):
    """make_crew("research", base_url=...) -> crew id (created once per name)."""
    from reviewapp.amp.crews import create_crew

    def make(name: str = "research", base_url: str = "http://127.0.0.1:9", token: str = "tok-research-0001") -> int:
        with app.app_context():
            crew = db.session.scalar(select(Crew).where(Crew.name == name))
            if crew is None:
                crew = create_crew(name, base_url, token)
                db.session.commit()
            return crew.id

    return make


@pytest.fixture
def make_round(app, make_crew):
    """make_round(output=..., task_id=..., execution_id=..., received_at=...) -> round id.

    Each call without ``execution_id`` is a new execution (AMP pauses one task at a time,
    so a second round of the same execution supersedes the first)."""
    from reviewapp.amp.executions import ingest_human_input

    def make(
        output: str = "# Findings\n\nThe answer is 42.",
        *,
        crew: str = "research",
        base_url: str = "http://127.0.0.1:9",
        task_id: str = "research_task",
        execution_id: str | None = None,
        agent: str | None = "Researcher",
        received_at: datetime | None = None,
    ) -> int:
        crew_id = make_crew(crew, base_url=base_url)
        payload = {
            "execution_id": execution_id or str(uuid.uuid4()),
            "task_id": task_id,
            "output": output,
            "agent": agent,
        }
        with app.app_context():
            round_, _ = ingest_human_input(db.session.get(Crew, crew_id), payload, raw=json.dumps(payload))
            if received_at is not None:
                round_.received_at = received_at
            db.session.commit()
            return round_.id

    return make



CREW_INPUTS = {
    "research": {"topic": "heat pumps", "current_year": "2025"},
    "travel": {"destination": "Lisbon", "days": "3"},
    "support": {"customer_name": "Ada", "question": "Where is my order?"},
}


@pytest.fixture
def sandbox_round(app, sandbox, sandbox_crew):
    """sandbox_round("research") -> id of the pending round of a fresh sandbox execution
    (kicked off through reviewapp; the human-input webhook made the round)."""
    from reviewapp.amp.executions import kickoff_execution
    from reviewapp.models import ReviewRound, RoundState

    registered: set[str] = set()

    def make(crew: str = "research") -> int:
        if crew not in registered:
            sandbox_crew(crew)
            registered.add(crew)
        with app.app_context():
            row = db.session.scalar(select(Crew).where(Crew.name == crew))
            execution_id = kickoff_execution(row, CREW_INPUTS[crew]).id
            db.session.commit()
        assert sandbox.wait_idle(10)
        with app.app_context():
            round_id = db.session.scalar(
                select(ReviewRound.id).where(
                    ReviewRound.execution_id == execution_id, ReviewRound.state == RoundState.PENDING
                )
            )
        assert round_id is not None, "the sandbox's human-input webhook made no round"
        return round_id

    return make
