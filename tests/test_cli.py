from __future__ import annotations

from sqlalchemy import select

from reviewapp.extensions import db
from reviewapp.models import Role, User


def test_users_create_list_deactivate(app, runner):
    r = runner.invoke(args=["users", "create", "ann", "--role", "lead", "--password", "long password"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["users", "create", "bob"], input="pw for bob!\npw for bob!\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["users", "list"])
    assert "ann" in r.output and "lead" in r.output and "bob" in r.output
    r = runner.invoke(args=["users", "deactivate", "bob"])
    assert r.exit_code == 0
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        assert not bob.active and bob.role is Role.REVIEWER
        assert bob.password_hash.startswith("$argon2id$")


def test_users_cli_errors_are_clear(runner):
    runner.invoke(args=["users", "create", "ann", "--password", "long password"])
    r = runner.invoke(args=["users", "create", "ann", "--password", "long password"])
    assert r.exit_code != 0 and "already taken" in r.output
    r = runner.invoke(args=["users", "create", "zed", "--password", "short"])
    assert r.exit_code != 0 and "at least 8" in r.output
    r = runner.invoke(args=["users", "deactivate", "ghost"])
    assert r.exit_code != 0 and "No account" in r.output
    r = runner.invoke(args=["users", "create", "zed", "--role", "king", "--password", "long password"])
    assert r.exit_code != 0
