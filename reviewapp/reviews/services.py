"""The review loop's services: the queue, claims, decisions, and failed resume jobs.

Services flush; the view or CLI command commits once. Whenever only one actor may win
(claiming, deciding, retrying a job) the service runs a conditional ``UPDATE ... WHERE``
and reads its row count: that works the same on SQLite and PostgreSQL, unlike
check-then-update or ``SELECT ... FOR UPDATE`` (a no-op on SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    case,
    func,
    inspect,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import defer, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from ..audit.dialect import cursor_page_plan, is_postgres, planner_settings, text_matches
from ..audit.pagination import Cursor
from ..audit.services import client_ip, record_event
from ..extensions import db
from ..models import (
    Crew,
    Decision,
    Execution,
    JobState,
    ResumeJob,
    ReviewRound,
    Role,
    RoundState,
    User,
    UtcDateTime,
    utcnow,
)
from ..statements import inline
from . import decision_writes

FEEDBACK_MAX_CHARS = 20_000
KICKOFF_SHORT_CHARS = 8  # of a kickoff id, a long page shows this much
QUEUE_PAGE_SIZE = 50
# The queue's count stops here ("1000+ pending rounds"): an exact count read every pending
# round on every queue page (0.8 ms on SQLite, 1.7-2.4 ms of PostgreSQL's time at 10k
# pending, against 0.1 / 0.45 ms up to the cap). The metrics page keeps the exact depth.
QUEUE_COUNT_CAP = 1000

# key -> (label, older than, younger than)
AGE_WINDOWS: dict[str, tuple[str, timedelta | None, timedelta | None]] = {
    "": ("any age", None, None),
    "lt1h": ("newer than 1 hour", None, timedelta(hours=1)),
    "gt1h": ("older than 1 hour", timedelta(hours=1), None),
    "gt4h": ("older than 4 hours", timedelta(hours=4), None),
    "gt24h": ("older than 1 day", timedelta(days=1), None),
}


class ReviewError(Exception):
    """A decision or claim that cannot go ahead; the message is shown to the user."""


class FeedbackRequired(ReviewError):
    pass


class RoundConflict(ReviewError):
    """Someone else won: the round is decided, stale, or claimed by another reviewer."""

    def __init__(self, message: str, round_: ReviewRound) -> None:
        super().__init__(message)
        self.round = round_


class AlreadyDecided(RoundConflict):
    pass


class RoundNotPending(RoundConflict):
    pass


class ClaimedByOther(RoundConflict):
    pass


class JobActionError(ReviewError):
    pass


# --------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class QueueFilters:
    crew_id: int | None = None
    task_id: str | None = None
    age: str = ""
    q: str = ""
    newest_first: bool = False

    def as_args(self) -> dict[str, str]:
        """The filters as query-string arguments (empty ones left out)."""
        args = {
            "crew": str(self.crew_id) if self.crew_id else "",
            "task": self.task_id or "",
            "age": self.age,
            "q": self.q,
            "sort": "newest" if self.newest_first else "",
        }
        return {key: value for key, value in args.items() if value}


class QueueRow(NamedTuple):
    """One row of the queue page, in the order the page statement selects it. A tuple:
    the template reads ten fields of each of 50 rows, and a tuple field is read ten
    times faster than a SQLAlchemy ``Row``'s attribute."""

    round_id: int
    received_at: datetime
    crew_name: str
    execution_id: int
    kickoff_short: str  # the kickoff id's first KICKOFF_SHORT_CHARS characters
    task_id: str
    agent: str | None
    round_number: int
    reviewer_name: str | None  # who holds a live claim, if anyone
    claim_expires_at: datetime | None
    snippet: str


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    total: int
    next_cursor: str | None
    # The count stops at QUEUE_COUNT_CAP matches: past it, ``total`` is that cap and the
    # page says "1000+". The rows listed are exact either way.
    total_is_lower_bound: bool = False


@dataclass(frozen=True)
class _Shape:
    """Which filters a request uses. The statements are built once per shape, with the
    filter values as named parameters (see :func:`_parameters`)."""

    crew: bool = False
    task: bool = False
    older: bool = False
    younger: bool = False

    @classmethod
    def of(cls, filters: QueueFilters) -> _Shape:
        _, older, younger = AGE_WINDOWS[filters.age]
        return cls(bool(filters.crew_id), bool(filters.task_id), older is not None, younger is not None)


