"""Review-process metrics, read from summaries so a million decisions stay fast.

Decision counts come from ``decision_day_counts`` (per UTC day) and the wait histograms
from ``decision_wait_counts`` (per UTC day and per block of days), both kept exact by
database triggers (``reviewapp/decision_summaries.py``): a range of whole days reads
thousands of summary rows instead of its decisions. The few pending rounds, unsuccessful
jobs and failed attempts are read through partial indexes.

Percentiles use the nearest-rank definition (PostgreSQL's ``percentile_disc``): the
p-th percentile of n sorted values is value number ceil(p * n), so the median of an
even count is the lower of the two middle values. They are exact, in two steps:

1. the range's wait histogram of each crew and reviewer (summary rows: the blocks that
   fit in the range, single days around them) tells which bucket holds value number
   ceil(p * n), and its rank within that bucket;
2. that value is read from the decisions of that group, bucket and range alone, through
   an index (``ix_decisions_crew_wait`` / ``ix_decisions_reviewer_wait``).

Waits are whole microseconds (decision time minus the round's received time), shown as
seconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from ..decision_summaries import BLOCK_DAYS, block_start
from ..extensions import db
from ..models import (
    Crew,
    Decision,
    DecisionDayCount,
    DecisionWaitCount,
    JobState,
    ResumeAttempt,
    ResumeJob,
    ReviewRound,
    User,
)
from .dialect import is_postgres
from .filters import DateRange, MetricFilters

MAX_GROUPS = 25  # per chart; the busiest groups
LATENCY_GROUPS = ("crew", "reviewer")
PERCENTILES = ((1, 2), (9, 10))  # median and p90, as fractions
# Attempt results that mean a resume did not get through (see reviews/delivery.py);
# a failed status check is recorded as "status:<result>".
FAILURE_RESULTS = ("not_pending", "not_found", "rejected", "unauthorized", "unavailable", "ambiguous", "error")
FAILURE_LABELS = FAILURE_RESULTS + tuple(f"status:{result}" for result in FAILURE_RESULTS)
# Pending rounds, jobs that did not succeed and attempts that were not ok are few:
# partial indexes hold them, which a query uses when it states the index's condition
# literally (SQLite matches the text; its ANALYZE keeps only averages per state, so an
# index on the state column alone looks as if it found half the table).
PENDING_ROUND = ReviewRound.state == literal_column("'pending'")
UNSUCCESSFUL_JOB = ResumeJob.state != literal_column("'succeeded'")
NOT_OK_ATTEMPT = ResumeAttempt.result != literal_column("'ok'")


@dataclass(frozen=True)
class DayCount:
    day: date
    approved: int
    revised: int

    @property
    def total(self) -> int:
        return self.approved + self.revised


@dataclass(frozen=True)
class Fact:
    """How many decisions share these attributes (a row of the facts query)."""

    crew: str
    task: str
    reviewer: str
    round_number: int
    approved: bool
    job_state: str | None
    count: int


@dataclass(frozen=True)
class Latency:
    name: str
    decisions: int
    median_seconds: float
    p90_seconds: float


@dataclass(frozen=True)
class ReviseRate:
    name: str
    decisions: int
    revised: int

    @property
    def percent(self) -> float:
        return round(100.0 * self.revised / self.decisions, 1) if self.decisions else 0.0


@dataclass(frozen=True)
class Count:
    name: str
    count: int


@dataclass(frozen=True)
class QueueRow:
    crew: str
    pending: int
    oldest: datetime


@dataclass(frozen=True)
class Queue:
    rows: list[QueueRow]

    @property
    def depth(self) -> int:
        return sum(row.pending for row in self.rows)

    def oldest_age(self, now: datetime) -> timedelta | None:
        return now - min(row.oldest for row in self.rows) if self.rows else None


# --------------------------------------------------------------------------- decisions


def _in_range(stmt: Select, column: Any, filters: MetricFilters) -> Select:
    return stmt.where(*filters.dates.conditions(column))


def _summarised(stmt: Select, summary: type[DecisionDayCount] | type[DecisionWaitCount],
                filters: MetricFilters) -> Select:
    """``stmt`` over the summary rows of the range's days (and crew)."""
    first, last = filters.dates.first, filters.dates.last
    if first is not None:
        stmt = stmt.where(summary.day >= first)
    if last is not None:
        stmt = stmt.where(summary.day <= last)
    if filters.crew_id is not None:
        stmt = stmt.where(summary.crew_id == filters.crew_id)
    return stmt


