"""Template filters for values shown on every row of a long page (history, queue).

A Jinja filter is a direct Python call; a macro call (or a method call such as
``value.strftime(...)``) goes through the template runtime, which costs ~10-20 us each,
i.e. milliseconds on a 50-row page. The macros of ``audit/_audit.html`` call these too,
so each piece of markup is written once.

Escaping is the other per-value cost: autoescaping wraps every value in ``Markup``
(~2 us each, 500-850 values on a 50-row page: more than the rest of the page).
:func:`escaped_rows` escapes all the text of a page's rows in one call instead, for a
``{% autoescape false %}`` block that shows nothing but those rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any, get_args, get_type_hints

from markupsafe import Markup, escape

from ..models import JobState

JOB_BADGE_CLASSES = {
    JobState.SUCCEEDED: "badge-ok",
    JobState.PENDING: "badge-warn",
    JobState.FAILED: "badge-bad",
    JobState.STALE: "badge-warn",
    JobState.DISMISSED: "badge-bad",
}


_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))


def _utc_date_and_time(value: datetime) -> tuple[str, str]:
    """``("2025-01-31", "09:05:00")``, from the fields: ``isoformat`` formats through C's
    printf machinery, ~5,700 instructions a call, five times this."""
    two = _TWO_DIGITS
    return (
        f"{value.year:04d}-{two[value.month]}-{two[value.day]}",
        f"{two[value.hour]}:{two[value.minute]}:{two[value.second]}",
    )


def utc_seconds(value: datetime) -> str:
    """``2025-01-31 09:05:00`` for a UTC timestamp."""
    day, time = _utc_date_and_time(value)
    return f"{day} {time}"


def _built(html: str) -> Markup:
    """``Markup(html)`` for markup built here from escaped or digit-only parts, made the
    way ``str`` makes a subclass (``Markup()`` first asks its argument for ``__html__``
    in Python: a quarter of :func:`when`'s cost)."""
    return str.__new__(Markup, html)


def when(value: datetime | None) -> Markup:
    """A UTC timestamp as ``<time>`` to the second, or a dash."""
    if not value:
        return Markup("—")
    day, time = _utc_date_and_time(value)
    if value.tzinfo is UTC:  # as every stored time is read (UtcDateTime): isoformat's text, built here
        micro = value.microsecond
        iso = f"{day}T{time}.{micro:06d}+00:00" if micro else f"{day}T{time}+00:00"
    else:
        iso = value.isoformat()
    # Digits and "-:.+T" only: nothing to escape (Markup % would escape both parts, at
    # several times the cost of the rest).
    return _built(f'<time datetime="{iso}">{day} {time}</time>')


def _badge(state: JobState | None) -> Markup:
    if state is None:
        return Markup('<span class="badge ">no job</span>')
    return Markup('<span class="badge %s">%s</span>') % (JOB_BADGE_CLASSES.get(state, ""), state.value)


_BADGES = {state: _badge(state) for state in (None, *JobState)}


def job_badge(state: JobState | None) -> Markup:
    """A resume job's state as a coloured badge ("no job" without one); each built once."""
    return _BADGES[state]


_SEPARATOR = "\x00"  # escape() leaves it alone


def _escape_all(texts: list[str]) -> list[str]:
    """``str(escape(text))`` of each text, from a single ``escape`` call."""
    escaped = str(escape(_SEPARATOR.join(texts))).split(_SEPARATOR)
    if len(escaped) != len(texts):  # some text held the separator itself
        return [str(escape(text)) for text in texts]
    return escaped


@cache
def _text_fields(row_type: Any) -> tuple[int, ...]:
    """Positions of the fields a named tuple type declares as text (``str`` or ``str | None``)."""
    hints = get_type_hints(row_type)
    fields: tuple[str, ...] = row_type._fields
    return tuple(i for i, name in enumerate(fields) if str in (hints[name], *get_args(hints[name])))


def escaped_rows(rows: Sequence[Any]) -> list[Any]:
    """``rows`` (named tuples of one type, as a page's statement read them) with every
    text field HTML-escaped (None as ""); other values (numbers, timestamps, states)
    stay as they are.

    Only for a ``{% autoescape false %}`` block that shows these rows' fields (escaped
    here) and values whose markup is safe by construction (numbers, URLs of our routes,
    filters returning ``Markup``): anything else in the block would not be escaped.

    Column by column: each text column escaped in one call, the rows taken apart and put
    together again by ``zip`` (C loops, no Python step per row or per field)."""
    if not rows:
        return []
    row_type: Any = type(rows[0])
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for i in _text_fields(row_type):
        columns[i] = _escape_all([text or "" for text in columns[i]])
    return list(map(partial(tuple.__new__, row_type), zip(*columns, strict=True)))


def select_options(options: Sequence[tuple[Any, Any]], selected: Any = None) -> Markup:
    """The ``<option>`` elements of a filter's ``<select>``: one per ``(value, text)``,
    the one whose value reads as ``selected`` marked so; values and texts escaped in one
    call (a filter form lists every crew and reviewer: written by a macro loop, they
    cost a tenth of a history page)."""
    chosen = None if selected is None else str(selected)
    values = [str(value) for value, _text in options]
    escaped = _escape_all(values + [str(text) for _value, text in options])
    count = len(values)
    return _built("".join(  # every value and text escaped above
        f'<option value="{escaped[i]}"{" selected" if values[i] == chosen else ""}>{escaped[count + i]}</option>'
        for i in range(count)
    ))


FILTERS: dict[str, Callable[..., Any]] = {
    "when": when, "job_badge": job_badge, "escaped_rows": escaped_rows, "select_options": select_options,
}
