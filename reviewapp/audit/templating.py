"""Template filters of the audit pages for values shown on every row of a long page.

A Jinja filter is a direct Python call; a macro call (or a method call such as
``value.strftime(...)``) goes through the template runtime, which costs ~10-20 us each,
i.e. milliseconds on a 50-row page. The macros of ``audit/_audit.html`` call these too,
so each piece of markup is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from markupsafe import Markup

from ..models import JobState

JOB_BADGE_CLASSES = {
    JobState.SUCCEEDED: "badge-ok",
    JobState.PENDING: "badge-warn",
    JobState.FAILED: "badge-bad",
    JobState.STALE: "badge-warn",
    JobState.DISMISSED: "badge-bad",
}


def when(value: datetime | None) -> Markup:
    """A UTC timestamp as ``<time>`` to the second, or a dash."""
    if not value:
        return Markup("—")
    # Markup % escapes its arguments like Markup.format(), without string.Formatter (slow).
    return Markup('<time datetime="%s">%s</time>') % (
        value.isoformat(),
        value.strftime("%Y-%m-%d %H:%M:%S"),
    )


def job_badge(state: JobState | None) -> Markup:
    """A resume job's state as a coloured badge ("no job" without one)."""
    if state is None:
        return Markup('<span class="badge ">no job</span>')
    return Markup('<span class="badge %s">%s</span>') % (JOB_BADGE_CLASSES.get(state, ""), state.value)


FILTERS: dict[str, Callable[..., Any]] = {"when": when, "job_badge": job_badge}