def decisions_per_day(filters: MetricFilters) -> list[DayCount]:
    """Every day of the range, days without decisions included (as zeros)."""
    counts = DecisionDayCount
    revised = func.sum(case((counts.is_approve.is_(False), counts.decisions), else_=0))
    stmt = _summarised(select(counts.day, func.sum(counts.decisions), revised), counts, filters).group_by(counts.day)
    per_day = {day: (int(total), int(revised_count or 0)) for day, total, revised_count in db.session.execute(stmt)}
    first, last = filters.dates.first, filters.dates.last
    if first is None or last is None:  # pragma: no cover - metric filters always bound it
        return []
    result = []
    for offset in range((last - first).days + 1):
        current = first + timedelta(days=offset)
        total, revised_count = per_day.get(current, (0, 0))
        result.append(DayCount(current, approved=total - revised_count, revised=revised_count))
    return result


def _names(column_id: Any, column_name: Any) -> dict[int, str]:
    return {row_id: name for row_id, name in db.session.execute(select(column_id, column_name))}


def crew_names() -> dict[int, str]:
    return _names(Crew.id, Crew.name)


def reviewer_names() -> dict[int, str]:
    return _names(User.id, User.username)


_FactKey = tuple[int, str, int, int, bool]  # crew id, task, reviewer id, round number, approved


def _unsuccessful_jobs(filters: MetricFilters) -> dict[_FactKey, list[tuple[str, int]]]:
    """Jobs of the range's decisions not (yet) succeeded, by fact key and state."""
    keys = (Decision.crew_id, Decision.task_id, Decision.reviewer_id, Decision.round_number, Decision.is_approve)
    stmt: Select = (
        select(*keys, ResumeJob.state, func.count())
        .select_from(ResumeJob)
        .join(Decision, Decision.id == ResumeJob.decision_id)
        .where(UNSUCCESSFUL_JOB)
        .group_by(*keys, ResumeJob.state)
    )
    if filters.crew_id is not None:
        stmt = stmt.where(_not_indexed(Decision.crew_id) == filters.crew_id)
    stmt = _in_range(stmt, _not_indexed(Decision.created_at), filters)
    found: dict[_FactKey, list[tuple[str, int]]] = defaultdict(list)
    for crew, task, reviewer, number, approved, state, n in db.session.execute(stmt):
        found[(crew, task, reviewer, number, bool(approved))].append((state.value, int(n)))
    return found


def _not_indexed(column: Any) -> ColumnElement:
    """SQLite: ``+column``, its documented way to keep the planner from driving a query
    through an index on that column (here: from half a million decisions in the range
    to their few unsuccessful jobs, instead of the other way round)."""
    if is_postgres():
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def decision_facts(filters: MetricFilters) -> list[Fact]:
    """The range's decisions grouped finely enough for several charts: the summary gives
    decisions and jobs per key, the few unsuccessful jobs their states; the other jobs
    succeeded, and decisions beyond the jobs have none."""
    counts = DecisionDayCount
    keys = (counts.crew_id, counts.task_id, counts.reviewer_id, counts.round_number, counts.is_approve)
    decisions, jobs = func.sum(counts.decisions), func.sum(counts.jobs)
    stmt = _summarised(select(*keys, decisions, jobs), counts, filters).group_by(*keys).having(decisions > 0)
    unsuccessful = _unsuccessful_jobs(filters)
    crews, reviewers = crew_names(), reviewer_names()
    facts = []
    for crew, task, reviewer, number, approved, n, with_job in db.session.execute(stmt):
        key = (crew, task, reviewer, number, bool(approved))
        others = unsuccessful.get(key, [])
        succeeded = int(with_job) - sum(count for _, count in others)
        by_state = [*others, (JobState.SUCCEEDED.value, succeeded), (None, int(n) - int(with_job))]
        facts += [
            Fact(crews[crew], task, reviewers[reviewer], int(number), bool(approved), state, count)
            for state, count in by_state
            if count
        ]
    return facts


