"""Journey 6: a reviewer completes a review with the keyboard only (``page.keyboard``:
Tab, Enter, Space and the page's shortcuts; no click, no fill). They log in, take the
next item from the queue, send it back with feedback and a reason, take round 2 and
approve it. Every focused control shows a focus ring."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.e2e.helpers import DECISION_URL, assert_clean, execution_of, wait_for_round
from tests.reviews.fixtures import make_crew, sandbox_round  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.e2e

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) { return null; }
  const style = getComputedStyle(el);
  return {id: el.id, tag: el.tagName, text: (el.value || el.innerText || '').trim(),
          ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0};
}"""


def focused(page) -> dict | None:
    return page.evaluate(FOCUSED)


def tab_to(page, name: str, *, limit: int = 40) -> dict:
    """Press Tab until the control whose id or label is ``name`` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if now and name in (now["id"], now["text"]):
            assert now["ring"], f"{name} has the focus but no visible focus ring"
            return now
    raise AssertionError(f"{name} was not reached with {limit} Tab presses")


def test_review_without_a_mouse(app, make_user, new_page, sandbox, sandbox_round):  # noqa: F811
    first = sandbox_round("research")
    make_user("kim", "reviewer")
    page, watch = new_page()
    keys = page.keyboard

    page.goto("/login")
    assert focused(page)["id"] == "username"  # the form starts focused
    keys.type("kim")
    tab_to(page, "password")
    keys.type(PASSWORD)
    keys.press("Enter")
    page.wait_for_url(re.compile(r"/$"))

    tab_to(page, "Review next")
    keys.press("Enter")
    page.wait_for_url(re.compile(rf"/rounds/{first}$"))
    keys.press("f")
    assert focused(page)["id"] == "feedback"
    keys.type("Cite the sources, please.")
    tab_to(page, "reason")
    keys.type("needs")  # type-ahead picks "needs-sources"
    assert page.locator("#reason").input_value() == "needs-sources"
    tab_to(page, "Request revision")
    keys.press("Enter")
    page.wait_for_url(DECISION_URL)
    page.get_by_text("Revision requested: the crew is redoing the task.").wait_for()

    second = wait_for_round(app, execution_of(app, first), round_number=2)
    keys.press("n")  # the outcome page's shortcut: review next
    page.wait_for_url(re.compile(rf"/rounds/{second}$"))
    keys.press("f")
    keys.type("Good now.")
    tab_to(page, "Approve")
    keys.press("Space")
    page.wait_for_url(DECISION_URL)
    page.get_by_text("Approved: the crew resumed.").wait_for()
    bodies = [call["body"] for call in sandbox.calls("/resume")]
    assert [(b["human_feedback"], b["is_approve"]) for b in bodies] == [
        ("Cite the sources, please.", False), ("Good now.", True)]
    assert_clean(watch)
