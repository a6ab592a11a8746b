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
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import Engine, insert

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
)

BATCH = 5000
CREWS = ["research", "travel", "support", "finance", "legal"]
TASKS = ["research_task", "analysis_task", "summary_task", "draft_task"]
REVIEWERS = 20
BENCH_PASSWORD = "bench password 1"  # noqa: S105 - throwaway accounts of a bench database
WORDS = (
    "revenue growth market analysis quarterly report sources evidence customer churn "
    "latency throughput forecast region segment pricing risk compliance draft summary"
).split()


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
        with raw.cursor() as cur:
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
    from reviewapp import create_app
    from reviewapp.amp.crews import create_crew

    rng = random.Random(seed_value)
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "bench-secret-key-0123456789abcdef", "SQLALCHEMY_DATABASE_URI": url}
    )
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
        _insert(engine, User, iter(users))
        for name in CREWS:
            create_crew(name, sandbox_url, f"bench-token-{name}")
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

        def round_rows() -> Iterator[dict[str, Any]]:
            for i in range(total_rounds):
                is_pending = i >= decisions
                received = now - span + span * (i / max(1, total_rounds))
                output = outputs[i % len(outputs)]
                yield {"id": i + 1, "execution_id": i // 4 + 1, "crew_id": (i // 4) % len(CREWS) + 1,
                       "task_id": TASKS[i % len(TASKS)], "round_number": 1, "output": output,
                       "output_sha256": hashlib.sha256(f"{i}".encode()).hexdigest(),
                       "agent": "Senior Analyst", "received_at": received,
                       "state": RoundState.PENDING if is_pending else RoundState.DECIDED}

        _insert(engine, ReviewRound, round_rows())

        def decision_rows() -> Iterator[dict[str, Any]]:
            for i in range(decisions):
                received = now - span + span * (i / max(1, total_rounds))
                yield {"id": i + 1, "round_id": i + 1, "reviewer_id": i % REVIEWERS + 1,
                       "is_approve": rng.random() < 0.7,
                       "feedback": f"Looks {rng.choice(WORDS)}; add {rng.choice(WORDS)} please.",
                       "reason_code": None, "created_at": received + timedelta(minutes=rng.randint(1, 240))}

        _insert(engine, Decision, decision_rows())

        def job_rows() -> Iterator[dict[str, Any]]:
            for i in range(decisions):
                yield {"id": i + 1, "decision_id": i + 1, "crew_id": (i // 4) % len(CREWS) + 1,
                       "state": JobState.SUCCEEDED, "body": {}, "attempts": 1,
                       "next_attempt_at": now, "needs_status_check": False,
                       "outcome": "resumed", "created_at": now, "updated_at": now}

        _insert(engine, ResumeJob, job_rows())

        def attempt_rows() -> Iterator[dict[str, Any]]:
            for i in range(decisions):
                yield {"id": i + 1, "job_id": i + 1, "started_at": now, "finished_at": now,
                       "kind": "resume", "http_status": 200, "result": "ok",
                       "response_body": '{"status": "resumed"}'}

        _insert(engine, ResumeAttempt, attempt_rows())
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                for table in db.metadata.sorted_tables:
                    if "id" in table.c:
                        _reset_sequence(conn, table.name)
                conn.exec_driver_sql("ANALYZE")
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        db.engine.dispose()
    return {"seconds": time.perf_counter() - started, "decisions": decisions, "pending": pending}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--output-bytes", type=int, default=1024)
    args = parser.parse_args()
    print(seed(args.url, decisions=args.decisions, pending=args.pending, output_bytes=args.output_bytes))


if __name__ == "__main__":
    main()
