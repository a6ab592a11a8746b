"""Account and review events (``AuditEvent`` rows), newest first, filterable."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, select

from ..models import AuditEvent
from .filters import EventFilters
from .pagination import Cursor, Page, keyset_page


def _conditions(filters: EventFilters) -> list[ColumnElement]:
    conditions: list[ColumnElement] = []
    if filters.event:
        conditions.append(AuditEvent.event == filters.event)
    if filters.actor:
        conditions.append(AuditEvent.actor_name == filters.actor)
    if filters.target:
        conditions.append(AuditEvent.target_name == filters.target)
    return conditions + filters.dates.conditions(AuditEvent.created_at)


def events_statement(filters: EventFilters) -> Select:
    return select(
        AuditEvent.id.label("id"),
        AuditEvent.created_at.label("created_at"),
        AuditEvent.event,
        AuditEvent.actor_name,
        AuditEvent.target_type,
        AuditEvent.target_id,
        AuditEvent.target_name,
        AuditEvent.source_ip,
        AuditEvent.details,
    ).where(*_conditions(filters))


def events_page(
    filters: EventFilters, *, after: Cursor | None = None, before: Cursor | None = None
) -> Page:
    return keyset_page(
        events_statement(filters), AuditEvent.created_at, AuditEvent.id, after=after, before=before
    )
