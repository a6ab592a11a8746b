"""Seed a reviewapp database with realistic data at a chosen scale, fast.

Rows go in with Core bulk inserts (executemany in batches), not the ORM unit of work.
Usage: python -m bench.seed --url sqlite:///bench.sqlite3 --decisions 100000 --pending 10000
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import itertools
import json
import random
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from argon2 import PasswordHasher
from sqlalchemy import Engine, Index, Table, create_engine, insert

from reviewapp import decision_summaries, resume_call_counts
from reviewapp.extensions import db
from reviewapp.models import (
    Decision,
    Execution,
    ExecutionStatus,
    JobState,
    ResumeAttempt,
    ResumeJob,
    ReviewRound,
    Role,
    RoundState,
    User,
    output_snippet,
)

BATCH = 5000
CREWS = ["research", "travel", "support", "finance", "legal"]
TASKS = ["research_task", "analysis_task", "summary_task", "draft_task"]
REVIEWERS = 20
SECRET_KEY = "bench-secret-key-0123456789abcdef"  # noqa: S105 - a throwaway bench database
BENCH_PASSWORD = "bench password 1"  # noqa: S105 - throwaway accounts of a bench database
WORDS = (
    "revenue growth market analysis quarterly report sources evidence customer churn "
    "latency throughput forecast region segment pricing risk compliance draft summary"
).split()


def crew_token(name: str) -> str:
    """The AMP token of a bench crew (the bench's sandbox is started with the same ones)."""
    return f"bench-token-{name}"


def markdown_output(rng: random.Random, size: int) -> str:
    """Markdown of roughly ``size`` bytes: headings, lists, a table, code."""
    parts: list[str] = []
    total = 0
    section = 0
    while total < size:
        section += 1
        words = " ".join(rng.choice(WORDS) for _ in range(60))
        block = (
            f"## Section {section}\n\n{words}.\n\n- **{rng.choice(WORDS)}**: {rng.randint(1, 999)}\n"
            f"- _{rng.choice(WORDS)}_ [link](https://example.com/{section})\n\n"
            f"| metric | value |\n|---|---|\n| {rng.choice(WORDS)} | {rng.random():.3f} |\n\n"
        )
        parts.append(block)
        total += len(block)
    return "".join(parts)[:size]


def _batched(rows: Iterator[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _copy_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _copy(engine: Engine, model: Any, rows: Iterator[dict[str, Any]]) -> int:
    """PostgreSQL: COPY ... FROM STDIN, an order of magnitude faster than INSERTs."""
    count = 0
    raw = engine.raw_connection()
    try:
        with closing(raw.cursor()) as cur:
            first = next(rows, None)
            if first is None:
                return 0
            columns = list(first)
            sql = f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN"  # noqa: S608 - our names
            with cur.copy(sql) as copy:
                for row in itertools.chain([first], rows):
                    copy.write_row([_copy_value(row[c]) for c in columns])
                    count += 1
        raw.commit()
    finally:
        raw.close()
    return count


def _search_indexes() -> list[Index]:
    """The PostgreSQL GIN full-text indexes (costly to maintain row by row during a load)."""
    return [
        index
        for table in db.metadata.sorted_tables
        for index in table.indexes
        if index.dialect_options["postgresql"].get("using") == "gin"
    ]


def _drop_search_indexes(engine: Engine) -> list[Index]:
    indexes = _search_indexes()
    with engine.begin() as conn:
        for index in indexes:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
    return indexes


def _create_search_indexes(engine: Engine, indexes: list[Index]) -> float:
    """Build the GIN indexes in one pass each after the load; returns the seconds spent."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        for index in indexes:
            index.create(conn)
    return time.perf_counter() - started


def _wait_indexes() -> list[Index]:
    """The decisions' wait indexes (built once after the load: maintained row by row,
    their random key order makes a SQLite load twice as long)."""
    return [index for index in cast(Table, Decision.__table__).indexes if "wait_us" in index.columns]


def _unsummarised(engine: Engine) -> None:
    """Drop what counts decisions and attempts one by one: the loaded rows bring their
    derived columns."""
    with engine.begin() as conn:
        decision_summaries.drop_triggers(conn)
        resume_call_counts.drop_trigger(conn)
        for index in _wait_indexes():
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")


def _summarise(engine: Engine) -> float:
    """After the load: the wait indexes, the summaries counted in one pass, the triggers
    back; returns the seconds spent."""
    started = time.perf_counter()
    with engine.begin() as conn:
        for index in _wait_indexes():
            index.create(conn)
        decision_summaries.rebuild(conn)
        decision_summaries.create_triggers(conn)
        resume_call_counts.create_trigger(conn)
    return time.perf_counter() - started


def _insert(engine: Engine, model: Any, rows: Iterator[dict[str, Any]]) -> int:
    if engine.dialect.name == "postgresql":
        return _copy(engine, model, rows)
    count = 0
    with engine.begin() as conn:
        for batch in _batched(rows):
            conn.execute(insert(model.__table__), batch)
            count += len(batch)
    return count


def _reset_sequence(conn: Any, table: str) -> None:
    """After explicit ids, move the PostgreSQL sequence past them (table names are ours)."""
    conn.exec_driver_sql(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - model table names
        f"coalesce((SELECT max(id) FROM {table}), 1))"
    )


def seed(
    url: str,
    *,
    decisions: int,
    pending: int,
    output_bytes: int = 1024,
    seed_value: int = 7,
    sandbox_url: str = "http://127.0.0.1:1",
) -> dict[str, Any]:
    """Create the schema and fill it. Returns ids useful to the load driver."""
    from reviewapp.amp.crews import create_crew

    rng = random.Random(seed_value)
    app = bench_app(url)
    started = time.perf_counter()
    with app.app_context():
        db.drop_all()
        db.create_all()
        engine = db.engine
        now = datetime.now(UTC)
        pw_hash = PasswordHasher().hash(BENCH_PASSWORD)
        users = [
            {"id": i + 1, "username": f"reviewer{i + 1}", "password_hash": pw_hash,
             "role": Role.REVIEWER, "active": True, "must_change_password": False,
             "session_version": 1, "created_at": now}
            for i in range(REVIEWERS)
        ]
        users.append({"id": REVIEWERS + 1, "username": "lead", "password_hash": pw_hash,
                      "role": Role.LEAD, "active": True, "must_change_password": False,
                      "session_version": 1, "created_at": now})
        search_indexes = _drop_search_indexes(engine) if engine.dialect.name == "postgresql" else []
        _unsummarised(engine)
        _insert(engine, User, iter(users))
        for name in CREWS:
            create_crew(name, f"{sandbox_url.rstrip('/')}/{name}", crew_token(name))
        db.session.commit()
        total_rounds = decisions + pending
        executions = max(1, total_rounds // 4)
        span = timedelta(days=60)

        def execution_rows() -> Iterator[dict[str, Any]]:
            for i in range(executions):
                yield {"id": i + 1, "crew_id": i % len(CREWS) + 1, "kickoff_id": f"00000000-0000-4000-8000-{i:012d}",
                       "status": ExecutionStatus.PENDING_REVIEW, "created_at": now - span,
                       "updated_at": now, "status_check_failures": 0}

        _insert(engine, Execution, execution_rows())
        outputs = [markdown_output(rng, output_bytes) for _ in range(16)]

        def received_at(i: int) -> datetime:
            return now - span + span * (i / max(1, total_rounds))

        def crew_of(i: int) -> int:
            return (i // 4) % len(CREWS) + 1

        def round_rows() -> Iterator[dict[str, Any]]:
            for i in range(total_rounds):
                is_pending = i >= decisions
                output = outputs[i % len(outputs)]
                yield {"id": i + 1, "execution_id": i // 4 + 1, "crew_id": crew_of(i),
                       "task_id": TASKS[i % len(TASKS)], "round_number": 1, "output": output,
                       "snippet": output_snippet(output), "output_sha256": hashlib.sha256(f"{i}".encode()).hexdigest(),
                       "agent": "Senior Analyst", "received_at": received_at(i),
                       "state": RoundState.PENDING if is_pending else RoundState.DECIDED}

        _insert(engine, ReviewRound, round_rows())

        def decision_rows() -> Iterator[dict[str, Any]]:
            for i in range(decisions):
                received = received_at(i)
                created = received + timedelta(minutes=rng.randint(1, 240))
                wait_us = (created - received) // timedelta(microseconds=1)
                yield {"id": i + 1, "round_id": i + 1, "reviewer_id": i % REVIEWERS + 1,
                       "is_approve": rng.random() < 0.7,
                       "feedback": f"Looks {rng.choice(WORDS)}; add {rng.choice(WORDS)} please.",
                       "reason_code": None, "created_at": created,
                       # what the insert trigger derives (dropped during the load)
                       "crew_id": crew_of(i), "task_id": TASKS[i % len(TASKS)], "round_number": 1,
                       "wait_us": wait_us, "wait_bucket": decision_summaries.wait_bucket(wait_us)}

        _insert(engine, Decision, decision_rows())

        def job_rows() -> Iterator[dict[str, Any]]:
            for i in range(decisions):
                yield {"id": i + 1, "decision_id": i + 1, **_delivered_job(crew_of(i), "resumed", now),
                       # what the attempts' trigger counts for the one attempt below (dropped during the load)
                       "resume_calls": 1, "last_http_status": 200}

        _insert(engine, ResumeJob, job_rows())

        def attempt_rows() -> Iterator[dict[str, Any]]:
            for i in range(decisions):
                yield {"id": i + 1, "job_id": i + 1, **_delivered_attempt("resumed", now)}

        _insert(engine, ResumeAttempt, attempt_rows())
        summary_seconds = _summarise(engine)
        index_seconds = _create_search_indexes(engine, search_indexes) if search_indexes else 0.0
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                for table in db.metadata.sorted_tables:
                    if "id" in table.c:
                        _reset_sequence(conn, table.name)
        db.engine.dispose()
    return {"seconds": round(time.perf_counter() - started, 1), "search_index_seconds": round(index_seconds, 1),
            "summary_seconds": round(summary_seconds, 1), "decisions": decisions, "pending": pending}


def bench_app(url: str, **config: Any) -> Any:
    """The app in the driver's process (seeding, preparing cases), keyed like the server."""
    from reviewapp import create_app

    return create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": url, **config})


def _revision(base: str, number: int) -> str:
    """``base`` with every 40th line (shifted per round) reworded: a realistic diff."""
    lines = base.splitlines()
    for index in range(number % 40, len(lines), 40):
        lines[index] = f"{lines[index]} (revised in round {number})"
    return "\n".join(lines)


def _delivered_job(crew_id: int, outcome: str, at: datetime) -> dict[str, Any]:
    """A decision's resume job, delivered at the first try (``outcome``: resumed, retrying)."""
    return {"crew_id": crew_id, "state": JobState.SUCCEEDED, "body": {}, "attempts": 1, "next_attempt_at": at,
            "needs_status_check": False, "outcome": outcome, "created_at": at, "updated_at": at}


def _delivered_attempt(outcome: str, at: datetime) -> dict[str, Any]:
    """That job's one /resume call, answered 200."""
    return {"started_at": at, "finished_at": at, "kind": "resume", "http_status": 200, "result": "ok",
            "response_body": json.dumps({"status": outcome})}


def seed_review_task(url: str, *, output_bytes: int = 200_000, earlier: int = 5, seed_value: int = 11) -> int:
    """One task with ``earlier`` sent-back rounds and a pending one, outputs of
    ``output_bytes`` Markdown each. Returns the pending round's id."""
    rng = random.Random(seed_value)
    base = markdown_output(rng, output_bytes)
    app = bench_app(url)
    with app.app_context():
        now = datetime.now(UTC)
        execution = Execution(crew_id=1, kickoff_id=f"review-task-{rng.getrandbits(48):012x}",
                              status=ExecutionStatus.PENDING_REVIEW, created_at=now - timedelta(hours=3),
                              updated_at=now, status_check_failures=0)
        db.session.add(execution)
        db.session.flush()
        current = None
        for number in range(1, earlier + 2):
            output = _revision(base, number)
            pending = number == earlier + 1
            current = ReviewRound(
                execution_id=execution.id, crew_id=1, task_id="research_task", round_number=number,
                output=output, output_sha256=hashlib.sha256(output.encode()).hexdigest(),
                agent="Senior Analyst", received_at=now - timedelta(minutes=30 * (earlier + 2 - number)),
                state=RoundState.PENDING if pending else RoundState.DECIDED,
            )
            db.session.add(current)
            db.session.flush()
            if not pending:  # sent back, and the revision delivered (as every seeded decision is)
                decided_at = current.received_at + timedelta(minutes=5)
                decision = Decision(round_id=current.id, reviewer_id=number % REVIEWERS + 1, is_approve=False,
                                    feedback=f"Round {number}: tighten the {rng.choice(WORDS)} section.",
                                    created_at=decided_at)
                job = ResumeJob(decision=decision, **_delivered_job(1, "retrying", decided_at))
                db.session.add(ResumeAttempt(job=job, **_delivered_attempt("retrying", decided_at)))
        db.session.commit()
        round_id = current.id if current is not None else 0
        db.engine.dispose()
    return round_id


def settle(url: str) -> None:
    """After seeding, before measuring: statistics and visibility map up to date (VACUUM:
    index-only scans, as a server with autovacuum would have by then), and the
    seed's writes out of the way (PostgreSQL: a checkpoint, so the checkpointer does not
    write them out during the first cases; SQLite: the WAL folded into the database), as
    on a server that has been running for a while."""
    engine = create_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
                conn.exec_driver_sql("CHECKPOINT")
        else:
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.commit()
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--output-bytes", type=int, default=1024)
    args = parser.parse_args()
    print(seed(args.url, decisions=args.decisions, pending=args.pending, output_bytes=args.output_bytes))
    settle(args.url)


if __name__ == "__main__":
    main()
