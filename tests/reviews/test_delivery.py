"""Durable delivery of POST /resume against the AMP sandbox over loopback HTTP:
the happy paths, every failure mode, leases, retry/dismiss, the worker."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from reviewapp.amp import client as amp_client
from reviewapp.amp.webhooks import inbound_secret
from reviewapp.extensions import db
from reviewapp.models import (
    Crew,
    Decision,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    JobState,
    ResumeJob,
    ReviewRound,
    RoundState,
    User,
    utcnow,
)
from reviewapp.reviews import delivery, services
from reviewapp.worker import run_forever, run_once
from tests.conftest import is_postgres

from .helpers import attempts_for, audit_events, count, fetch, job_for_round, round_row

APPROVE = {"approve": "Approve"}
REVISE = {"revise": "Request revision"}
LATER = timedelta(hours=1)  # "now" for a worker pass after every backoff has passed


@pytest.fixture
def app_config():
    return {"AMP_READ_TIMEOUT": 1.0, "AMP_CONNECT_TIMEOUT": 1.0, "RESUME_MAX_ATTEMPTS": 3}


def decide(client, rid, **form):
    client.get(f"/rounds/{rid}")
    response = client.post(f"/rounds/{rid}/decide", data=form)
    assert response.status_code == 302, response.data[:500]
    return response.headers["Location"]


def faulted_decision(client, sandbox, sandbox_round, fault: str, form=APPROVE, **options) -> tuple[int, str]:
    """A fresh sandbox round decided through the (logged-in) page while /resume has ``fault``."""
    rid = sandbox_round("research")
    sandbox.set_fault(fault, path="/resume", **options)
    return rid, decide(client, rid, feedback="ok", **form)


def decide_quietly(app, rid, username="quiet", *, is_approve=True, feedback="ok") -> int:
    """A committed decision whose job nobody has tried yet (as if the process died)."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        submitted = services.submit_decision(
            db.session.get(ReviewRound, rid), user, is_approve=is_approve, feedback=feedback
        )
        db.session.commit()
        return submitted.job_id


def work(app, *, later=True, worker="worker-1") -> int:
    """One job at most (with "now" an hour ahead, a failed job would be due again at once)."""
    with app.app_context():
        now = utcnow() + (LATER if later else timedelta())
        return delivery.deliver_due_jobs(worker_id=worker, now=now, limit=1)


def job(app, job_id) -> ResumeJob:
    return fetch(app, ResumeJob, job_id)


def resume_calls(sandbox):
    return sandbox.calls("/resume")


def assert_call_counts_kept(app, job_id, calls: int, last_status: int | None) -> None:
    """The job's counts (kept by the trigger on resume_attempts, whichever path wrote the
    attempt) equal its attempt log's, and the expected values."""
    log = attempts_for(app, job_id)
    kept = job(app, job_id)
    assert (kept.resume_calls, kept.last_http_status) == (calls, last_status)
    assert (sum(a.kind == "resume" for a in log), log[-1].http_status) == (calls, last_status)


def applied(sandbox):
    return [c for c in resume_calls(sandbox) if c["status"] == 200]


def test_approve_is_delivered_inline_exactly_once(app, client, login_as, sandbox, sandbox_round):
    rid = sandbox_round("research")
    login_as("reviewer")
    location = decide(client, rid, feedback="Great work.", **APPROVE)
    [call] = resume_calls(sandbox)
    with app.app_context():
        round_ = db.session.get(ReviewRound, rid)
        crew = round_.crew
        assert call["body"] == {
            "execution_id": round_.execution.kickoff_id,
            "task_id": "research_task",
            "human_feedback": "Great work.",
            "is_approve": True,
            **amp_client.all_webhooks(crew),
        }
        assert call["body"]["humanInputWebhook"]["authentication"]["token"] == inbound_secret(crew)
    done = job_for_round(app, rid)
    assert (done.state, done.outcome, done.attempts, done.lease_owner) == (JobState.SUCCEEDED, "resumed", 0, None)
    page = client.get(location).get_data(as_text=True)
    assert "Approved: the crew resumed." in page and 'data-final="1"' in page
    assert inbound_secret_not_in(app, page)
    status = client.get(location + "/status").get_json()
    assert status["final"] is True and status["outcome"] == "resumed"
    [attempt] = attempts_for(app, done.id)
    assert (attempt.kind, attempt.http_status, attempt.result) == ("resume", 200, "ok")
    assert '"resumed"' in attempt.response_body
    assert_call_counts_kept(app, done.id, 1, 200)  # one statement on PostgreSQL (a CTE)


