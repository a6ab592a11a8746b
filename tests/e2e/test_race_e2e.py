"""Journey 2: two reviewers in two browser contexts submit on the same round at once.
One wins; the other sees "already decided" with the feedback they typed preserved.

Opening a round claims it, so the second reviewer could not even press a button. To make
the race real, each reviewer's claim is let run out after their page loaded (as if each
had left it open for longer than CLAIM_MINUTES): both pages then hold enabled buttons,
and both submit before either response has come back."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import E2E_CONFIG, ui_login
from tests.e2e.helpers import assert_clean, decisions_on, expire_claim, resume_bodies
from tests.reviews.fixtures import make_crew, sandbox_round  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.e2e

SETTLED = re.compile(r"/decisions/\d+$|/rounds/\d+/decide$")
TYPED = {
    "ann": ("Request revision", "Ann's take: the second point needs a source."),
    "bob": ("Approve", "Bob's take: good enough to ship."),
}


@pytest.fixture
def app_config():
    # No heartbeat during the test: the claims stay as the test leaves them.
    return {**E2E_CONFIG, "CLAIM_HEARTBEAT_SECONDS": 3600}


def open_round(new_page, username: str, round_id: int):
    page, watch = new_page()
    ui_login(page, username, PASSWORD)
    page.goto(f"/rounds/{round_id}")
    button, text = TYPED[username]
    page.get_by_label("Feedback").fill(text)
    return page, watch, page.get_by_role("button", name=button)


@pytest.mark.parametrize("attempt", range(2))
def test_two_reviewers_submit_at_once(app, make_user, new_page, sandbox, sandbox_round, screenshot, attempt):  # noqa: F811
    rid = sandbox_round("support")
    make_user("ann", "reviewer")
    make_user("bob", "reviewer")
    ann, ann_watch, ann_button = open_round(new_page, "ann", rid)
    expire_claim(app, rid)
    bob, bob_watch, bob_button = open_round(new_page, "bob", rid)
    expire_claim(app, rid)
    assert ann_button.is_enabled() and bob_button.is_enabled()

    # Both clicks go out before either page has navigated.
    ann_button.click(no_wait_after=True)
    bob_button.click(no_wait_after=True)
    for page in (ann, bob):
        page.wait_for_url(SETTLED)
        page.wait_for_load_state()

    [(winner, is_approve, feedback)] = decisions_on(app, rid)
    loser = "bob" if winner == "ann" else "ann"
    assert (is_approve, feedback) == ({"ann": False, "bob": True}[winner], TYPED[winner][1])
    pages = {"ann": ann, "bob": bob}
    assert re.search(r"/decisions/\d+$", pages[winner].url)
    lost = pages[loser]
    assert lost.url.endswith(f"/rounds/{rid}/decide")
    assert f"This round was already decided by {winner}." in lost.get_by_role("alert").inner_text()
    assert lost.get_by_label("Your feedback").input_value() == TYPED[loser][1]
    assert f"You pressed {TYPED[loser][0]}" in lost.locator("main").inner_text()
    if attempt == 0:
        screenshot(lost, "already-decided")

    assert [body["human_feedback"] for body in resume_bodies(sandbox)] == [TYPED[winner][1]]
    assert len(sandbox.calls("/resume")) == 1
    watches = {"ann": ann_watch, "bob": bob_watch}
    assert_clean(watches[winner])
    assert_clean(watches[loser], http_statuses=(409,))