_FACT_KEYS: dict[str, Callable[[Fact], str]] = {
    "crew": lambda fact: fact.crew,
    "task": lambda fact: f"{fact.crew} / {fact.task}",
    "reviewer": lambda fact: fact.reviewer,
}


def revise_rates(facts: Iterable[Fact], group: str) -> list[ReviseRate]:
    """Decisions and revise requests per crew, task or reviewer; busiest first."""
    key = _FACT_KEYS[group]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for fact in facts:
        entry = totals[key(fact)]
        entry[0] += fact.count
        entry[1] += 0 if fact.approved else fact.count
    rows = [ReviseRate(name, decisions, revised) for name, (decisions, revised) in totals.items()]
    rows.sort(key=lambda r: (-r.decisions, r.name))
    return rows[:MAX_GROUPS]


def _counted(pairs: Iterable[tuple[Any, int]]) -> dict[Any, int]:
    counts: dict[Any, int] = defaultdict(int)
    for key, n in pairs:
        counts[key] += n
    return counts


def rounds_until_approval(facts: Iterable[Fact]) -> list[Count]:
    """How many approvals came at round 1, 2, 3, ... of their task."""
    counts = _counted((f.round_number, f.count) for f in facts if f.approved)
    return [Count(str(number), counts[number]) for number in sorted(counts)]


def mean_rounds(counts: list[Count]) -> float | None:
    approvals = sum(c.count for c in counts)
    if not approvals:
        return None
    return round(sum(int(c.name) * c.count for c in counts) / approvals, 2)


def jobs_by_state(facts: Iterable[Fact]) -> list[Count]:
    """Resume jobs of the range's decisions, by their current state."""
    counts = _counted((f.job_state, f.count) for f in facts if f.job_state is not None)
    return sorted((Count(state, n) for state, n in counts.items()), key=lambda c: (-c.count, c.name))


# --------------------------------------------------------------------------- latency

_DECISION_GROUPS = {"crew": Decision.crew_id, "reviewer": Decision.reviewer_id}


@dataclass(frozen=True)
class _Bucket:
    """A bucket of one group's range histogram: ``before`` waits are in lower buckets."""

    group: str
    group_id: int
    bucket: int
    before: int
    n: int
    total: int  # the group's decisions in the range


@dataclass(frozen=True)
class _Probe:
    """Value number ``rank`` (1-based) in wait order of a group's decisions in a bucket."""

    group: str
    group_id: int
    bucket: int
    rank: int


def _nearest_rank(n: Any, numerator: int, denominator: int) -> Any:
    """ceil(n * numerator / denominator) in integer arithmetic (a number or SQL)."""
    return (n * numerator + (denominator - 1)) // denominator


def _periods(first: date | None, last: date | None) -> list[tuple[int, date | None, date | None]]:
    """(days, first, last) of the wait-count rows that make up the days ``first`` to
    ``last``: the blocks that fit whole, single days before and after them."""
    if first is None or last is None:  # pragma: no cover - metric filters always bound it
        return [(1, first, last)]
    whole_from = block_start(first - timedelta(days=1)) + timedelta(days=BLOCK_DAYS)
    whole_to = block_start(last + timedelta(days=1))  # the first block that does not fit
    if whole_from >= whole_to:
        return [(1, first, last)]
    periods: list[tuple[int, date | None, date | None]] = [
        (BLOCK_DAYS, whole_from, whole_to - timedelta(days=BLOCK_DAYS))
    ]
    if first < whole_from:
        periods.append((1, first, whole_from - timedelta(days=1)))
    if whole_to <= last:
        periods.append((1, whole_to, last))
    return periods


