"""An admin walks every page of the main navigation (and the crew and account pages
below it) after some real work: each page loads without a console error (so without a
CSP violation) or a foreign request, and its screenshot is kept as a test artifact."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import ui_login
from tests.e2e.helpers import assert_clean, decide_in_browser
from tests.reviews.fixtures import make_crew, sandbox_round  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.e2e

EXPECTED_NAV = ["Queue", "History", "Metrics", "Crews", "Accounts"]


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def test_admin_tour_of_every_page(make_user, new_page, sandbox_round, screenshot):  # noqa: F811
    decided, waiting = sandbox_round("research"), sandbox_round("support")
    make_user("ada", "admin")
    make_user("rita", "reviewer")
    page, watch = new_page()
    ui_login(page, "ada", PASSWORD)
    decide_in_browser(page, decided, feedback="Please add one more source.", approve=False)

    nav = page.get_by_role("navigation", name="Main")
    labels = [text.strip() for text in nav.get_by_role("link").all_inner_texts()]
    assert [label for label in labels if label in EXPECTED_NAV] == EXPECTED_NAV
    for label in labels:
        nav.get_by_role("link", name=label, exact=True).click()
        expect(nav.locator("[aria-current=page]")).to_have_text([label])
        screenshot(page, slug(label))

    page.get_by_role("link", name="Crews", exact=True).click()
    page.get_by_role("link", name="research", exact=True).click()
    page.get_by_role("heading", name="research").wait_for()
    screenshot(page, "crew-page")

    page.get_by_role("link", name="Accounts", exact=True).click()
    expect(page.get_by_role("link", name="rita")).to_have_count(1)

    page.get_by_role("link", name="History", exact=True).click()
    page.get_by_role("link", name="Account events").click()
    page.wait_for_url(re.compile(r"/audit/events"))
    screenshot(page, "account-events")

    page.goto(f"/rounds/{waiting}")
    screenshot(page, "review-page")
    assert_clean(watch)
