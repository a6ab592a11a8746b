"""The decision summaries (reviewapp/decision_summaries.py): the triggers keep them equal
to a recomputation from the raw rows through inserts and cascade deletes, on both
databases; the metrics read from them equal a brute-force computation; the migration,
``create_all`` and the bench seed build the same thing."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import Date, bindparam, delete, select, text

from bench.seed import seed
from reviewapp import create_app, decision_summaries
from reviewapp.audit import metrics
from reviewapp.audit.filters import DateRange, MetricFilters
from reviewapp.decision_summaries import BLOCK_DAYS, SUB_BUCKETS, block_start, wait_bucket
from reviewapp.extensions import db
from reviewapp.models import (
    Crew,
    Decision,
    DecisionDayCount,
    DecisionWaitCount,
    Execution,
    JobState,
    ResumeJob,
    ReviewRound,
)
from tests.audit.factories import AuditFactory, at
from tests.test_migrations import downgrade_and_upgrade, empty_db_url  # noqa: F401 - fixture

BEFORE_SUMMARIES = "f859759337de"  # the revision before the summaries came


# --------------------------------------------------------------------------- helpers


def recomputed() -> tuple[Counter, Counter]:
    """Both summaries computed in Python from decisions, rounds and jobs."""
    stmt = (
        select(Decision.created_at, ReviewRound.received_at, ReviewRound.crew_id, ReviewRound.task_id,
               Decision.reviewer_id, ReviewRound.round_number, Decision.is_approve, ResumeJob.id)
        .join(ReviewRound, ReviewRound.id == Decision.round_id)
        .outerjoin(ResumeJob, ResumeJob.decision_id == Decision.id)
    )
    days: Counter = Counter()
    waits: Counter = Counter()
    for created, received, crew, task, reviewer, number, approve, job in db.session.execute(stmt):
        day = created.date()
        days[(day, crew, task, reviewer, number, approve, "decisions")] += 1
        days[(day, crew, task, reviewer, number, approve, "jobs")] += job is not None
        for days_counted, first in ((1, day), (BLOCK_DAYS, block_start(day))):
            waits[(days_counted, first, crew, reviewer, wait_bucket(wait_us(created, received)))] += 1
    return +days, +waits


def stored() -> tuple[Counter, Counter]:
    days: Counter = Counter()
    for row in db.session.scalars(select(DecisionDayCount)):
        key = (row.day, row.crew_id, row.task_id, row.reviewer_id, row.round_number, row.is_approve)
        days[(*key, "decisions")] += row.decisions
        days[(*key, "jobs")] += row.jobs
    waits = Counter({(row.days, row.day, row.crew_id, row.reviewer_id, row.wait_bucket): row.decisions
                     for row in db.session.scalars(select(DecisionWaitCount))})
    return +days, +waits


def assert_summaries_match() -> None:
    db.session.expire_all()
    days, waits = stored()
    assert min([*days.values(), *waits.values(), 0]) >= 0  # no negative leftovers
    assert (days, waits) == recomputed()


def wait_us(created, received) -> int:
    return (created - received) // timedelta(microseconds=1)


def random_dataset(factory: AuditFactory, rng: random.Random, decisions: int = 120) -> None:
    """Decisions over a few days with waits from sub-second to days (many ties)."""
    states = [*JobState, None]
    waits = [0.001 / 60, 0.5 / 60, 1, 2, 2, 3, 7.5, 60, 61, 600, 2000, 3 * 1440]
    for _ in range(decisions):
        wait = rng.choice(waits) if rng.random() < 0.5 else rng.uniform(0, 300)
        factory.decided(
            crew=rng.choice(["research", "ops", "legal"]),
            reviewer=rng.choice(["rita", "sam", "tom", "una"]),
            approve=rng.random() < 0.6,
            received_at=at(rng.uniform(0, 4 * 1440)),
            wait_minutes=wait,
            task_id=rng.choice(["research_task", "writing_task"]),
            number=rng.randint(1, 3),
            job_state=rng.choice(states),
        )
    factory.commit()


def nearest_rank(values: list[int], numerator: int, denominator: int) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) * numerator + denominator - 1) // denominator - 1] / 1_000_000


def brute_force(filters: MetricFilters) -> dict:
    """What the metrics must show, from the raw rows."""
    stmt = (
        select(Decision.created_at, ReviewRound.received_at, Crew.name, ReviewRound.crew_id, ReviewRound.task_id,
               Decision.reviewer_id, ReviewRound.round_number, Decision.is_approve, ResumeJob.state)
        .join(ReviewRound, ReviewRound.id == Decision.round_id)
        .join(Crew, Crew.id == ReviewRound.crew_id)
        .outerjoin(ResumeJob, ResumeJob.decision_id == Decision.id)
        .where(*filters.dates.conditions(Decision.created_at))
    )
    if filters.crew_id is not None:
        stmt = stmt.where(ReviewRound.crew_id == filters.crew_id)
    names = metrics.reviewer_names()
    per_day: Counter = Counter()
    facts: Counter = Counter()
    waits: dict[tuple[str, str], list[int]] = {}
    for created, received, crew, _, task, reviewer, number, approve, state in db.session.execute(stmt):
        per_day[(created.date(), approve)] += 1
        facts[(crew, task, names[reviewer], number, approve, state.value if state else None)] += 1
        for group, name in (("crew", crew), ("reviewer", names[reviewer])):
            waits.setdefault((group, name), []).append(wait_us(created, received))
    latency = {
        key: (len(values), nearest_rank(values, 1, 2), nearest_rank(values, 9, 10)) for key, values in waits.items()
    }
    return {"per_day": per_day, "facts": facts, "latency": latency}


def shown(filters: MetricFilters) -> dict:
    per_day: Counter = Counter()
    for day in metrics.decisions_per_day(filters):
        per_day[(day.day, True)] += day.approved
        per_day[(day.day, False)] += day.revised
    facts: Counter = Counter()
    for fact in metrics.decision_facts(filters):
        facts[(fact.crew, fact.task, fact.reviewer, fact.round_number, fact.approved, fact.job_state)] += fact.count
    latency = {
        (group, row.name): (row.decisions, row.median_seconds, row.p90_seconds)
        for group, rows in metrics.notification_to_decision(filters).items()
        for row in rows
    }
    return {"per_day": +per_day, "facts": facts, "latency": latency}


# --------------------------------------------------------------------------- buckets


def _bucket_values() -> list[int]:
    values = list(range(-3, 4 * SUB_BUCKETS)) + [-(2**40)]
    for bits in range(5, 63):
        values += [(1 << bits) - 1, 1 << bits, (1 << bits) + 1, (3 << (bits - 2)) + 7]
    values += [2**63 - 1]
    return values


def test_wait_bucket_is_monotone_and_fine():
    values = sorted(set(_bucket_values()) | set(random.Random(3).sample(range(10**12), 2000)))
    buckets = [wait_bucket(v) for v in values]
    assert buckets == sorted(buckets)
    for value in (10**6, 6 * 10**7, 10**10):  # above the exact range: width <= 1/SUB_BUCKETS
        same = [v for v in range(value - value // 8, value + value // 8, max(1, value // 10**4))
                if wait_bucket(v) == wait_bucket(value)]
        assert (max(same) - min(same)) / value <= 1 / SUB_BUCKETS


def test_wait_bucket_sql_equals_python(app):
    with app.app_context():
        dialect = db.engine.dialect.name
        expression = decision_summaries.wait_bucket_sql("w", dialect)
        query = text(f"SELECT {expression} FROM (SELECT CAST(:v AS BIGINT) AS w) AS t")  # noqa: S608 - test SQL
        for value in _bucket_values():
            assert db.session.scalar(query, {"v": value}) == wait_bucket(value), value


def test_block_start_sql_equals_python(app):
    with app.app_context():
        expression = decision_summaries._block_sql(":d", db.engine.dialect.name)
        query = text(f"SELECT {expression}").bindparams(bindparam("d", type_=Date))  # noqa: S608 - test SQL
        for offset in range(0, 3000, 7):
            day = date(2023, 12, 20) + timedelta(days=offset)
            assert str(db.session.scalar(query, {"d": day}))[:10] == block_start(day).isoformat(), day


def test_insert_derives_the_decision_columns(factory):
    decision = factory.decided(crew="ops", received_at=at(0), wait_minutes=0.5 / 60, task_id="writing_task", number=2)
    skew = factory.decided(crew="ops", received_at=at(30), wait_minutes=-1)
    long = factory.decided(crew="ops", received_at=at(0), wait_minutes=3 * 1440 + 1 / 60_000_000)
    factory.commit()
    ops = factory.crew("ops").id
    assert (decision.crew_id, decision.task_id, decision.round_number) == (ops, "writing_task", 2)
    assert (decision.wait_us, decision.wait_bucket) == (500_000, wait_bucket(500_000))
    assert (skew.wait_us, skew.wait_bucket) == (-60_000_000, -1)
    assert long.wait_us == 3 * 86_400_000_000 + 1


# --------------------------------------------------------------------------- triggers


def test_triggers_count_inserts_jobs_and_cascade_deletes(factory):
    first = factory.decided(crew="research", reviewer="rita", received_at=at(0), wait_minutes=2)
    factory.decided(crew="research", reviewer="rita", received_at=at(10), wait_minutes=2, job_state=None)
    factory.decided(crew="ops", reviewer="sam", approve=False, received_at=at(days=1), wait_minutes=5)
    factory.commit()
    research = factory.crew("research").id
    day = DecisionDayCount
    row = db.session.get(day, (date(2025, 3, 3), research, "research_task", first.reviewer_id, 1, True))
    assert (row.decisions, row.jobs) == (2, 1)
    bucket = wait_bucket(120_000_000)
    assert db.session.get(DecisionWaitCount, (1, date(2025, 3, 3), research, first.reviewer_id, bucket)).decisions == 2
    block = (BLOCK_DAYS, date(2025, 2, 25), research, first.reviewer_id, bucket)  # 2025-02-25: a block start
    assert db.session.get(DecisionWaitCount, block).decisions == 2
    assert_summaries_match()

    db.session.execute(delete(ResumeJob).where(ResumeJob.decision_id == first.id))  # a job alone
    db.session.commit()
    assert_summaries_match()
    db.session.execute(delete(Crew).where(Crew.name == "ops"))  # crew -> rounds, jobs -> decisions
    db.session.commit()
    assert_summaries_match()
    db.session.execute(delete(ReviewRound).where(ReviewRound.id == first.round_id))
    db.session.commit()
    assert_summaries_match()


def test_random_dataset_stays_exact_through_deletes(factory):
    rng = random.Random(20250303)
    random_dataset(factory, rng)
    assert_summaries_match()
    db.session.execute(delete(Crew).where(Crew.name == "legal"))
    victims = db.session.scalars(select(Execution.id).order_by(Execution.id).limit(7)).all()
    db.session.execute(delete(Execution).where(Execution.id.in_(victims)))
    some_jobs = db.session.scalars(select(ResumeJob.id).order_by(ResumeJob.id.desc()).limit(5)).all()
    db.session.execute(delete(ResumeJob).where(ResumeJob.id.in_(some_jobs)))
    db.session.commit()
    assert_summaries_match()
    random_dataset(factory, rng, decisions=30)  # counting goes on after deletes
    assert_summaries_match()


def test_rebuild_equals_what_the_triggers_kept(factory):
    random_dataset(factory, random.Random(5), decisions=60)
    db.session.execute(delete(Crew).where(Crew.name == "ops"))
    db.session.commit()
    kept = stored()
    decision_summaries.rebuild(db.session.connection())
    db.session.commit()
    assert stored() == kept


# --------------------------------------------------------------------------- metrics


def test_periods_cover_each_day_of_a_range_once():
    start = date(2025, 2, 20)
    for offset in range(20):
        for length in range(40):
            first = start + timedelta(days=offset)
            last = first + timedelta(days=length)
            days: list[date] = []
            for span, period_first, period_last in metrics._periods(first, last):
                assert span == 1 or block_start(period_first) == period_first
                row = period_first
                while row <= period_last:
                    days += [row + timedelta(days=n) for n in range(span)]
                    row += timedelta(days=span)
            assert sorted(days) == [first + timedelta(days=n) for n in range(length + 1)]


@pytest.mark.parametrize(
    "dates",
    [DateRange(date(2025, 3, 3), date(2025, 3, 9)), DateRange(date(2025, 3, 4), date(2025, 3, 5)),
     DateRange(date(2025, 3, 1), date(2025, 3, 3)), DateRange(date(2025, 3, 1), date(2025, 3, 14)),
     DateRange(date(2025, 3, 5), date(2025, 3, 12)), DateRange(date(2025, 2, 25), date(2025, 3, 12))],
)
def test_metrics_equal_a_brute_force_computation(factory, dates):
    random_dataset(factory, random.Random(11))
    db.session.execute(delete(Execution).where(Execution.id.in_(select(Execution.id).limit(3).scalar_subquery())))
    db.session.commit()
    for crew_id in (None, factory.crew("ops").id):
        filters = MetricFilters(dates, crew_id=crew_id)
        expected, actual = brute_force(filters), shown(filters)
        assert actual["per_day"] == +expected["per_day"]
        assert actual["facts"] == expected["facts"]
        assert actual["latency"] == expected["latency"]


def test_many_ties_in_one_bucket(factory):
    for minutes in [5] * 7 + [5 + 1 / 60_000] * 4 + [5.0001] * 2 + [40]:
        factory.decided(received_at=at(0), wait_minutes=minutes)
    factory.commit()
    filters = MetricFilters(DateRange(date(2025, 3, 3), date(2025, 3, 3)))
    assert shown(filters)["latency"] == brute_force(filters)["latency"]
    [row] = metrics.notification_to_decision(filters)["crew"]
    assert (row.decisions, row.median_seconds, row.p90_seconds) == (14, 300.0, 300.006)


# --------------------------------------------------------------------------- schema paths


def _triggers() -> dict[str, str]:
    """Trigger (and PostgreSQL trigger function) definitions of the current database."""
    if db.engine.dialect.name == "sqlite":
        rows = db.session.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    else:
        rows = db.session.execute(text(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal "
            "UNION ALL SELECT proname, prosrc FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace AND prorettype = 'trigger'::regtype"
        ))
    return dict(rows.all())


def test_migration_makes_the_same_triggers_as_create_all(app, empty_db_url):  # noqa: F811 - fixture
    with app.app_context():
        created = _triggers()
        dialect = db.engine.dialect.name
    migrated_app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    assert migrated_app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    with migrated_app.app_context():
        migrated = _triggers()
        db.session.remove()
        db.engine.dispose()
    assert set(decision_summaries.trigger_names(dialect)) <= set(created)
    assert migrated == created


def test_migration_backfills_existing_decisions(empty_db_url):  # noqa: F811 - fixture
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    runner = app.test_cli_runner()
    # The decisions are written with today's models, then the schema goes back to before
    # the summaries (their columns and tables dropped) and the migration runs on them.
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    factory = AuditFactory()
    with app.app_context():
        random_dataset(factory, random.Random(8), decisions=40)
        db.session.remove()
        db.engine.dispose()
    downgrade_and_upgrade(runner, BEFORE_SUMMARIES)
    with app.app_context():
        derived = db.session.execute(select(Decision.wait_us, Decision.wait_bucket)).all()
        assert all(bucket == wait_bucket(wait) for wait, bucket in derived) and len(derived) == 40
        assert_summaries_match()
        random_dataset(factory, random.Random(9), decisions=10)  # the triggers count on
        assert_summaries_match()
        db.session.remove()
    assert runner.invoke(args=["db", "downgrade", BEFORE_SUMMARIES]).exit_code == 0
    with app.app_context():
        db.engine.dispose()


def test_bench_seed_builds_the_summaries(app, db_url):
    seed(db_url, decisions=300, pending=20, output_bytes=256)
    with app.app_context():
        derived = db.session.execute(select(Decision.wait_us, Decision.wait_bucket, Decision.crew_id)).all()
        assert len(derived) == 300 and all(bucket == wait_bucket(wait) for wait, bucket, _ in derived)
        assert_summaries_match()
        factory = AuditFactory()  # the triggers are back after the load
        factory.decided(crew="research", received_at=at(0))
        factory.commit()
        assert_summaries_match()
