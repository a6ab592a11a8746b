"""Query-string filters of the audit pages, parsed strictly: a bad value is a clear
message (the view answers 400 with it), never a database error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ..models import JobState

MAX_QUERY_CHARS = 200
MAX_NAME_CHARS = 128
MAX_ID = 2**31 - 1
DECISIONS = ("approve", "revise")
OUTCOMES = tuple(state.value for state in JobState)
METRICS_DEFAULT_DAYS = 30
METRICS_MAX_DAYS = 366


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class DateRange:
    first: date | None = None  # inclusive, UTC days
    last: date | None = None  # inclusive

    @property
    def start(self) -> datetime | None:
        return _midnight(self.first) if self.first else None

    @property
    def end(self) -> datetime | None:
        """Exclusive upper bound: midnight after ``last``."""
        return _midnight(self.last + timedelta(days=1)) if self.last else None

    def conditions(self, column: Any) -> list[Any]:
        """SQL conditions keeping ``column`` (a timestamp) inside the range."""
        bounds = []
        if self.start is not None:
            bounds.append(column >= self.start)
        if self.end is not None:
            bounds.append(column < self.end)
        return bounds

    def as_args(self) -> dict[str, str]:
        args = {}
        if self.first:
            args["from"] = self.first.isoformat()
        if self.last:
            args["to"] = self.last.isoformat()
        return args


@dataclass(frozen=True)
class HistoryFilters:
    crew_id: int | None = None
    reviewer_id: int | None = None
    decision: str | None = None  # "approve" | "revise"
    outcome: str | None = None  # a JobState value
    q: str = ""
    dates: DateRange = field(default_factory=DateRange)

    def as_args(self) -> dict[str, str]:
        """The filters as query-string arguments (for page and export links)."""
        names = {"crew_id": "crew", "reviewer_id": "reviewer"}
        args = {
            names.get(key, key): str(value)
            for key, value in asdict(self).items()
            if key != "dates" and value not in (None, "")
        }
        return args | self.dates.as_args()


@dataclass(frozen=True)
class EventFilters:
    event: str = ""
    actor: str = ""
    target: str = ""
    dates: DateRange = field(default_factory=DateRange)

    def as_args(self) -> dict[str, str]:
        args = {key: value for key, value in asdict(self).items() if key != "dates" and value}
        return args | self.dates.as_args()


@dataclass(frozen=True)
class MetricFilters:
    dates: DateRange
    crew_id: int | None = None

    def as_args(self) -> dict[str, str]:
        args = self.dates.as_args()
        if self.crew_id is not None:
            args["crew"] = str(self.crew_id)
        return args


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _text(args: Any, name: str, limit: int) -> str:
    value = (args.get(name) or "").strip()
    if len(value) > limit:
        raise FilterError(f"The {name} filter is longer than {limit} characters.")
    return value


def _identifier(args: Any, name: str, label: str) -> int | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise FilterError(f"Choose a {label} from the list.")
    return int(value)


def _choice(args: Any, name: str, choices: tuple[str, ...]) -> str | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    if value not in choices:
        raise FilterError(f"The {name} filter must be one of: {', '.join(choices)}.")
    return value


def _day(args: Any, name: str) -> date | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"The '{name}' date must look like 2025-01-31.") from None


def parse_dates(args: Any) -> DateRange:
    first, last = _day(args, "from"), _day(args, "to")
    if first and last and first > last:
        raise FilterError("The 'from' date is after the 'to' date.")
    if last and last >= date.max - timedelta(days=1):
        raise FilterError("The 'to' date is too far in the future.")
    return DateRange(first, last)


def parse_history_filters(args: Any) -> HistoryFilters:
    return HistoryFilters(
        crew_id=_identifier(args, "crew", "crew"),
        reviewer_id=_identifier(args, "reviewer", "reviewer"),
        decision=_choice(args, "decision", DECISIONS),
        outcome=_choice(args, "outcome", OUTCOMES),
        q=_text(args, "q", MAX_QUERY_CHARS),
        dates=parse_dates(args),
    )


def parse_event_filters(args: Any) -> EventFilters:
    return EventFilters(
        event=_text(args, "event", MAX_NAME_CHARS),
        actor=_text(args, "actor", MAX_NAME_CHARS),
        target=_text(args, "target", MAX_NAME_CHARS),
        dates=parse_dates(args),
    )


def parse_metric_filters(args: Any, *, today: date) -> MetricFilters:
    """A bounded range of days: ``to`` defaults to today, ``from`` to 30 days before it."""
    given = parse_dates(args)
    last = given.last or max(today, given.first or today)
    first = given.first or last - timedelta(days=METRICS_DEFAULT_DAYS - 1)
    if (last - first).days >= METRICS_MAX_DAYS:
        raise FilterError(f"Choose at most {METRICS_MAX_DAYS} days for the metrics.")
    return MetricFilters(dates=DateRange(first, last), crew_id=_identifier(args, "crew", "crew"))
