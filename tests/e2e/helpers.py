"""Helpers shared by the browser journeys: bounded waits on the database and the
sandbox, the browser steps every journey repeats, and the "nothing bad happened" check.

Every wait polls a condition with a deadline (never sleep-and-hope)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select, update

from reviewapp.extensions import db
from reviewapp.models import Crew, Decision, Execution, ReviewRound, RoundState, utcnow

T = TypeVar("T")

WAIT_SECONDS = 20.0
DECISION_URL = re.compile(r"/decisions/\d+$")


def wait_until(check: Callable[[], T], *, what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- database reads


def crew_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Crew.id).where(Crew.name == name))


def execution_of(app, round_id: int) -> int:
    with app.app_context():
        return db.session.scalar(select(ReviewRound.execution_id).where(ReviewRound.id == round_id))


def latest_execution(app, crew_name: str) -> int | None:
    with app.app_context():
        return db.session.scalar(
            select(Execution.id).join(Crew).where(Crew.name == crew_name).order_by(Execution.id.desc()).limit(1)
        )


def pending_round(app, execution_id: int, *, round_number: int = 1, task_id: str | None = None) -> int | None:
    """Id of the pending round ``round_number`` of the execution (None while it has not arrived)."""
    stmt = select(ReviewRound.id).where(
        ReviewRound.execution_id == execution_id,
        ReviewRound.round_number == round_number,
        ReviewRound.state == RoundState.PENDING,
    )
    if task_id is not None:
        stmt = stmt.where(ReviewRound.task_id == task_id)
    with app.app_context():
        return db.session.scalar(stmt)


def wait_for_round(app, execution_id: int, *, round_number: int = 1, task_id: str | None = None) -> int:
    return wait_until(
        lambda: pending_round(app, execution_id, round_number=round_number, task_id=task_id),
        what=f"round {round_number} of execution {execution_id} to arrive",
    )


def decisions_on(app, round_id: int) -> list[tuple[str, bool, str]]:
    """(reviewer, is_approve, feedback) of every decision on the round."""
    with app.app_context():
        rows = db.session.scalars(select(Decision).where(Decision.round_id == round_id)).all()
        return [(d.reviewer.username, d.is_approve, d.feedback) for d in rows]


def expire_claim(app, round_id: int) -> None:
    """Let the claim on the round run out (as if its holder walked away long ago)."""
    with app.app_context():
        db.session.execute(
            update(ReviewRound)
            .where(ReviewRound.id == round_id)
            .values(claim_expires_at=utcnow() - timedelta(minutes=1))
        )
        db.session.commit()


def kick_off(app, sandbox, crew_name: str, inputs: dict[str, str]) -> int:
    """Start the (already registered) crew through reviewapp; returns the execution id once
    the sandbox has paused it for review (its human-input webhook made round 1)."""
    from reviewapp.amp.executions import kickoff_execution

    with app.app_context():
        crew = db.session.scalar(select(Crew).where(Crew.name == crew_name))
        execution_id = kickoff_execution(crew, inputs).id
        db.session.commit()
    wait_for_round(app, execution_id)
    return execution_id


# --------------------------------------------------------------------------- the sandbox


def resume_bodies(sandbox) -> list[dict[str, Any]]:
    """Bodies of the accepted ``POST /resume`` calls the sandbox received, oldest first."""
    return [call["body"] for call in sandbox.calls("/resume") if call.get("status") == 200]


# --------------------------------------------------------------------------- browser steps


def decide_in_browser(page, round_id: int, *, feedback: str, approve: bool) -> None:
    """Open the round, type the feedback and press Approve / Request revision."""
    page.goto(f"/rounds/{round_id}")
    page.get_by_label("Feedback").fill(feedback)
    page.get_by_role("button", name="Approve" if approve else "Request revision").click()
    page.wait_for_url(DECISION_URL)


def assert_clean(*watches, http_statuses: tuple[int, ...] = ()) -> None:
    """No dialog, no console error (CSP violations are reported there), no foreign request.

    ``http_statuses``: pages the journey expects to be answered with these codes (e.g. a
    409 conflict page); Chromium reports each one as a console error, which is allowed."""
    expected = {f"the server responded with a status of {code} " for code in http_statuses}
    for watch in watches:
        errors = [e for e in watch.console_errors if not any(text in e for text in expected)]
        assert watch.dialogs == [], f"a dialog opened: {watch.dialogs}"
        assert errors == [], f"console errors: {errors}"
        assert watch.foreign_requests == [], f"requests to other hosts: {watch.foreign_requests}"


@contextmanager
def running_worker(app, *, interval: float = 0.2) -> Iterator[None]:
    """The background worker (status sync + resume delivery) for the duration of a block."""
    from reviewapp.worker import run_forever

    stop = threading.Event()
    worker = threading.Thread(
        target=run_forever, args=(app,), kwargs={"stop": stop, "interval": interval}, name="e2e-worker"
    )
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(10)
