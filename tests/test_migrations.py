"""`flask db upgrade` on an empty database yields exactly the models' schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, insert, inspect, text
from sqlalchemy.engine import make_url

from reviewapp import create_app
from reviewapp.extensions import db
from reviewapp.models import QUEUE_CARD_COLUMNS, ROUNDS_FILLFACTOR, autogenerate_filter
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


def downgrade_and_upgrade(runner, revision: str) -> None:
    """Back to ``revision`` and up to the head again: what a database at ``revision``
    meets when it is migrated."""
    assert runner.invoke(args=["db", "downgrade", revision]).exit_code == 0
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output


def test_upgrade_on_empty_database_matches_models(empty_db_url):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        with db.engine.connect() as conn:
            # as migrations/env.py does: indexes made on one dialect only are compared there only
            include_object = autogenerate_filter(conn.dialect.name)
            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
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


def test_upgrade_gives_every_stored_round_its_snippet(empty_db_url):
    """Rounds stored before the snippet column get the start of their output (characters,
    not bytes), and the queue's card index exists."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "c41d7e9a2b60"]).exit_code == 0
    output = "é" * 100 + "x" * 300
    now = datetime.now(UTC)
    with app.app_context():
        with db.engine.begin() as conn:
            old = MetaData()
            old.reflect(conn, only=["crews", "executions", "review_rounds"])
            conn.execute(insert(old.tables["crews"]), {
                "id": 1, "name": "research", "base_url": "http://127.0.0.1:9", "token_encrypted": "x",
                "token_hint": "x", "inbound_secret_encrypted": "x", "token_broken": False, "created_at": now})
            conn.execute(insert(old.tables["executions"]), {
                "id": 1, "crew_id": 1, "kickoff_id": "k-1", "status": "pending_review", "created_at": now,
                "updated_at": now, "status_check_failures": 0})
            conn.execute(insert(old.tables["review_rounds"]), {
                "id": 1, "execution_id": 1, "crew_id": 1, "task_id": "t", "round_number": 1, "output": output,
                "output_sha256": "0" * 64, "received_at": now, "state": "pending"})
        db.engine.dispose()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        with db.engine.connect() as conn:
            snippet = conn.execute(text("SELECT snippet FROM review_rounds")).scalar()
            card = search_index_definition(conn, "ix_review_rounds_pending_card")
        db.engine.dispose()
    assert snippet == output[:160]
    if empty_db_url.startswith("postgresql"):
        assert card is None  # a3f7c2e91d54 drops it there (HOT claims)
    else:
        assert card is not None and "snippet" in card


def test_upgrade_drops_the_card_index_on_postgres_only(empty_db_url):
    """A claim is a HOT update on PostgreSQL only if no index holds the claim (and the
    row's page has room: fillfactor); SQLite keeps the card index (it stores the claim
    after a long output in the row). Downgrading puts PostgreSQL's back as it was."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    runner = app.test_cli_runner()

    postgres = empty_db_url.startswith("postgresql")

    def layout() -> tuple[dict[str, list[str]], list[str] | None]:
        """The card index's columns, and (PostgreSQL) the table's storage parameters."""
        with app.app_context():
            with db.engine.connect() as conn:
                card = {ix["name"]: list(ix["column_names"]) for ix in inspect(conn).get_indexes("review_rounds")
                        if ix["name"].startswith("ix_review_rounds_pending_card")}
                options = conn.execute(text(
                    "SELECT reloptions FROM pg_class WHERE relname = 'review_rounds'")).scalar() if postgres else None
            db.engine.dispose()
        return card, options

    assert runner.invoke(args=["db", "upgrade", "e2a9c7d41b38"]).exit_code == 0
    before = layout()
    assert before == ({"ix_review_rounds_pending_card": list(QUEUE_CARD_COLUMNS)}, None)
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    if postgres:
        assert layout() == ({}, [f"fillfactor={ROUNDS_FILLFACTOR}"])
    else:
        assert layout() == before
    assert runner.invoke(args=["db", "downgrade", "e2a9c7d41b38"]).exit_code == 0
    assert layout() == before
