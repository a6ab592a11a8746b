"""Review-process metrics, aggregated in the database so a million decisions stay fast.

One grouped query ("facts": counts per crew, task, reviewer, round, verdict and resume
state) feeds the revise rates, the rounds-until-approval histogram and the job states;
one more gives the latency percentiles; per-day counts skip the joins they do not need.

Percentiles use the nearest-rank definition (PostgreSQL's ``percentile_disc``): the
p-th percentile of n sorted values is value number ceil(p * n), so the median of an
even count is the lower of the two middle values. PostgreSQL computes it with
``percentile_disc`` over grouping sets, SQLite with window functions; both give the
same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, select, tuple_, union_all

from ..extensions import db
from ..models import Crew, Decision, ResumeAttempt, ResumeJob, ReviewRound, RoundState, User
from .dialect import is_postgres, seconds_between, utc_day
from .filters import MetricFilters

MAX_GROUPS = 25  # per chart; the busiest groups
LATENCY_GROUPS = ("crew", "reviewer")
# Attempt results that mean a resume did not get through (see reviews/delivery.py);
# a failed status check is recorded as "status:<result>".
FAILURE_RESULTS = ("not_pending", "not_found", "rejected", "unauthorized", "unavailable", "ambiguous", "error")
FAILURE_LABELS = FAILURE_RESULTS + tuple(f"status:{result}" for result in FAILURE_RESULTS)


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


def _decisions(filters: MetricFilters, *columns: Any) -> Select:
    """``columns`` over the range's decisions and their rounds. Groups are by crew and
    reviewer id (names are looked up afterwards: no joins over a million rows)."""
    stmt = select(*columns).select_from(Decision).join(ReviewRound, ReviewRound.id == Decision.round_id)
    if filters.crew_id is not None:
        stmt = stmt.where(ReviewRound.crew_id == filters.crew_id)
    return _in_range(stmt, Decision.created_at, filters)


def decisions_per_day(filters: MetricFilters) -> list[DayCount]:
    """Every day of the range, days without decisions included (as zeros)."""
    day = utc_day(Decision.created_at).label("day")
    revised = func.sum(case((Decision.is_approve.is_(False), 1), else_=0))
    stmt = select(day, func.count(), revised).select_from(Decision).group_by(day)
    if filters.crew_id is not None:  # the only reason to join the rounds
        stmt = stmt.join(ReviewRound, ReviewRound.id == Decision.round_id).where(
            ReviewRound.crew_id == filters.crew_id
        )
    stmt = _in_range(stmt, Decision.created_at, filters)
    counts = {str(row[0])[:10]: (int(row[1]), int(row[2] or 0)) for row in db.session.execute(stmt)}
    first, last = filters.dates.first, filters.dates.last
    if first is None or last is None:  # pragma: no cover - metric filters always bound it
        return []
    result = []
    for offset in range((last - first).days + 1):
        current = first + timedelta(days=offset)
        total, revised_count = counts.get(current.isoformat(), (0, 0))
        result.append(DayCount(current, approved=total - revised_count, revised=revised_count))
    return result


def _names(column_id: Any, column_name: Any) -> dict[int, str]:
    return {row_id: name for row_id, name in db.session.execute(select(column_id, column_name))}


def crew_names() -> dict[int, str]:
    return _names(Crew.id, Crew.name)


def reviewer_names() -> dict[int, str]:
    return _names(User.id, User.username)


def decision_facts(filters: MetricFilters) -> list[Fact]:
    """One pass over the range's decisions, grouped finely enough for several charts."""
    keys = (ReviewRound.crew_id, ReviewRound.task_id, Decision.reviewer_id, ReviewRound.round_number,
            Decision.is_approve, ResumeJob.state)
    stmt = (
        _decisions(filters, *keys, func.count())
        .outerjoin(ResumeJob, ResumeJob.decision_id == Decision.id)
        .group_by(*keys)
    )
    crews, reviewers = crew_names(), reviewer_names()
    return [
        Fact(crews[crew], task, reviewers[reviewer], int(number), bool(approved),
             state.value if state else None, int(n))
        for crew, task, reviewer, number, approved, state, n in db.session.execute(stmt)
    ]


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


def _wait_seconds() -> ColumnElement:
    return seconds_between(ReviewRound.received_at, Decision.created_at)


_GROUP_COLUMNS = {"crew": ReviewRound.crew_id, "reviewer": Decision.reviewer_id}


