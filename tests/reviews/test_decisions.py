"""Submitting decisions: validation, one decision and one job per round, the loser's
page with their feedback, access to outcome pages. (Delivery itself: test_delivery.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from reviewapp.extensions import db
from reviewapp.models import Decision, ResumeJob, ReviewRound, RoundState, utcnow
from reviewapp.reviews import services

from .helpers import audit_events, claim_as, count, decisions_for, fetch, job_for_round, round_row

APPROVE = {"approve": "Approve"}
REVISE = {"revise": "Request revision"}


@pytest.fixture
def app_config():
    # Nothing listens on port 9: the inline delivery fails fast and leaves the job pending.
    return {"RESUME_MAX_ATTEMPTS": 5}


def open_and_submit(client, rid, **form):
    client.get(f"/rounds/{rid}")
    return client.post(f"/rounds/{rid}/decide", data=form)


def test_approve_without_feedback_stores_decision_and_job(app, client, login_as, make_round):
    rid = make_round()
    me = login_as("reviewer")
    response = open_and_submit(client, rid, feedback="", **APPROVE)
    assert response.status_code == 302
    decision_id = int(response.headers["Location"].rsplit("/", 1)[1])
    decision = fetch(app, Decision, decision_id)
    assert (decision.round_id, decision.reviewer_id, decision.is_approve, decision.feedback) == (rid, me.id, True, "")
    job = job_for_round(app, rid)
    row = round_row(app, rid)
    with app.app_context():
        kickoff = db.session.get(ReviewRound, rid).execution.kickoff_id
    assert job.body == {"execution_id": kickoff, "task_id": "research_task", "human_feedback": "", "is_approve": True}
    assert row.state is RoundState.DECIDED and row.claimed_by_id is None
    [event] = audit_events(app, "decision_submitted")
    assert (event.actor_id, event.actor_name, event.target_type, event.target_id, event.target_name) == (
        me.id, me.username, "review_round", str(rid), "research_task round 1")
    assert event.source_ip == "127.0.0.1"
    assert event.details == {"decision": "approve", "reason": None, "crew": "research", "execution": kickoff,
                             "job_id": job.id}


def test_revision_needs_feedback(app, client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    response = open_and_submit(client, rid, feedback="   \r\n ", **REVISE)
    assert response.status_code == 400
    assert b"a revision needs feedback" in response.data
    assert decisions_for(app, rid) == 0
    assert round_row(app, rid).state is RoundState.PENDING


def test_revision_with_reason_and_crlf_feedback(app, client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    response = open_and_submit(client, rid, feedback="  Add sources.\r\nAnd numbers.  ", reason="needs-sources", **REVISE)
    assert response.status_code == 302
    job = job_for_round(app, rid)
    decision = fetch(app, Decision, job.decision_id)
    assert decision.feedback == "Add sources.\nAnd numbers." and decision.reason_code == "needs-sources"
    assert job.body["human_feedback"] == "Add sources.\nAnd numbers." and job.body["is_approve"] is False


def test_reason_is_not_kept_on_approval(app, client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    open_and_submit(client, rid, feedback="good", reason="incorrect", **APPROVE)
    decision = fetch(app, Decision, job_for_round(app, rid).decision_id)
    assert decision.reason_code is None and decision.feedback == "good"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"feedback": "x", "reason": "made-up", **REVISE}, b"Not a valid choice"),
        ({"feedback": "x"}, b"Press either Approve or Request revision"),
        ({"feedback": "x", **APPROVE, **REVISE}, b"Press either Approve or Request revision"),
        ({"feedback": "x" * (services.FEEDBACK_MAX_CHARS + 1), **REVISE}, b"At most"),
    ],
)
def test_invalid_forms_are_400_and_change_nothing(app, client, login_as, make_round, form, message):
    rid = make_round()
    login_as("reviewer")
    response = open_and_submit(client, rid, **form)
    assert response.status_code == 400 and message in response.data
    assert decisions_for(app, rid) == 0


def test_double_submit_makes_one_decision_and_shows_the_feedback_back(app, client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    first = open_and_submit(client, rid, feedback="Looks right", **APPROVE)
    again = client.post(f"/rounds/{rid}/decide", data={"feedback": "Looks right!!", **APPROVE})
    assert first.status_code == 302
    assert again.status_code == 409
    page = again.get_data(as_text=True)
    assert "already decided by reviewer1" in page
    assert "Looks right!!" in page  # what they typed the second time, kept
    assert decisions_for(app, rid) == 1 and count(app, ResumeJob) == 1


def test_loser_gets_already_decided_by_x(app, client, login_as, make_user, make_round):
    rid = make_round()
    login_as("reviewer", "ann")
    client.get(f"/rounds/{rid}")  # ann claims, then walks away
    with app.app_context():
        db.session.get(ReviewRound, rid).claim_expires_at = utcnow() - timedelta(seconds=1)
        bob = make_user("bob", "reviewer")
        services.submit_decision(db.session.get(ReviewRound, rid), bob, is_approve=False, feedback="Redo it")
        db.session.commit()
    response = client.post(f"/rounds/{rid}/decide", data={"feedback": "My careful words", **APPROVE})
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "already decided by bob" in page and "My careful words" in page and "Redo it" in page
    assert "Review next" in page
    assert decisions_for(app, rid) == 1


def test_cannot_submit_while_someone_else_holds_the_claim(app, client, login_as, make_user, make_round):
    rid = make_round()
    bob = make_user("bob", "reviewer")
    claim_as(app, rid, bob)
    login_as("reviewer")
    response = client.post(f"/rounds/{rid}/decide", data={"feedback": "mine", **APPROVE})
    assert response.status_code == 409
    assert b"being reviewed by bob" in response.data and b"mine" in response.data
    assert decisions_for(app, rid) == 0


def test_stale_round_cannot_be_decided(app, client, login_as, make_round):
    rid = make_round()
    with app.app_context():
        round_ = db.session.get(ReviewRound, rid)
        round_.state, round_.stale_reason = RoundState.STALE, "AMP reports the execution completed"
        db.session.commit()
    login_as("reviewer")
    response = client.post(f"/rounds/{rid}/decide", data={"feedback": "late", **REVISE})
    assert response.status_code == 409
    assert b"no longer waiting for a decision" in response.data and b"late" in response.data
    assert decisions_for(app, rid) == 0


def test_submit_decision_service_refuses_a_second_decision(app, make_user, make_round):
    rid = make_round()
    ann, bob = make_user("ann", "reviewer"), make_user("bob", "reviewer")
    with app.app_context():
        services.submit_decision(db.session.get(ReviewRound, rid), ann, is_approve=True, feedback="")
        db.session.commit()
        with pytest.raises(services.AlreadyDecided, match="already decided by ann"):
            services.submit_decision(db.session.get(ReviewRound, rid), bob, is_approve=True, feedback="")
        db.session.rollback()
    assert decisions_for(app, rid) == 1


def test_decision_pages_are_private_to_reviewer_and_leads(app, client, auth, login_as, make_user, make_round):
    rid = make_round()
    login_as("reviewer", "ann")
    location = open_and_submit(client, rid, feedback="ok", **APPROVE).headers["Location"]
    assert client.get(location).status_code == 200
    status = client.get(location + "/status")
    assert status.status_code == 200 and status.get_json()["state"] == "pending"
    auth.logout()
    make_user("bob", "reviewer")
    auth.login("bob")
    assert client.get(location).status_code == 403
    assert client.get(location + "/status").status_code == 403
    auth.logout()
    make_user("lena", "lead")
    auth.login("lena")
    assert client.get(location).status_code == 200


def test_unknown_decision_is_404(client, login_as):
    login_as("lead")
    assert client.get("/decisions/999").status_code == 404
    assert client.get("/decisions/999/status").status_code == 404
