"""Journey: a reviewer works through the queue. The review page's script in a real browser (Debian's Chromium via Playwright): the
live preview, the claim heartbeat, the keyboard shortcuts and the outcome that updates
itself, all under the app's CSP (a violation would show as a console error)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from reviewapp.worker import run_forever
from tests.conftest import PASSWORD
from tests.e2e.conftest import ui_login
from tests.reviews.fixtures import make_crew, sandbox_round  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.e2e


@pytest.fixture
def app_config():
    return {"CLAIM_HEARTBEAT_SECONDS": 1, "AMP_READ_TIMEOUT": 2.0}


class Console:
    def __init__(self, page, origin: str) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("request", lambda req: req.url.startswith(origin) or self.foreign.append(req.url))


@pytest.fixture
def reviewer_page(browser, live_server, make_user) -> Iterator:
    make_user("rita", "reviewer")
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    console = Console(page, live_server.url)
    ui_login(page, "rita", PASSWORD)
    yield page, console
    context.close()


def test_preview_heartbeat_shortcut_and_outcome(app, reviewer_page, sandbox, sandbox_round):  # noqa: F811
    rid = sandbox_round("research")
    page, console = reviewer_page
    page.goto("/")
    page.get_by_role("button", name="Review next").first.click()
    page.wait_for_url(re.compile(rf"/rounds/{rid}$"))

    page.get_by_label("Feedback").fill("Add <b>sources</b> & numbers")
    assert '"human_feedback": "Add <b>sources</b> & numbers"' in page.locator("#preview-revise").inner_text()
    assert '"is_approve": false' in page.locator("#preview-revise").inner_text()

    with page.expect_response(re.compile(rf"/rounds/{rid}/heartbeat$")) as beat:
        pass
    assert beat.value.status == 200 and beat.value.json()["held"] is True

    sandbox.set_fault("500", path="/resume", times=1)  # the inline try fails, the worker retries
    page.keyboard.press("Escape")
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("r")
    page.wait_for_url(re.compile(r"/decisions/\d+$"))
    status = page.locator("#job-status")
    assert "retried automatically" in status.inner_text()

    stop = threading.Event()
    worker = threading.Thread(target=run_forever, args=(app,), kwargs={"stop": stop, "interval": 0.2})
    worker.start()
    try:
        page.get_by_text("Revision requested: the crew is redoing the task.").wait_for(timeout=20_000)
    finally:
        stop.set()
        worker.join(10)
    assert len([c for c in sandbox.calls("/resume") if c["status"] == 200]) == 1
    assert console.errors == [] and console.foreign == []


def test_approve_and_next_by_keyboard(reviewer_page, sandbox, sandbox_round):  # noqa: F811
    first, second = sandbox_round("support"), sandbox_round("support")
    page, console = reviewer_page
    page.goto(f"/rounds/{first}")
    page.keyboard.press("a")
    page.wait_for_url(re.compile(r"/decisions/\d+$"))
    page.get_by_text("Delivered: the execution has completed.").wait_for()
    page.keyboard.press("n")
    page.wait_for_url(re.compile(rf"/rounds/{second}$"))
    page.keyboard.press("f")
    assert page.evaluate("document.activeElement.id") == "feedback"
    assert console.errors == []
