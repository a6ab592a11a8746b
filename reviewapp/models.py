"""Typed SQLAlchemy 2.0 models for reviewapp.

Times are stored as timezone-aware UTC (``UtcDateTime``) so SQLite and PostgreSQL
behave the same.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from . import decision_summaries, resume_call_counts
from .extensions import Model


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A DateTime that always comes back timezone-aware in UTC (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        zone = value.tzinfo
        if zone is UTC:  # PostgreSQL, whose sessions are set to UTC (config.engine_options)
            return value
        if zone is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """SQLite: the stored text straight to an aware datetime, in one C call.

        SQLite keeps ``2025-01-31 09:05:00.000000`` (UTC, no offset). Parsed to a naive
        datetime and then given its zone with ``replace(tzinfo=UTC)``, each value cost
        ~5,000 instructions in ``replace``'s keyword parsing alone: 100 per history page
        (two columns a row), two million per export."""
        standard = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or standard is None:
            return standard

        def utc_from_text(value: Any) -> datetime | None:
            if isinstance(value, str):
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:
                    pass  # another layout (an offset of its own...): the standard way
            return standard(value)

        return utc_from_text


def _enum(cls: type[enum.Enum]) -> Enum:
    # Store the enum's value (lowercase words) as a VARCHAR with a CHECK constraint;
    # native PG enums make migrations painful.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        name=cls.__name__.lower(),
    )


# --------------------------------------------------------------------------- accounts


class Role(enum.Enum):
    REVIEWER = "reviewer"
    LEAD = "lead"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"reviewer": 1, "lead": 2, "admin": 3}[self.value]

    def allows(self, required: Role) -> bool:
        return self.rank >= required.rank

    @property
    def label(self) -> str:
        return self.value.capitalize()


class User(Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role), default=Role.REVIEWER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped on deactivation, role change and password change: invalidates every
    # existing session and remember cookie (see auth.services.load_user).
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Fernet ciphertext of the TOTP secret (reviewapp/auth/totp.py); ~140 characters.
    totp_secret: Mapped[str | None] = mapped_column(String(255))

    # Flask-Login protocol -------------------------------------------------
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def has_role(self, required: Role) -> bool:
        return self.role.allows(required)

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role.value}>"


class AuditEvent(Model):
    """Append-only log of account and review events. Never updated or deleted."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    target_name: Mapped[str | None] = mapped_column(String(128))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])


class AppendOnlyError(RuntimeError):
    pass


# Full-text search (PostgreSQL only; SQLite falls back to LIKE, see audit/search.py).
# The query must repeat this exact expression for the GIN index to be used. Alembic's
# autogenerate on SQLite skips expression indexes: the initial migration creates these
# in a PostgreSQL-only block at its end; keep that block when regenerating it.
SEARCH_CONFIG = "simple"
SEARCH_PREFIX_CHARS = 100_000  # to_tsvector fails above 1 MB of lexemes: index a prefix


def _partial_index(name: str, columns: list[str], where: str) -> Index:
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


def _only_on(dialect: str, index: Index) -> Index:
    """``index``, made on ``dialect`` only (create_all, and Alembic's comparison through
    :func:`autogenerate_filter`)."""
    index.info["only_on"] = dialect
    return index.ddl_if(dialect=dialect)


