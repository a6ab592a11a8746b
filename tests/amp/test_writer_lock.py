"""The receivers' writers take turns across processes on SQLite (reviewapp/amp/writer_lock.py):
while one holds the turn, another process cannot take it; nothing is taken on PostgreSQL."""

from __future__ import annotations

import fcntl
import multiprocessing
import os

from reviewapp.amp import writer_lock
from reviewapp.extensions import db
from tests.conftest import is_postgres


def _try_lock(path: str, answer) -> None:
    """In another process: can the lock file be taken right now?"""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        answer.put("held")
    else:
        answer.put("free")
    finally:
        os.close(fd)


def other_process_finds(path: str) -> str:
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    child = context.Process(target=_try_lock, args=(path, answer))
    child.start()
    child.join(30)
    return answer.get(timeout=5)


def test_lock_file_lies_beside_a_database_file(tmp_path):
    database = str(tmp_path / "app.sqlite3")
    assert writer_lock.lock_path(database) == database + "-writers.lock"
    for no_file in (None, "", ":memory:", "file:shared?mode=memory"):
        assert writer_lock.lock_path(no_file) is None


def test_a_writer_holds_its_turn_against_other_processes(app, monkeypatch):
    with app.app_context():
        if is_postgres():  # row locks do it there: nothing is taken
            monkeypatch.setattr(writer_lock, "_across_processes", None)  # would fail if called
            with writer_lock.one_writer_at_a_time():
                return
        path = writer_lock.lock_path(db.engine.url.database)
        with writer_lock.one_writer_at_a_time():
            assert os.path.exists(path)
            assert other_process_finds(path) == "held"
        assert other_process_finds(path) == "free"
