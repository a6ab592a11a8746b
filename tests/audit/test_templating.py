"""The audit pages' row filters (the _audit.html macros delegate to them)."""

from __future__ import annotations

from datetime import UTC, datetime

from reviewapp.audit.templating import job_badge, when
from reviewapp.models import JobState


def test_when_is_a_time_element_to_the_second():
    value = datetime(2025, 1, 31, 9, 5, 7, 123456, tzinfo=UTC)
    assert when(value) == (
        '<time datetime="2025-01-31T09:05:07.123456+00:00">2025-01-31 09:05:07</time>'
    )
    assert when(None) == "—"


def test_job_badge_colours_each_state_and_marks_a_missing_job():
    assert job_badge(JobState.SUCCEEDED) == '<span class="badge badge-ok">succeeded</span>'
    assert job_badge(JobState.FAILED) == '<span class="badge badge-bad">failed</span>'
    assert job_badge(None) == '<span class="badge ">no job</span>'
    assert all(state.value in job_badge(state) for state in JobState)


def test_the_macros_render_the_same_markup(app):
    with app.test_request_context("/"):
        template = app.jinja_env.from_string(
            '{% from "audit/_audit.html" import when, job_badge %}{{ when(v) }}|{{ job_badge(s) }}'
        )
        value = datetime(2025, 1, 31, 9, 5, 7, tzinfo=UTC)
        assert template.render(v=value, s=JobState.PENDING) == (
            f"{when(value)}|{job_badge(JobState.PENDING)}"
        )
