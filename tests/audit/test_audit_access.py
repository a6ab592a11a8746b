"""Who may open which audit page; the audit area has no state-changing routes."""

from __future__ import annotations

import pytest

from reviewapp.access import required_role
from reviewapp.models import Role
from tests.audit.factories import at

PAGES = {
    "/audit/history": "reviewer",
    "/audit/events": "lead",
    "/audit/metrics": "lead",
    "/audit/history/export.csv": "lead",
    "/audit/history/export.jsonl": "lead",
    "/audit/executions/{execution}": "lead",
}


@pytest.fixture
def execution_id(factory):
    decision = factory.decided(received_at=at(0))
    factory.commit()
    return decision.round.execution_id


@pytest.mark.parametrize("role", ["reviewer", "lead", "admin"])
@pytest.mark.parametrize(("url", "needed"), PAGES.items())
def test_role_per_page(client, login_as, execution_id, role, url, needed):
    login_as(role)
    response = client.get(url.format(execution=execution_id))
    if Role(role).allows(Role(needed)):
        assert response.status_code == 200
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_goes_to_login(client, execution_id, url):
    response = client.get(url.format(execution=execution_id))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next")


def test_required_roles(app):
    assert required_role("audit.history", app) is Role.REVIEWER
    for endpoint in ("audit.events", "audit.metrics", "audit.export_csv", "audit.export_jsonl",
                     "audit.execution_timeline"):
        assert required_role(endpoint, app) is Role.LEAD


def test_every_audit_route_is_read_only(app):
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("audit.")]
    assert len(rules) == 6
    for rule in rules:
        assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule


def test_nav_for_reviewer_shows_history_not_metrics(client, login_as):
    login_as("reviewer")
    page = client.get("/audit/history").get_data(as_text=True)
    assert ">History</a>" in page and ">Metrics</a>" not in page
    assert "Account events" not in page


def test_nav_for_lead_shows_history_and_metrics(client, login_as):
    login_as("lead")
    page = client.get("/audit/history").get_data(as_text=True)
    assert ">History</a>" in page and ">Metrics</a>" in page and "Account events" in page


def test_refused_page_is_recorded(client, login_as, factory):
    from sqlalchemy import select

    from reviewapp.extensions import db
    from reviewapp.models import AuditEvent

    login_as("reviewer")
    client.get("/audit/metrics")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "authorization_failed"))
    assert event.details["endpoint"] == "audit.metrics"
