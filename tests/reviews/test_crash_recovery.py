"""Nothing a reviewer submitted is lost: the process dies after the commit (before the
delivery starts, or just before it sends) and the worker delivers the resume exactly once.

The job is committed leased to the request that sends it, so the worker takes it over
only once that lease has expired, and asks AMP for the execution's status first."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from reviewapp.extensions import db
from reviewapp.models import JobState, ResumeJob
from reviewapp.reviews import delivery

from .helpers import attempts_for, decisions_for, fetch, job_for_round


@pytest.mark.parametrize("when", ["commit", "lease"])
def test_worker_delivers_after_a_crash(app, db_url, live_server, make_user, sandbox, sandbox_round, when):
    rid = sandbox_round("research")
    make_user("ann", "reviewer")
    child = subprocess.run(
        [sys.executable, "-m", "tests.reviews.child", "crash", db_url, live_server.url, str(rid), "ann", when],
        capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == -9, (child.stdout, child.stderr)
    assert "still alive" not in child.stdout
    assert decisions_for(app, rid) == 1
    orphan = job_for_round(app, rid)
    assert orphan.state is JobState.PENDING and orphan.body["human_feedback"] == "kept despite the crash"
    assert orphan.lease_owner is not None and orphan.lease_owner.startswith("web:")
    assert sandbox.calls("/resume") == []

    with app.app_context():
        assert delivery.deliver_due_jobs(worker_id="early", now=orphan.lease_expires_at - timedelta(seconds=1)) == 0
        now = orphan.lease_expires_at + timedelta(seconds=1)
        assert delivery.deliver_due_jobs(worker_id="recovery", now=now) == 1
        assert delivery.deliver_due_jobs(worker_id="again", now=now) == 0
    done = fetch(app, ResumeJob, orphan.id)
    assert (done.state, done.outcome) == (JobState.SUCCEEDED, "resumed")
    results = [a.result for a in attempts_for(app, orphan.id)]
    assert results == ["status:waiting", "ok"]
    [call] = sandbox.calls("/resume")
    assert call["status"] == 200 and call["body"]["human_feedback"] == "kept despite the crash"
    with app.app_context():
        assert db.session.get(ResumeJob, orphan.id).lease_owner is None
