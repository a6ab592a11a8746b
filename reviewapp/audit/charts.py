"""Chart geometry for server-side SVG (no CDN, no JavaScript).

These functions only compute shapes and label strings; ``templates/audit/_charts.html``
draws them, and Jinja's autoescaping escapes every label (crew names, usernames and
task ids are user-controlled text).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

WIDTH = 560
LABEL_WIDTH = 170  # horizontal charts: room for the row names
ROW_HEIGHT = 22
COLUMN_AREA_HEIGHT = 180
TOP = 12
BOTTOM = 40  # column charts: room for the category labels
MAX_LABEL_CHARS = 24


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class from app.css: chart-ok, chart-bad, chart-a, chart-b, ...
    values: list[float]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    tip: str  # the <title> tooltip: "name: value"


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"
    css: str = "chart-label"


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    lines: list[tuple[float, float, float, float]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css, name)

    @property
    def empty(self) -> bool:
        return not self.rects


def short(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _legend(series: list[Series]) -> list[tuple[str, str]]:
    return [(s.css, s.name) for s in series] if len(series) > 1 else []


def stacked_columns(
    title: str,
    categories: list[str],
    series: list[Series],
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> Chart:
    """Vertical columns, one per category, each series stacked on the previous one."""
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    top = nice_max(max(totals, default=0))
    plot_left, plot_width = 48, WIDTH - 72
    slot = plot_width / max(len(categories), 1)
    bar = max(slot * 0.8, 1.0)
    every = max(1, math.ceil(len(categories) / 7))  # at most 7 category labels
    baseline = TOP + COLUMN_AREA_HEIGHT
    chart = Chart(title, WIDTH, baseline + BOTTOM, legend=_legend(series))
    chart.lines.append((plot_left, baseline, WIDTH - 8, baseline))
    chart.texts.append(Text(plot_left - 6, TOP + 8, fmt(top), "end"))
    chart.texts.append(Text(plot_left - 6, baseline, "0", "end"))
    for i, category in enumerate(categories):
        x = plot_left + i * slot + (slot - bar) / 2
        y = float(baseline)
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            height = COLUMN_AREA_HEIGHT * value / top
            y -= height
            chart.rects.append(Rect(x, y, bar, height, s.css, f"{category} · {s.name}: {fmt(value)}"))
        if i % every == 0:
            chart.texts.append(Text(x + bar / 2, baseline + 16, short(category, 12), "middle"))
    return chart


def grouped_bars(
    title: str,
    names: list[str],
    series: list[Series],
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    maximum: float | None = None,
) -> Chart:
    """Horizontal bars, one row per name, one bar per series in the row."""
    top = maximum or nice_max(max((v for s in series for v in s.values), default=0))
    plot_left, plot_width = LABEL_WIDTH, WIDTH - LABEL_WIDTH - 80
    row = ROW_HEIGHT * len(series) + 8
    height = TOP + row * len(names) + 8
    chart = Chart(title, WIDTH, height, legend=_legend(series))
    chart.lines.append((plot_left, TOP - 4, plot_left, height - 4))
    for i, name in enumerate(names):
        y = TOP + i * row
        chart.texts.append(Text(plot_left - 8, y + row / 2, short(name), "end"))
        for j, s in enumerate(series):
            value = s.values[i]
            width = max(plot_width * value / top, 0.0) if top else 0.0
            bar_y = y + j * ROW_HEIGHT
            chart.rects.append(Rect(plot_left, bar_y, max(width, 1.0), ROW_HEIGHT - 4, s.css, f"{name} · {s.name}: {fmt(value)}"))
            chart.texts.append(Text(plot_left + width + 6, bar_y + ROW_HEIGHT / 2, fmt(value), css="chart-value"))
    return chart
