"""Times come back timezone-aware in UTC on both databases (UtcDateTime), and the
PostgreSQL engine's settings that make that cheap (sessions in UTC, LIFO pool)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from reviewapp.config import engine_options
from reviewapp.extensions import db
from reviewapp.models import UtcDateTime, utcnow
from tests.conftest import is_postgres

BERLIN_WINTER = timezone(timedelta(hours=1))


def _times_table() -> Table:
    return Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))


def test_a_time_written_in_any_zone_reads_back_as_the_same_instant_in_utc(app):
    table = _times_table()
    written = datetime(2025, 1, 31, 10, 5, 0, 123456, tzinfo=BERLIN_WINTER)
    with app.app_context():
        table.create(db.engine)
        try:
            with db.engine.begin() as conn:
                conn.execute(insert(table), [{"id": 1, "at": written}, {"id": 2, "at": None}])
                rows = dict(conn.execute(select(table.c.id, table.c.at)).all())
                zone = conn.execute(text("SHOW TimeZone")).scalar() if is_postgres() else "UTC"
        finally:
            table.drop(db.engine)
    assert rows == {1: written, 2: None}
    assert rows[1].tzinfo is UTC and rows[1].hour == 9
    assert zone == "UTC"  # PostgreSQL: the session speaks UTC (engine_options)


def test_sqlite_text_in_every_layout_it_may_hold_reads_back_as_utc(tmp_path):
    """SQLite keeps text; UtcDateTime parses ours (``YYYY-MM-DD HH:MM:SS.ffffff``) in one
    call, and any other layout the standard way."""
    table = _times_table()
    engine = create_engine(f"sqlite:///{tmp_path / 'times.sqlite3'}")
    stored = {
        1: "2025-01-31 09:05:00.123456",
        2: "2025-01-31 09:05:00.000000",
        3: "2025-01-31 09:05:00",  # CURRENT_TIMESTAMP's layout
        4: "2025-01-31T09:05:00",
    }
    with engine.begin() as conn:
        table.create(conn)
        for row_id, value in stored.items():
            conn.execute(text("INSERT INTO times (id, at) VALUES (:id, :at)"), {"id": row_id, "at": value})
        conn.execute(insert(table), {"id": 5, "at": utcnow().replace(year=2030)})
        read = dict(conn.execute(select(table.c.id, table.c.at)).all())
    engine.dispose()
    assert read[1] == datetime(2025, 1, 31, 9, 5, 0, 123456, tzinfo=UTC)
    assert read[2] == read[3] == read[4] == datetime(2025, 1, 31, 9, 5, tzinfo=UTC)
    assert all(value.tzinfo is UTC for value in read.values())
    assert read[5].year == 2030


def test_postgresql_engines_get_utc_sessions_and_a_lifo_pool_unless_configured_otherwise():
    assert engine_options("sqlite:///x.sqlite3", {"pool_pre_ping": True}) == {"pool_pre_ping": True}
    options = engine_options("postgresql+psycopg://db/app", {"pool_pre_ping": True})
    assert options == {"pool_pre_ping": True, "pool_use_lifo": True, "connect_args": {"options": "-c TimeZone=UTC"}}
    mine = engine_options("postgresql://db/app", {"pool_use_lifo": False, "connect_args": {"options": "-c x=y"}})
    assert mine == {"pool_pre_ping": True, "pool_use_lifo": False, "connect_args": {"options": "-c x=y"}}


def test_connections_to_a_server_are_pinged_and_sqlite_files_are_not():
    assert engine_options("sqlite:///x.sqlite3", {}) == {}
    assert engine_options("postgresql+psycopg://db/app", {})["pool_pre_ping"] is True
    assert engine_options("postgresql+psycopg://db/app", {"pool_pre_ping": False})["pool_pre_ping"] is False