def _wait_counts(filters: MetricFilters) -> Any:
    """The wait-count rows of the range (and crew), one index range per period."""
    waits = DecisionWaitCount
    parts = []
    for days, first, last in _periods(filters.dates.first, filters.dates.last):
        part = select(waits.crew_id, waits.reviewer_id, waits.wait_bucket, waits.decisions).where(waits.days == days)
        parts.append(_summarised(part, waits, replace(filters, dates=DateRange(first, last))))
    return union_all(*parts).subquery()


def _percentile_buckets(filters: MetricFilters) -> list[_Bucket]:
    """Step 1: per crew and per reviewer, the histogram buckets holding a percentile.

    The range's summary rows are added up per crew, reviewer and bucket once, then per
    crew and per reviewer; running sums over the buckets locate the ranks."""
    rows = _wait_counts(filters)
    pairs = (
        select(rows.c.crew_id, rows.c.reviewer_id, rows.c.wait_bucket, func.sum(rows.c.decisions).label("n"))
        .group_by(rows.c.crew_id, rows.c.reviewer_id, rows.c.wait_bucket)
        .cte("pairs")
    )
    per_group = union_all(*(
        select(literal(group).label("grp"), pairs.c[f"{group}_id"].label("group_id"), pairs.c.wait_bucket,
               cast(func.sum(pairs.c.n), BigInteger).label("n"))
        .group_by(pairs.c[f"{group}_id"], pairs.c.wait_bucket)
        for group in LATENCY_GROUPS
    )).subquery()
    group_window: dict[str, Any] = {"partition_by": (per_group.c.grp, per_group.c.group_id)}
    upto = cast(func.sum(per_group.c.n).over(order_by=per_group.c.wait_bucket, **group_window), BigInteger)
    total = cast(func.sum(per_group.c.n).over(**group_window), BigInteger)
    running = select(per_group, (upto - per_group.c.n).label("before"), total.label("total")).subquery()
    holds_a_percentile = [
        (running.c.before < rank) & (rank <= running.c.before + running.c.n)
        for rank in (_nearest_rank(running.c.total, num, den) for num, den in PERCENTILES)
    ]
    stmt = select(running.c.grp, running.c.group_id, running.c.wait_bucket, running.c.before, running.c.n,
                  running.c.total).where(running.c.n > 0, holds_a_percentile[0] | holds_a_percentile[1])
    return [_Bucket(group, *(int(value) for value in numbers)) for group, *numbers in db.session.execute(stmt)]


def _kth_wait_statement(group: str, *, one_crew: bool) -> Select:
    """Step 2 for one probe: the wait at rank ``offset + 1`` among the group's decisions
    of one bucket in the range, read from the group's wait index. Built once."""
    stmt = select(Decision.wait_us).where(
        _DECISION_GROUPS[group] == bindparam("group_id"),
        Decision.wait_bucket == bindparam("bucket"),
        Decision.created_at >= bindparam("start", type_=Decision.created_at.type),
        Decision.created_at < bindparam("end", type_=Decision.created_at.type),
    )
    if one_crew:
        stmt = stmt.where(Decision.crew_id == bindparam("crew_id"))
    return stmt.order_by(Decision.wait_us).limit(1).offset(bindparam("offset"))