def inbound_secret_not_in(app, page: str) -> bool:
    with app.app_context():
        return inbound_secret(db.session.scalar(select(Crew))) not in page


def test_revision_opens_the_next_round_with_the_history(app, client, login_as, sandbox, sandbox_round):
    rid = sandbox_round("research")
    login_as("reviewer")
    location = decide(client, rid, feedback="Please cite sources.", reason="needs-sources", **REVISE)
    assert job_for_round(app, rid).outcome == "retrying"
    assert "round 2 of this task" in client.get(location).get_data(as_text=True)
    assert sandbox.wait_idle(10)
    with app.app_context():
        first = db.session.get(ReviewRound, rid)
        second = db.session.scalar(select(ReviewRound).where(
            ReviewRound.execution_id == first.execution_id, ReviewRound.round_number == 2))
        assert second.state is RoundState.PENDING and second.task_id == "research_task"
        second_id = second.id
    page = client.get(f"/rounds/{second_id}").get_data(as_text=True)
    assert "Please cite sources." in page and "Revision requested by reviewer1" in page
    assert "Changes since round 1" in page


def test_500_then_recovery_with_every_attempt_recorded(app, client, login_as, sandbox, sandbox_round):
    login_as("reviewer")
    rid, location = faulted_decision(client, sandbox, sandbox_round, "500", times=2)
    pending = job_for_round(app, rid)
    assert (pending.state, pending.attempts) == (JobState.PENDING, 1)
    assert pending.next_attempt_at > utcnow()
    summary = client.get(location + "/status").get_json()
    assert summary["final"] is False and "retried automatically" in summary["headline"]
    assert work(app, later=False) == 0  # backoff: not due yet
    assert work(app) == 1  # second 500
    assert job(app, pending.id).attempts == 2
    assert work(app) == 1  # recovered
    done = job(app, pending.id)
    assert (done.state, done.outcome) == (JobState.SUCCEEDED, "resumed")
    assert [a.http_status for a in attempts_for(app, done.id)] == [500, 500, 200]
    assert_call_counts_kept(app, done.id, 3, 200)
    assert "Injected failure" in attempts_for(app, done.id)[0].response_body
    assert len(applied(sandbox)) == 1 and len(resume_calls(sandbox)) == 3
    assert client.get(location + "/status").get_json()["outcome"] == "resumed"
    with app.app_context():
        [event] = db.session.scalars(select(ExecutionEvent).where(ExecutionEvent.kind.like("resume_%"))).all()
        assert event.kind == "resume_succeeded" and "answered 'resumed'" in event.message


def test_backoff_grows_with_jitter(app):
    with app.app_context():
        delays = [[delivery.backoff_seconds(n) for _ in range(50)] for n in (1, 3, 6, 20)]
    assert all(1.0 <= d <= 2.0 for d in delays[0])
    assert all(4.0 <= d <= 8.0 for d in delays[1])
    assert all(32.0 <= d <= 64.0 for d in delays[2])
    assert all(150.0 <= d <= 300.0 for d in delays[3])  # capped by RESUME_BACKOFF_MAX
    assert len(set(delays[2])) > 1


def test_gives_up_then_a_lead_retries_from_the_ui(app, client, auth, login_as, make_user, sandbox, sandbox_round):
    login_as("reviewer")
    rid, location = faulted_decision(client, sandbox, sandbox_round, "500")
    work(app)
    work(app)
    failed = job_for_round(app, rid)
    assert (failed.state, failed.attempts) == (JobState.FAILED, 3)
    assert "Gave up after 3 attempts" in failed.last_error
    assert "Delivery failed." in client.get(location).get_data(as_text=True)
    assert client.post(f"/resume-jobs/{failed.id}/retry").status_code == 403  # reviewers may not
    auth.logout()
    make_user("lena", "lead")
    auth.login("lena")
    listing = client.get("/resume-jobs").get_data(as_text=True)
    assert f"/resume-jobs/{failed.id}/retry" in listing
    sandbox.clear_faults()
    response = client.post(f"/resume-jobs/{failed.id}/retry")
    assert response.status_code == 302 and response.headers["Location"] == "/resume-jobs"
    again = job(app, failed.id)
    assert (again.state, again.attempts) == (JobState.PENDING, 0)
    assert work(app, later=False) == 1
    assert job(app, failed.id).state is JobState.SUCCEEDED
    assert len(applied(sandbox)) == 1
    assert [e.actor_name for e in audit_events(app, "resume_job_retried")] == ["lena"]
    # retrying a job that is not failed is refused, with a message
    client.post(f"/resume-jobs/{failed.id}/retry")
    assert "Only a failed delivery" in client.get("/resume-jobs").get_data(as_text=True)


