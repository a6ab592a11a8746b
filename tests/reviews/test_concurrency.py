"""Exactly one decision and one POST /resume per round, whoever submits at once:
many threads, and several app processes (separate interpreters, same database)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from sqlalchemy import select

from reviewapp.models import Decision, JobState, ResumeJob

from .helpers import count, decisions_for, job_for_round

THREADS = 12
PROCESSES = 4


def test_many_threads_submitting_at_once(app, auth, make_user, sandbox, sandbox_round):
    rid = sandbox_round("research")
    users = [make_user(f"r{i}", "reviewer") for i in range(THREADS)]
    clients = []
    for user in users:
        client = app.test_client()
        assert client.post("/login", data={"username": user.username, "password": "correct horse battery"}).status_code == 302
        clients.append(client)
    start = threading.Barrier(THREADS)
    statuses: list[int] = []
    lock = threading.Lock()

    def submit(client, name):
        start.wait(10)
        response = client.post(f"/rounds/{rid}/decide", data={"feedback": f"by {name}", "approve": "Approve"})
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=submit, args=(c, u.username)) for c, u in zip(clients, users, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [302] + [409] * (THREADS - 1)
    assert decisions_for(app, rid) == 1 and count(app, ResumeJob) == 1
    assert job_for_round(app, rid).state is JobState.SUCCEEDED
    assert len(sandbox.calls("/resume")) == 1


def test_several_processes_submitting_at_once(app, db_url, live_server, make_user, sandbox, sandbox_round):
    rid = sandbox_round("research")
    names = [make_user(f"p{i}", "reviewer").username for i in range(PROCESSES)]
    start_at = time.time() + 6  # every child is logged in and waiting by then
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reviews.child", "race", db_url, live_server.url, str(rid), name, str(start_at)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in names
    ]
    outputs = [child.communicate(timeout=90) for child in children]
    codes = sorted(int(out.strip().splitlines()[-1]) for out, err in outputs)
    assert codes == [302] + [409] * (PROCESSES - 1), outputs
    assert decisions_for(app, rid) == 1 and count(app, ResumeJob) == 1
    with app.app_context():
        from reviewapp.extensions import db

        winner = db.session.scalar(select(Decision)).feedback
    assert winner in {f"from {n}" for n in names}
    assert len(sandbox.calls("/resume")) == 1
