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


HOSTILE = "<script>'x'</script>&\""  # fits every text column (reason codes: 32)
ESCAPED = "&lt;script&gt;&#39;x&#39;&lt;/script&gt;&amp;&#34;"


def test_escaped_rows_escape_every_text_field_and_keep_the_rest():
    from typing import NamedTuple

    from reviewapp.audit.templating import escaped_rows

    class Row(NamedTuple):
        number: int
        when: datetime
        text: str
        maybe: str | None

    value = datetime(2025, 1, 31, tzinfo=UTC)
    rows = [Row(1, value, HOSTILE, None), Row(2, value, "plain\x00nul", HOSTILE)]
    assert escaped_rows(rows) == [Row(1, value, ESCAPED, ""), Row(2, value, "plain\x00nul", ESCAPED)]
    assert escaped_rows([]) == []


def test_history_rows_are_escaped(client, login_as, factory):
    from reviewapp.models import JobState

    decision = factory.decided(crew="research", reviewer="rita", approve=False, feedback=HOSTILE,
                               reason=HOSTILE, task_id=HOSTILE, job_state=JobState.FAILED)
    decision.job.outcome = HOSTILE
    factory.commit()
    login_as("lead")
    page = client.get("/audit/history").get_data(as_text=True)
    assert "<script>" not in page
    assert page.count(ESCAPED) == 4  # feedback, reason, task id, resume outcome


def _unpacked_names(app, template_name: str) -> list[list[str]]:
    """The names each ``{% for a, b, ... in ...|escaped_rows %}`` of a template unpacks."""
    from jinja2 import nodes

    source = app.jinja_env.loader.get_source(app.jinja_env, template_name)[0]
    loops = app.jinja_env.parse(source).find_all(nodes.For)
    return [
        [name.name for name in loop.target.items]
        for loop in loops
        if isinstance(loop.iter, nodes.Filter) and loop.iter.name == "escaped_rows"
        and isinstance(loop.target, nodes.Tuple)
    ]


def test_the_long_pages_unpack_their_rows_field_by_field_in_order(app):
    """The queue and history rows are unpacked in the for tag (a plain local per field,
    where ``row.field`` costs a call each: a thousand a page): the names must be the row
    type's fields, in its order, or a column would show another's value."""
    from reviewapp.audit.history import HistoryRow
    from reviewapp.reviews.services import QueueRow

    assert _unpacked_names(app, "audit/history.html") == [list(HistoryRow._fields)]
    assert _unpacked_names(app, "reviews/queue.html") == [list(QueueRow._fields)]


def test_times_are_written_as_isoformat_would_write_them():
    from datetime import timedelta, timezone

    from reviewapp.audit.templating import utc_seconds

    for value in (
        datetime(2025, 1, 31, 9, 5, 7, tzinfo=UTC),
        datetime(999, 12, 1, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2025, 6, 30, 0, 0, 0, 999999, tzinfo=UTC),
        datetime(2025, 6, 30, 1, 2, 3, 40, tzinfo=timezone(timedelta(hours=2))),
    ):
        iso = value.isoformat()
        assert utc_seconds(value) == value.isoformat(" ", "seconds")[:19]
        assert when(value) == f'<time datetime="{iso}">{iso[:10]} {iso[11:19]}</time>'


def test_select_options_escape_and_mark_the_chosen_value():
    from reviewapp.audit.templating import select_options

    options = [(1, HOSTILE), (12, "twelve"), ("a&b", "ab")]
    assert select_options(options, 12) == (
        f'<option value="1">{ESCAPED}</option><option value="12" selected>twelve</option>'
        '<option value="a&amp;b">ab</option>'
    )
    assert ' selected' not in select_options(options, None)
    assert select_options(options, "a&b").count(" selected") == 1
    assert select_options([], 1) == ""


def test_history_filter_form_escapes_crew_names_and_keeps_the_choice(client, login_as, factory):
    decision = factory.decided(crew="research", reviewer="rita")
    factory.commit()
    login_as("lead")
    crew_id = decision.round.crew_id
    page = client.get(f"/audit/history?crew={crew_id}&decision=approve").get_data(as_text=True)
    assert f'<option value="{crew_id}" selected>research</option>' in page
    assert '<option value="approve" selected>approve</option>' in page
    assert '<select id="f-reviewer" name="reviewer">' in page
