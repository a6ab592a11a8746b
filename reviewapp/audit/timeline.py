"""Everything that happened to one execution, merged in time order.

Execution events (kickoff, status changes, completion, failure, stale marks), webhook
deliveries, every round of every task (with its diff against the task's previous
round), each decision and every resume attempt. Untrusted text (outputs, payloads,
response bodies) is passed to the template as plain strings, or through the review
area's Markdown sanitiser; the template escapes everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..errors import abort_with
from ..extensions import db
from ..models import (
    Decision,
    Execution,
    ExecutionEvent,
    ResumeAttempt,
    ResumeJob,
    ReviewRound,
    WebhookDelivery,
)
from ..reviews.rendering import RoundDiff, diff_outputs, is_large, render_markdown

# Step webhooks can run into thousands per execution: show the first ones only.
MAX_ITEMS_PER_KIND = 500
PREVIEW_CHARS = 4000

# Ties in time are shown in the order things happen.
_ORDER = {"event": 0, "webhook": 1, "round": 2, "decision": 3, "attempt": 4}


@dataclass(frozen=True)
class Item:
    at: datetime
    kind: str  # a key of _ORDER; the template picks the partial by it
    row_id: int
    data: dict[str, Any]

    @property
    def sort_key(self) -> tuple[datetime, int, int]:
        return (self.at, _ORDER[self.kind], self.row_id)


@dataclass(frozen=True)
class Timeline:
    execution: Execution
    items: list[Item]
    hidden: dict[str, int]  # kind -> rows left out beyond MAX_ITEMS_PER_KIND
    limit: int = MAX_ITEMS_PER_KIND


def preview(text: str | None) -> tuple[str, bool]:
    """At most PREVIEW_CHARS of ``text`` and whether it was cut."""
    text = text or ""
    return text[:PREVIEW_CHARS], len(text) > PREVIEW_CHARS


def rendered_output(text: str) -> Markup | None:
    """Sanitised HTML for an output, or None when it is too large (shown as raw text)."""
    return None if is_large(text) else render_markdown(text)


def load_execution(execution_id: int) -> Execution:
    execution = db.session.get(Execution, execution_id)
    if execution is None:
        abort_with(404, "There is no execution with that number.")
    return execution  # type: ignore[return-value]


def _rounds(execution: Execution) -> list[ReviewRound]:
    stmt = (
        select(ReviewRound)
        .where(ReviewRound.execution_id == execution.id)
        .options(
            selectinload(ReviewRound.decision).selectinload(Decision.reviewer),
            selectinload(ReviewRound.decision).selectinload(Decision.job),
        )
        .order_by(ReviewRound.received_at, ReviewRound.id)
    )
    return list(db.session.scalars(stmt))


def _round_items(rounds: list[ReviewRound]) -> list[Item]:
    items: list[Item] = []
    previous_output: dict[str, str] = {}
    for round_ in rounds:
        earlier = previous_output.get(round_.task_id)
        diff: RoundDiff | None = None if earlier is None else diff_outputs(earlier, round_.output)
        previous_output[round_.task_id] = round_.output
        data = {"round": round_, "diff": diff, "html": rendered_output(round_.output)}
        items.append(Item(round_.received_at, "round", round_.id, data))
        if round_.decision is not None:
            decision = round_.decision
            items.append(
                Item(decision.created_at, "decision", decision.id, {"decision": decision, "round": round_})
            )
    return items


def _limited(stmt: Any, kind: str, hidden: dict[str, int]) -> list[Any]:
    rows = list(db.session.scalars(stmt.limit(MAX_ITEMS_PER_KIND + 1)))
    if len(rows) > MAX_ITEMS_PER_KIND:
        total = db.session.scalar(select(func.count()).select_from(stmt.subquery()))
        hidden[kind] = int(total or 0) - MAX_ITEMS_PER_KIND
    return rows[:MAX_ITEMS_PER_KIND]


def _attempt_items(execution: Execution, hidden: dict[str, int]) -> list[Item]:
    stmt = (
        select(ResumeAttempt)
        .join(ResumeJob, ResumeJob.id == ResumeAttempt.job_id)
        .join(Decision, Decision.id == ResumeJob.decision_id)
        .join(ReviewRound, ReviewRound.id == Decision.round_id)
        .where(ReviewRound.execution_id == execution.id)
        .options(selectinload(ResumeAttempt.job).selectinload(ResumeJob.decision))
        .order_by(ResumeAttempt.started_at, ResumeAttempt.id)
    )
    return [
        Item(a.started_at, "attempt", a.id, {"attempt": a, "body": preview(a.response_body)})
        for a in _limited(stmt, "attempt", hidden)
    ]


def _webhook_items(execution: Execution, hidden: dict[str, int]) -> list[Item]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.execution_id == execution.id)
        .order_by(WebhookDelivery.received_at, WebhookDelivery.id)
    )
    return [
        Item(w.received_at, "webhook", w.id, {"delivery": w, "payload": preview(w.payload)})
        for w in _limited(stmt, "webhook", hidden)
    ]


def _event_items(execution: Execution, hidden: dict[str, int]) -> list[Item]:
    stmt = (
        select(ExecutionEvent)
        .where(ExecutionEvent.execution_id == execution.id)
        .order_by(ExecutionEvent.created_at, ExecutionEvent.id)
    )
    return [Item(e.created_at, "event", e.id, {"event": e}) for e in _limited(stmt, "event", hidden)]


def build_timeline(execution: Execution) -> Timeline:
    hidden: dict[str, int] = {}
    items = _round_items(_rounds(execution))
    items += _attempt_items(execution, hidden)
    items += _webhook_items(execution, hidden)
    items += _event_items(execution, hidden)
    items.sort(key=lambda item: item.sort_key)
    return Timeline(execution=execution, items=items, hidden=hidden)
