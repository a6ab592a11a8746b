"""Decision summaries for the metrics page, kept exact by database triggers.

Two tables (models ``DecisionDayCount`` and ``DecisionWaitCount``), on PostgreSQL and
SQLite alike:

* ``decision_day_counts``: decisions per UTC day, crew, task, reviewer, round number
  and verdict, and how many of them have a resume job (per-day counts, revise rates,
  rounds until approval, job totals);
* ``decision_wait_counts``: decisions per crew, reviewer and wait bucket, per UTC day
  and per block of ``BLOCK_DAYS`` days (the latency percentiles, see
  ``audit/metrics.py``; a 30-day range reads its whole blocks and the days around them,
  a third of the rows its days alone would be).

When a decision is inserted, a trigger copies onto it what those keys need from its
round (crew, task, round number) and its wait in microseconds (decision time minus
round received time) with the wait's bucket. Every summary row is then a function of
decision rows alone, so a delete can be taken out again even when the round is already
gone (deletes only happen by cascade, when a crew, execution or round is deleted).
A resume job comes after its decision: its insert and delete adjust ``jobs``.
Deletes are counted by BEFORE DELETE triggers, which see the rows they need: a decision
counts its job out itself, a job deleted on its own (its decision still there) counts
itself out. (PostgreSQL fires the AFTER triggers of cascaded rows at the end of the
statement, when the decision a job belonged to may already be gone.)
Decisions are never updated (models.py), so the triggers do not follow updates.

Wait buckets are log-linear and computed with integers only, identically in Python and
SQL: waits under ``2 * SUB_BUCKETS`` microseconds have a bucket each, above that every
doubling is cut into ``SUB_BUCKETS`` equal buckets, negative waits (clock skew) share
bucket -1. Buckets only need to be monotone in the wait: bucket order is wait order.

The same DDL serves ``db.create_all()`` (a listener in models.py) and the migration that
introduced the tables; :func:`rebuild` recomputes both tables in one pass (migration
backfill, bulk loads that drop the triggers while they load).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

SUB_BUCKET_BITS = 4
SUB_BUCKETS = 1 << SUB_BUCKET_BITS  # buckets per doubling of the wait
BLOCK_DAYS = 8  # wait counts per day and per block of days (blocks from 1970-01-01)
_EPOCH = date(1970, 1, 1)
_EPOCH_JULIAN_DAY = 2440587  # SQLite's julianday('1970-01-01') is 2440587.5

# Tables whose rows the triggers watch (creating any of them creates the triggers).
WATCHED_TABLES = ("decisions", "resume_jobs")

_DAY_KEYS = ("crew_id", "task_id", "reviewer_id", "round_number", "is_approve")
_WAIT_KEYS = ("crew_id", "reviewer_id", "wait_bucket")
_PG_FUNCTIONS = ("decisions_derive", "decisions_count", "resume_jobs_count")
_TRIGGERS = {  # name -> table
    "postgresql": {"decisions_derive": "decisions", "decisions_count_insert": "decisions",
                   "decisions_count_delete": "decisions", "resume_jobs_count_insert": "resume_jobs",
                   "resume_jobs_count_delete": "resume_jobs"},
    "sqlite": {"decisions_derive_and_count": "decisions", "decisions_count_delete": "decisions",
               "resume_jobs_count_insert": "resume_jobs", "resume_jobs_count_delete": "resume_jobs"},
}


# --------------------------------------------------------------------------- waits


def wait_bucket(wait_us: int) -> int:
    """The bucket of a wait in microseconds (the SQL of :func:`wait_bucket_sql`)."""
    if wait_us < 0:
        return -1
    if wait_us < 2 * SUB_BUCKETS:
        return wait_us
    shift = wait_us.bit_length() - SUB_BUCKET_BITS - 1
    return shift * SUB_BUCKETS + (wait_us >> shift)


def wait_bucket_sql(wait: str, dialect: str) -> str:
    """:func:`wait_bucket` as SQL over the BIGINT expression ``wait``. The shift is a
    count of comparisons with powers of two: no floating point, no dialect function."""
    flag = "({})::int" if dialect == "postgresql" else "({})"
    shift = " + ".join(flag.format(f"{wait} >= {1 << bits}") for bits in range(SUB_BUCKET_BITS + 1, 63))
    return (
        f"CASE WHEN {wait} < 0 THEN -1 WHEN {wait} < {2 * SUB_BUCKETS} THEN {wait} "
        f"ELSE ({shift}) * {SUB_BUCKETS} + ({wait} >> ({shift})) END"
    )


def wait_us_sql(decided: str, received: str, dialect: str) -> str:
    """``decided - received`` in whole microseconds, exactly."""
    if dialect == "postgresql":
        return f"(EXTRACT(EPOCH FROM {decided} - {received}) * 1000000)::bigint"
    # SQLite keeps UTC times as 'YYYY-MM-DD HH:MM:SS.ffffff' text (models.UtcDateTime).
    return (
        f"((strftime('%s', {decided}) - strftime('%s', {received})) * 1000000"
        f" + CAST(substr({decided}, 21, 6) AS INTEGER) - CAST(substr({received}, 21, 6) AS INTEGER))"
    )


def _day_sql(timestamp: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"({timestamp} AT TIME ZONE 'UTC')::date"
    return f"date({timestamp})"


def block_start(day: date) -> date:
    """The first day of the block of ``BLOCK_DAYS`` days holding ``day``."""
    return day - timedelta(days=(day - _EPOCH).days % BLOCK_DAYS)


def _block_sql(day: str, dialect: str) -> str:
    """:func:`block_start` as SQL over a day expression."""
    if dialect == "postgresql":
        return f"({day} - mod({day} - DATE '1970-01-01', {BLOCK_DAYS}))"  # (a '%' would be a driver placeholder)
    return f"date({day}, '-' || ((CAST(julianday({day}) AS INTEGER) - {_EPOCH_JULIAN_DAY}) % {BLOCK_DAYS}) || ' days')"


def _periods(timestamp: str, dialect: str) -> list[tuple[int, str]]:
    """(days, first day) of the wait-count rows a decision made at ``timestamp`` counts in."""
    day = _day_sql(timestamp, dialect)
    return [(1, day), (BLOCK_DAYS, _block_sql(day, dialect))]


# --------------------------------------------------------------------------- DDL


def _columns(keys: tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{key}" for key in keys)


def _matches(keys: tuple[str, ...], row: str, table: str = "") -> str:
    """``table.key = row.key AND ...`` for the summary key columns."""
    qualifier = f"{table}." if table else ""
    return " AND ".join(f"{qualifier}{key} = {row}.{key}" for key in keys)


def _postgres_ddl() -> list[str]:
    wait = wait_us_sql("NEW.created_at", "r.received_at", "postgresql")
    day = _day_sql("d.created_at", "postgresql")
    wait_rows = ", ".join(
        f"({days}, {first}, {_columns(_WAIT_KEYS, 'd.')}, d_delta)" for days, first in _periods("d.created_at", "postgresql")
    )
    derive = f"""