def notification_to_decision(filters: MetricFilters) -> dict[str, list[Latency]]:
    """Median and p90 seconds from the notification (round received) to the decision,
    per crew and per reviewer, busiest first."""
    rows = _latency_postgres(filters) if is_postgres() else _latency_windowed(filters)
    names = {"crew": crew_names(), "reviewer": reviewer_names()}
    result: dict[str, list[Latency]] = {group: [] for group in LATENCY_GROUPS}
    for group, group_id, n, median, p90 in rows:
        result[group].append(Latency(names[group][group_id], int(n), float(median), float(p90)))
    for latencies in result.values():
        latencies.sort(key=lambda item: (-item.decisions, item.name))
        del latencies[MAX_GROUPS:]
    return result


_LatencyRow = tuple[str, int, int, Any, Any]  # group, id, decisions, median, p90


def _latency_postgres(filters: MetricFilters) -> list[_LatencyRow]:
    """Both groupings in one pass: GROUPING SETS with ``percentile_disc``."""
    seconds = _wait_seconds()
    crew, reviewer = _GROUP_COLUMNS["crew"], _GROUP_COLUMNS["reviewer"]
    stmt = _decisions(
        filters,
        func.grouping(crew).label("by_reviewer"),
        crew,
        reviewer,
        func.count(),
        func.percentile_disc(0.5).within_group(seconds),
        func.percentile_disc(0.9).within_group(seconds),
    ).group_by(func.grouping_sets(tuple_(crew), tuple_(reviewer)))
    return [
        ("reviewer", reviewer_id, n, median, p90) if by_reviewer else ("crew", crew_id, n, median, p90)
        for by_reviewer, crew_id, reviewer_id, n, median, p90 in db.session.execute(stmt)
    ]


def _nearest_rank(count: ColumnElement, numerator: int, denominator: int) -> ColumnElement:
    """ceil(count * numerator / denominator) in integer arithmetic."""
    return (count * numerator + (denominator - 1)) // denominator


def _latency_windowed(filters: MetricFilters) -> list[_LatencyRow]:
    """Portable version (no ordered-set aggregates): rank within each group, pick ranks.

    The waits are computed and ranked once (a CTE the database materialises), then read
    twice: per crew and per reviewer."""
    waits = _decisions(
        filters,
        *(_GROUP_COLUMNS[group].label(group) for group in LATENCY_GROUPS),
        _wait_seconds().label("seconds"),
    ).subquery()
    windows = []
    for group in LATENCY_GROUPS:
        windows += [
            func.row_number().over(partition_by=waits.c[group], order_by=waits.c.seconds).label(f"{group}_rank"),
            func.count().over(partition_by=waits.c[group]).label(f"{group}_n"),
        ]
    ranked = select(*waits.c, *windows).cte("ranked")
    per_group = []
    for group in LATENCY_GROUPS:
        rank, n = ranked.c[f"{group}_rank"], ranked.c[f"{group}_n"]

        def value_at(at: ColumnElement, rank: Any = rank) -> ColumnElement:
            return func.max(case((rank == at, ranked.c.seconds)))

        per_group.append(
            select(
                literal(group), ranked.c[group], func.max(n),
                value_at(_nearest_rank(n, 1, 2)), value_at(_nearest_rank(n, 9, 10)),
            ).group_by(ranked.c[group])
        )
    return [tuple(row) for row in db.session.execute(union_all(*per_group))]


# --------------------------------------------------------------------------- resumes


def resume_failures(filters: MetricFilters) -> list[Count]:
    """Resume (and status-check) attempts in the range that did not get through."""
    total = func.count().label("n")
    stmt = (
        select(ResumeAttempt.result, total)
        .join(ResumeJob, ResumeJob.id == ResumeAttempt.job_id)
        .where(ResumeAttempt.result.in_(FAILURE_LABELS))
        .group_by(ResumeAttempt.result)
        .order_by(total.desc(), ResumeAttempt.result)
    )
    if filters.crew_id is not None:
        stmt = stmt.where(ResumeJob.crew_id == filters.crew_id)
    stmt = _in_range(stmt, ResumeAttempt.started_at, filters)
    return [Count(row[0], int(row[1])) for row in db.session.execute(stmt)]


# --------------------------------------------------------------------------- queue


def queue_now(filters: MetricFilters) -> Queue:
    """Rounds waiting for a decision right now, per crew (the date range does not apply)."""
    stmt = (
        select(Crew.name, func.count(), func.min(ReviewRound.received_at))
        .select_from(ReviewRound)
        .join(Crew, Crew.id == ReviewRound.crew_id)
        .where(ReviewRound.state == RoundState.PENDING)
        .group_by(Crew.name)
        .order_by(func.count().desc(), Crew.name)
    )
    if filters.crew_id is not None:
        stmt = stmt.where(ReviewRound.crew_id == filters.crew_id)
    return Queue([QueueRow(name, int(pending), oldest) for name, pending, oldest in db.session.execute(stmt)])

