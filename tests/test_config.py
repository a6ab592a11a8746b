from __future__ import annotations

import pytest

from reviewapp import create_app
from reviewapp.config import ConfigError, from_environment


def test_refuses_to_start_without_secret_outside_debug(monkeypatch, tmp_path):
    monkeypatch.delenv("REVIEWAPP_SECRET_KEY", raising=False)
    monkeypatch.setenv("REVIEWAPP_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(ConfigError, match="REVIEWAPP_SECRET_KEY"):
        create_app()


def test_environment_configures_the_app(monkeypatch, tmp_path):
    monkeypatch.setenv("REVIEWAPP_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("REVIEWAPP_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("REVIEWAPP_PUBLIC_URL", "https://review.example.com/")
    app = create_app()
    assert app.config["PUBLIC_URL"] == "https://review.example.com"
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("x.db")


def test_default_database_is_sqlite_in_instance_folder(monkeypatch):
    monkeypatch.setenv("REVIEWAPP_SECRET_KEY", "s" * 40)
    monkeypatch.delenv("REVIEWAPP_DATABASE_URL", raising=False)
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert app.instance_path in app.config["SQLALCHEMY_DATABASE_URI"]


def test_bad_integer_env_is_a_clear_error():
    with pytest.raises(ConfigError, match="REVIEWAPP_CLAIM_MINUTES"):
        from_environment({"REVIEWAPP_CLAIM_MINUTES": "ten"})


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path):
    from sqlalchemy import text

    from reviewapp.extensions import db

    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/wal.db"}
    )
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
