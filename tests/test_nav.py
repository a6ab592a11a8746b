"""Main navigation built once per role, and URL prefixes for many-row pages."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape

from reviewapp.nav import url_prefix
from tests.conftest import AuthActions


def nav_labels(page: str) -> list[str]:
    nav = re.search(r'<nav class="nav" aria-label="Main">(.*?)</nav>', page, re.S)
    assert nav is not None
    return re.findall(r">([^<]+)</a>", nav.group(1))


def test_each_role_sees_its_own_links_from_one_app(app, make_user):
    """The links are built once per role: a lead's visit must not leak links to a
    reviewer's page, nor a reviewer's visit hide them from an admin."""
    for role in ("reviewer", "lead", "admin"):
        make_user(f"{role}-nav", role)
    pages = {}
    for role in ("reviewer", "admin", "lead", "reviewer"):
        client = app.test_client()
        assert AuthActions(client).login(f"{role}-nav").status_code == 302
        pages[role] = nav_labels(client.get("/").get_data(as_text=True))
    assert pages["reviewer"] == ["Queue", "History"]
    assert pages["lead"] == ["Queue", "Deliveries", "History", "Metrics", "Crews"]
    assert pages["admin"] == ["Queue", "Deliveries", "History", "Metrics", "Crews", "Accounts"]


def test_the_current_page_is_marked(client, login_as):
    login_as("lead")
    page = client.get("/audit/history").get_data(as_text=True)
    assert re.search(r'<a href="/audit/history" aria-current="page">History</a>', page)
    assert not re.search(r'href="/" aria-current', page)


def test_url_prefix_is_the_url_without_its_last_integer(app):
    with app.test_request_context("/"):
        assert url_prefix("reviews.review", "round_id") == "/rounds/"
        assert url_prefix("audit.execution_timeline", "execution_id") == "/audit/executions/"


def test_url_prefix_refuses_an_argument_inside_the_path(app):
    with app.test_request_context("/"), pytest.raises(ValueError, match="last part"):
        url_prefix("reviews.heartbeat", "round_id")


def test_url_prefix_keeps_the_mount_point(app):
    with app.test_request_context("/", base_url="http://localhost/sub"):
        assert url_prefix("reviews.review", "round_id") == "/sub/rounds/"


def test_fixed_urls_are_built_once_per_mount_point(app):
    from reviewapp.nav import fixed_url

    with app.test_request_context("/"):
        assert fixed_url("static", filename="css/app.css") == "/static/css/app.css"
        assert fixed_url("audit.history") == "/audit/history"
    with app.test_request_context("/", base_url="http://localhost/sub"):
        assert fixed_url("audit.history") == "/sub/audit/history"
        page = app.jinja_env.from_string("{{ fixed_url('reviews.queue') }}|{{ url_prefix('reviews.review', 'round_id') }}")
        assert page.render() == "/sub/|/sub/rounds/"


@pytest.mark.parametrize("args, more", [
    ({}, {}),
    ({"decision": "approve", "q": "two words & <more>", "crew": "3"}, {}),
    ({"q": "ünïcode/slash?:@!$'()*,;", "reviewer": None}, {"after": "1740992820000000.3"}),
    ({"from": "2025-01-01"}, {"before": "17.2"}),
])
def test_links_with_arguments_are_what_url_for_builds(app, args, more):
    """``url_with_args`` (fixed URL + query string) must write what ``url_for`` writes:
    same order, same escaping, None left out, the mount point kept."""
    from flask import url_for

    template = app.jinja_env.from_string("{{ url_with_args(endpoint, args, **more) }}")
    for base_url in ("http://localhost/", "http://localhost/sub"):
        with app.test_request_context("/", base_url=base_url):
            for endpoint in ("audit.history", "audit.export_csv"):
                expected = url_for(endpoint, **more, **{k: v for k, v in args.items() if v is not None})
                assert template.render(endpoint=endpoint, args=args, more=more) == str(escape(expected))


def audit_tabs(page: str) -> list[str]:
    tabs = re.search(r'<nav class="audit-tabs" aria-label="Audit">(.*?)</nav>', page, re.S)
    assert tabs is not None
    return re.findall(r"<a [^>]*>([^<]+)</a>", tabs.group(1))


def test_audit_tabs_follow_the_role_and_mark_the_current_page(app, make_user):
    make_user("rita-tabs", "reviewer")
    make_user("lena-tabs", "lead")
    reviewer, lead = app.test_client(), app.test_client()
    assert AuthActions(reviewer).login("rita-tabs").status_code == 302
    assert AuthActions(lead).login("lena-tabs").status_code == 302
    assert audit_tabs(reviewer.get("/audit/history").get_data(as_text=True)) == ["Decisions"]
    for path, current in (("/audit/history", "Decisions"), ("/audit/events", "Account events"),
                          ("/audit/metrics", "Metrics")):
        page = lead.get(path).get_data(as_text=True)
        assert audit_tabs(page) == ["Decisions", "Account events", "Metrics"]
        assert re.findall(r'aria-current="page">([^<]+)</a>', page.split('class="audit-tabs"')[1].split("</nav>")[0]) == [current]
