"""Metrics on a known fixture, with exact expected values (nearest-rank percentiles)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from reviewapp.audit import metrics
from reviewapp.audit.dashboard import build_dashboard, format_seconds
from reviewapp.audit.filters import DateRange, MetricFilters
from reviewapp.extensions import db
from reviewapp.models import Crew, JobState, RoundState
from tests.audit.factories import T0, at

RANGE = DateRange(date(2025, 3, 3), date(2025, 3, 5))


@pytest.fixture
def known(factory):
    """Seven decisions in range (waits in minutes), one outside, three pending rounds."""
    d = factory.decided
    d(crew="research", reviewer="rita", approve=True, received_at=at(0), wait_minutes=1)
    d(crew="research", reviewer="rita", approve=False, received_at=at(10), wait_minutes=2)
    d(crew="research", reviewer="sam", approve=True, received_at=at(days=1), wait_minutes=3, number=2)
    failed = d(crew="research", reviewer="sam", approve=False, received_at=at(30, days=1), wait_minutes=4,
               task_id="writing_task", job_state=JobState.FAILED)
    d(crew="research", reviewer="rita", approve=True, received_at=at(days=2), wait_minutes=10, number=3)
    d(crew="ops", reviewer="sam", approve=True, received_at=at(days=1), wait_minutes=5)
    stale = d(crew="ops", reviewer="sam", approve=False, received_at=at(days=2), wait_minutes=7,
              job_state=JobState.STALE)
    d(crew="ops", reviewer="rita", approve=False, received_at=at(days=10), wait_minutes=1)  # outside
    factory.attempt(stale.job, result="not_pending", http_status=400)
    factory.attempt(failed.job, result="status:ambiguous", http_status=None, kind="status-check")
    factory.attempt(failed.job, result="status:waiting", http_status=200, kind="status-check")
    research, ops = factory.crew("research"), factory.crew("ops")
    factory.round(factory.execution(research), received_at=at(60, days=3), state=RoundState.PENDING)
    factory.round(factory.execution(research), received_at=at(0, days=3), state=RoundState.PENDING)
    factory.round(factory.execution(ops), received_at=at(30, days=3), state=RoundState.PENDING)
    factory.round(factory.execution(ops), received_at=at(0), state=RoundState.STALE)
    factory.commit()


def crew_id(name: str) -> int:
    return db.session.scalar(select(Crew.id).where(Crew.name == name))


def test_decisions_per_day(known):
    days = metrics.decisions_per_day(MetricFilters(RANGE))
    assert [(d.day.isoformat(), d.approved, d.revised) for d in days] == [
        ("2025-03-03", 1, 1), ("2025-03-04", 2, 1), ("2025-03-05", 1, 1)]


def test_days_without_decisions_are_zero(known):
    days = metrics.decisions_per_day(MetricFilters(DateRange(date(2025, 3, 1), date(2025, 3, 3))))
    assert [(d.approved, d.revised) for d in days] == [(0, 0), (0, 0), (1, 1)]


def latencies(filters: MetricFilters, group: str) -> list[metrics.Latency]:
    return metrics.notification_to_decision(filters)[group]


def facts(filters: MetricFilters = MetricFilters(RANGE)) -> list[metrics.Fact]:  # noqa: B008
    return metrics.decision_facts(filters)


def test_notification_to_decision_per_crew(known):
    rows = latencies(MetricFilters(RANGE), "crew")
    # research waits 60,120,180,240,600 s; ops 300,420 s
    assert [(r.name, r.decisions, r.median_seconds, r.p90_seconds) for r in rows] == [
        ("research", 5, 180.0, 600.0), ("ops", 2, 300.0, 420.0)]


def test_notification_to_decision_per_reviewer(known):
    rows = latencies(MetricFilters(RANGE), "reviewer")
    # sam waits 180,240,300,420 s (median = the lower middle); rita 60,120,600 s
    assert [(r.name, r.decisions, r.median_seconds, r.p90_seconds) for r in rows] == [
        ("sam", 4, 240.0, 420.0), ("rita", 3, 120.0, 600.0)]


def test_sub_second_waits_are_kept(factory):
    factory.decided(received_at=at(0), wait_minutes=0.5 / 60)
    factory.commit()
    [row] = latencies(MetricFilters(RANGE), "crew")
    assert row.median_seconds == 0.5


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("crew", [("research", 5, 2, 40.0), ("ops", 2, 1, 50.0)]),
        ("task", [("research / research_task", 4, 1, 25.0), ("ops / research_task", 2, 1, 50.0),
                  ("research / writing_task", 1, 1, 100.0)]),
        ("reviewer", [("sam", 4, 2, 50.0), ("rita", 3, 1, 33.3)]),
    ],
)
def test_revise_rates(known, group, expected):
    rows = metrics.revise_rates(facts(), group)
    assert [(r.name, r.decisions, r.revised, r.percent) for r in rows] == expected


def test_rounds_until_approval(known):
    counts = metrics.rounds_until_approval(facts())
    assert [(c.name, c.count) for c in counts] == [("1", 2), ("2", 1), ("3", 1)]
    assert metrics.mean_rounds(counts) == 1.75
    assert metrics.mean_rounds([]) is None


def test_resume_failures_and_job_states(known):
    failures = metrics.resume_failures(MetricFilters(RANGE))
    assert [(c.name, c.count) for c in failures] == [
        ("unavailable", 2), ("not_pending", 1), ("status:ambiguous", 1)]
    jobs = metrics.jobs_by_state(facts())
    assert [(c.name, c.count) for c in jobs] == [("succeeded", 5), ("failed", 1), ("stale", 1)]


def test_queue_now(known):
    queue = metrics.queue_now(MetricFilters(RANGE))
    assert [(r.crew, r.pending, r.oldest) for r in queue.rows] == [
        ("research", 2, at(0, days=3)), ("ops", 1, at(30, days=3))]
    assert queue.depth == 3
    assert queue.oldest_age(at(0, days=4)) == timedelta(days=1)


def test_crew_filter(known):
    only_ops = MetricFilters(RANGE, crew_id=crew_id("ops"))
    days = metrics.decisions_per_day(only_ops)
    assert [(d.approved, d.revised) for d in days] == [(0, 0), (1, 0), (0, 1)]
    assert [r.name for r in metrics.revise_rates(facts(only_ops), "reviewer")] == ["sam"]
    assert [(r.name, r.decisions) for r in latencies(only_ops, "crew")] == [("ops", 2)]
    assert [(c.name, c.count) for c in metrics.resume_failures(only_ops)] == [
        ("not_pending", 1), ("unavailable", 1)]
    assert metrics.queue_now(only_ops).depth == 1


def test_empty_database_gives_empty_metrics(app):
    with app.app_context():
        dashboard = build_dashboard(MetricFilters(RANGE), T0)
    assert dashboard.queue_depth == 0 and dashboard.oldest_pending is None
    assert all(panel.chart.empty for panel in dashboard.panels)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0.5, "0.5 s"), (59, "59 s"), (180, "3 min 00 s"), (3725, "1 h 02 min"),
     (49 * 3600, "2 d 1 h")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_metrics_page_shows_charts_and_their_numbers(client, login_as, known):
    login_as("lead")
    response = client.get("/audit/metrics?from=2025-03-03&to=2025-03-05")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count("<svg") == 10
    assert page.count('<details class="numbers">') == 10
    for text in ("<td>research</td><td class=\"num\">5</td><td class=\"num\">3 min 00 s</td><td class=\"num\">10 min 00 s</td>",
                 "<td>rita</td><td class=\"num\">3</td><td class=\"num\">1</td><td class=\"num\">33.3 %</td>",
                 "On average 1.75 rounds per approved task.",
                 "<td>status:ambiguous</td><td class=\"num\">1</td>",
                 '<span class="kpi">3</span> rounds waiting'):
        assert text in page
    assert "<script" not in page


def test_metrics_default_to_the_last_30_days(client, login_as):
    login_as("lead")
    page = client.get("/audit/metrics").get_data(as_text=True)
    today = date.today()
    assert f"Range {today - timedelta(days=29)} to {today}." in page


@pytest.mark.parametrize(
    ("query", "message"),
    [("from=2025-03-05&to=2025-03-01", "after the"), ("from=2023-01-01&to=2025-01-01", "at most 366 days"),
     ("crew=x", "Choose a crew")],
)
def test_bad_metric_filters_are_400(client, login_as, query, message):
    login_as("lead")
    response = client.get(f"/audit/metrics?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_names_are_escaped_inside_the_svg(client, login_as, factory):
    factory.decided(crew="<script>alert(1)</script>", reviewer='"><svg onload=alert(1)>', received_at=at(0))
    factory.commit()
    login_as("lead")
    page = client.get("/audit/metrics?from=2025-03-03&to=2025-03-03").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<svg onload" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;" in page