_KTH_WAIT = {
    (group, one_crew): _kth_wait_statement(group, one_crew=one_crew)
    for group in LATENCY_GROUPS
    for one_crew in (False, True)
}
_EARLIEST, _LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def _waits(probes: list[_Probe], filters: MetricFilters) -> dict[_Probe, int]:
    """One small indexed statement per probe (a median and a p90 may be the same)."""
    dates = filters.dates
    params = {"start": dates.start or _EARLIEST, "end": dates.end or _LATEST, "crew_id": filters.crew_id}
    one_crew = filters.crew_id is not None
    connection = db.session.connection()
    return {
        probe: int(connection.execute(
            _KTH_WAIT[(probe.group, one_crew)],
            params | {"group_id": probe.group_id, "bucket": probe.bucket, "offset": probe.rank - 1},
        ).scalar_one())
        for probe in dict.fromkeys(probes)
    }


def notification_to_decision(filters: MetricFilters) -> dict[str, list[Latency]]:
    """Median and p90 seconds from the notification (round received) to the decision,
    per crew and per reviewer, busiest first."""
    names = {"crew": crew_names(), "reviewer": reviewer_names()}
    buckets: dict[tuple[str, int], list[_Bucket]] = defaultdict(list)
    for bucket in _percentile_buckets(filters):
        buckets[(bucket.group, bucket.group_id)].append(bucket)
    chosen: dict[str, list[tuple[str, int, list[_Probe]]]] = {group: [] for group in LATENCY_GROUPS}
    for (group, group_id), found in buckets.items():
        chosen[group].append((names[group][group_id], found[0].total, _probes(found)))
    for groups in chosen.values():
        groups.sort(key=lambda item: (-item[1], item[0]))
        del groups[MAX_GROUPS:]
    waits = _waits([probe for groups in chosen.values() for _, _, probes in groups for probe in probes], filters)
    return {
        group: [Latency(name, n, *(waits[probe] / 1_000_000 for probe in probes)) for name, n, probes in groups]
        for group, groups in chosen.items()
    }


def _probes(buckets: list[_Bucket]) -> list[_Probe]:
    """The median's and the p90's probe in one group's located buckets."""
    total = buckets[0].total
    probes = []
    for numerator, denominator in PERCENTILES:
        rank = _nearest_rank(total, numerator, denominator)
        [bucket] = [b for b in buckets if b.before < rank <= b.before + b.n]
        probes.append(_Probe(bucket.group, bucket.group_id, bucket.bucket, rank - bucket.before))
    return probes


# --------------------------------------------------------------------------- resumes


def resume_failures(filters: MetricFilters) -> list[Count]:
    """Resume (and status-check) attempts in the range that did not get through."""
    total = func.count().label("n")
    stmt = (
        select(ResumeAttempt.result, total)
        .where(NOT_OK_ATTEMPT, ResumeAttempt.result.in_(FAILURE_LABELS))
        .group_by(ResumeAttempt.result)
        .order_by(total.desc(), ResumeAttempt.result)
    )
    if filters.crew_id is not None:
        stmt = stmt.join(ResumeJob, ResumeJob.id == ResumeAttempt.job_id).where(ResumeJob.crew_id == filters.crew_id)
    stmt = _in_range(stmt, ResumeAttempt.started_at, filters)
    return [Count(row[0], int(row[1])) for row in db.session.execute(stmt)]


# --------------------------------------------------------------------------- queue


def queue_now(filters: MetricFilters) -> Queue:
    """Rounds waiting for a decision right now, per crew (the date range does not apply)."""
    stmt = (
        select(ReviewRound.crew_id, func.count(), func.min(ReviewRound.received_at))
        .where(PENDING_ROUND)
        .group_by(ReviewRound.crew_id)
    )
    if filters.crew_id is not None:
        stmt = stmt.where(ReviewRound.crew_id == filters.crew_id)
    names = crew_names()
    rows = [QueueRow(names[crew], int(pending), oldest) for crew, pending, oldest in db.session.execute(stmt)]
    return Queue(sorted(rows, key=lambda row: (-row.pending, row.crew)))

