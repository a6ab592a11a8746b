"""Durations under a minute keep at most one decimal.

Regression (seen on the metrics page in the browser tour): a fresh queue's oldest round
read "Oldest waits for 2.06745 s"."""

from __future__ import annotations

import pytest

from reviewapp.audit.dashboard import format_seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.06745, "2.1 s"), (1.154, "1.2 s"), (0.04, "0 s"), (59.44, "59.4 s"), (12.0, "12 s"), (59.96, "1 min 00 s")],
)
def test_short_durations_are_rounded(seconds, text):
    assert format_seconds(seconds) == text