CREATE OR REPLACE FUNCTION decisions_derive() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.crew_id, r.task_id, r.round_number, {wait}
      INTO NEW.crew_id, NEW.task_id, NEW.round_number, NEW.wait_us
      FROM review_rounds AS r
     WHERE r.id = NEW.round_id;
    NEW.wait_bucket := {wait_bucket_sql("NEW.wait_us", "postgresql")};
    RETURN NEW;
END $$"""  # noqa: S608 - DDL from our own names
    count = f"""
CREATE OR REPLACE FUNCTION decisions_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d decisions;
    d_delta integer := 1;
    j_delta integer := 0;  -- a new decision has no job yet
BEGIN
    IF TG_OP = 'DELETE' THEN  -- BEFORE DELETE: its job (if any) is still there
        d := OLD;
        d_delta := -1;
        j_delta := -(SELECT count(*) FROM resume_jobs WHERE decision_id = OLD.id);
    ELSE
        d := NEW;
    END IF;
    INSERT INTO decision_day_counts AS c (day, {_columns(_DAY_KEYS)}, decisions, jobs)
    VALUES ({day}, {_columns(_DAY_KEYS, "d.")}, d_delta, j_delta)
    ON CONFLICT (day, {_columns(_DAY_KEYS)})
    DO UPDATE SET decisions = c.decisions + EXCLUDED.decisions, jobs = c.jobs + EXCLUDED.jobs;
    INSERT INTO decision_wait_counts AS c (days, day, {_columns(_WAIT_KEYS)}, decisions)
    VALUES {wait_rows}
    ON CONFLICT (days, day, {_columns(_WAIT_KEYS)})
    DO UPDATE SET decisions = c.decisions + EXCLUDED.decisions;
    RETURN d;
