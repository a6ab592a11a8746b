"""Each resume job's ``/resume`` call count and latest HTTP status, kept on the job.

The history page and the exports show, for each decision, how many times it was sent to
AMP and the HTTP status of its latest call (a ``/resume`` or a ``/status`` check). Read
from ``resume_attempts``, that was two index probes per row of every page and export
(a seventh of the history statement; a quarter of the SQLite export's query at 1M rows).
An insert trigger on ``resume_attempts`` keeps both on the job instead
(``resume_jobs.resume_calls`` and ``last_http_status``), whatever writes the attempt:
the ORM, a plain INSERT, or PostgreSQL's one-statement delivery (an AFTER trigger runs
once the statement's job update is done, and sees it).

``ResumeJob.attempts`` is a different count: the failed tries, which drive the backoff.
"""

from __future__ import annotations

from typing import Any

WATCHED_TABLE = "resume_attempts"
TRIGGER = "resume_attempts_count"
_PG_FUNCTION = "resume_attempts_count"

# New values for the job of attempt NEW (the trigger's row).
_SET = "resume_calls = resume_calls + {is_resume}, last_http_status = NEW.http_status"


def _postgres_ddl() -> list[str]:
    set_clause = _SET.format(is_resume="CASE WHEN NEW.kind = 'resume' THEN 1 ELSE 0 END")
    return [
        f"""
CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE resume_jobs SET {set_clause} WHERE id = NEW.job_id;
    RETURN NULL;
END $$""",  # noqa: S608 - DDL from our own constants
        f"CREATE OR REPLACE TRIGGER {TRIGGER} AFTER INSERT ON resume_attempts "
        f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()",
    ]


def _sqlite_ddl() -> list[str]:
    set_clause = _SET.format(is_resume="(NEW.kind = 'resume')")
    return [
        f"""
CREATE TRIGGER IF NOT EXISTS {TRIGGER} AFTER INSERT ON resume_attempts BEGIN
    UPDATE resume_jobs SET {set_clause} WHERE id = NEW.job_id;
END"""  # noqa: S608 - DDL from our own constants
    ]


def create_trigger(connection: Any) -> None:
    """Create (or replace) the trigger; the tables must exist."""
    ddl = _postgres_ddl() if connection.dialect.name == "postgresql" else _sqlite_ddl()
    for statement in ddl:
        connection.exec_driver_sql(statement)


def drop_trigger(connection: Any) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {TRIGGER} ON resume_attempts")
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")
    else:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {TRIGGER}")


# Every job's counts from its attempts (the migration that added them; the bench's seeding).
BACKFILL = """
UPDATE resume_jobs
   SET resume_calls = (SELECT count(*) FROM resume_attempts AS a
                        WHERE a.job_id = resume_jobs.id AND a.kind = 'resume'),
       last_http_status = (SELECT a.http_status FROM resume_attempts AS a
                            WHERE a.job_id = resume_jobs.id ORDER BY a.id DESC LIMIT 1)"""


def backfill(connection: Any) -> None:
    connection.exec_driver_sql(BACKFILL)
