"""Fixtures for the security tests: a clock we move by hand, and a page with a
feedback form (the review page's field name) that any test can post to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import render_template_string

START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


class FakeClock:
    """Replaces reviewapp.auth.clock.now and the clock itsdangerous signs with."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("reviewapp.auth.clock.now", fake.now)
    # Cookie and CSRF signatures carry timestamps too: keep them on the same clock.
    monkeypatch.setattr(
        "itsdangerous.timed.TimestampSigner.get_timestamp",
        lambda self: int(fake.current.timestamp()),
    )
    return fake


FORM = """<form method="post" action="/_test/feedback">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<textarea name="feedback"></textarea></form>"""


@pytest.fixture
def feedback_route(app):
    """GET/POST /_test/feedback: an ordinary (login-required) page with a feedback form."""
    from flask import request

    def view():
        if request.method == "POST":
            return "saved: " + request.form.get("feedback", "")
        return render_template_string(FORM)

    app.add_url_rule("/_test/feedback", "test_feedback", view, methods=["GET", "POST"])
    return "/_test/feedback"