def _conditions(shape: _Shape, rounds: Any = None) -> list[Any]:
    """The filters (but the text search) on ``rounds``: the table's columns, or a
    subquery's."""
    rounds = ReviewRound.__table__.c if rounds is None else rounds
    conditions = [rounds.state == inline(RoundState.PENDING, rounds.state.type)]
    if shape.crew:
        conditions.append(rounds.crew_id == bindparam("crew_id", type_=Integer()))
    if shape.task:
        conditions.append(rounds.task_id == bindparam("task_id", type_=String()))
    if shape.older:
        conditions.append(rounds.received_at <= bindparam("older_than", type_=UtcDateTime()))
    if shape.younger:
        conditions.append(rounds.received_at > bindparam("newer_than", type_=UtcDateTime()))
    return conditions


def _parameters(filters: QueueFilters, now: datetime) -> dict[str, Any]:
    _, older, younger = AGE_WINDOWS[filters.age]
    values = {
        "crew_id": filters.crew_id or None,
        "task_id": filters.task_id or None,
        "older_than": now - older if older is not None else None,
        "newer_than": now - younger if younger is not None else None,
    }
    return {key: value for key, value in values.items() if value is not None}


def _pending_matching(stmt, filters: QueueFilters, now: datetime):
    stmt = stmt.where(*_conditions(_Shape.of(filters))).params(_parameters(filters, now))
    if filters.q:  # full-text on PostgreSQL (GIN index), word substrings on SQLite
        stmt = stmt.where(text_matches(ReviewRound.output, filters.q))
    return stmt


def _count_statement(filters: QueueFilters, now: datetime, cap: int):
    """Counts the pending rounds matching ``filters`` (no text search), at most ``cap`` + 1."""
    shape = _Shape.of(filters)
    return _capped_count(shape, cap).params(_parameters(filters, now))


def _capped_count(shape: _Shape, cap: int) -> Select:
    """``count(*)`` of the first ``cap`` + 1 pending rounds of ``shape``: the database
    stops reading there."""
    rounds = ReviewRound.__table__.c
    matching = select(rounds.id).where(*_conditions(shape)).limit(inline(cap + 1)).subquery("matching")
    return select(func.count()).select_from(matching)


def count_queue(filters: QueueFilters, *, now: datetime | None = None) -> tuple[int, bool]:
    """``(count, is_lower_bound)`` of the pending rounds matching ``filters``.

    Counting stops after QUEUE_COUNT_CAP matches; the count is then a lower bound:
    ``(QUEUE_COUNT_CAP, True)``. A text search on SQLite reads each candidate's output
    (LIKE); on PostgreSQL it finds the matches in ix_review_rounds_pending_search and
    reads no output (re-parsing them took ~0.08 ms a row), see :func:`_text_matches` and
    :func:`_index_lookups_only`.
    """
    now = now or utcnow()
    if not filters.q:
        return capped_count(db.session.scalar(_count_statement(filters, now, QUEUE_COUNT_CAP)))
    matches = _text_matches(filters, now).limit(QUEUE_COUNT_CAP + 1)
    stmt = select(func.count()).select_from(matches.subquery())
    with _index_lookups_only():
        return capped_count(db.session.scalar(stmt))


def capped_count(found: int | None) -> tuple[int, bool]:
    """A count of at most QUEUE_COUNT_CAP + 1 rows as ``(count, is_lower_bound)``."""
    found = int(found or 0)
    return min(found, QUEUE_COUNT_CAP), found > QUEUE_COUNT_CAP


def _text_matches(filters: QueueFilters, now: datetime) -> Select:
    """The ids of the pending rounds matching ``filters``, a text search among them.

    PostgreSQL: the words are looked up among the pending rounds alone, in a subquery
    the planner neither merges nor pushes the other filters into (``OFFSET 0``); the
    other filters apply to what it finds. Given a crew filter next to the words it
    rather read the crew's pending rounds through ix_review_rounds_pending_crew and
    parsed each output (85 ms at 1M for 1001 matches), not using the search index."""
    if not is_postgres():
        return _pending_matching(select(ReviewRound.id), filters, now)
    rounds = ReviewRound.__table__.c
    found = (
        select(rounds.id, rounds.state, rounds.crew_id, rounds.task_id, rounds.received_at)
        .where(*_conditions(_Shape()), text_matches(rounds.output, filters.q))
        .offset(inline(0))
        .subquery("found")
    )
    shape = _Shape.of(filters)
    return select(found.c.id).where(*_conditions(shape, found.c)).params(_parameters(filters, now))


