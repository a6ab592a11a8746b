"""The startup self-check: production mode refuses unsafe settings with a clear message."""

from __future__ import annotations

import pytest

from reviewapp import create_app
from reviewapp.config import ConfigError, from_environment

GOOD = {
    "REVIEWAPP_SECRET_KEY": "k" * 64,
    "REVIEWAPP_PUBLIC_URL": "https://review.example.com",
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean production environment; tests add or override variables."""
    import os

    for name in list(os.environ):
        if name.startswith("REVIEWAPP_") and name != "REVIEWAPP_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("REVIEWAPP_DATABASE_URL", f"sqlite:///{tmp_path}/prod.db")
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)

    def set_(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"REVIEWAPP_{name}", value)

    return set_


def test_a_sound_configuration_starts_with_secure_cookies(env):
    app = create_app()
    assert not app.debug and not app.testing
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-session"


def test_insecure_cookies_on_https_are_refused(env):
    env(SESSION_COOKIE_SECURE="0")
    with pytest.raises(ConfigError, match="cookies are not Secure"):
        create_app()


def test_the_default_secret_is_refused(env, monkeypatch):
    monkeypatch.delenv("REVIEWAPP_SECRET_KEY")
    with pytest.raises(ConfigError, match="REVIEWAPP_SECRET_KEY"):
        create_app()


def test_a_missing_body_limit_is_refused(env):
    env(MAX_CONTENT_LENGTH="0")
    with pytest.raises(ConfigError, match="MAX_CONTENT_LENGTH"):
        create_app()


def test_plain_http_on_a_real_host_needs_an_explicit_opt_in(env):
    env(PUBLIC_URL="http://review.example.com")
    with pytest.raises(ConfigError, match="not https"):
        create_app()
    env(ALLOW_INSECURE_HTTP="1")
    assert create_app().config["SESSION_COOKIE_SECURE"] is False


def test_plain_http_on_loopback_is_fine(env):
    env(PUBLIC_URL="http://127.0.0.1:5000")
    create_app()


def test_switching_throttling_off_is_refused(env):
    env(LOGIN_THROTTLE="0")
    with pytest.raises(ConfigError, match="throttling is off"):
        create_app()


def test_idle_timeout_longer_than_the_session_is_refused(env):
    env(SESSION_IDLE_MINUTES="900", SESSION_MAX_HOURS="12")
    with pytest.raises(ConfigError, match="SESSION_IDLE_TIMEOUT"):
        create_app()


def test_every_problem_is_listed_at_once(env, monkeypatch):
    monkeypatch.delenv("REVIEWAPP_SECRET_KEY")
    env(SESSION_COOKIE_SECURE="0", MAX_CONTENT_LENGTH="0")
    with pytest.raises(ConfigError) as info:
        create_app()
    message = str(info.value)
    assert message.startswith("reviewapp refuses to start in production mode")
    assert message.count("\n  - ") == 3 and "--debug" in message


def test_debug_mode_is_not_checked(env, monkeypatch):
    monkeypatch.delenv("REVIEWAPP_SECRET_KEY")
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert create_app().debug


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REVIEWAPP_SESSION_COOKIE_SECURE", "perhaps"),
        ("REVIEWAPP_SESSION_IDLE_MINUTES", "0"),
        ("REVIEWAPP_REQUIRE_TOTP", "sometimes"),
        ("REVIEWAPP_TRUSTED_HOSTS", " , "),
    ],
)
def test_bad_values_are_named(variable, value):
    with pytest.raises(ConfigError, match=variable):
        from_environment({variable: value})


def test_timeouts_and_totp_from_the_environment():
    parsed = from_environment(
        {"REVIEWAPP_SESSION_IDLE_MINUTES": "20", "REVIEWAPP_SESSION_MAX_HOURS": "8", "REVIEWAPP_REQUIRE_TOTP": "1"}
    )
    assert parsed["SESSION_IDLE_TIMEOUT"].total_seconds() == 1200
    assert parsed["SESSION_ABSOLUTE_TIMEOUT"].total_seconds() == 8 * 3600
    assert parsed["REQUIRE_TOTP"] is True