def test_a_lead_dismisses_a_failed_delivery(app, client, login_as, sandbox, sandbox_round):
    lead = login_as("lead")
    rid, _ = faulted_decision(client, sandbox, sandbox_round, "500")
    work(app)
    work(app)
    failed = job_for_round(app, rid)
    assert failed.state is JobState.FAILED
    assert client.post(f"/resume-jobs/{failed.id}/dismiss").status_code == 302
    assert job(app, failed.id).state is JobState.DISMISSED
    assert work(app) == 0
    [event] = audit_events(app, "resume_job_dismissed")
    assert event.actor_id == lead.id
    assert "Every delivery went through" in client.get("/resume-jobs").get_data(as_text=True)


def test_401_marks_the_token_broken_and_waits_for_the_fix(app, client, login_as, sandbox, sandbox_round):
    from reviewapp.amp.crews import update_crew

    login_as("reviewer")
    rid, location = faulted_decision(client, sandbox, sandbox_round, "401")
    waiting = job_for_round(app, rid)
    assert (waiting.state, waiting.attempts) == (JobState.PENDING, 0)
    with app.app_context():
        crew = db.session.get(Crew, waiting.crew_id)
        assert crew.token_broken and "401" in crew.token_broken_reason
    assert "Waiting for an admin" in client.get(location + "/status").get_json()["headline"]
    for _ in range(3):  # attempts are not spent while the token is broken
        assert work(app) == 0
    assert len(resume_calls(sandbox)) == 1
    assert job(app, waiting.id).attempts == 0
    sandbox.clear_faults()
    with app.app_context():
        crew = db.session.get(Crew, waiting.crew_id)
        update_crew(crew, token=sandbox.crews["research"])
        db.session.commit()
    assert work(app, later=False) == 1
    assert job(app, waiting.id).state is JobState.SUCCEEDED
    assert len(applied(sandbox)) == 1


def test_a_decision_for_a_crew_whose_token_is_broken_is_kept_unleased_until_the_fix(
    app, client, login_as, sandbox, sandbox_round
):
    from reviewapp.amp.crews import update_crew

    login_as("reviewer")
    rid = sandbox_round("research")
    with app.app_context():
        db.session.get(ReviewRound, rid).crew.token_broken = True
        db.session.commit()
    decide(client, rid, feedback="ok", **APPROVE)
    waiting = job_for_round(app, rid)
    assert (waiting.state, waiting.lease_owner, waiting.attempts) == (JobState.PENDING, None, 0)
    assert resume_calls(sandbox) == []
    with app.app_context():
        update_crew(db.session.get(Crew, waiting.crew_id), token=sandbox.crews["research"])
        db.session.commit()
    assert work(app, later=False) == 1
    assert job(app, waiting.id).state is JobState.SUCCEEDED
    assert [a.result for a in attempts_for(app, waiting.id)] == ["ok"]  # nothing was sent: no status check


@pytest.mark.parametrize(("form", "outcome"), [(APPROVE, "resumed"), (REVISE, "retrying")])
def test_timeout_checks_status_and_does_not_resend_what_was_applied(
    app, client, login_as, sandbox, sandbox_round, form, outcome
):
    login_as("reviewer")
    rid, location = faulted_decision(client, sandbox, sandbox_round, "timeout", form, times=1, seconds=3)
    unclear = job_for_round(app, rid)
    assert (unclear.state, unclear.needs_status_check, unclear.attempts) == (JobState.PENDING, True, 1)
    assert "status" in client.get(location + "/status").get_json()["detail"]
    sandbox.clear_faults()
    assert sandbox.wait_idle(10)  # AMP applied it: the crew moved on and paused again
    assert work(app) == 1
    done = job(app, unclear.id)
    assert (done.state, done.outcome) == (JobState.SUCCEEDED, outcome)
    assert "not sent again" in done.last_error
    assert len(resume_calls(sandbox)) == 1
    kinds = [(a.kind, a.result) for a in attempts_for(app, done.id)]
    assert kinds == [("resume", "ambiguous"), ("status-check", "status:waiting")]
    assert_call_counts_kept(app, done.id, 1, 200)  # the status check's answer is the latest