END $$"""  # noqa: S608 - DDL from our own names
    jobs = f"""
CREATE OR REPLACE FUNCTION resume_jobs_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    j resume_jobs;
    j_delta integer := 1;
BEGIN
    IF TG_OP = 'DELETE' THEN
        j := OLD;
        j_delta := -1;
    ELSE
        j := NEW;
    END IF;
    -- In a cascade from its decision, the decision is gone and took the job out already.
    UPDATE decision_day_counts AS c SET jobs = c.jobs + j_delta
      FROM decisions AS d
     WHERE d.id = j.decision_id AND c.day = {day} AND {_matches(_DAY_KEYS, "d", "c")};
    RETURN j;
END $$"""  # noqa: S608 - DDL from our own names
    return [
        derive,
        count,
        jobs,
        "CREATE OR REPLACE TRIGGER decisions_derive BEFORE INSERT ON decisions "
        "FOR EACH ROW EXECUTE FUNCTION decisions_derive()",
        "CREATE OR REPLACE TRIGGER decisions_count_insert AFTER INSERT ON decisions "
        "FOR EACH ROW EXECUTE FUNCTION decisions_count()",
        "CREATE OR REPLACE TRIGGER decisions_count_delete BEFORE DELETE ON decisions "
        "FOR EACH ROW EXECUTE FUNCTION decisions_count()",
        "CREATE OR REPLACE TRIGGER resume_jobs_count_insert AFTER INSERT ON resume_jobs "
        "FOR EACH ROW EXECUTE FUNCTION resume_jobs_count()",
        "CREATE OR REPLACE TRIGGER resume_jobs_count_delete BEFORE DELETE ON resume_jobs "
        "FOR EACH ROW EXECUTE FUNCTION resume_jobs_count()",
    ]


def _sqlite_wait_count(days: int, first: str) -> str:
    return f"""
    INSERT INTO decision_wait_counts (days, day, {_columns(_WAIT_KEYS)}, decisions)
    SELECT {days}, {first}, {_columns(_WAIT_KEYS)}, 1 FROM decisions WHERE id = NEW.id
    ON CONFLICT (days, day, {_columns(_WAIT_KEYS)}) DO UPDATE SET decisions = decisions + 1;"""  # noqa: S608 - our own names


def _sqlite_wait_uncount(days: int, first: str) -> str:
    return f"""
    UPDATE decision_wait_counts SET decisions = decisions - 1
     WHERE days = {days} AND day = {first} AND {_matches(_WAIT_KEYS, "OLD")};"""  # noqa: S608 - our own names


def _sqlite_ddl() -> list[str]:
    wait = wait_us_sql("NEW.created_at", "r.received_at", "sqlite")
    day = _day_sql("created_at", "sqlite")
    old_day = _day_sql("OLD.created_at", "sqlite")
    d_day = _day_sql("d.created_at", "sqlite")
    wait_inserts = "\n".join(_sqlite_wait_count(days, first) for days, first in _periods("created_at", "sqlite"))
    wait_updates = "\n".join(_sqlite_wait_uncount(days, first) for days, first in _periods("OLD.created_at", "sqlite"))
    insert = f"""
CREATE TRIGGER IF NOT EXISTS decisions_derive_and_count AFTER INSERT ON decisions BEGIN
    UPDATE decisions SET (crew_id, task_id, round_number, wait_us) =
           (SELECT r.crew_id, r.task_id, r.round_number, {wait} FROM review_rounds AS r WHERE r.id = NEW.round_id)
     WHERE id = NEW.id;
    UPDATE decisions SET wait_bucket = {wait_bucket_sql("wait_us", "sqlite")} WHERE id = NEW.id;
    INSERT INTO decision_day_counts (day, {_columns(_DAY_KEYS)}, decisions, jobs)
    SELECT {day}, {_columns(_DAY_KEYS)}, 1, 0 FROM decisions WHERE id = NEW.id
    ON CONFLICT (day, {_columns(_DAY_KEYS)}) DO UPDATE SET decisions = decisions + 1;
{wait_inserts}
END"""  # noqa: S608 - DDL from our own names
    delete = f"""
