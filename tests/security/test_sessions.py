"""Session cookies and lifetimes: flags, renewal on login, idle and absolute timeouts."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reviewapp.extensions import db
from reviewapp.models import AuditEvent
from tests.conftest import PASSWORD


def set_cookie(response, name: str) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.getlist('Set-Cookie')}")


def flags(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def login(client, username="ann", **extra):
    return client.post("/login", data={"username": username, "password": PASSWORD, **extra})


class TestCookieFlags:
    def test_session_cookie_is_httponly_lax_and_not_secure_over_http(self, client, make_user):
        make_user("ann")
        header = set_cookie(login(client), "session")
        assert {"httponly", "path"} <= flags(header) and "secure" not in flags(header)
        assert "SameSite=Lax" in header

    def test_plain_login_cookie_ends_with_the_browser(self, client, make_user):
        make_user("ann")
        header = set_cookie(login(client), "session")
        assert "expires" not in flags(header) and "max-age" not in flags(header)

    def test_keep_me_logged_in_is_bounded_by_the_absolute_timeout(self, client, make_user):
        make_user("ann")
        header = set_cookie(login(client, remember="y"), "session")
        assert "expires" in flags(header)
        assert client.application.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 12 * 3600
        # No separate remember cookie that could bring a login back past the timeouts.
        assert not any(h.startswith("remember_token=") for h in login(client).headers.getlist("Set-Cookie"))

    def test_known_device_cookie_is_httponly_and_strict(self, client, make_user):
        make_user("ann")
        header = set_cookie(login(client), "reviewapp_device")
        assert "httponly" in flags(header) and "SameSite=Strict" in header


class TestSecureCookies:
    @pytest.fixture
    def app_config(self):
        return {"PUBLIC_URL": "https://review.example.com"}

    def test_https_public_url_makes_cookies_secure_and_host_prefixed(self, app, make_user):
        assert app.config["SESSION_COOKIE_SECURE"] is True
        assert app.config["REMEMBER_COOKIE_SECURE"] is True
        make_user("ann")
        client = app.test_client()
        response = client.post(
            "/login", data={"username": "ann", "password": PASSWORD}, base_url="https://localhost"
        )
        session_header = set_cookie(response, "__Host-session")
        device_header = set_cookie(response, "__Host-device")
        for header in (session_header, device_header):
            assert {"secure", "httponly"} <= flags(header) and "domain" not in flags(header)
            assert "Path=/" in header


def test_login_starts_a_fresh_session(client, make_user):
    make_user("ann")
    client.get("/login")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
        sess["csrf_token"] = "known-to-the-attacker"
    login(client)
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess.get("csrf_token") != "known-to-the-attacker"
        assert sess["_login_at"] == sess["_seen_at"]


def expired_events(app):
    with app.app_context():
        return [e.details["reason"] for e in db.session.scalars(select(AuditEvent).where(AuditEvent.event == "session_expired"))]


class TestTimeouts:
    def test_activity_keeps_the_session_alive_until_the_idle_timeout(self, app, client, make_user, clock):
        make_user("ann")
        login(client)
        for _ in range(3):
            clock.advance(minutes=59)
            assert client.get("/").status_code == 200
        clock.advance(minutes=61)
        response = client.get("/?state=pending")
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/login?next=")
        assert "state%3Dpending" in response.headers["Location"] or "state=pending" in response.headers["Location"]
        assert client.get("/").status_code == 302  # logged out for good
        assert expired_events(app) == ["idle"]

    def test_the_expiry_is_explained_on_the_login_page(self, client, make_user, clock):
        make_user("ann")
        login(client)
        clock.advance(minutes=90)
        page = client.get("/", follow_redirects=True).get_data(as_text=True)
        assert "without activity" in page and "log in again" in page.lower()

    def test_absolute_timeout_ends_even_an_active_session(self, app, client, make_user, clock):
        make_user("ann")
        login(client, remember="y")
        for _ in range(14):  # a request every 50 minutes: never idle
            clock.advance(minutes=50)
            if client.get("/").status_code != 200:
                break
        assert clock.current.hour == 20 and clock.current.minute == 40  # 11h40 after login
        clock.advance(minutes=30)  # 12h10
        assert client.get("/").status_code == 303
        assert expired_events(app) == ["absolute"]

    def test_timeouts_are_configurable(self, app, client, make_user, clock):
        app.config["SESSION_IDLE_TIMEOUT"] = app.config["SESSION_IDLE_TIMEOUT"] / 6  # 10 min
        make_user("ann")
        login(client)
        clock.advance(minutes=11)
        assert client.get("/").status_code == 303

    def test_an_expired_post_keeps_the_typed_feedback(self, app, client, make_user, clock, feedback_route):
        make_user("ann")
        login(client)
        clock.advance(hours=2)
        text = "Section 2 cites no sources.\n<script>alert(1)</script>"
        response = client.post(feedback_route, data={"feedback": text})
        assert response.status_code == 401
        page = response.get_data(as_text=True)
        assert "readonly" in page and "Section 2 cites no sources." in page
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert client.get("/").status_code == 302  # and the session is gone

    def test_an_expired_post_without_feedback_goes_to_login(self, client, make_user, clock, feedback_route):
        make_user("ann")
        login(client)
        clock.advance(hours=2)
        response = client.post(feedback_route, data={})
        assert response.status_code == 303 and response.headers["Location"] == "/login"

    def test_json_clients_get_a_401(self, client, make_user, clock):
        make_user("ann")
        login(client)
        clock.advance(hours=2)
        response = client.get("/", headers={"Accept": "application/json"})
        assert response.status_code == 401 and response.json["error"]

    def test_expiry_runs_before_the_access_check(self, app):
        hooks = app.before_request_funcs[None]
        names = [f.__name__ for f in hooks]
        assert names.index("enforce_lifetime") < names.index("_enforce")

    def test_public_pages_are_not_affected(self, client, clock):
        clock.advance(days=3)
        assert client.get("/login").status_code == 200


class TestLastSeen:
    """The last-seen time is renewed at most once per sixtieth of the idle timeout (a
    minute by default): between renewals the cookie is not signed or sent again."""

    def test_requests_within_the_interval_leave_the_cookie_alone(self, client, make_user, clock):
        make_user("ann")
        login(client)
        client.get("/")  # the first page also stores the session's CSRF token
        with client.session_transaction() as sess:
            seen = sess["_seen_at"]
        clock.advance(seconds=59)
        response = client.get("/")
        assert response.status_code == 200
        assert not [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]
        clock.advance(seconds=1)
        response = client.get("/")
        set_cookie(response, "session")
        with client.session_transaction() as sess:
            assert sess["_seen_at"] == seen + 60

    def test_the_interval_follows_the_idle_timeout(self, app, client, make_user, clock):
        app.config["SESSION_IDLE_TIMEOUT"] = app.config["SESSION_IDLE_TIMEOUT"] / 60  # 1 min
        make_user("ann")
        login(client)
        for _ in range(5):  # a request a second renews every time: never idle
            clock.advance(seconds=50)
            assert client.get("/").status_code == 200
        clock.advance(seconds=61)
        assert client.get("/").status_code == 303
