"""Status sync: completion, failure, stale rounds, lost-notification recovery, backoff,
refused tokens and forgotten executions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from reviewapp.amp.crews import get_crew
from reviewapp.amp.executions import ingest_human_input, kickoff_execution
from reviewapp.amp.sync import run_status_pass
from reviewapp.extensions import db
from reviewapp.models import (
    Decision,
    ExecutionStatus,
    JobState,
    ResumeJob,
    RoundState,
    User,
    utcnow,
)

from .conftest import INPUTS, execution_of, rounds_of, sandbox_client

EXEC = "0b7d5c1e-1111-4222-8333-944455556666"
LATER = timedelta(hours=1)


@pytest.fixture
def app_config():
    return {"STATUS_STALE_GRACE_SECONDS": 0, "STATUS_POLL_MIN_SECONDS": 10, "STATUS_POLL_MAX_SECONDS": 600}


@pytest.fixture
def fake_crew(app, crew, amp):
    crew("research", base_url=amp.url)
    return "research"


def _pause(app, output="Draft 1", task="research_task"):
    with app.app_context():
        payload = {"execution_id": EXEC, "task_id": task, "output": output}
        ingest_human_input(get_crew("research"), payload, raw="{}")
        db.session.commit()


def _pass(app, when=None):
    with app.app_context():
        checked = run_status_pass(now=when or utcnow() + LATER)
        db.session.commit()
        return checked


def test_completed_status_finishes_and_stales(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 200, {"state": "SUCCESS", "result": "All done"})
    assert _pass(app) == 1
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.COMPLETED and execution.result == "All done"
        assert execution.next_status_check_at is None and '"SUCCESS"' in execution.last_status_raw
        assert rounds_of(EXEC)[0].state is RoundState.STALE
    assert _pass(app) == 0  # finished executions are not polled


def test_failed_status(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 200, {"status": "error", "error": "tool crashed"})
    _pass(app)
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status is ExecutionStatus.FAILED and execution.error == "tool crashed"


def test_running_again_marks_the_pending_round_stale_with_reason(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 200, {"state": "RUNNING"})
    _pass(app)
    with app.app_context():
        [round_] = rounds_of(EXEC)
        assert round_.state is RoundState.STALE and "running again" in round_.stale_reason
        assert execution_of(EXEC).status is ExecutionStatus.RUNNING


class TestGracePeriod:
    @pytest.fixture
    def app_config(self):
        return {"STATUS_STALE_GRACE_SECONDS": 3600}

    def test_a_fresh_round_is_not_staled_by_a_lagging_status(self, app, fake_crew, amp):
        _pause(app)
        amp.answer("GET", f"/status/{EXEC}", 200, {"state": "RUNNING"})
        _pass(app, utcnow() + timedelta(minutes=5))
        with app.app_context():
            assert rounds_of(EXEC)[0].state is RoundState.PENDING


def test_waiting_with_a_pending_round_changes_nothing(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 200, {"state": "PENDING_HUMAN_INPUT",
                                              "last_step": {"task_id": "research_task", "output": "other text"}})
    _pass(app)
    with app.app_context():
        assert [(r.round_number, r.state) for r in rounds_of(EXEC)] == [(1, RoundState.PENDING)]


def test_waiting_on_another_task_recovers_that_round(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 200, {"state": "PENDING_HUMAN_INPUT",
                                              "last_step": {"task_name": "analysis_task", "output": "Analysis"}})
    _pass(app)
    with app.app_context():
        states = [(r.task_id, r.state) for r in rounds_of(EXEC)]
        assert states == [("research_task", RoundState.STALE), ("analysis_task", RoundState.PENDING)]
        assert "recovered" in [e.kind for e in execution_of(EXEC).events]


def test_waiting_while_our_resume_is_undelivered_recovers_nothing(app, fake_crew, amp, make_user):
    _pause(app)
    reviewer = make_user("rev", "reviewer")
    with app.app_context():
        [round_] = rounds_of(EXEC)
        round_.state = RoundState.DECIDED
        decision = Decision(round=round_, reviewer_id=reviewer.id, is_approve=False, feedback="more")
        db.session.add(ResumeJob(decision=decision, crew_id=round_.crew_id, body={}, state=JobState.PENDING))
        db.session.commit()
    amp.answer("GET", f"/status/{EXEC}", 200, {"state": "PENDING_HUMAN_INPUT",
                                              "last_step": {"task_id": "research_task", "output": "Draft 2"}})
    _pass(app)
    with app.app_context():
        assert len(rounds_of(EXEC)) == 1


def test_waiting_without_output_records_the_pause_once(app, fake_crew, amp):
    with app.app_context():
        assert db.session.scalar(select(User)) is None
    _pause(app)
    with app.app_context():
        rounds_of(EXEC)[0].state = RoundState.STALE
        db.session.commit()
    amp.answer("GET", f"/status/{EXEC}", 200, {"status": "pending_human_input", "current_task": None})
    _pass(app)
    _pass(app, utcnow() + LATER * 2)
    with app.app_context():
        kinds = [e.kind for e in execution_of(EXEC).events]
        assert kinds.count("human_input_detected") == 1
        assert execution_of(EXEC).status is ExecutionStatus.PENDING_REVIEW


def test_failures_back_off_exponentially(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 500, {"error": "Internal Server Error"})
    first = utcnow() + LATER
    _pass(app, first)
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status_check_failures == 1
        assert execution.next_status_check_at == first + timedelta(seconds=20)
    assert _pass(app, first + timedelta(seconds=5)) == 0  # not due yet
    second = first + timedelta(seconds=21)
    _pass(app, second)
    with app.app_context():
        execution = execution_of(EXEC)
        assert execution.status_check_failures == 2
        assert execution.next_status_check_at == second + timedelta(seconds=40)
        assert [e.kind for e in execution.events].count("status_check_failed") == 1
    amp.answer("GET", f"/status/{EXEC}", 200, {"state": "PENDING_HUMAN_INPUT"})
    _pass(app, second + LATER)
    with app.app_context():
        assert execution_of(EXEC).status_check_failures == 0


def test_backoff_is_capped(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 503, {})
    with app.app_context():
        execution_of(EXEC).status_check_failures = 30
        db.session.commit()
    when = utcnow() + LATER
    _pass(app, when)
    with app.app_context():
        assert execution_of(EXEC).next_status_check_at == when + timedelta(seconds=600)


def test_refused_token_marks_the_crew_and_pauses_its_polling(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 401, {"error": "Unauthorized", "message": "bad token"})
    _pass(app)
    with app.app_context():
        crew = get_crew("research")
        assert crew.token_broken and "401" in crew.token_broken_reason
    assert _pass(app, utcnow() + LATER * 10) == 0


def test_unknown_execution_fails_after_repeated_404(app, fake_crew, amp):
    _pause(app)
    amp.answer("GET", f"/status/{EXEC}", 404, {"error": "Not Found", "message": "Execution ID not found"})
    when = utcnow()
    for step in range(3):
        when += LATER
        _pass(app, when)
        with app.app_context():
            assert execution_of(EXEC).status is (ExecutionStatus.FAILED if step == 2 else ExecutionStatus.PENDING_REVIEW)
    with app.app_context():
        assert "404" in execution_of(EXEC).error


def test_unreachable_amp_counts_as_a_failure(app, crew):
    crew("research", base_url="http://127.0.0.1:9")
    _pause(app)
    assert _pass(app) == 1
    with app.app_context():
        assert execution_of(EXEC).status_check_failures == 1


# ----------------------------------------------------------------- against the sandbox


def _kickoff(app, name):
    with app.app_context():
        execution = kickoff_execution(get_crew(name), INPUTS[name])
        db.session.commit()
        return execution.kickoff_id


def test_lost_notification_is_recovered_from_status(app, sandbox, sandbox_crew):
    sandbox_crew("research")
    sandbox.set_fault("drop_webhooks")
    kickoff_id = _kickoff(app, "research")
    assert sandbox.wait_idle(5)
    with app.app_context():
        assert rounds_of(kickoff_id) == []
    _pass(app)
    with app.app_context():
        [round_] = rounds_of(kickoff_id)
        assert round_.task_id == "research_task" and "heat pumps" in round_.output
        assert round_.state is RoundState.PENDING and round_.agent == "Senior researcher"
    # The notification arrives after all (a redelivery): nothing new.
    sandbox.clear_faults()
    payload = sandbox.webhook_calls("human_input")[0]["payload"]
    with app.app_context():
        _, created = ingest_human_input(get_crew("research"), payload, raw="{}")
        assert not created


def test_completion_is_learned_from_status_when_webhooks_are_lost(app, sandbox, sandbox_crew):
    sandbox_crew("support")
    kickoff_id = _kickoff(app, "support")
    assert sandbox.wait_idle(5)
    sandbox.set_fault("drop_webhooks")
    sandbox_client(sandbox, "support").resume(
        {"execution_id": kickoff_id, "task_id": "reply_task", "human_feedback": "", "is_approve": True})
    with app.app_context():
        rounds_of(kickoff_id)[0].state = RoundState.DECIDED
        db.session.commit()
    _pass(app)
    with app.app_context():
        execution = execution_of(kickoff_id)
        assert execution.status is ExecutionStatus.COMPLETED and "Reply to the customer" in execution.result


def test_documented_shape_without_output_is_detected(app, sandbox, sandbox_crew):
    sandbox_crew("travel")
    sandbox.set_fault("drop_webhooks")
    kickoff_id = _kickoff(app, "travel")
    assert sandbox.wait_idle(5)
    _pass(app)
    with app.app_context():
        assert rounds_of(kickoff_id) == []
        assert "human_input_detected" in [e.kind for e in execution_of(kickoff_id).events]
