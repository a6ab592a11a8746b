"""Read-only transactions end with COMMIT on PostgreSQL, so psycopg keeps its prepared
statements across requests (reviewapp/statements.py); anything that wrote, or failed,
still rolls back."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import DBAPIError

from reviewapp import statements
from reviewapp.extensions import db
from reviewapp.models import User


def _on_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def test_pages_keep_their_statements_prepared(app, client, login_as):
    login_as("reviewer")
    for _ in range(8):  # psycopg prepares a statement from its sixth run on a connection
        assert client.get("/").status_code == 200
    with app.app_context():
        if not _on_postgres():
            assert not event.contains(db.engine, "rollback", statements._rolling_back)
            return
        prepared = db.session.scalars(text("SELECT statement FROM pg_prepared_statements")).all()
    assert any("FROM users" in s and "revoked_sessions" in s for s in prepared), prepared


def test_a_transaction_that_wrote_still_rolls_back(app, make_user):
    user = make_user("ann")
    with app.app_context():
        db.session.execute(select(User.id))  # reads first, then writes
        db.session.execute(update(User).where(User.id == user.id).values(username="changed"))
        db.session.rollback()
        assert db.session.scalar(select(User.username).where(User.id == user.id)) == "ann"


def test_a_failed_transaction_rolls_back(app):
    with app.app_context():
        with pytest.raises(DBAPIError):
            db.session.execute(text("SELECT CAST('not a number' AS INTEGER) + 1 FROM nonexistent_table"))
        db.session.rollback()
        assert db.session.scalar(text("SELECT 1")) == 1


def test_inline_constants_are_written_into_the_statement(app):
    with app.app_context():
        compiled = select(statements.inline(7)).compile(db.engine, compile_kwargs={"render_postcompile": True})
    assert "7" in str(compiled) and not compiled.params
