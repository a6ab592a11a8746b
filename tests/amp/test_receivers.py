"""Webhook receivers: authentication, tolerant payload shapes, idempotency, ordering,
size limits, and a JSON answer (never a 500) for every delivery."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from reviewapp.amp.crews import get_crew
from reviewapp.extensions import db
from reviewapp.models import (
    AuditEvent,
    ExecutionEvent,
    ExecutionStatus,
    ReviewRound,
    RoundState,
    WebhookDelivery,
    WebhookKind,
)

from .conftest import count, deliveries, execution_of, rounds_of

EXEC = "6f140412-8094-43fc-a6f0-70e65f912172"


def notice(output="First draft", task="research_task", execution=EXEC, **extra):
    return {"execution_id": execution, "task_id": task, "output": output, **extra}


@pytest.fixture
def research(crew):
    return crew("research")


def test_human_input_creates_execution_and_pending_round(app, research, hook):
    response = hook(research, "human-input", notice(agent="Researcher", description="Research it",
                                                      expected_output="A list", meta={"a": 1},
                                                      timestamp="2025-01-01T00:00:00Z", extra="kept"))
    assert response.status_code == 200
    assert response.json == {"status": "accepted", "task_id": "research_task", "round": 1}
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.PENDING_REVIEW
        [round_] = rounds_of(EXEC)
        assert (round_.task_id, round_.round_number, round_.state) == ("research_task", 1, RoundState.PENDING)
        assert (round_.output, round_.agent, round_.description, round_.expected_output, round_.meta) == (
            "First draft", "Researcher", "Research it", "A list", {"a": 1})
        [delivery] = deliveries()
        assert delivery.outcome == "accepted" and delivery.execution_id == execution.id
        assert json.loads(delivery.payload)["extra"] == "kept"  # the raw payload is stored
        assert [e.kind for e in execution.events] == ["discovered", "human_input"]


def test_redelivery_creates_nothing_and_revision_creates_round_2(app, research, hook):
    assert hook(research, "human-input", notice()).json["status"] == "accepted"
    again = hook(research, "human-input", notice(timestamp="later"))
    assert again.status_code == 200 and again.json == {"status": "duplicate", "task_id": "research_task", "round": 1}
    revised = hook(research, "human-input", notice("Second draft, with sources"))
    assert revised.json["round"] == 2
    with app.app_context():
        rounds = rounds_of(EXEC)
        assert [(r.round_number, r.state) for r in rounds] == [(1, RoundState.STALE), (2, RoundState.PENDING)]
        assert "Superseded" in rounds[0].stale_reason
        assert [d.outcome for d in deliveries()] == ["accepted", "duplicate", "accepted"]
        assert count(AuditEvent, AuditEvent.event == "round_stale") == 1


def test_a_round_stores_the_start_of_its_output_for_the_queue(app, research, hook):
    """Both ways a round is stored (with a new execution, and in a known one)."""
    first, second = "ü" * 150 + "a" * 5000, "# Revised\n" + "b" * 5000
    assert hook(research, "human-input", notice(first)).json["status"] == "accepted"
    assert hook(research, "human-input", notice(second)).json["round"] == 2
    with app.app_context():
        assert [r.snippet for r in rounds_of(EXEC)] == [first[:160], second[:160]]


def test_next_task_supersedes_a_pending_round_of_another_task(app, research, hook):
    hook(research, "human-input", notice())
    hook(research, "human-input", notice("Analysis", task="analysis_task"))
    with app.app_context():
        states = {(r.task_id, r.round_number): r.state for r in rounds_of(EXEC)}
        assert states == {("research_task", 1): RoundState.STALE, ("analysis_task", 1): RoundState.PENDING}


@pytest.mark.parametrize("payload", [
    {"execution_id": EXEC, "task_id": "t1", "output": "out"},
    {"kickoff_id": EXEC, "task_name": "t1", "task_output": "out"},
    {"kickoff_id": EXEC, "name": "t1", "result": "out"},
    {"executionId": EXEC, "taskId": "t1", "output": "out"},
    {"kickoffId": EXEC, "taskName": "t1", "taskOutput": "out"},
    {"data": {"execution_id": EXEC, "task_id": "t1", "output": "out"}},
    {"kickoff_id": EXEC, "task": {"name": "t1", "output": "out"}},
    {"execution_id": EXEC, "task_id": "t1", "output": None, "task_output": "out"},
])
def test_payload_variants(app, research, hook, payload):
    response = hook(research, "human-input", payload)
    assert response.status_code == 200, response.json
    with app.app_context():
        [round_] = rounds_of(EXEC)
        assert (round_.task_id, round_.output) == ("t1", "out")


def test_structured_output_is_kept_as_text(app, research, hook):
    hook(research, "human-input", notice({"raw": "the raw text", "pydantic": None}))
    hook(research, "human-input", notice({"items": [1, 2]}, task="t2"))
    with app.app_context():
        assert [r.output for r in rounds_of(EXEC)] == ["the raw text", '{"items": [1, 2]}']


@pytest.mark.parametrize(("payload", "missing"), [
    ({"task_id": "t", "output": "o"}, "execution id"),
    ({"execution_id": EXEC, "output": "o"}, "task id"),
    ({"execution_id": EXEC, "task_id": "t"}, "task output"),
    ({"execution_id": "x" * 65, "task_id": "t", "output": "o"}, "execution id"),
    ({"execution_id": True, "task_id": "t", "output": "o"}, "execution id"),
    ({"execution_id": EXEC, "task_id": "bad\nid", "output": "o"}, "task id"),
])
def test_missing_or_invalid_fields_are_422(app, research, hook, payload, missing):
    response = hook(research, "human-input", payload)
    assert response.status_code == 422
    assert response.json["error"] == "Unprocessable Entity" and missing in response.json["message"]
    with app.app_context():
        assert count(ReviewRound) == 0
        [delivery] = deliveries()
        assert delivery.outcome == "rejected" and delivery.error.startswith("422")
        assert delivery.payload == json.dumps(payload)  # authenticated: kept for diagnosis


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"text"', "JSON object"),
    (b"", "not valid JSON"),
    (b"\xff\xfe{}", "UTF-8"),
])
def test_malformed_bodies_are_400(app, research, hook, raw, message):
    response = hook(research, "human-input", raw=raw)
    assert response.status_code == 400 and message in response.json["message"]
    with app.app_context():
        assert [d.outcome for d in deliveries()] == ["rejected"]


@pytest.mark.parametrize("raw", [b"{not json", b'{"execution_id": 5}', b"[1]"])
def test_a_stranger_learns_nothing_of_the_body(app, research, hook, raw):
    """The body is read and parsed before the crew is looked up (with its execution),
    but a caller without the secret hears only that: a 401, not the body's fault."""
    response = hook(research, "human-input", raw=raw, secret="wrong-secret")
    assert response.status_code == 401 and response.json["error"] == "Unauthorized"


