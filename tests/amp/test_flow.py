"""The whole AMP loop over real loopback HTTP: kickoff -> human-input webhook ->
round 1 -> revision resume -> round 2 (using the feedback) -> approve -> completed."""

from __future__ import annotations

from sqlalchemy import func, select

from reviewapp.amp.client import build_resume_body, client_for
from reviewapp.amp.executions import kickoff_execution
from reviewapp.extensions import db
from reviewapp.models import (
    Crew,
    Execution,
    ExecutionStatus,
    ReviewRound,
    RoundState,
    WebhookDelivery,
)


def _crew(app, name):
    return db.session.scalar(select(Crew).where(Crew.name == name))


def _rounds(execution_id):
    return list(db.session.scalars(
        select(ReviewRound).where(ReviewRound.execution_id == execution_id).order_by(ReviewRound.id)
    ))


def test_kickoff_revise_approve_over_real_http(app, sandbox, sandbox_crew):
    sandbox_crew("research")
    with app.app_context():
        crew = _crew(app, "research")
        execution = kickoff_execution(crew, {"topic": "heat pumps", "current_year": "2025"})
        db.session.commit()
        execution_id, kickoff_id = execution.id, execution.kickoff_id
        assert execution.status is ExecutionStatus.RUNNING

    assert sandbox.wait_idle(10)
    with app.app_context():
        rounds = _rounds(execution_id)
        assert [(r.task_id, r.round_number, r.state) for r in rounds] == [
            ("research_task", 1, RoundState.PENDING)
        ]
        assert "heat pumps" in rounds[0].output
        assert db.session.get(Execution, execution_id).status is ExecutionStatus.PENDING_REVIEW

        crew = _crew(app, "research")
        body = build_resume_body(crew, execution_id=kickoff_id, task_id="research_task",
                                 human_feedback="Please cite your sources.", is_approve=False)
        result = client_for(crew).resume(body)
        assert result.status == "retrying"
        rounds[0].state = RoundState.DECIDED
        db.session.commit()

    assert sandbox.wait_idle(10)
    with app.app_context():
        rounds = _rounds(execution_id)
        assert [(r.task_id, r.round_number) for r in rounds] == [("research_task", 1), ("research_task", 2)]
        assert "Please cite your sources." in rounds[1].output
        assert "Sources" in rounds[1].output and rounds[1].output != rounds[0].output

    # A redelivery of round 2's notification creates nothing.
    notice = sandbox.webhook_calls("human_input")[-1]
    import requests

    with app.app_context():
        crew = _crew(app, "research")
        from reviewapp.amp.webhooks import all_webhooks

        hook = all_webhooks(crew)["humanInputWebhook"]
    response = requests.post(hook["url"], json=notice["payload"], timeout=5,
                             headers={"Authorization": f"Bearer {hook['authentication']['token']}"})
    assert response.status_code == 200 and response.json()["status"] == "duplicate"
    with app.app_context():
        assert len(_rounds(execution_id)) == 2
        assert db.session.scalar(select(func.count(WebhookDelivery.id)).where(
            WebhookDelivery.outcome == "duplicate")) == 1
