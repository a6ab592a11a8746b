"""CSRF refusal page that keeps feedback, long-lived form tokens, size limits,
trusted hosts and proxy handling."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from reviewapp.config import from_environment
from reviewapp.extensions import db
from reviewapp.models import AuditEvent
from tests.conftest import PASSWORD


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


class TestCsrf:
    @pytest.fixture
    def app_config(self):
        return {"WTF_CSRF_ENABLED": True}

    def login(self, client):
        token = csrf_token(client.get("/login").get_data(as_text=True))
        return client.post("/login", data={"username": "ann", "password": PASSWORD, "csrf_token": token})

    def test_a_post_without_token_is_refused(self, client, make_user):
        make_user("ann")
        response = client.post("/login", data={"username": "ann", "password": PASSWORD})
        assert response.status_code == 400
        assert "security token" in response.get_data(as_text=True)

    def test_logout_needs_the_token(self, client, make_user):
        make_user("ann")
        assert self.login(client).status_code == 302
        assert client.post("/logout").status_code == 400
        assert client.get("/").status_code == 200  # still logged in

    def test_refused_feedback_is_shown_back_read_only_and_escaped(self, client, make_user, feedback_route):
        make_user("ann")
        self.login(client)
        text = 'Please add sources.\n"><img src=x onerror=alert(1)>'
        response = client.post(
            feedback_route,
            data={"feedback": text, "csrf_token": "stale"},
            headers={"Referer": "http://localhost/_test/feedback"},
        )
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        area = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S)
        assert "readonly" in area.group(0)
        assert area.group(1) == 'Please add sources.\n&#34;&gt;&lt;img src=x onerror=alert(1)&gt;'
        assert 'href="/_test/feedback"' in page  # back to the form

    def test_a_foreign_referrer_is_not_offered_as_a_link(self, client, make_user, feedback_route):
        make_user("ann")
        self.login(client)
        response = client.post(
            feedback_route,
            data={"feedback": "kept", "csrf_token": "stale"},
            headers={"Referer": "https://evil.example/phish"},
        )
        assert "evil.example" not in response.get_data(as_text=True)

    def test_without_feedback_the_usual_page(self, client, make_user, feedback_route):
        make_user("ann")
        self.login(client)
        response = client.post(feedback_route, data={"csrf_token": "stale"})
        assert response.status_code == 400 and "<textarea" not in response.get_data(as_text=True)

    def test_a_feedback_form_outlives_a_long_read(self, app, client, make_user, feedback_route, clock):
        """WTF_CSRF_TIME_LIMIT is None: the token is as good as the session. Reading for
        55 minutes (under the idle timeout) and then submitting works."""
        assert app.config["WTF_CSRF_TIME_LIMIT"] is None
        make_user("ann")
        self.login(client)
        token = csrf_token(client.get(feedback_route).get_data(as_text=True))
        clock.advance(minutes=55)
        response = client.post(feedback_route, data={"feedback": "fine", "csrf_token": token})
        assert response.status_code == 200 and response.get_data(as_text=True) == "saved: fine"


class TestSizeLimit:
    @pytest.fixture
    def app_config(self):
        return {"MAX_CONTENT_LENGTH": 2048, "MAX_FORM_MEMORY_SIZE": 2048}

    def test_a_large_form_gets_the_413_page(self, client, make_user, feedback_route):
        make_user("ann")
        client.post("/login", data={"username": "ann", "password": PASSWORD})
        response = client.post(feedback_route, data={"feedback": "x" * 5000})
        assert response.status_code == 413
        assert "too large" in response.get_data(as_text=True)

    def test_a_json_client_gets_json(self, client, make_user, feedback_route):
        make_user("ann")
        client.post("/login", data={"username": "ann", "password": PASSWORD})
        response = client.post(
            feedback_route, data={"feedback": "x" * 5000}, headers={"Accept": "application/json"}
        )
        assert response.status_code == 413
        assert response.is_json and response.json["error"]

    def test_default_limit_is_set(self):
        from reviewapp.config import DEFAULTS

        assert DEFAULTS["MAX_CONTENT_LENGTH"] == 4 * 1024 * 1024


class TestTrustedHosts:
    @pytest.fixture
    def app_config(self):
        return {"TRUSTED_HOSTS": ["review.example.com", ".internal.example"]}

    @pytest.mark.parametrize("host", ["review.example.com", "app.internal.example"])
    def test_listed_hosts_are_served(self, client, host):
        assert client.get("/login", headers={"Host": host}).status_code == 200

    @pytest.mark.parametrize("method", ["get", "post"])
    def test_other_hosts_get_a_plain_400(self, client, method):
        response = getattr(client, method)("/login", headers={"Host": "evil.example"})
        assert response.status_code == 400
        assert "not served here" in response.get_data(as_text=True)

    def test_environment_variable_is_a_comma_separated_list(self):
        parsed = from_environment({"REVIEWAPP_TRUSTED_HOSTS": " review.example.com, localhost ,"})
        assert parsed["TRUSTED_HOSTS"] == ["review.example.com", "localhost"]


def last_failure_ip(app):
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login_failed"))
        return [r.source_ip for r in rows][-1]


def forwarded_attempt(client):
    return client.post(
        "/login",
        data={"username": "ann", "password": "wrong password"},
        headers={"X-Forwarded-For": "203.0.113.50", "X-Forwarded-Proto": "https"},
    )


def test_forwarded_headers_are_ignored_without_proxy_fix(app, client, make_user):
    make_user("ann")
    response = forwarded_attempt(client)
    assert last_failure_ip(app) == "127.0.0.1"
    assert "Strict-Transport-Security" not in response.headers


class TestProxyFix:
    @pytest.fixture
    def app_config(self):
        return {"PROXY_FIX": 1}

    def test_one_trusted_hop_gives_the_client_address_and_scheme(self, app, client, make_user):
        make_user("ann")
        response = forwarded_attempt(client)
        assert last_failure_ip(app) == "203.0.113.50"
        assert "Strict-Transport-Security" in response.headers

    def test_a_spoofed_extra_hop_is_not_trusted(self, app, client, make_user):
        make_user("ann")
        client.post(
            "/login",
            data={"username": "ann", "password": "wrong password"},
            headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.50"},
        )
        assert last_failure_ip(app) == "203.0.113.50"

    def test_environment_variable_is_validated(self):
        from reviewapp.config import ConfigError

        assert from_environment({"REVIEWAPP_PROXY_FIX": "2"})["PROXY_FIX"] == 2
        with pytest.raises(ConfigError, match="REVIEWAPP_PROXY_FIX"):
            from_environment({"REVIEWAPP_PROXY_FIX": "many"})