def test_unclear_attempt_that_never_arrived_is_sent_again(app, monkeypatch, sandbox, sandbox_round, make_user):
    rid = sandbox_round("research")
    make_user("quiet", "reviewer")
    job_id = decide_quietly(app, rid)
    real_resume = amp_client.AmpClient.resume
    calls = {"n": 0}

    def lost_once(self, body):
        calls["n"] += 1
        if calls["n"] == 1:
            raise amp_client.AmpAmbiguous("connection dropped before an answer")
        return real_resume(self, body)

    monkeypatch.setattr(amp_client.AmpClient, "resume", lost_once)
    assert work(app, later=False) == 1
    assert job(app, job_id).needs_status_check
    assert work(app) == 1  # status: still waiting for this round -> send again
    done = job(app, job_id)
    assert (done.state, done.outcome) == (JobState.SUCCEEDED, "resumed")
    assert len(applied(sandbox)) == 1
    assert [a.result for a in attempts_for(app, job_id)] == ["ambiguous", "status:waiting", "ok"]


def test_unclear_revision_applied_and_paused_again_is_not_sent_twice(
    app, monkeypatch, sandbox, sandbox_round, make_user
):
    """AMP applied the revision, re-ran the task and paused again, but its notification
    has not reached us: the status shows a different output waiting, so no resend."""
    rid = sandbox_round("research")
    make_user("quiet", "reviewer")
    job_id = decide_quietly(app, rid, is_approve=False, feedback="Add sources.")
    real_resume = amp_client.AmpClient.resume

    def applied_then_lost(self, body):
        real_resume(self, body)
        raise amp_client.AmpAmbiguous("read timed out after sending")

    sandbox.set_fault("drop_webhooks")
    monkeypatch.setattr(amp_client.AmpClient, "resume", applied_then_lost)
    assert work(app, later=False) == 1
    assert sandbox.wait_idle(10)
    monkeypatch.setattr(amp_client.AmpClient, "resume", real_resume)
    assert work(app) == 1
    done = job(app, job_id)
    assert (done.state, done.outcome) == (JobState.SUCCEEDED, "retrying")
    assert "not sent again" in done.last_error
    assert len(applied(sandbox)) == 1


def test_400_not_pending_makes_job_and_round_stale(app, client, login_as, sandbox, sandbox_round):
    login_as("reviewer")
    rid, location = faulted_decision(client, sandbox, sandbox_round, "400")
    stale = job_for_round(app, rid)
    assert stale.state is JobState.STALE and "not in pending human input state" in stale.last_error
    row = round_row(app, rid)
    assert row.state is RoundState.STALE and "not applied" in row.stale_reason
    assert "Not applied" in client.get(location).get_data(as_text=True)
    assert work(app) == 0


def test_404_fails_the_job_without_retrying(app, client, login_as, sandbox, sandbox_round):
    login_as("reviewer")
    rid, _ = faulted_decision(client, sandbox, sandbox_round, "404")
    failed = job_for_round(app, rid)
    assert (failed.state, failed.attempts) == (JobState.FAILED, 0)
    assert "Execution ID not found" in failed.last_error
    assert work(app) == 0
    assert len(resume_calls(sandbox)) == 1


def test_an_expired_lease_is_taken_over_with_a_status_check(app, sandbox, sandbox_round, make_user):
    rid = sandbox_round("research")
    make_user("quiet", "reviewer")
    job_id = decide_quietly(app, rid)
    with app.app_context():  # a worker leases the job and dies before sending
        assert delivery._lease(job_id, "dead-worker", utcnow())
        db.session.commit()
        lease_end = db.session.get(ResumeJob, job_id).lease_expires_at
    with app.app_context():
        assert delivery.deliver_due_jobs(worker_id="w2") == 0  # lease still live
    assert resume_calls(sandbox) == []
    with app.app_context():
        report = delivery.deliver_due_jobs(worker_id="w2", now=lease_end + timedelta(seconds=1))
    assert report == 1
    done = job(app, job_id)
    assert (done.state, done.lease_owner) == (JobState.SUCCEEDED, None)
    assert [a.result for a in attempts_for(app, job_id)] == ["status:waiting", "ok"]
    assert len(applied(sandbox)) == 1


def test_a_lease_lost_during_the_call_records_only_the_attempt(app, sandbox, sandbox_round, make_user,
                                                               monkeypatch):
    """The worker's lease ran out while AMP was answering and another worker holds the
    job now: the answer is recorded as an attempt, the job and its execution are left to
    the new holder."""
    rid = sandbox_round("research")
    make_user("quiet", "reviewer")
    job_id = decide_quietly(app, rid)
    send = amp_client.AmpClient.resume

    def overtaken(self, body):
        with app.app_context():
            db.session.execute(update(ResumeJob).where(ResumeJob.id == job_id).values(lease_owner="w2"))
            db.session.commit()
        return send(self, body)

    monkeypatch.setattr(amp_client.AmpClient, "resume", overtaken)
    with app.app_context():
        execution_id = db.session.get(ReviewRound, rid).execution_id
        assert delivery.deliver_due_jobs(worker_id="w1", limit=1) == 1
    kept = job(app, job_id)
    assert (kept.state, kept.lease_owner, kept.outcome) == (JobState.PENDING, "w2", None)
    [attempt] = attempts_for(app, job_id)
    assert (attempt.kind, attempt.result, attempt.http_status) == ("resume", "ok", 200)
    assert_call_counts_kept(app, job_id, 1, 200)  # counted though the lease was lost
    assert count(app, ExecutionEvent, ExecutionEvent.execution_id == execution_id,
                 ExecutionEvent.kind.like("resume_%")) == 0
    assert fetch(app, Execution, execution_id).status is ExecutionStatus.PENDING_REVIEW


