"""The crew and reviewer lists of the filter forms (queue, history, metrics), read at
most once every ``FILTER_LISTS_SECONDS`` (10) per process.

Every list page shows them and they change seldom: read on every view, they were a
statement of their own (0.56M instructions of a history page's 14M, and a round trip
on PostgreSQL). A change this process commits through the ORM (an admin adding a crew
or an account) empties the cache at once; one made elsewhere (another worker, the CLI)
shows within the interval. ``FILTER_LISTS_SECONDS = 0`` reads them on every view.
"""

from __future__ import annotations

import time
from itertools import chain, count
from typing import Any, NamedTuple

from flask import current_app, has_app_context
from sqlalchemy import event, select, union_all
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import Crew, User
from ..statements import inline

_CACHE = "reviewapp.filter_lists"
_CHANGED = "reviewapp.filter_lists_changed"  # in Session.info: a Crew or User was flushed

_CREW_TABLE, _USER_TABLE = Crew.__table__, User.__table__
_KINDS = union_all(
    select(inline("crew").label("kind"), _CREW_TABLE.c.id.label("id"), _CREW_TABLE.c.name.label("name")),
    select(inline("user").label("kind"), _USER_TABLE.c.id.label("id"), _USER_TABLE.c.username.label("name")),
).subquery()
_CREWS_AND_USERS = select(_KINDS).order_by(_KINDS.c.kind, _KINDS.c.name)


class FilterLists(NamedTuple):
    crews: list[tuple[int, str]]  # (id, name) by name
    users: list[tuple[int, str]]  # (id, username) by username
    version: int  # a new number each time the lists are read (markup built from them is keyed on it)


_VERSIONS = count(1)


def _read() -> FilterLists:
    """Both lists in one statement (a lead's history page shows both)."""
    lists = FilterLists([], [], next(_VERSIONS))
    for kind, row_id, name in db.session.execute(_CREWS_AND_USERS):
        (lists.crews if kind == "crew" else lists.users).append((row_id, name))
    return lists


def filter_lists() -> FilterLists:
    seconds = float(current_app.config.get("FILTER_LISTS_SECONDS", 10))
    cache: dict[str, tuple[float, FilterLists]] = current_app.extensions.setdefault(_CACHE, {})
    now = time.monotonic()
    held = cache.get("lists")
    if held is not None and now < held[0]:
        return held[1]
    lists = _read()
    if seconds > 0:
        cache["lists"] = (now + seconds, lists)
    return lists


def crew_choices() -> list[tuple[int, str]]:
    return filter_lists().crews


def forget() -> None:
    """Read the lists again at the next view (this process)."""
    current_app.extensions.pop(_CACHE, None)


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, flush_context: Any) -> None:
    # after_flush still sees what the flush wrote as new / dirty / deleted
    if any(isinstance(obj, Crew | User) for obj in chain(session.new, session.dirty, session.deleted)):
        session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _forget_on_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False) and has_app_context():
        forget()


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(_CHANGED, None)