@contextmanager
def _index_lookups_only() -> Iterator[None]:
    """PostgreSQL: plan the statements run inside with bitmap index scans only.

    PostgreSQL under-costs to_tsvector() (~0.08 ms an output, it assumes far less): left
    alone, it counted a text search's matches by walking the pending rounds in
    ix_review_rounds_queue and parsing each output (80 ms for 1001 matches at 1M), or by
    a sequential scan that parses the decided rounds' too. Without plain index and
    sequential scans it looks the words up in ix_review_rounds_pending_search instead, no
    parsing (1-7 ms)."""
    with planner_settings(enable_seqscan="off", enable_indexscan="off"):
        yield


_QUEUE_INDEX = "ix_review_rounds_queue"  # (state, received_at, id)
_PENDING_CREW_INDEX = "ix_review_rounds_pending_crew"  # (crew_id, received_at) WHERE pending
_CARD_INDEX = "ix_review_rounds_pending_card"  # QUEUE_CARD_COLUMNS WHERE pending (SQLite only)


def _page_keys(shape: _Shape, *, newest_first: bool, after: bool, limit: int) -> Select:
    """The page's rounds, from ``review_rounds`` alone: the ``limit`` keys (``received_at``,
    ``id``) from the cursor (``after_at``, ``after_id``) on, in page order.

    A statement of its own (the page statement joins it, see :func:`_page_rows`), read
    through the index that gives page order, so that the database stops at the limit:
    ``ix_review_rounds_queue``, or ``ix_review_rounds_pending_crew`` for one crew. With
    the crews, executions and users joined in the same SELECT, SQLite at 1M rounds read
    every pending round crew by crew through ``ix_review_rounds_pending_crew`` and sorted
    them all (10-17 ms instead of 0.5 ms); alone, it still does so for an age filter
    after a cursor (a skip-scan of that index), hence ``INDEXED BY`` on SQLite.
    PostgreSQL picks these indexes by itself (checked with EXPLAIN at 1M)."""
    rounds_table = ReviewRound.__table__
    rounds = rounds_table.c
    index = _PENDING_CREW_INDEX if shape.crew else _QUEUE_INDEX
    stmt = (
        select(rounds.id, rounds.received_at)
        .where(*_conditions(shape))
        .with_hint(rounds_table, f"INDEXED BY {index}", dialect_name="sqlite")
    )
    key = tuple_(rounds.received_at, rounds.id)
    if after:
        position = tuple_(bindparam("after_at", type_=UtcDateTime()), bindparam("after_id", type_=BigInteger()))
        stmt = stmt.where(key < position if newest_first else key > position)
    if newest_first:
        stmt = stmt.order_by(rounds.received_at.desc(), rounds.id.desc())
    else:
        stmt = stmt.order_by(rounds.received_at, rounds.id)
    return stmt.limit(inline(limit + 1))


def _page_rows(keys: Select, shape: _Shape, *, newest_first: bool, count_cap: int | None) -> Select:
    """The queue page's statement: the rounds ``keys`` picks (a deferred join: at most a
    page of rows is joined), in QueueRow order, plus (``count_cap`` given) the count of
    the matching rows, up to ``count_cap`` + 1, as a last column: an uncorrelated
    subquery, evaluated once, which saves a round trip.

    On SQLite the rounds' columns come from ix_review_rounds_pending_card (``INDEXED
    BY``), never from the row, whose long output SQLite walks to reach a column after
    it: a deep page of 200 KB outputs ran at 0.7x the first page's speed. PostgreSQL
    reads them from the row (a long output is stored apart): an index holding the claim
    would make each claim a non-HOT update (see ReviewRound).

    Table columns (Core), not ORM attributes: no ORM compile and row-loading steps, which
    cost more than the page's query itself."""
    rounds_table, crews, executions, users_table = (
        ReviewRound.__table__, Crew.__table__, Execution.__table__, User.__table__
    )
    rounds, users = rounds_table.c, users_table.c
    page = keys.subquery("page")
    live = rounds.claim_expires_at > bindparam("now", type_=UtcDateTime())  # NULL: not claimed
    columns = [
        rounds.id,
        page.c.received_at,
        crews.c.name,
        executions.c.id,
        func.substr(executions.c.kickoff_id, inline(1), inline(KICKOFF_SHORT_CHARS)),
        rounds.task_id,
        rounds.agent,
        rounds.round_number,
        case((live, users.username), else_=None),
        case((live & users.id.is_not(None), rounds.claim_expires_at), else_=None),
        rounds.snippet,
    ]
    if count_cap is not None:
        columns.append(_capped_count(shape, count_cap).scalar_subquery())
    stmt = (
        select(*columns)
        .select_from(
            page.join(rounds_table, rounds.id == page.c.id)
            .join(crews, crews.c.id == rounds.crew_id)
            .join(executions, executions.c.id == rounds.execution_id)
            .outerjoin(users_table, users.id == rounds.claimed_by_id)
        )
        # (always true of the page's rounds) the card index is partial, over pending rounds
        .where(rounds.state == inline(RoundState.PENDING, rounds.state.type))
        .with_hint(rounds_table, f"INDEXED BY {_CARD_INDEX}", dialect_name="sqlite")
    )
    if newest_first:
        return stmt.order_by(page.c.received_at.desc(), page.c.id.desc())
    return stmt.order_by(page.c.received_at, page.c.id)