def autogenerate_filter(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` on ``dialect``: leaves out the models' indexes made on
    another dialect only. Alembic ignores ``ddl_if`` (sqlalchemy/alembic#1491): it would
    report them missing (``flask db check``, autogenerate)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        only_on = None if reflected else getattr(obj, "info", {}).get("only_on")
        return only_on in (None, dialect)

    return include


def _search_index(name: str, column: str, where: str | None = None) -> Index:
    expression = f"to_tsvector('{SEARCH_CONFIG}', left({column}, {SEARCH_PREFIX_CHARS}))"
    partial = text(where) if where else None
    return _only_on("postgresql", Index(name, text(expression), postgresql_using="gin", postgresql_where=partial))


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _audit_is_append_only(mapper: Any, connection: Any, target: AuditEvent) -> None:
    raise AppendOnlyError("audit events are append-only")


class LoginThrottle(Model):
    """Failed-login counters shared by all processes (keyed by account or client address)."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RevokedSession(Model):
    """Sessions ended by logout. A copied cookie of a logged-out session stays dead
    until its absolute lifetime would have run out anyway (then the row is pruned)."""

    __tablename__ = "revoked_sessions"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# --------------------------------------------------------------------------- AMP


class Crew(Model):
    """A CrewAI AMP deployment reviewapp talks to."""

    __tablename__ = "crews"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    base_url: Mapped[str] = mapped_column(String(500))
    # Fernet ciphertext of the Bearer token; the key comes from configuration.
    token_encrypted: Mapped[str] = mapped_column(Text)
    token_hint: Mapped[str] = mapped_column(String(16))  # e.g. "…a1b2"
    # Secret AMP presents when it calls our receivers (encrypted as well: we send it
    # in humanInputWebhook.authentication, so it must be recoverable).
    inbound_secret_encrypted: Mapped[str] = mapped_column(Text)
    token_broken: Mapped[bool] = mapped_column(Boolean, default=False)
    token_broken_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    executions: Mapped[list[Execution]] = relationship(back_populates="crew")


class ExecutionStatus(enum.Enum):
    RUNNING = "running"
    PENDING_REVIEW = "pending_review"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)


class Execution(Model):
    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("crew_id", "kickoff_id"),
        Index("ix_executions_status_next_check", "status", "next_status_check_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    crew_id: Mapped[int] = mapped_column(ForeignKey("crews.id", ondelete="CASCADE"))
    kickoff_id: Mapped[str] = mapped_column(String(64))  # AMP's execution id, as received
    status: Mapped[ExecutionStatus] = mapped_column(
        _enum(ExecutionStatus), default=ExecutionStatus.RUNNING
    )
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    token_usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # status polling (worker)
    next_status_check_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status_check_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_status_raw: Mapped[str | None] = mapped_column(Text)

    crew: Mapped[Crew] = relationship(back_populates="executions")
    started_by: Mapped[User | None] = relationship()
    rounds: Mapped[list[ReviewRound]] = relationship(
        back_populates="execution", order_by="ReviewRound.id"
    )
    events: Mapped[list[ExecutionEvent]] = relationship(
        back_populates="execution", order_by="ExecutionEvent.id"
    )


class ExecutionEvent(Model):
    """Timeline entries: kickoff, status changes, completion, failure, stale marks."""

    __tablename__ = "execution_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    execution: Mapped[Execution] = relationship(back_populates="events")


class WebhookKind(enum.Enum):
    HUMAN_INPUT = "human_input"
    TASK = "task"
    STEP = "step"
    CREW = "crew"


class WebhookDelivery(Model):
    """Every delivery to a receiver, raw payload kept (untrusted, never rendered unescaped)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    crew_id: Mapped[int | None] = mapped_column(ForeignKey("crews.id", ondelete="CASCADE"))
    execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[WebhookKind] = mapped_column(_enum(WebhookKind))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(32))  # accepted, duplicate, rejected
    error: Mapped[str | None] = mapped_column(Text)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(Text)


class RoundState(enum.Enum):
    PENDING = "pending"
    DECIDED = "decided"
    STALE = "stale"


OUTPUT_SNIPPET_CHARS = 160  # of an output, the queue shows this much (ReviewRound.snippet)


# The queue page's columns of a round (reviews/services.py), all in one partial index
# (state too: SQLite counts a column the query names as read from the row otherwise).
QUEUE_CARD_COLUMNS = ("id", "crew_id", "execution_id", "task_id", "round_number", "agent", "claimed_by_id",
                      "claim_expires_at", "snippet", "state")
# What a claim (and its heartbeat) writes. On PostgreSQL no index holds them, so a claim
# is a HOT update: no new entry in any index of the row (see ReviewRound's indexes).
CLAIM_COLUMNS = ("claimed_by_id", "claim_expires_at")
ROUNDS_FILLFACTOR = 90  # percent of a review_rounds page that inserts fill (PostgreSQL)


def output_snippet(output: str | None) -> str:
    """What ``ReviewRound.snippet`` holds of an output: its first OUTPUT_SNIPPET_CHARS characters."""
    return (output or "")[:OUTPUT_SNIPPET_CHARS]


def _output_snippet(context: Any) -> str:
    """The default of ``ReviewRound.snippet``: the snippet of the row's own output."""
    return output_snippet(context.get_current_parameters().get("output"))


class ReviewRound(Model):
    """One human-input notification: a task output waiting for (or given) a decision."""

    __tablename__ = "review_rounds"
    __table_args__ = (
        UniqueConstraint("execution_id", "task_id", "round_number"),
        # A redelivered notification (same output) is recognised by this key.
        UniqueConstraint("execution_id", "task_id", "output_sha256"),
        Index("ix_review_rounds_queue", "state", "received_at", "id"),
        # The history's and the export's columns of a decided round (audit/history.py), so
        # they are read from this index, not the row: SQLite keeps a long output in the
        # row (overflow pages), and a column stored after it (received_at) is reached by
        # walking the whole output (2.2 ms for 51 rounds of 200 KB, 0.06 ms from here).
        Index("ix_review_rounds_listing", "id", "execution_id", "crew_id", "task_id", "round_number", "received_at"),
        # the metrics' queue per crew (audit/metrics.py; partial: see ResumeJob)
        _partial_index("ix_review_rounds_pending_crew", ["crew_id", "received_at"], "state = 'pending'"),
        # The queue's columns of a pending round (reviews/services.py), for the same reason
        # as the listing index: agent and the claim are stored after the output, and so is
        # the snippet in a database migrated from before it existed. SQLite only:
        # PostgreSQL stores a long output apart (TOAST) and reads the columns from a short
        # row, as fast through the primary key (EXPLAIN, medium bench). There an index on
        # the claim made every claim and claim extension a non-HOT update, which adds an
        # entry to each index of the row, the pending search GIN's too: the output parsed
        # again, 20 ms for a 200 KB round (0.1 ms as a HOT update).
        _only_on("sqlite", _partial_index("ix_review_rounds_pending_card", list(QUEUE_CARD_COLUMNS),
                                          "state = 'pending'")),
        # Output search, in two halves that never hold the same row, so each output is
        # parsed into one index at a time (on arrival, and again when it is decided):
        # the queue's (reviews/services.py), pending rounds only, ~1% of all, so a common
        # word matches the queue's rows and not every decided round's as well;
        _search_index("ix_review_rounds_pending_search", "output", "state = 'pending'"),
        # the history's (audit/history.py), every other round (decided, stale).
        _search_index("ix_review_rounds_decided_search", "output", "state <> 'pending'"),
        # PostgreSQL: a HOT update needs room on the row's page for the new version. Rows
        # are short (a long output is stored apart), and inserts filled pages to the brim:
        # 9% of first claims of 200 KB rounds found no room (20 ms each), 2% with a tenth
        # of each page kept free (bench seed, 600 rounds each).
        {"postgresql_with": {"fillfactor": ROUNDS_FILLFACTOR}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    crew_id: Mapped[int] = mapped_column(ForeignKey("crews.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(String(200))
    round_number: Mapped[int] = mapped_column(Integer, default=1)
    # The output's first OUTPUT_SNIPPET_CHARS characters, stored when the round arrives:
    # taking them from a long output made SQLite read all of it (overflow pages).
    snippet: Mapped[str] = mapped_column(String(OUTPUT_SNIPPET_CHARS), default=_output_snippet, server_default="")
    output: Mapped[str] = mapped_column(Text)
    output_sha256: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    expected_output: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    state: Mapped[RoundState] = mapped_column(_enum(RoundState), default=RoundState.PENDING)
    stale_reason: Mapped[str | None] = mapped_column(Text)
    # claim
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    execution: Mapped[Execution] = relationship(back_populates="rounds")
    crew: Mapped[Crew] = relationship()
    claimed_by: Mapped[User | None] = relationship()
    decision: Mapped[Decision | None] = relationship(back_populates="round", uselist=False)


class Decision(Model):
    """A reviewer's verdict on a round. Exactly one per round; never updated."""

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_created", "created_at", "id"),
        # keyset pagination of one reviewer's history (the reviewers' own History page)
        Index("ix_decisions_reviewer_created", "reviewer_id", "created_at", "id"),
        _search_index("ix_decisions_feedback_search", "feedback"),
        # the latency percentiles' second step (audit/metrics.py): one group's decisions
        # of one wait bucket in a date range, waits read from the index
        Index("ix_decisions_crew_wait", "crew_id", "wait_bucket", "created_at", "wait_us"),
        Index("ix_decisions_reviewer_wait", "reviewer_id", "wait_bucket", "created_at", "wait_us", "crew_id"),
    )
    # The derived columns below are written by the database; without eager defaults the
    # ORM expires them after an insert instead of reading them back with RETURNING
    # (SQLite's RETURNING shows the row from before its AFTER INSERT trigger).
    __mapper_args__ = {"eager_defaults": False}

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(
        ForeignKey("review_rounds.id", ondelete="CASCADE"), unique=True
    )
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    is_approve: Mapped[bool] = mapped_column(Boolean)
    feedback: Mapped[str] = mapped_column(Text, default="")
    reason_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Derived by the database when the row is inserted (decision_summaries.py): copies of
    # the round's crew, task and number, and the wait since the round was received, in
    # microseconds, with its bucket. The metrics read them instead of joining the rounds.
    crew_id: Mapped[int | None] = mapped_column(Integer, server_default=FetchedValue(), deferred=True)
    task_id: Mapped[str | None] = mapped_column(String(200), server_default=FetchedValue(), deferred=True)
    round_number: Mapped[int | None] = mapped_column(Integer, server_default=FetchedValue(), deferred=True)
    wait_us: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue(), deferred=True)
    wait_bucket: Mapped[int | None] = mapped_column(Integer, server_default=FetchedValue(), deferred=True)

    round: Mapped[ReviewRound] = relationship(back_populates="decision")
    reviewer: Mapped[User] = relationship()
    job: Mapped[ResumeJob | None] = relationship(back_populates="decision", uselist=False)


class DecisionDayCount(Model):
    """Decisions per UTC day, crew, task, reviewer, round number and verdict, and how many
    of them have a resume job. Written only by the database triggers of
    decision_summaries.py (rows may hold zeros after a cascade delete)."""

    __tablename__ = "decision_day_counts"
    __table_args__ = {"sqlite_with_rowid": False}

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    crew_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    is_approve: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    decisions: Mapped[int] = mapped_column(Integer)
    jobs: Mapped[int] = mapped_column(Integer)


class DecisionWaitCount(Model):
    """Decisions per crew, reviewer and wait bucket made in the ``days`` days from ``day``
    (UTC): one row set per day, one per block of days (decision_summaries.py); written
    only by the database triggers."""

    __tablename__ = "decision_wait_counts"
    __table_args__ = {"sqlite_with_rowid": False}

    days: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    crew_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wait_bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    decisions: Mapped[int] = mapped_column(Integer)


@event.listens_for(Model.metadata, "after_create")
def _create_triggers(metadata: Any, connection: Any, tables: Any = (), **kw: Any) -> None:
    """``create_all()`` makes the same triggers as the migrations that added them."""
    names = {table.name for table in tables}
    if names.intersection(decision_summaries.WATCHED_TABLES):
        decision_summaries.create_triggers(connection)
    if resume_call_counts.WATCHED_TABLE in names:
        resume_call_counts.create_trigger(connection)


@event.listens_for(Model.metadata, "before_drop")
def _drop_triggers(metadata: Any, connection: Any, tables: Any = (), **kw: Any) -> None:
    names = {table.name for table in tables}
    if names.intersection(decision_summaries.WATCHED_TABLES):
        decision_summaries.drop_triggers(connection)
    if resume_call_counts.WATCHED_TABLE in names:
        resume_call_counts.drop_trigger(connection)


def _changed_columns(target: Any) -> list[str]:
    state = inspect(target)
    return [a.key for a in state.mapper.column_attrs if state.attrs[a.key].history.has_changes()]


@event.listens_for(Decision, "before_update")
def _decision_is_never_updated(mapper: Any, connection: Any, target: Decision) -> None:
    # Relationship-only changes (decision.job = ...) leave the row alone and are fine.
    if _changed_columns(target):
        raise AppendOnlyError("decisions are never updated")


@event.listens_for(Decision, "before_delete")
def _decision_is_never_deleted(mapper: Any, connection: Any, target: Decision) -> None:
    raise AppendOnlyError("decisions are never deleted")


@event.listens_for(Session, "do_orm_execute")
def _no_bulk_changes_to_append_only_rows(orm_execute_state: Any) -> None:
    """``update(Decision)`` / ``delete(AuditEvent)`` statements bypass the flush hooks."""
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    mapper = orm_execute_state.bind_mapper
    if mapper is not None and mapper.class_ in (Decision, AuditEvent):
        raise AppendOnlyError(f"{mapper.class_.__tablename__} are append-only")


class JobState(enum.Enum):
    PENDING = "pending"  # waiting for (re)delivery; next_attempt_at says when
    SUCCEEDED = "succeeded"  # AMP answered 200
    FAILED = "failed"  # gave up; a lead/admin may retry or dismiss
    STALE = "stale"  # AMP said the execution is not pending any more
    DISMISSED = "dismissed"  # a lead/admin gave up on it


class ResumeJob(Model):
    """The durable outbox entry for one decision's ``POST /resume``."""

    __tablename__ = "resume_jobs"
    __table_args__ = (
        Index("ix_resume_jobs_due", "state", "next_attempt_at"),
        # The metrics' few jobs that did not succeed (audit/metrics.py). Partial, so its
        # statistics show how few they are (SQLite's ANALYZE only keeps averages per
        # state); a query uses it with this condition written out as a literal.
        _partial_index("ix_resume_jobs_unsuccessful", ["decision_id", "state"], "state <> 'succeeded'"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    decision_id: Mapped[int] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), unique=True
    )
    crew_id: Mapped[int] = mapped_column(ForeignKey("crews.id", ondelete="CASCADE"))
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.PENDING)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # exactly what is POSTed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Kept by a trigger on resume_attempts (reviewapp/resume_call_counts.py): the job's
    # /resume calls and the HTTP status of its latest call (a /resume or a status check).
    resume_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # set after an ambiguous failure: check /status before sending again
    needs_status_check: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str | None] = mapped_column(String(32))  # resumed / retrying / completed
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    decision: Mapped[Decision] = relationship(back_populates="job")
    crew: Mapped[Crew] = relationship()
    attempts_log: Mapped[list[ResumeAttempt]] = relationship(
        back_populates="job", order_by="ResumeAttempt.id"
    )


class ResumeAttempt(Model):
    __tablename__ = "resume_attempts"
    __table_args__ = (
        # the metrics' failed attempts in a date range (audit/metrics.py; see above)
        _partial_index("ix_resume_attempts_not_ok", ["started_at", "result", "job_id"], "result <> 'ok'"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("resume_jobs.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(16), default="resume")  # resume | status-check
    http_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(String(32))  # ok, rejected, unauthorized, ...

    job: Mapped[ResumeJob] = relationship(back_populates="attempts_log")
