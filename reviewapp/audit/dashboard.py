"""The metrics page: each panel is a chart plus the table of the numbers behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import metrics
from .charts import Chart, Series, grouped_bars, stacked_columns
from .filters import MetricFilters


@dataclass(frozen=True)
class Panel:
    key: str  # anchor id on the page
    title: str
    chart: Chart
    head: list[str]
    rows: list[list[Any]]
    note: str | None = None
    numeric: set[int] = field(default_factory=set)  # column indexes aligned right


@dataclass(frozen=True)
class Dashboard:
    panels: list[Panel]
    queue_depth: int
    oldest_pending: str | None


def format_seconds(seconds: float | None) -> str:
    """0.5 s, 3 s, 4 min 10 s, 2 h 05 min, 3 d 4 h (under a minute: at most one decimal)."""
    if seconds is None:
        return "—"
    whole = int(round(seconds))
    if whole < 60:
        return f"{round(seconds, 1):g} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _percent(value: float) -> str:
    return f"{value:g} %"


def _per_day(filters: MetricFilters) -> Panel:
    days = metrics.decisions_per_day(filters)
    chart = stacked_columns(
        "Decisions per day",
        [d.day.isoformat() for d in days],
        [
            Series("approved", "chart-ok", [d.approved for d in days]),
            Series("revise requested", "chart-bad", [d.revised for d in days]),
        ],
    )
    rows = [[d.day.isoformat(), d.approved, d.revised, d.total] for d in days if d.total]
    return Panel("per-day", "Decisions per day", chart, ["Day (UTC)", "Approved", "Revise", "Total"], rows, numeric={1, 2, 3})


def _latency(latencies: list[metrics.Latency], group: str, label: str) -> Panel:
    title = f"Time from notification to decision, per {label}"
    chart = grouped_bars(
        title,
        [item.name for item in latencies],
        [
            Series("median", "chart-a", [item.median_seconds for item in latencies]),
            Series("p90", "chart-b", [item.p90_seconds for item in latencies]),
        ],
        fmt=format_seconds,
    )
    rows = [
        [item.name, item.decisions, format_seconds(item.median_seconds), format_seconds(item.p90_seconds)]
        for item in latencies
    ]
    head = [label.capitalize(), "Decisions", "Median", "p90"]
    return Panel(f"latency-{group}", title, chart, head, rows, numeric={1, 2, 3})


def _revise_rate(facts: list[metrics.Fact], group: str, label: str) -> Panel:
    rates = metrics.revise_rates(facts, group)
    title = f"Revise rate per {label}"
    chart = grouped_bars(
        title,
        [r.name for r in rates],
        [Series("revise rate", "chart-bad", [r.percent for r in rates])],
        fmt=_percent,
        maximum=100.0,
    )
    rows = [[r.name, r.decisions, r.revised, _percent(r.percent)] for r in rates]
    head = [label.capitalize(), "Decisions", "Revise", "Revise rate"]
    return Panel(f"revise-{group}", title, chart, head, rows, numeric={1, 2, 3})


def _rounds(facts: list[metrics.Fact]) -> Panel:
    counts = metrics.rounds_until_approval(facts)
    title = "Rounds needed until approval"
    chart = stacked_columns(
        title, [f"round {c.name}" for c in counts], [Series("approvals", "chart-ok", [c.count for c in counts])]
    )
    mean = metrics.mean_rounds(counts)
    note = f"On average {mean:g} rounds per approved task." if mean is not None else None
    return Panel("rounds", title, chart, ["Approved at round", "Approvals"], [[c.name, c.count] for c in counts], note, {1})


def _counts_panel(key: str, title: str, counts: list[metrics.Count], head: list[str], css: str) -> Panel:
    chart = grouped_bars(title, [c.name for c in counts], [Series(head[1].lower(), css, [c.count for c in counts])])
    return Panel(key, title, chart, head, [[c.name, c.count] for c in counts], numeric={1})


def _queue(filters: MetricFilters, now: datetime) -> tuple[Panel, metrics.Queue]:
    queue = metrics.queue_now(filters)
    title = "Queue now, per crew"
    chart = grouped_bars(title, [r.crew for r in queue.rows], [Series("pending", "chart-a", [r.pending for r in queue.rows])])
    rows = [[r.crew, r.pending, _age(now - r.oldest)] for r in queue.rows]
    panel = Panel("queue", title, chart, ["Crew", "Pending", "Oldest waits for"], rows, numeric={1, 2})
    return panel, queue


def _age(age: timedelta) -> str:
    return format_seconds(max(age.total_seconds(), 0.0))


def build_dashboard(filters: MetricFilters, now: datetime) -> Dashboard:
    facts = metrics.decision_facts(filters)
    latency = metrics.notification_to_decision(filters)
    queue_panel, queue = _queue(filters, now)
    panels = [
        _per_day(filters),
        _latency(latency["crew"], "crew", "crew"),
        _latency(latency["reviewer"], "reviewer", "reviewer"),
        _revise_rate(facts, "crew", "crew"),
        _revise_rate(facts, "task", "task"),
        _revise_rate(facts, "reviewer", "reviewer"),
        _rounds(facts),
        _counts_panel("failures", "Resume failures by kind", metrics.resume_failures(filters), ["Result", "Attempts"], "chart-bad"),
        _counts_panel("jobs", "Resume jobs by state", metrics.jobs_by_state(facts), ["State", "Jobs"], "chart-a"),
        queue_panel,
    ]
    oldest = queue.oldest_age(now)
    return Dashboard(panels, queue.depth, _age(oldest) if oldest is not None else None)