@lru_cache(maxsize=128)
def _page_statement(shape: _Shape, *, newest_first: bool, after: bool, limit: int, count_cap: int) -> Select:
    """The page statement, with the count, of a request without a text filter."""
    keys = _page_keys(shape, newest_first=newest_first, after=after, limit=limit)
    return _page_rows(keys, shape, newest_first=newest_first, count_cap=count_cap)


def list_queue(
    filters: QueueFilters,
    *,
    after: Cursor | None = None,
    limit: int = QUEUE_PAGE_SIZE,
    now: datetime | None = None,
) -> QueuePage:
    """One keyset page of pending rounds (never loads whole outputs) and their count.

    Without a text filter the count rides along with the page, saving a round trip; a
    second statement counts only when the page is empty after a cursor."""
    now = now or utcnow()
    folded = not filters.q
    shape, newest_first = _Shape.of(filters), filters.newest_first
    if filters.q:  # not cached: the condition's shape depends on the words
        keys = _page_keys(shape, newest_first=newest_first, after=after is not None, limit=limit)
        keys = keys.where(text_matches(ReviewRound.__table__.c.output, filters.q))
        stmt = _page_rows(keys, shape, newest_first=newest_first, count_cap=None)
    else:
        stmt = _page_statement(shape, newest_first=newest_first, after=after is not None, limit=limit,
                               count_cap=QUEUE_COUNT_CAP)
    parameters = _parameters(filters, now) | {"now": now}
    if after is not None:
        parameters |= {"after_at": after.created_at, "after_id": after.id}
    with cursor_page_plan(after):
        result = db.session.execute(stmt, parameters).all()
    rows = [QueueRow._make(values[:11]) for values in result[:limit]]
    next_cursor = None
    if len(result) > limit:
        last = rows[-1]
        next_cursor = Cursor(last.received_at, last.round_id).encode()
    if folded and result:
        total, lower_bound = capped_count(result[0][-1])
    elif folded and after is None:
        total, lower_bound = 0, False  # an empty first page: nothing matches
    else:
        total, lower_bound = count_queue(filters, now=now)
    return QueuePage(rows, total, next_cursor, total_is_lower_bound=lower_bound)


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class ClaimStatus:
    held: bool  # the asking user holds the claim now
    holder_name: str | None
    expires_at: datetime | None
    state: RoundState

    def as_json(self) -> dict[str, object]:
        return {
            "held": self.held,
            "holder": self.holder_name,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "state": self.state.value,
        }


def claim_minutes() -> int:
    return int(current_app.config.get("CLAIM_MINUTES", 10))


def _claimable_by(user_id: Any, now: Any, rounds: Any = ReviewRound):
    """No one else holds a live claim (``rounds``: the model, or its table's columns)."""
    return or_(
        rounds.claimed_by_id.is_(None),
        rounds.claimed_by_id == user_id,
        rounds.claim_expires_at < now,
    )


