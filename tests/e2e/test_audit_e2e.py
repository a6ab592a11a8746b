"""Journey 3: reviewers decide a few rounds in the browser; a lead audits the history,
filters it, opens the execution's timeline, downloads the filtered CSV and looks at the
metrics."""

from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import expect

from reviewapp.audit.export import COLUMNS
from tests.conftest import PASSWORD
from tests.e2e.conftest import ui_login
from tests.e2e.helpers import assert_clean, decide_in_browser, execution_of, wait_for_round
from tests.reviews.fixtures import make_crew, sandbox_round  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.e2e

# A spreadsheet would run this as a formula: the export must neutralise it.
REVISE_FEEDBACK = '=HYPERLINK("http://evil.example","click") and please add sources'


@pytest.fixture
def decided(app, make_user, new_page, sandbox_round):  # noqa: F811
    """rita sends research round 1 back, then approves round 2; sam approves a support reply.
    Returns the research execution's id."""
    make_user("rita", "reviewer")
    make_user("sam", "reviewer")
    research, support = sandbox_round("research"), sandbox_round("support")
    rita, _ = new_page()
    ui_login(rita, "rita", PASSWORD)
    decide_in_browser(rita, research, feedback=REVISE_FEEDBACK, approve=False)
    execution_id = execution_of(app, research)
    second = wait_for_round(app, execution_id, round_number=2)
    decide_in_browser(rita, second, feedback="Sources added, thanks.", approve=True)
    wait_for_round(app, execution_id, task_id="analysis_task")  # the crew moved on
    sam, _ = new_page()
    ui_login(sam, "sam", PASSWORD)
    decide_in_browser(sam, support, feedback="", approve=True)
    return execution_id


def history_rows(page):
    return page.locator("table.history tbody tr")


def test_lead_audits_history_timeline_and_export(make_user, new_page, decided, screenshot, tmp_path):
    make_user("lena", "lead")
    page, watch = new_page()
    ui_login(page, "lena", PASSWORD)
    page.get_by_role("link", name="History").click()
    page.get_by_role("heading", name="Decision history").wait_for()
    expect(history_rows(page)).to_have_count(3)
    screenshot(page, "history")

    page.get_by_label("Reviewer").select_option(label="rita")
    page.get_by_label("Decision", exact=True).select_option("revise")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/audit/history\?.*decision=revise"))
    [row] = history_rows(page).all()
    assert "rita" in row.inner_text() and REVISE_FEEDBACK in row.locator(".feedback").inner_text()
    assert "succeeded" in row.inner_text() and "retrying" in row.inner_text()
    assert "HTTP 200 · 1 attempt" in row.inner_text()
    screenshot(page, "history-filtered")

    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    target = tmp_path / download.value.suggested_filename
    download.value.save_as(target)
    assert re.fullmatch(r"reviewapp-history-\d{8}T\d{6}Z\.csv", target.name)
    with target.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    assert tuple(header) == COLUMNS
    [exported] = [dict(zip(header, cells, strict=True)) for cells in rows]
    assert exported["reviewer"] == "rita" and exported["decision"] == "revise"
    assert exported["crew"] == "research" and exported["round"] == "1"
    assert exported["feedback"] == "'" + REVISE_FEEDBACK  # shown as text, never run
    assert (exported["resume_state"], exported["resume_outcome"]) == ("succeeded", "retrying")
    assert exported["execution_id"] == str(decided)
    assert (exported["last_http_status"], exported["attempts"]) == ("200", "1")

    row.get_by_role("link", name=f"#{decided}").click()
    page.wait_for_url(re.compile(rf"/audit/executions/{decided}$"))
    rounds = page.locator("li.tl-round")
    assert rounds.count() == 3  # research rounds 1 and 2, then the analysis task
    assert "Task research_task, round 2" in rounds.nth(1).inner_text()
    decisions = page.locator("li.tl-decision")
    assert decisions.count() == 2
    assert "asked for a revision" in decisions.first.inner_text()
    assert REVISE_FEEDBACK in decisions.first.locator("blockquote.feedback").inner_text()
    assert "approved" in decisions.nth(1).inner_text()
    assert page.locator("li.tl-attempt", has_text="Resume sent").count() == 2
    screenshot(page, "timeline")

    page.get_by_role("link", name="Metrics").click()
    page.get_by_role("heading", name="Review metrics").wait_for()
    expect(page.locator(".panel").first).to_be_visible()
    screenshot(page, "metrics")
    assert_clean(watch)
