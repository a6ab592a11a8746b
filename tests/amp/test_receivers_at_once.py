"""The receivers' hot paths write a notification at once (on PostgreSQL one statement,
amp/combined_writes.py; on SQLite a few): what they write must be exactly what the
general path writes, and nothing else (a statement parameter named like a column of a
table it updates would set that column too)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from reviewapp.amp.crews import get_crew
from reviewapp.extensions import db
from reviewapp.models import (
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    RoundState,
    WebhookKind,
    utcnow,
)
from tests.sqlcapture import captured_statements

from .conftest import deliveries, execution_of, rounds_of
from .test_receivers import EXEC, notice

TASK = {"description": "Research", "name": "research_task", "expected_output": "x", "summary": "Found things",
        "agent": "Researcher", "output": "Full output", "output_json": None, "kickoff_id": EXEC, "meta": None}


def _known_execution(app, crew_name: str) -> int:
    """An execution reviewapp started itself (as kickoff_execution stores it)."""
    with app.app_context():
        crew = get_crew(crew_name)
        execution = Execution(crew_id=crew.id, kickoff_id=EXEC, status=ExecutionStatus.RUNNING,
                              inputs={"topic": "x"}, meta={"reviewapp_crew": crew.name})
        db.session.add(execution)
        db.session.commit()
        return execution.id


def _columns(app, execution_id: int) -> dict:
    with app.app_context():
        execution = db.session.get(Execution, execution_id)
        return {"crew_id": execution.crew_id, "kickoff_id": execution.kickoff_id, "inputs": execution.inputs,
                "meta": execution.meta, "result": execution.result, "error": execution.error,
                "created_at": execution.created_at}


def _events(app, execution_id: int) -> list[tuple[str, str | None, dict | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(ExecutionEvent.kind, ExecutionEvent.message, ExecutionEvent.data)
            .where(ExecutionEvent.execution_id == execution_id).order_by(ExecutionEvent.id)
        ).all()
        return [tuple(row) for row in rows]


def test_a_round_of_a_known_execution_changes_only_its_status(app, crew, hook):
    research = crew("research")
    execution_id = _known_execution(app, research)
    before = _columns(app, execution_id)
    assert hook(research, "human-input", notice(meta={"round": "meta"})).json["status"] == "accepted"
    assert _columns(app, execution_id) == before  # not the round's crew_id, meta, ...
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.PENDING_REVIEW and execution.updated_at is not None
        [round_] = rounds_of(EXEC)
        assert (round_.round_number, round_.state, round_.meta) == (1, RoundState.PENDING, {"round": "meta"})
        [delivery] = deliveries()
        assert (delivery.kind, delivery.outcome, delivery.execution_id) == (
            WebhookKind.HUMAN_INPUT, "accepted", execution_id)
    assert _events(app, execution_id) == [
        ("human_input", "Task research_task waits for a review (round 1, webhook).",
         {"round_id": round_.id, "task_id": "research_task", "round_number": 1})]


def test_a_new_execution_and_its_first_round_arrive_together(app, crew, hook):
    research = crew("research")
    hook(research, "human-input", notice())
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.PENDING_REVIEW and execution.crew_id == get_crew(research).id
        assert execution.created_at is not None and execution.updated_at is not None
        assert execution.next_status_check_at > utcnow() - timedelta(minutes=1)
        [round_] = rounds_of(EXEC)
        execution_id, round_id = execution.id, round_.id
    assert [kind for kind, _, _ in _events(app, execution_id)] == ["discovered", "human_input"]
    assert _events(app, execution_id)[1][2] == {"round_id": round_id, "task_id": "research_task", "round_number": 1}


def test_progress_of_a_known_execution_is_recorded_once_and_changes_nothing_else(app, crew, hook):
    research = crew("research")
    execution_id = _known_execution(app, research)
    before = _columns(app, execution_id)
    assert hook(research, "task", TASK).json == {"status": "accepted"}
    for _ in range(3):  # other entries in between do not hide the first one
        hook(research, "step", {"thought": f"t{_}", "kickoff_id": EXEC})
    assert hook(research, "task", TASK).json == {"status": "duplicate"}
    assert _columns(app, execution_id) == before
    kinds = [kind for kind, _, _ in _events(app, execution_id)]
    assert kinds == ["task_completed", "step", "step", "step"]
    with app.app_context():
        assert [(d.kind, d.outcome, d.execution_id) for d in deliveries()] == [
            (WebhookKind.TASK, "accepted", execution_id), *[(WebhookKind.STEP, "accepted", execution_id)] * 3,
            (WebhookKind.TASK, "duplicate", execution_id)]


def test_the_finish_of_a_known_execution_without_pending_rounds(app, crew, hook):
    research = crew("research")
    execution_id = _known_execution(app, research)
    done = {"kickoff_id": EXEC, "result": "Final report", "token_usage": {"total_tokens": 3}}
    assert hook(research, "crew", done).json == {"status": "accepted"}
    assert hook(research, "crew", {**done, "result": "again"}).json == {"status": "duplicate"}
    with app.app_context():
        execution = db.session.get(Execution, execution_id)
        assert (execution.status, execution.result, execution.token_usage) == (
            ExecutionStatus.COMPLETED, "Final report", {"total_tokens": 3})
        assert execution.finished_at is not None and execution.next_status_check_at is None
        assert (execution.inputs, execution.meta) == ({"topic": "x"}, {"reviewapp_crew": "research"})
        assert [d.outcome for d in deliveries()] == ["accepted", "duplicate"]
    assert _events(app, execution_id) == [("completed", "AMP reports the execution completed (crew webhook).", None)]


def test_the_crew_and_what_is_known_of_the_execution_are_read_in_one_statement(app, crew, client, secret_of):
    research = crew("research")
    headers = {"Authorization": f"Bearer {secret_of(research)}"}
    client.post(f"/hooks/amp/{research}/human-input", json=notice(), headers=headers)
    with captured_statements(app) as seen:
        response = client.post(f"/hooks/amp/{research}/human-input", json=notice(), headers=headers)
        assert response.json["status"] == "duplicate"
    reads = [s for s in seen if s.startswith("SELECT")]
    assert len(reads) == 1 and "FROM crews LEFT OUTER JOIN executions" in reads[0]
