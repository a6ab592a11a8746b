"""Shared fixtures (flaskr style): app, client, runner, auth, and account factories.

The suite runs on SQLite by default; with REVIEWAPP_TEST_DATABASE_URL set it runs on
that database (PostgreSQL in CI). Every test gets a clean database.
With REVIEWAPP_STRICT_SKIPS=1 (CI), any skipped test fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from reviewapp import create_app
from reviewapp.extensions import db

pytest_plugins = ["tests.servers"]



def _per_worker_database(url: str) -> str:
    """Under pytest-xdist each worker gets its own PostgreSQL database (``<name>_gw0``, ...),
    created on first use, so workers never wipe each other's rows."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or not url.startswith("postgresql"):
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if found.scalar() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


TEST_DATABASE_URL = _per_worker_database(os.environ.get("REVIEWAPP_TEST_DATABASE_URL", "").strip())
PASSWORD = "correct horse battery"


def is_postgres() -> bool:
    return TEST_DATABASE_URL.startswith("postgresql")


@pytest.fixture(scope="session")
def _schema_ready() -> Iterator[None]:
    """On a server database, create the schema once per run (dropping leftovers)."""
    if TEST_DATABASE_URL:
        app = create_app(_base_config(TEST_DATABASE_URL))
        with app.app_context():
            _drop_everything()
            db.create_all()
            db.engine.dispose()
    yield


def _drop_everything() -> None:
    db.drop_all()
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def _base_config(url: str, **overrides: Any) -> dict[str, Any]:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-that-is-long-enough",
        "SQLALCHEMY_DATABASE_URI": url,
        "WTF_CSRF_ENABLED": False,
        "ARGON2_FAST": True,
        "PUBLIC_URL": "http://127.0.0.1:5000",
        "SERVER_NAME": None,
    }
    config.update(overrides)
    return config


def truncate_all(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def db_url(tmp_path) -> str:
    return TEST_DATABASE_URL or f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override in a module to change the app's configuration."""
    return {}


@pytest.fixture
def app(_schema_ready, db_url, app_config, tmp_path) -> Iterator[Flask]:
    app = create_app(_base_config(db_url, **app_config))
    app.instance_path = str(tmp_path / "instance")
    with app.app_context():
        if not TEST_DATABASE_URL:
            db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if TEST_DATABASE_URL:
        truncate_all(TEST_DATABASE_URL)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app: Flask):
    """Factory: make_user("ann", "lead") -> User (through the account service)."""
    from reviewapp.admin.services import create_user
    from reviewapp.models import Role

    def make(username: str = "reviewer1", role: str = "reviewer", password: str = PASSWORD):
        with app.app_context():
            user, _ = create_user(username, Role(role), password)
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


class AuthActions:
    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, username: str = "reviewer1", password: str = PASSWORD, **kw: Any):
        return self._client.post(
            "/login", data={"username": username, "password": password}, **kw
        )

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def login_as(make_user, auth):
    """login_as("admin") creates a user with that role and logs the client in."""

    def do(role: str = "reviewer", username: str | None = None):
        user = make_user(username or f"{role}1", role)
        response = auth.login(user.username)
        assert response.status_code == 302, response.data
        return user

    return do


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("REVIEWAPP_STRICT_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"REVIEWAPP_STRICT_SKIPS: {len(skipped)} test(s) skipped; skips are failures here.",
            red=True,
        )
        session.exitstatus = 1
