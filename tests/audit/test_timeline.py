"""Execution timeline: everything in time order, untrusted text inert."""

from __future__ import annotations

import pytest

from reviewapp.audit import timeline as timeline_module
from reviewapp.models import JobState, WebhookKind
from tests.audit.factories import at

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def story(factory):
    """Kickoff, a webhook, round 1 revised (one failed attempt, one ok), round 2 approved, done."""
    crew = factory.crew("research")
    ex = factory.execution(crew, created_at=at(0))
    factory.event(ex, "kickoff", created_at=at(0), message="Kicked off by lead1.")
    factory.webhook(ex, received_at=at(1), payload='{"output": "' + XSS.replace('"', "'") + '"}')
    r1 = factory.round(ex, output="# Plan\n\n- first point\n" + XSS, received_at=at(1))
    d1 = factory.decision(r1, factory.user("rita"), approve=False, feedback="Add the second point " + XSS,
                          reason="incomplete", created_at=at(5))
    j1 = factory.job(d1, state=JobState.SUCCEEDED, outcome="retrying", attempts=2)
    factory.attempt(j1, result="unavailable", http_status=500, started_at=at(6), body=XSS, error="boom " + XSS)
    factory.attempt(j1, result="ok", started_at=at(7))
    r2 = factory.round(ex, number=2, output="# Plan\n\n- first point\n- second point\n", received_at=at(12))
    d2 = factory.decision(r2, factory.user("sam"), approve=True, feedback="Good.", created_at=at(15))
    factory.attempt(factory.job(d2), started_at=at(16))
    factory.event(ex, "completed", created_at=at(30), message="AMP reports the execution completed.")
    factory.commit()
    return ex.id


def test_everything_in_time_order(app, factory, story):
    from reviewapp.extensions import db
    from reviewapp.models import Execution

    timeline = timeline_module.build_timeline(db.session.get(Execution, story))
    kinds = [(item.kind, item.at) for item in timeline.items]
    assert kinds == [
        ("event", at(0)), ("webhook", at(1)), ("round", at(1)), ("decision", at(5)),
        ("attempt", at(6)), ("attempt", at(7)), ("round", at(12)), ("decision", at(15)),
        ("attempt", at(16)), ("event", at(30)),
    ]
    first_round, second_round = (i for i in timeline.items if i.kind == "round")
    assert first_round.data["diff"] is None
    assert [line.text for line in second_round.data["diff"].lines if line.kind in ("add", "del")] == [
        "-" + XSS, "+- second point"]


def test_timeline_page(client, login_as, story):
    login_as("lead")
    response = client.get(f"/audit/executions/{story}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for text in ("Kicked off by lead1.", "Webhook human input", "round 1", "round 2", "rita", "sam",
                 "asked for a revision", "approved", "reason incomplete", "HTTP 500", "unavailable",
                 "AMP reports the execution completed.", "Changes since the previous round",
                 "+- second point"):
        assert text in page
    assert page.index("Kicked off") < page.index("asked for a revision") < page.index("completed.")


def test_untrusted_text_is_inert(client, login_as, story):
    login_as("lead")
    page = client.get(f"/audit/executions/{story}").get_data(as_text=True)
    assert "<script>" not in page
    assert "<img src=x" not in page
    assert "onerror=alert(1)&gt;" in page  # shown, as text


def test_history_is_xss_safe_too(client, login_as, story):
    login_as("lead")
    page = client.get("/audit/history").get_data(as_text=True)
    assert "<script>" not in page and "<img src=x" not in page
    assert "Add the second point &lt;script&gt;" in page


def test_long_timelines_say_what_they_leave_out(client, login_as, factory, monkeypatch):
    monkeypatch.setattr(timeline_module, "MAX_ITEMS_PER_KIND", 3)
    ex = factory.execution(factory.crew("research"), created_at=at(0))
    for n in range(5):
        factory.webhook(ex, received_at=at(n), payload=f"step {n}", kind=WebhookKind.STEP)
    factory.commit()
    login_as("lead")
    page = client.get(f"/audit/executions/{ex.id}").get_data(as_text=True)
    assert "step 2" in page and "step 3" not in page
    assert "2 more webhook entries" in page


def test_large_outputs_are_plain_text(client, login_as, factory):
    ex = factory.execution(factory.crew("research"), created_at=at(0))
    factory.round(ex, output="# Heading\n" + "x" * (300 * 1024), received_at=at(1))
    factory.commit()
    login_as("lead")
    page = client.get(f"/audit/executions/{ex.id}").get_data(as_text=True)
    assert "Large output: shown as plain text." in page
    assert "<h1>Heading</h1>" not in page


def test_unknown_execution_is_404(client, login_as):
    login_as("lead")
    response = client.get("/audit/executions/424242")
    assert response.status_code == 404
    assert "There is no execution with that number." in response.get_data(as_text=True)
