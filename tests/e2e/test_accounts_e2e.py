"""Journey 4: an admin creates a reviewer, the reviewer logs in, the admin deactivates
them, and the reviewer's open session is refused on the next click."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import ui_login

pytestmark = pytest.mark.e2e


def test_admin_creates_then_deactivates_a_reviewer(make_user, new_page, screenshot):
    make_user("root-admin", "admin")
    admin, admin_watch = new_page()
    ui_login(admin, "root-admin", PASSWORD)
    admin.get_by_role("link", name="Accounts").click()
    admin.get_by_label("Username").fill("newbie")
    admin.get_by_label("Role").select_option("reviewer")
    admin.get_by_label(re.compile("Initial password")).fill("newbie password 1")
    admin.get_by_role("button", name="Create account").click()
    admin.wait_for_url(re.compile(r"/admin/users/\d+$"))
    screenshot(admin, "admin-user")

    reviewer, reviewer_watch = new_page()
    ui_login(reviewer, "newbie", "newbie password 1")
    reviewer.wait_for_url(re.compile(r"/$"))
    assert reviewer.get_by_role("link", name="Accounts").count() == 0
    assert reviewer.get_by_role("button", name="Log out").is_visible()

    admin.get_by_role("button", name="Deactivate").click()
    admin.get_by_text("is deactivated").wait_for()

    reviewer.get_by_role("link", name="Queue").click()
    reviewer.wait_for_url(re.compile(r"/login"))
    assert reviewer.get_by_role("button", name="Log in").is_visible()
    assert admin_watch.console_errors == [] and reviewer_watch.console_errors == []
    assert admin_watch.foreign_requests == [] and reviewer_watch.foreign_requests == []