def test_several_workers_drain_each_job_once(app, sandbox, sandbox_round, make_user):
    make_user("quiet", "reviewer")
    rounds = [sandbox_round(name) for name in ("research", "travel", "support", "research", "support")]
    jobs = [decide_quietly(app, rid) for rid in rounds]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def drain(n):
        try:
            start.wait(5)
            with app.app_context():
                delivery.deliver_due_jobs(worker_id=f"w{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert all(job(app, j).state is JobState.SUCCEEDED for j in jobs)
    sent = [c["body"]["execution_id"] for c in resume_calls(sandbox)]
    assert len(sent) == len(jobs) == len(set(sent))


def test_worker_run_once_and_cli(app, runner, sandbox, sandbox_round, make_user):
    make_user("quiet", "reviewer")
    first = decide_quietly(app, sandbox_round("research"))
    summary = run_once(app)
    assert summary["delivered"] == 1 and job(app, first).state is JobState.SUCCEEDED
    second = decide_quietly(app, sandbox_round("support"))
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "worked on 1 resume job" in result.output
    assert job(app, second).state is JobState.SUCCEEDED
    assert len(applied(sandbox)) == 2


def test_run_forever_delivers_and_stops(app, sandbox, sandbox_round, make_user):
    make_user("quiet", "reviewer")
    job_id = decide_quietly(app, sandbox_round("research"))
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(app,), kwargs={"stop": stop, "interval": 0.05})
    thread.start()
    try:
        for _ in range(100):
            if job(app, job_id).state is JobState.SUCCEEDED:
                break
            threading.Event().wait(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert job(app, job_id).state is JobState.SUCCEEDED


def test_decision_count_matches_jobs(app, client, login_as, sandbox, sandbox_round):
    rid = sandbox_round("support")
    login_as("reviewer")
    decide(client, rid, feedback="Thanks!", **APPROVE)
    assert count(app, Decision) == count(app, ResumeJob) == 1
    assert job_for_round(app, rid).outcome == "completed"  # support has one task


def test_a_decision_reads_no_column_it_does_not_use(app, client, login_as, sandbox, sandbox_round):
    """The submit reads the round, its execution and crew in one statement, without the
    round's texts or the execution's results and payloads (up to megabytes, which
    deciding never reads), and reads nothing lazily later: the decision and its resume
    job, the /resume call, the outcome."""
    import threading

    from tests.sqlcapture import captured

    rid = sandbox_round("research")
    login_as("reviewer")
    client.get(f"/rounds/{rid}")
    me = threading.get_ident()
    with captured(app, lambda statement, cursor, context: (threading.get_ident(), statement)) as seen:
        assert client.post(f"/rounds/{rid}/decide", data={"feedback": "Great work.", **APPROVE}).status_code == 302
    mine = [statement for thread, statement in seen if thread == me]
    [read] = [s for s in mine if s.startswith("SELECT") and "FROM review_rounds" in s.split(" WHERE ")[0]]
    columns = {re.sub(r"_\d+\.", ".", part.split(" AS ")[0]) for part in read[len("SELECT "):].split(" FROM ")[0].split(", ")}
    assert {"review_rounds.task_id", "executions.kickoff_id", "crews.base_url"} <= columns
    unread = {"review_rounds.output", "review_rounds.description", "review_rounds.expected_output",
              "review_rounds.meta", "executions.result", "executions.error", "executions.last_status_raw",
              "executions.token_usage", "executions.inputs", "executions.meta"}
    assert not columns & unread
    assert [s.split(" ")[0] for s in mine if s is not read] == [
        "SELECT",  # the session's user, and whether the session was revoked
        "UPDATE", "INSERT", "INSERT", "INSERT",  # round decided; decision, job, audit event
        "INSERT", "UPDATE", "UPDATE", "INSERT",  # the /resume attempt; job, execution, timeline
    ] if not is_postgres() else len(mine) == 4