@pytest.mark.parametrize("kind", ["human-input", "task", "step", "crew"])
def test_wrong_or_missing_secret_is_401(app, research, hook, client, kind):
    assert hook(research, kind, notice(), secret="wrong-secret").status_code == 401
    response = client.post(f"/hooks/amp/{research}/{kind}", json=notice())
    assert response.status_code == 401 and response.json["error"] == "Unauthorized"
    with app.app_context():
        rows = deliveries()
        assert [d.outcome for d in rows] == ["rejected", "rejected"]
        assert all(d.payload is None for d in rows)  # unauthenticated payloads are not kept
        assert count(ReviewRound) == 0
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "webhook_auth_failed")
        ).all()
        assert [(e.target_name, e.details["receiver"]) for e in events] == [(research, kind.replace("-", "_"))] * 2
        assert all("wrong-secret" not in str(e.details) for e in events)


def test_another_crews_secret_is_refused(crew, hook, secret_of):
    crew("research")
    crew("travel")
    assert hook("research", "human-input", notice(), secret=secret_of("travel")).status_code == 401


def test_secret_in_the_path_and_basic_auth_are_accepted(app, research, client, secret_of):
    secret = secret_of(research)
    assert client.post(f"/hooks/amp/{research}/human-input/{secret}", json=notice()).status_code == 200
    basic = base64.b64encode(f"amp:{secret}".encode()).decode()
    response = client.post(f"/hooks/amp/{research}/human-input", json=notice("v2"),
                           headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200
    assert client.post(f"/hooks/amp/{research}/task/not-the-secret", json=notice()).status_code == 401


def test_unknown_crew_and_unknown_receiver_are_404_json(app, research, hook, client):
    response = client.post("/hooks/amp/nobody/human-input", json=notice(), headers={"Authorization": "Bearer x"})
    assert response.status_code == 404 and response.is_json
    response = hook(research, "everything", notice())
    assert response.status_code == 404 and response.is_json


def test_get_is_405_json(client, research):
    response = client.get(f"/hooks/amp/{research}/human-input")
    assert response.status_code == 405 and response.is_json


class TestSizeLimit:
    @pytest.fixture
    def app_config(self):
        return {"AMP_WEBHOOK_MAX_BYTES": 2000}

    def test_too_large_is_413_and_recorded(self, app, research, hook):
        response = hook(research, "human-input", notice("x" * 5000))
        assert response.status_code == 413 and response.is_json
        with app.app_context():
            [delivery] = deliveries()
            assert delivery.outcome == "rejected" and delivery.payload is None
            assert delivery.crew_id == get_crew(research).id  # refused before the lookup, recorded against it
        assert hook(research, "human-input", notice("small")).status_code == 200


class TestWithCsrfOn:
    @pytest.fixture
    def app_config(self):
        return {"WTF_CSRF_ENABLED": True}

    def test_receivers_are_csrf_exempt(self, research, hook):
        assert hook(research, "human-input", notice()).status_code == 200


def test_task_and_step_webhooks_record_timeline_events_once(app, research, hook):
    task = {"description": "Research", "name": "research_task", "expected_output": "x", "summary": "Found things",
            "agent": "Researcher", "output": "Full output", "output_json": None, "kickoff_id": EXEC, "meta": None}
    step = {"prompt": "p", "thought": "Thinking", "tool": "search", "tool_input": "q", "result": "r",
            "kickoff_id": EXEC, "meta": None}
    assert hook(research, "task", task).json == {"status": "accepted"}
    assert hook(research, "task", task).json == {"status": "duplicate"}
    assert hook(research, "step", step).json == {"status": "accepted"}
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.RUNNING  # discovered through the task webhook
        kinds = [e.kind for e in execution.events]
        assert kinds == ["discovered", "task_completed", "step"]
        assert execution.events[1].data["summary"] == "Found things"
        assert [(d.kind, d.outcome) for d in deliveries()] == [
            (WebhookKind.TASK, "accepted"), (WebhookKind.TASK, "duplicate"), (WebhookKind.STEP, "accepted")]


def test_crew_webhook_completes_and_stales_pending_rounds(app, research, hook):
    hook(research, "human-input", notice())
    done = {"kickoff_id": EXEC, "result": "Final report", "result_json": None,
            "token_usage": {"total_tokens": 10, "prompt_tokens": 4, "completion_tokens": 6}, "meta": None}
    assert hook(research, "crew", done).json == {"status": "accepted"}
    assert hook(research, "crew", done).json == {"status": "duplicate"}
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.COMPLETED and execution.result == "Final report"
        assert execution.token_usage["total_tokens"] == 10 and execution.finished_at is not None
        [round_] = rounds_of(EXEC)
        assert round_.state is RoundState.STALE and "completed" in round_.stale_reason


def test_crew_webhook_without_result_keeps_what_was_stored_and_finishes_once(app, research, hook):
    hook(research, "human-input", notice())
    with app.app_context():
        execution = execution_of(EXEC)
        execution.result, execution.token_usage = "from the status check", {"total_tokens": 7}
        db.session.commit()
    assert hook(research, "crew", {"kickoff_id": EXEC}).json == {"status": "accepted"}
    # a later, different delivery cannot finish it a second time (nor turn it failed)
    hook(research, "crew", {"kickoff_id": EXEC, "error": "late and wrong"})
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.COMPLETED and execution.error is None
        assert execution.result == "from the status check"
        assert execution.token_usage == {"total_tokens": 7}
        finished = db.session.scalars(
            select(ExecutionEvent).where(
                ExecutionEvent.execution_id == execution.id,
                ExecutionEvent.kind.in_(["completed", "failed"]),
            )
        ).all()
        assert [e.kind for e in finished] == ["completed"]


def test_crew_webhook_with_an_error_marks_failed(app, research, hook):
    hook(research, "crew", {"kickoff_id": EXEC, "error": "The LLM quota ran out"})
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.FAILED and "quota" in execution.error


def test_out_of_order_human_input_after_completion_is_stored_stale(app, research, hook):
    hook(research, "crew", {"kickoff_id": EXEC, "result": "done"})
    response = hook(research, "human-input", notice())
    assert response.status_code == 200
    with app.app_context():
        [round_] = rounds_of(EXEC)
        assert round_.state is RoundState.STALE and "already finished" in round_.stale_reason
        assert execution_of(EXEC).status is ExecutionStatus.COMPLETED


def test_an_internal_failure_is_503_json_and_recorded(app, research, hook, monkeypatch):
    from reviewapp.amp import receivers

    def boom(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(receivers, "ingest_human_input", boom)
    response = hook(research, "human-input", notice())
    assert response.status_code == 503 and response.is_json
    assert "database" not in response.json["message"]
    with app.app_context():
        [delivery] = deliveries()
        assert delivery.outcome == "rejected" and delivery.error.startswith("503")


def test_events_and_rounds_are_not_created_by_rejected_deliveries(app, research, hook):
    hook(research, "human-input", {"execution_id": EXEC})
    with app.app_context():
        assert count(ExecutionEvent) == 0 and count(WebhookDelivery) == 1
        assert db.session.scalar(db.select(ReviewRound)) is None


def test_access_logs_do_not_show_the_secret_in_the_path(app, research, secret_of, live_server, caplog):
    import logging
    import time

    import requests

    secret = secret_of(research)
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        response = requests.post(f"{live_server.url}/hooks/amp/{research}/task/{secret}",
                                 json={"kickoff_id": EXEC, "name": "t"}, timeout=5)
        for _ in range(50):  # the server logs the request after it has answered
            logged = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
            if logged:
                break
            time.sleep(0.05)
    assert response.status_code == 200
    assert any(f"/hooks/amp/{research}/task/•••" in line for line in logged)
    assert all(secret not in line for line in logged)


def _decide(app, reviewer_id, *, approve, job_state):
    from reviewapp.models import Decision, JobState, ResumeJob

    with app.app_context():
        round_ = rounds_of(EXEC)[-1]
        round_.state = RoundState.DECIDED
        decision = Decision(round=round_, reviewer_id=reviewer_id, is_approve=approve, feedback="again")
        db.session.add(ResumeJob(decision=decision, crew_id=round_.crew_id, body={}, state=JobState(job_state),
                                 outcome="retrying" if job_state == "succeeded" and not approve else None))
        db.session.commit()


@pytest.mark.parametrize(("approve", "job_state", "rounds"), [
    (False, "succeeded", 2),  # AMP re-ran the task and the agent wrote the same text: round 2
    (False, "pending", 1),    # resume not confirmed yet: a repeat is a redelivery
    (True, "succeeded", 1),   # approved: AMP moved on, a repeat is a redelivery
])
def test_same_output_after_a_confirmed_revision_is_a_new_round(app, research, hook, make_user, approve, job_state, rounds):
    reviewer = make_user("rev", "reviewer")
    hook(research, "human-input", notice("Same text"))
    _decide(app, reviewer.id, approve=approve, job_state=job_state)
    response = hook(research, "human-input", notice("Same text"))
    assert response.json["round"] == rounds
    assert hook(research, "human-input", notice("Same text")).json["status"] == "duplicate"
    with app.app_context():
        assert [r.round_number for r in rounds_of(EXEC)] == list(range(1, rounds + 1))