CREATE TRIGGER IF NOT EXISTS decisions_count_delete BEFORE DELETE ON decisions BEGIN
    UPDATE decision_day_counts
       SET decisions = decisions - 1,
           jobs = jobs - (SELECT count(*) FROM resume_jobs WHERE decision_id = OLD.id)
     WHERE day = {old_day} AND {_matches(_DAY_KEYS, "OLD")};
{wait_updates}
END"""  # noqa: S608 - DDL from our own names

    def jobs(when: str, event: str, row: str, delta: str) -> str:
        return f"""
CREATE TRIGGER IF NOT EXISTS resume_jobs_count_{event.lower()} {when} {event} ON resume_jobs BEGIN
    UPDATE decision_day_counts SET jobs = jobs {delta} 1
      FROM decisions AS d
     WHERE d.id = {row}.decision_id AND decision_day_counts.day = {d_day}
       AND {_matches(_DAY_KEYS, "d", "decision_day_counts")};
END"""  # noqa: S608 - our own names (no table alias: SQLite refuses one in a trigger)

    return [insert, delete, jobs("AFTER", "INSERT", "NEW", "+"), jobs("BEFORE", "DELETE", "OLD", "-")]


def _ddl(dialect: str) -> list[str]:
    return _postgres_ddl() if dialect == "postgresql" else _sqlite_ddl()


def create_triggers(connection: Any) -> None:
    """Create (or replace) the triggers; the tables must exist."""
    for statement in _ddl(connection.dialect.name):
        connection.exec_driver_sql(statement)


def drop_triggers(connection: Any) -> None:
    dialect = connection.dialect.name
    for name, table in _TRIGGERS[dialect].items():
        on_table = f" ON {table}" if dialect == "postgresql" else ""
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on_table}")
    if dialect == "postgresql":
        for function in _PG_FUNCTIONS:
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}() CASCADE")


def trigger_names(dialect: str) -> list[str]:
    return sorted(_TRIGGERS[dialect])


# --------------------------------------------------------------------------- bulk


def backfill_decisions(connection: Any) -> None:
    """Fill the copied round columns, the wait and its bucket of every decision (what the
    insert trigger does for one)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        wait = wait_us_sql("d.created_at", "r.received_at", dialect)
        derive = f"""
UPDATE decisions AS d
   SET crew_id = r.crew_id, task_id = r.task_id, round_number = r.round_number, wait_us = {wait}
  FROM review_rounds AS r
 WHERE r.id = d.round_id"""  # noqa: S608 - our own names
    else:
        wait = wait_us_sql("decisions.created_at", "r.received_at", dialect)
        derive = f"""
UPDATE decisions SET (crew_id, task_id, round_number, wait_us) =
       (SELECT r.crew_id, r.task_id, r.round_number, {wait} FROM review_rounds AS r WHERE r.id = decisions.round_id)
"""  # noqa: S608 - our own names
    connection.exec_driver_sql(derive)
    bucket = wait_bucket_sql("wait_us", dialect)
    connection.exec_driver_sql(f"UPDATE decisions SET wait_bucket = {bucket}")  # noqa: S608 - our own names


def rebuild(connection: Any) -> None:
    """Recompute both summaries from the decisions (and their jobs) in one pass each."""
    day = _day_sql("d.created_at", connection.dialect.name)
    connection.exec_driver_sql("DELETE FROM decision_day_counts")
    connection.exec_driver_sql("DELETE FROM decision_wait_counts")
    connection.exec_driver_sql(f"""
INSERT INTO decision_day_counts (day, {_columns(_DAY_KEYS)}, decisions, jobs)
SELECT {day}, {_columns(_DAY_KEYS, "d.")}, count(*), count(j.id)
  FROM decisions AS d LEFT JOIN resume_jobs AS j ON j.decision_id = d.id
 GROUP BY 1, 2, 3, 4, 5, 6""")  # noqa: S608 - our own names
    for days, first in _periods("d.created_at", connection.dialect.name):
        connection.exec_driver_sql(f"""
INSERT INTO decision_wait_counts (days, day, {_columns(_WAIT_KEYS)}, decisions)
SELECT {days}, {first}, {_columns(_WAIT_KEYS, "d.")}, count(*) FROM decisions AS d GROUP BY 2, 3, 4, 5""")  # noqa: S608 - our own names
