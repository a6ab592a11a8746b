"""Role x route access control, parametrized over the URL map: a new route is
covered by construction."""

from __future__ import annotations

import pytest

from reviewapp import create_app
from reviewapp.access import is_public, required_role
from reviewapp.models import Role

_APP = create_app({"TESTING": True, "SECRET_KEY": "x" * 32, "SQLALCHEMY_DATABASE_URI": "sqlite://"})

SAMPLE_VALUES = {"int": 999999}


def _url(rule) -> str:
    values = {}
    for arg in rule.arguments:
        converter = type(rule._converters[arg]).__name__
        values[arg] = SAMPLE_VALUES["int"] if "Integer" in converter else "nothing-here"
    with _APP.test_request_context():
        return rule.build(values, append_unknown=False)[1]


def _routes():
    for rule in _APP.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods & {"GET", "POST"}):
            yield pytest.param(rule.endpoint, method, _url(rule), id=f"{method} {rule.rule}")


ROUTES = list(_routes())
PROTECTED = [p for p in ROUTES if not is_public(p.values[0], _APP)]
ROLES = ["reviewer", "lead", "admin"]


def test_the_url_map_has_protected_routes():
    assert len(PROTECTED) >= 10


@pytest.mark.parametrize(("endpoint", "method", "url"), PROTECTED)
def test_anonymous_is_sent_to_login(client, endpoint, method, url):
    response = client.open(url, method=method)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "method", "url"), PROTECTED)
def test_role_matrix(client, login_as, role, endpoint, method, url):
    login_as(role)
    needed = required_role(endpoint, _APP)
    response = client.open(url, method=method)
    if Role(role).allows(needed):
        assert response.status_code not in (401, 403), f"{role} refused"
        assert response.status_code < 500
        if response.status_code == 302:
            assert not response.headers["Location"].startswith("/login?next")
    else:
        assert response.status_code == 403
        assert b"permission" in response.data


def test_admin_area_needs_admin():
    for rule in _APP.url_map.iter_rules():
        if rule.rule.startswith("/admin"):
            assert required_role(rule.endpoint, _APP) is Role.ADMIN


def test_nav_shows_only_what_the_role_may_open(client, login_as):
    login_as("reviewer")
    page = client.get("/").get_data(as_text=True)
    assert "Accounts" not in page
    assert "Log out" in page


def test_nav_for_admin_shows_accounts(client, login_as):
    login_as("admin")
    assert "Accounts" in client.get("/").get_data(as_text=True)


@pytest.fixture
def csrf_on():
    return {"WTF_CSRF_ENABLED": True}


@pytest.mark.parametrize(
    ("endpoint", "method", "url"), [p for p in PROTECTED if p.values[1] == "POST"]
)
def test_every_post_needs_csrf(app, client, login_as, endpoint, method, url):
    login_as("admin")
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post(url, data={})
    assert response.status_code == 400
    assert b"security token" in response.data


def test_nav_marks_only_the_current_section(client, login_as):
    login_as("lead")

    def main_nav(url: str) -> str:
        page = client.get(url).get_data(as_text=True)
        return page.split('<nav class="nav"', 1)[1].split("</nav>", 1)[0]

    nav = main_nav("/audit/metrics")
    assert nav.count('aria-current="page"') == 1 and 'aria-current="page">Metrics<' in nav
    assert 'aria-current="page">History<' in main_nav("/audit/events")


def test_lead_sees_deliveries_reviewer_does_not(client, login_as, app):
    login_as("lead")
    assert ">Deliveries<" in client.get("/").get_data(as_text=True)
    other = app.test_client()
    other.post("/login", data={"username": login_as("reviewer").username, "password": "correct horse battery"})
    assert ">Deliveries<" not in other.get("/").get_data(as_text=True)