def claim_status(round_: ReviewRound, user: User, *, now: datetime | None = None) -> ClaimStatus:
    now = now or utcnow()
    live = round_.claimed_by_id is not None and (
        round_.claim_expires_at is not None and round_.claim_expires_at > now
    )
    holder = round_.claimed_by if live else None
    return ClaimStatus(
        held=bool(live and round_.claimed_by_id == user.id and round_.state is RoundState.PENDING),
        holder_name=holder.username if holder is not None else None,
        expires_at=round_.claim_expires_at if live else None,
        state=round_.state,
    )


def claim_round(round_: ReviewRound, user: User, *, now: datetime | None = None) -> ClaimStatus:
    """Claim (or extend the claim on) a pending round, unless someone else holds it."""
    now = now or utcnow()
    _took_claim(round_, db.session.execute(_claim_statement(round_.id, user.id, now)).first())
    return claim_status(round_, user, now=now)


def _claim_statement(round_id: int, user_id: int, now: datetime) -> Any:
    """The conditional claim: pending, and free, expired or the user's own already."""
    return (
        update(ReviewRound)
        .where(ReviewRound.id == round_id, ReviewRound.state == RoundState.PENDING, _claimable_by(user_id, now))
        .values(claimed_by_id=user_id, claim_expires_at=now + _claim_duration())
        .returning(ReviewRound.claimed_by_id, ReviewRound.claim_expires_at)
        .execution_options(synchronize_session=False)
    )


_CLAIM_ATTRIBUTES = ("claimed_by_id", "claim_expires_at")


def _took_claim(round_: ReviewRound, claimed: Any) -> None:
    """Bring ``round_``'s claim up to date after the conditional claim UPDATE: its
    RETURNING row when it matched, else the claim and state as they are now (someone
    else holds it, or it was decided). Not a whole-row refresh: that read the round's
    output again (up to megabytes) on every claim."""
    if claimed is None:
        db.session.refresh(round_, [*_CLAIM_ATTRIBUTES, "state"])
    else:
        for name, value in zip(_CLAIM_ATTRIBUTES, claimed, strict=True):
            set_committed_value(round_, name, value)
    db.session.expire(round_, ["claimed_by"])  # the holder, loaded on access


def claim_on_open(round_: ReviewRound, user: User, *, now: datetime | None = None) -> ClaimStatus:
    """Opening a pending round claims it. Shown again while the viewer's own claim has more
    than half its time left, nothing is written (the open page's heartbeat extends it):
    a reload is a read, and several tabs of one reviewer do not queue for a write lock."""
    now = now or utcnow()
    expires = round_.claim_expires_at
    if round_.claimed_by_id == user.id and expires is not None and expires - now > _claim_duration() / 2:
        return claim_status(round_, user, now=now)
    return claim_round(round_, user, now=now)


def _claim_duration() -> timedelta:
    return timedelta(minutes=claim_minutes())


