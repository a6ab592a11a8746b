"""Chart geometry: bars in proportion, stacked on each other, labels kept as text."""

from __future__ import annotations

import pytest

from reviewapp.audit.charts import (
    COLUMN_AREA_HEIGHT,
    Series,
    grouped_bars,
    nice_max,
    short,
    stacked_columns,
)


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (101, 200), (0.3, 0.5)])
def test_nice_max(value, top):
    assert nice_max(value) == top


def test_stacked_columns_stack_in_proportion():
    chart = stacked_columns("t", ["a", "b"], [Series("ok", "chart-ok", [2, 0]), Series("bad", "chart-bad", [3, 1])])
    heights = [(r.css, round(r.height, 6)) for r in chart.rects]
    unit = COLUMN_AREA_HEIGHT / 5  # axis top: nice_max(5)
    assert heights == [("chart-ok", 2 * unit), ("chart-bad", 3 * unit), ("chart-bad", 1 * unit)]
    first_ok, first_bad = chart.rects[0], chart.rects[1]
    assert first_bad.y + first_bad.height == pytest.approx(first_ok.y)  # stacked on top
    assert chart.legend == [("chart-ok", "ok"), ("chart-bad", "bad")]
    assert first_ok.tip == "a · ok: 2"


def test_grouped_bars_one_bar_per_series_and_row():
    chart = grouped_bars("t", ["crew <b>"], [Series("median", "chart-a", [30]), Series("p90", "chart-b", [60])],
                         fmt=lambda v: f"{v:g} s")
    assert [r.css for r in chart.rects] == ["chart-a", "chart-b"]
    assert chart.rects[1].width == pytest.approx(2 * chart.rects[0].width)
    assert "crew <b>" in [t.text for t in chart.texts]  # escaped by the template, not here
    assert "60 s" in [t.text for t in chart.texts]


def test_empty_chart():
    assert stacked_columns("t", ["a"], [Series("x", "chart-a", [0])]).empty
    assert grouped_bars("t", [], [Series("x", "chart-a", [])]).empty


def test_short_labels():
    assert short("abc") == "abc"
    assert short("x" * 40) == "x" * 23 + "…"
