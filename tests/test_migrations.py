"""`flask db upgrade` on an empty database yields exactly the models' schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from reviewapp import create_app
from reviewapp.extensions import db
from tests.conftest import TEST_DATABASE_URL


@pytest.fixture
def empty_db_url(tmp_path) -> Iterator[str]:
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
        return
    # A database of its own on the same server, dropped afterwards.
    server = make_url(TEST_DATABASE_URL)
    name = f"reviewapp_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrade_on_empty_database_matches_models(empty_db_url):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
            tables = set(inspect(conn).get_table_names())
        db.engine.dispose()
    assert diff == []
    assert {"users", "audit_events", "review_rounds", "resume_jobs"} <= tables
    check = runner.invoke(args=["db", "check"])
    assert check.exit_code == 0, check.output


def test_upgrade_is_idempotent(empty_db_url):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        db.engine.dispose()


def search_index_definition(conn, name: str) -> str | None:
    """The CREATE INDEX statement of an index, as the database reports it (None: absent)."""
    if conn.dialect.name == "postgresql":
        query = text("SELECT indexdef FROM pg_indexes WHERE indexname = :name")
    else:
        query = text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name")
    return conn.execute(query, {"name": name}).scalar()


def test_upgrade_splits_the_output_search_index_into_pending_rounds_and_the_others(empty_db_url):
    """The queue searches pending rounds only; on PostgreSQL a GIN over every round made a
    common word match all the decided rounds too. The two halves hold no row twice (an
    arriving output is parsed once). SQLite has no full-text index (LIKE)."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        with db.engine.connect() as conn:
            pending = search_index_definition(conn, "ix_review_rounds_pending_search")
            others = search_index_definition(conn, "ix_review_rounds_decided_search")
            every = search_index_definition(conn, "ix_review_rounds_output_search")
            postgres = conn.dialect.name == "postgresql"
        db.engine.dispose()
    if not postgres:
        assert (pending, others, every) == (None, None, None)
        return
    assert pending is not None and others is not None and every is None
    for index in (pending, others):
        assert "USING gin (to_tsvector('simple'::regconfig, \"left\"(output, 100000)))" in index
    assert pending.endswith("WHERE ((state)::text = 'pending'::text)")
    assert others.endswith("WHERE ((state)::text <> 'pending'::text)")