def take_over(round_: ReviewRound, lead: User, *, now: datetime | None = None) -> ClaimStatus:
    """A lead takes a pending round over from whoever holds it (audited)."""
    now = now or utcnow()
    if not lead.has_role(Role.LEAD):
        raise ReviewError("Only a lead or an admin can take a review over.")
    previous = claim_status(round_, lead, now=now).holder_name
    result = db.session.execute(
        update(ReviewRound)
        .where(ReviewRound.id == round_.id, ReviewRound.state == RoundState.PENDING)
        .values(claimed_by_id=lead.id, claim_expires_at=now + _claim_duration())
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(round_)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise RoundNotPending("This round is no longer waiting for a decision.", round_)
    _round_event("claim_takeover", lead, round_, {"from": previous})
    return claim_status(round_, lead, now=now)


def release_claim(round_: ReviewRound, user: User) -> bool:
    result = db.session.execute(
        update(ReviewRound)
        .where(ReviewRound.id == round_.id, ReviewRound.claimed_by_id == user.id)
        .values(claimed_by_id=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(round_)
    return result.rowcount == 1  # type: ignore[attr-defined]


def review_next(
    user: User, filters: QueueFilters | None = None, *, now: datetime | None = None
) -> ReviewRound | None:
    """Claim the oldest pending round this user may take (a few tries under contention)."""
    now = now or utcnow()
    filters = filters or QueueFilters()
    candidates = select(ReviewRound.id).where(_claimable_by(user.id, now))
    candidates = _pending_matching(candidates, filters, now)
    candidates = candidates.order_by(ReviewRound.received_at, ReviewRound.id).limit(10)
    for round_id in db.session.scalars(candidates).all():
        round_ = db.session.get(ReviewRound, round_id)
        if round_ is not None and claim_round(round_, user, now=now).held:
            return round_
    return None


# --------------------------------------------------------------------------- review page


# An execution's results and payloads, and a round's texts (up to megabytes each).
_EXECUTION_RESULTS = (Execution.result, Execution.error, Execution.last_status_raw, Execution.token_usage)
_ROUND_TEXTS = (ReviewRound.description, ReviewRound.expected_output, ReviewRound.meta)


def _with_execution_and_crew(unread_round: tuple[Any, ...] = (), unread_execution: tuple[Any, ...] = ()
                             ) -> tuple[Any, ...]:
    """Loader options: the round's execution and crew in the round's statement, the
    columns named left out (each still loads when read)."""
    return (
        joinedload(ReviewRound.execution).options(*(defer(column) for column in unread_execution)),
        joinedload(ReviewRound.crew),
        *(defer(column) for column in unread_round),
    )


# What deciding never reads: a round's texts, an execution's results and payloads.
_UNREAD_BY_DECIDING = _with_execution_and_crew(
    (ReviewRound.output, *_ROUND_TEXTS), (*_EXECUTION_RESULTS, Execution.inputs, Execution.meta))
# What the review page never reads: an execution's results. The round's output it reads
# only when this process has not shown it yet (rendering.shown_output, round_output);
# the texts it always shows (task description, expected output, meta, the execution's
# inputs and meta) come with the round: each read on its own was a statement more (a
# round trip, and an ORM load of ~0.5 ms) on every view.
_UNREAD_BY_REVIEW_PAGE = _with_execution_and_crew((ReviewRound.output,), _EXECUTION_RESULTS)


def get_round(round_id: int, *, output: bool = True) -> ReviewRound | None:
    """The round with its execution and crew; ``output=False``: without the columns
    deciding does not read (``round.output`` and the others still load when read)."""
    return db.session.get(ReviewRound, round_id,
                          options=_with_execution_and_crew() if output else _UNREAD_BY_DECIDING)


def get_round_for_page(round_id: int) -> ReviewRound | None:
    """The round as the review page reads it, in one statement: with its execution and
    crew, without its output and the execution's results (both still load when read)."""
    return db.session.get(ReviewRound, round_id, options=_UNREAD_BY_REVIEW_PAGE)


def earlier_rounds(round_: ReviewRound) -> list[ReviewRound]:
    """Earlier rounds of the same task of the same execution, oldest first, without
    their outputs (``round.output`` reads one; the page shows their starts, see
    :func:`output_starts`)."""
    stmt = (
        select(ReviewRound)
        .options(defer(ReviewRound.output), joinedload(ReviewRound.decision).joinedload(Decision.reviewer))
        .where(
            ReviewRound.execution_id == round_.execution_id,
            ReviewRound.task_id == round_.task_id,
            ReviewRound.round_number < round_.round_number,
        )
        .order_by(ReviewRound.round_number)
    )
    return list(db.session.scalars(stmt))


def output_starts(round_ids: list[int], chars: int) -> dict[int, str]:
    """The first ``chars`` characters of the outputs of these rounds (the database
    decompresses only the start of a long output)."""
    stmt = select(ReviewRound.id, func.substr(ReviewRound.output, 1, chars)).where(ReviewRound.id.in_(round_ids))
    return {round_id: start or "" for round_id, start in db.session.execute(stmt)}


_OUTPUT_OF = select(ReviewRound.output).where(ReviewRound.id == bindparam("round_id"))


def round_output(round_: ReviewRound) -> str:
    """The round's output (empty if the round is gone). Read on its own when the round
    came without it, in a statement the start-up warm-up compiles, and kept on the round,
    so a later ``round_.output`` (the diff) reads nothing more."""
    if "output" not in inspect(round_).unloaded:
        return round_.output
    output = db.session.scalar(_OUTPUT_OF, {"round_id": round_.id}) or ""
    set_committed_value(round_, "output", output)
    return output


def warm_up_review_page() -> None:
    """Send the review page's reads once, for a round that does not exist, so that this
    process has compiled their SQL before a reviewer's first view needs it: SQLAlchemy
    compiles a statement at its first run in a process and keeps it, and these (loader
    options, joined eager loads) made a worker's first review page cost ~60M instructions
    more than the next ones (230M against 160M, callgrind, SQLite). The claim's UPDATE
    matches no row; the caller rolls back."""
    nowhere = ReviewRound(id=0, execution_id=0, task_id="", round_number=0)
    get_round_for_page(0)
    earlier_rounds(nowhere)
    output_starts([0], 1)
    round_output(nowhere)
    db.session.execute(_claim_statement(0, 0, utcnow()))  # the first view's claim: matches no row


def round_name(round_: ReviewRound) -> str:
    """How the audit log names a round."""
    return f"{round_.task_id} round {round_.round_number}"


def _round_event(event: str, actor: User, round_: ReviewRound, details: dict[str, object]) -> None:
    record_event(
        event,
        actor=actor,
        target_type="review_round",
        target_id=round_.id,
        target_name=round_name(round_)[:128],
        details=details,
    )


def resume_fields(round_: ReviewRound, *, feedback: str, is_approve: bool) -> dict[str, Any]:
    """The four section-1 fields a job stores (URLs and secrets are added at send time)."""
    return {
        "execution_id": round_.execution.kickoff_id,
        "task_id": round_.task_id,
        "human_feedback": feedback,
        "is_approve": bool(is_approve),
    }


RESUME_FIELDS = ("execution_id", "task_id", "human_feedback", "is_approve")


def job_fields(job: ResumeJob) -> dict[str, Any]:
    """The stored section-1 fields of a job, as keyword arguments for build_resume_body."""
    return body_fields(job.body)


def body_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The section-1 fields of a job's stored body (see :func:`job_fields`)."""
    return {key: body[key] for key in RESUME_FIELDS}


# --------------------------------------------------------------------------- decisions


def normalise_feedback(text: str | None) -> str:
    return (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def revision_reasons() -> list[str]:
    return list(current_app.config.get("REVISION_REASONS") or [])


def _conflict(round_: ReviewRound, reviewer: User, now: datetime) -> RoundConflict:
    """Why the conditional update matched no row."""
    db.session.refresh(round_)
    if round_.state is RoundState.DECIDED and round_.decision is not None:
        who = round_.decision.reviewer.username
        return AlreadyDecided(f"This round was already decided by {who}.", round_)
    if round_.state is RoundState.STALE:
        reason = round_.stale_reason or "the execution moved on"
        return RoundNotPending(f"This round is no longer waiting for a decision: {reason}.", round_)
    holder = claim_status(round_, reviewer, now=now).holder_name or "another reviewer"
    return ClaimedByOther(f"This round is being reviewed by {holder}.", round_)


def _now_decided(round_: ReviewRound) -> None:
    """Tell the loaded round what the conditional UPDATE just wrote, instead of reading
    the whole row (output included) back."""
    for key, value in (("state", RoundState.DECIDED), ("claimed_by_id", None), ("claim_expires_at", None)):
        set_committed_value(round_, key, value)
    set_committed_value(round_, "claimed_by", None)


_ROUNDS: Table = ReviewRound.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Submitted:
    """A decision just recorded (the caller commits) and its resume job."""

    decision_id: int
    job_id: int
    job_body: dict[str, Any]  # the section-1 fields stored in the job
    leased: bool  # the job was created leased to the caller (see submit_decision)


# The conditional UPDATE's claim test (parameters ``reviewer_id`` and ``now``), built once.
_CLAIMABLE = _claimable_by(bindparam("reviewer_id"), bindparam("now"), _ROUNDS.c)


def submit_decision(
    round_: ReviewRound,
    reviewer: User,
    *,
    is_approve: bool,
    feedback: str,
    reason_code: str | None = None,
    now: datetime | None = None,
    lease: tuple[str, datetime] | None = None,
) -> Submitted:
    """Record the decision and its resume job, or raise why someone else won.

    The round moves pending -> decided in one conditional UPDATE (also requiring that no
    one else holds a live claim); only the caller whose UPDATE matched a row inserts the
    Decision (unique per round), the ResumeJob and the audit event (decision_writes.py:
    one statement on PostgreSQL). The caller commits them at once.

    ``lease`` (owner, expiry): the job is created leased to a caller that sends it right
    after the commit (saving a lease UPDATE and a commit per decision). Should that caller
    die first, the lease expires and a worker takes the job over with a status check
    first, as for any lease left behind. Not taken while the crew's token is broken: the
    job then waits, unleased, for an admin to fix it.
    """
    now = now or utcnow()
    feedback = normalise_feedback(feedback)
    if not is_approve and not feedback:
        raise FeedbackRequired("Say what should change: a revision needs feedback.")
    if len(feedback) > FEEDBACK_MAX_CHARS:
        raise ReviewError(f"Feedback is limited to {FEEDBACK_MAX_CHARS} characters.")
    if is_approve or not reason_code:
        reason_code = None
    elif reason_code not in revision_reasons():
        raise ReviewError("Choose a reason from the list, or none.")
    owner, until = lease if lease is not None and not round_.crew.token_broken else (None, None)
    body = resume_fields(round_, feedback=feedback, is_approve=is_approve)
    row = decision_writes.DecisionRow(
        round_id=round_.id,
        round_name=round_name(round_),
        crew_id=round_.crew_id,
        reviewer_id=reviewer.id,
        reviewer_name=reviewer.username,
        is_approve=is_approve,
        feedback=feedback,
        reason_code=reason_code,
        job_body=body,
        lease_owner=owner,
        lease_expires_at=until,
        details={"decision": "approve" if is_approve else "revise", "reason": reason_code,
                 "crew": round_.crew.name, "execution": round_.execution.kickoff_id},
        source_ip=client_ip(),
        now=now,
    )
    written = decision_writes.record(row, _CLAIMABLE)
    if written is None:
        raise _conflict(round_, reviewer, now)
    _now_decided(round_)
    decision_id, job_id = written
    return Submitted(decision_id=decision_id, job_id=job_id, job_body=body, leased=owner is not None)


def get_decision(decision_id: int) -> Decision | None:
    return db.session.get(
        Decision,
        decision_id,
        options=[joinedload(Decision.round), joinedload(Decision.job), joinedload(Decision.reviewer)],
    )


def may_view_decision(decision: Decision, user: User) -> bool:
    return decision.reviewer_id == user.id or user.has_role(Role.LEAD)


# --------------------------------------------------------------------------- failed jobs


def jobs_needing_attention(limit: int = 200) -> list[ResumeJob]:
    """Failed jobs, and pending ones that have failed at least once or wait for a token fix."""
    broken = select(Crew.id).where(Crew.token_broken.is_(True))
    stmt = (
        select(ResumeJob)
        .options(joinedload(ResumeJob.decision).joinedload(Decision.round), joinedload(ResumeJob.crew))
        .where(
            or_(
                ResumeJob.state == JobState.FAILED,
                (ResumeJob.state == JobState.PENDING)
                & or_(ResumeJob.attempts > 0, ResumeJob.crew_id.in_(broken)),
            )
        )
        .order_by(ResumeJob.updated_at.desc(), ResumeJob.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(stmt).unique())


def _job_event(event: str, job: ResumeJob, actor: User) -> None:
    record_event(
        event,
        actor=actor,
        target_type="resume_job",
        target_id=job.id,
        target_name=f"{job.body.get('task_id', '')} / {job.body.get('execution_id', '')}"[:128],
        details={"decision_id": job.decision_id, "attempts": job.attempts},
    )


def retry_job(job: ResumeJob, actor: User, *, now: datetime | None = None) -> None:
    """FAILED -> PENDING with a fresh attempt budget, due now."""
    now = now or utcnow()
    moved = db.session.execute(
        update(ResumeJob)
        .where(ResumeJob.id == job.id, ResumeJob.state == JobState.FAILED)
        .values(state=JobState.PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(job)
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise JobActionError(f"Only a failed delivery can be retried (this one is {job.state.value}).")
    _job_event("resume_job_retried", job, actor)


def dismiss_job(job: ResumeJob, actor: User, *, now: datetime | None = None) -> None:
    """Give up on a failed (or stuck pending) delivery that nobody is sending right now."""
    now = now or utcnow()
    moved = db.session.execute(
        update(ResumeJob)
        .where(
            ResumeJob.id == job.id,
            ResumeJob.state.in_([JobState.FAILED, JobState.PENDING]),
            or_(ResumeJob.lease_expires_at.is_(None), ResumeJob.lease_expires_at < now),
        )
        .values(state=JobState.DISMISSED, lease_owner=None, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(job)
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise JobActionError(
            f"This delivery cannot be dismissed now (it is {job.state.value}, or being sent)."
        )
    _job_event("resume_job_dismissed", job, actor)


def get_job(job_id: int) -> ResumeJob | None:
    return db.session.get(ResumeJob, job_id)
