"""Review-process metrics, aggregated in the database (a million decisions stay fast).

Percentiles use the nearest-rank definition (PostgreSQL's ``percentile_disc``): the
p-th percentile of n sorted values is value number ceil(p * n). The median of an even
count is therefore the lower of the two middle values. Both databases compute it with
window functions, so they give identical numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select

from ..extensions import db
from ..models import Crew, Decision, ResumeAttempt, ResumeJob, ReviewRound, RoundState, User
from .dialect import seconds_between, utc_day
from .filters import MetricFilters

MAX_GROUPS = 25  # per chart; the busiest groups
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


def _decisions(filters: MetricFilters, *columns: Any) -> Select:
    """``columns`` over the decisions in the filters' range (rounds, crews, users joined)."""
    stmt = (
        select(*columns)
        .select_from(Decision)
        .join(ReviewRound, ReviewRound.id == Decision.round_id)
        .join(Crew, Crew.id == ReviewRound.crew_id)
        .join(User, User.id == Decision.reviewer_id)
    )
    if filters.dates.start is not None:
        stmt = stmt.where(Decision.created_at >= filters.dates.start)
    if filters.dates.end is not None:
        stmt = stmt.where(Decision.created_at < filters.dates.end)
    if filters.crew_id is not None:
        stmt = stmt.where(ReviewRound.crew_id == filters.crew_id)
    return stmt


def _revised() -> ColumnElement:
    return func.sum(case((Decision.is_approve.is_(False), 1), else_=0))


def decisions_per_day(filters: MetricFilters) -> list[DayCount]:
    """Every day of the range, days without decisions included (as zeros)."""
    day = utc_day(Decision.created_at).label("day")
    stmt = _decisions(filters, day, func.count(), _revised()).group_by(day)
    counts = {row[0]: (int(row[1]), int(row[2] or 0)) for row in db.session.execute(stmt)}
    first, last = filters.dates.first, filters.dates.last
    if first is None or last is None:  # pragma: no cover - metric filters always bound it
        return []
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    result = []
    for current in days:
        total, revised = counts.get(current.isoformat(), (0, 0))
        result.append(DayCount(current, approved=total - revised, revised=revised))
    return result


def _group_column(group: str) -> ColumnElement:
    if group == "crew":
        return Crew.name
    if group == "reviewer":
        return User.username
    if group == "task":
        return Crew.name + " / " + ReviewRound.task_id
    raise ValueError(f"unknown group {group!r}")


def _nearest_rank(count: ColumnElement, numerator: int, denominator: int) -> ColumnElement:
    """ceil(count * numerator / denominator) in integer arithmetic."""
    return (count * numerator + (denominator - 1)) // denominator


def notification_to_decision(filters: MetricFilters, group: str) -> list[Latency]:
    """Median and p90 seconds from the notification (round received) to the decision."""
    name = _group_column(group).label("name")
    seconds = seconds_between(ReviewRound.received_at, Decision.created_at).label("seconds")
    durations = _decisions(filters, name, seconds).subquery()
    ranked = select(
        durations.c.name,
        durations.c.seconds,
        func.row_number()
        .over(partition_by=durations.c.name, order_by=durations.c.seconds)
        .label("rank"),
        func.count().over(partition_by=durations.c.name).label("n"),
    ).subquery()

    def value_at(rank: ColumnElement) -> ColumnElement:
        return func.max(case((ranked.c.rank == rank, ranked.c.seconds)))

    stmt = (
        select(
            ranked.c.name,
            func.max(ranked.c.n).label("n"),
            value_at(_nearest_rank(ranked.c.n, 1, 2)).label("median"),
            value_at(_nearest_rank(ranked.c.n, 9, 10)).label("p90"),
        )
        .group_by(ranked.c.name)
        .order_by(func.max(ranked.c.n).desc(), ranked.c.name)
        .limit(MAX_GROUPS)
    )
    return [
        Latency(row.name, int(row.n), float(row.median), float(row.p90))
        for row in db.session.execute(stmt)
    ]


def revise_rates(filters: MetricFilters, group: str) -> list[ReviseRate]:
    name = _group_column(group).label("name")
    total = func.count().label("decisions")
    stmt = (
        _decisions(filters, name, total, _revised().label("revised"))
        .group_by(name)
        .order_by(total.desc(), name)
        .limit(MAX_GROUPS)
    )
    return [ReviseRate(row.name, int(row.decisions), int(row.revised or 0)) for row in db.session.execute(stmt)]


def rounds_until_approval(filters: MetricFilters) -> list[Count]:
    """How many approvals came at round 1, 2, 3, ... of their task."""
    rounds = ReviewRound.round_number.label("rounds")
    stmt = (
        _decisions(filters, rounds, func.count())
        .where(Decision.is_approve.is_(True))
        .group_by(rounds)
        .order_by(rounds)
    )
    return [Count(str(row[0]), int(row[1])) for row in db.session.execute(stmt)]


def mean_rounds(counts: list[Count]) -> float | None:
    approvals = sum(c.count for c in counts)
    if not approvals:
        return None
    return round(sum(int(c.name) * c.count for c in counts) / approvals, 2)


# --------------------------------------------------------------------------- resumes


def _attempts(filters: MetricFilters, *columns: Any) -> Select:
    stmt = select(*columns).select_from(ResumeAttempt).join(ResumeJob, ResumeJob.id == ResumeAttempt.job_id)
    if filters.dates.start is not None:
        stmt = stmt.where(ResumeAttempt.started_at >= filters.dates.start)
    if filters.dates.end is not None:
        stmt = stmt.where(ResumeAttempt.started_at < filters.dates.end)
    if filters.crew_id is not None:
        stmt = stmt.where(ResumeJob.crew_id == filters.crew_id)
    return stmt


def resume_failures(filters: MetricFilters) -> list[Count]:
    """Resume (and status-check) attempts that did not get through, by result."""
    total = func.count().label("n")
    stmt = (
        _attempts(filters, ResumeAttempt.result, total)
        .where(ResumeAttempt.result.in_(FAILURE_LABELS))
        .group_by(ResumeAttempt.result)
        .order_by(total.desc(), ResumeAttempt.result)
    )
    return [Count(row[0], int(row[1])) for row in db.session.execute(stmt)]


def jobs_by_state(filters: MetricFilters) -> list[Count]:
    """Resume jobs of the range's decisions, by their current state."""
    total = func.count().label("n")
    stmt = (
        _decisions(filters, ResumeJob.state, total)
        .join(ResumeJob, ResumeJob.decision_id == Decision.id)
        .group_by(ResumeJob.state)
        .order_by(total.desc(), ResumeJob.state)
    )
    return [Count(row[0].value, int(row[1])) for row in db.session.execute(stmt)]


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
