"""Journey 1: a lead kicks a crew off on the crew page; a reviewer logs in, opens the
queue, reviews round 1 and requests a revision. The sandbox gets exactly one /resume
with that feedback and ``is_approve=false``, redoes the task and sends round 2; the
reviewer sees the diff and approves, and the outcome appears on the page by itself."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import E2E_CONFIG, ui_login
from tests.e2e.helpers import (
    DECISION_URL,
    assert_clean,
    latest_execution,
    resume_bodies,
    running_worker,
    wait_for_round,
    wait_until,
)

pytestmark = pytest.mark.e2e

FEEDBACK = "Please cite sources and add numbers for the cost claim."


@pytest.fixture
def app_config():
    return {**E2E_CONFIG, "RESUME_BACKOFF_BASE": 0.5, "AMP_READ_TIMEOUT": 3.0}


def lead_kicks_off(page, screenshot) -> None:
    page.get_by_role("link", name="Crews").click()
    page.get_by_role("link", name="research", exact=True).click()
    page.get_by_label("topic").fill("heat pumps")
    page.get_by_label("current_year").fill("2025")
    screenshot(page, "crew-page")
    page.get_by_role("button", name="Kick off").click()
    page.get_by_text("Kicked off: execution").wait_for()


def test_revise_then_approve_round_two(app, sandbox, sandbox_crew, make_user, new_page, screenshot):
    sandbox_crew("research")
    make_user("lena", "lead")
    make_user("rita", "reviewer")
    lead, lead_watch = new_page()
    ui_login(lead, "lena", PASSWORD)
    lead_kicks_off(lead, screenshot)
    execution_id = wait_until(lambda: latest_execution(app, "research"), what="the execution row")
    first = wait_for_round(app, execution_id)

    page, watch = new_page()
    ui_login(page, "rita", PASSWORD)
    page.get_by_role("link", name="Queue").click()
    row = page.locator("table.queue tbody tr", has_text="research_task")
    expect(row).to_have_count(1)
    assert "Research notes on heat pumps" in row.locator("td.snippet").inner_text()
    screenshot(page, "queue")

    row.get_by_role("link", name="research_task").click()
    page.wait_for_url(re.compile(rf"/rounds/{first}$"))
    assert page.locator("#output h1").inner_text() == "Research notes on heat pumps"
    assert "You are reviewing this round" in page.locator("#claim-status").inner_text()
    page.get_by_label("Feedback").fill(FEEDBACK)
    screenshot(page, "review-page")
    page.get_by_role("button", name="Request revision").click()
    page.wait_for_url(DECISION_URL)
    page.get_by_text("Revision requested: the crew is redoing the task.").wait_for()
    screenshot(page, "decision-revise")

    assert len(sandbox.calls("/resume")) == 1
    [body] = resume_bodies(sandbox)
    assert body["human_feedback"] == FEEDBACK and body["is_approve"] is False
    assert body["task_id"] == "research_task"

    second = wait_for_round(app, execution_id, round_number=2)
    page.get_by_role("button", name="Review next").click()
    page.wait_for_url(re.compile(rf"/rounds/{second}$"))
    added = page.locator("pre.diff .diff-add")
    assert any("Sources (sandbox placeholders" in text for text in added.all_inner_texts())
    assert any("In figures:" in text for text in added.all_inner_texts())
    assert "Revision requested by rita" in page.locator("details.earlier-round summary").inner_text()
    screenshot(page, "review-diff")

    # The first delivery try fails; the outcome page must then update itself once the
    # worker gets the approval through (no reload: the marker set below survives).
    sandbox.set_fault("500", path="/resume", times=1)
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(DECISION_URL)
    assert "retried automatically" in page.locator("#job-status").inner_text()
    page.evaluate("window.__notReloaded = true")
    with running_worker(app):
        page.locator("#job-status", has_text="Approved: the crew resumed.").wait_for(timeout=20_000)
    assert page.evaluate("window.__notReloaded") is True
    screenshot(page, "decision-approved")

    bodies = resume_bodies(sandbox)
    assert [b["is_approve"] for b in bodies] == [False, True]
    assert bodies[1]["execution_id"] == body["execution_id"]
    wait_for_round(app, execution_id, task_id="analysis_task")  # the crew moved on
    assert_clean(watch, lead_watch)
