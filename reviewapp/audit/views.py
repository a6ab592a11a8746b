"""Lead audit pages: decision history (reviewers: their own), account events, execution
timelines, streamed exports and metrics. Read-only: nothing here changes a decision or
an audit row (the only write is the audit row that records an export)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_login import current_user
from markupsafe import Markup

from ..access import blueprint_requires, opens_below_blueprint
from ..errors import abort_with
from ..extensions import db
from ..fragments import cached_partial
from ..models import Role, utcnow
from .dashboard import build_dashboard
from .events import events_page
from .export import csv_stream, jsonl_stream
from .filter_lists import crew_choices, filter_lists
from .filters import (
    DECISIONS,
    OUTCOMES,
    FilterError,
    HistoryFilters,
    parse_event_filters,
    parse_history_filters,
    parse_metric_filters,
)
from .history import SearchTooBroad, history_page
from .pagination import CursorError, parse_cursors
from .services import record_event
from .templating import FILTERS
from .timeline import build_timeline, load_execution

bp = Blueprint("audit", __name__)
blueprint_requires(bp, Role.LEAD)
for _name, _filter in FILTERS.items():
    bp.add_app_template_filter(_filter, _name)

T = TypeVar("T")


def _or_400(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Bad filters or page links are the user's to fix: 400 with the reason, never 500."""
    try:
        return parse(*args, **kwargs)
    except (FilterError, CursorError) as exc:
        abort_with(400, str(exc))
        raise  # pragma: no cover - abort_with raises


def _is_lead() -> bool:
    return current_user.has_role(Role.LEAD)


def _history_filters() -> HistoryFilters:
    """The request's filters; a reviewer's are always narrowed to their own decisions."""
    filters = _or_400(parse_history_filters, request.args)
    if not _is_lead():
        filters = replace(filters, reviewer_id=current_user.id)
    return filters


def _listing(template: str, fetch: Callable[..., Any], filters: Any, **context: Any) -> str:
    """A keyset-paged list page: the page for the request's cursor, links keep filters."""
    after, before = _or_400(parse_cursors, request.args)
    return render_template(
        template,
        page=fetch(filters, after=after, before=before),
        filters=filters,
        link_args=filters.as_args(),
        paged=bool(after or before),
        **context,
    )


HISTORY_FORM = "audit/_history_form.html"


def _history_form(filters: HistoryFilters) -> Markup:
    """The history page's heading, tabs and filter form: they depend on the filters, the
    user's role (tabs, the reviewer filter, exports), the mount point and the crew and
    reviewer lists, and on nothing else, so each combination is rendered once."""
    lists, role = filter_lists(), current_user.role
    is_lead = role.allows(Role.LEAD)
    return cached_partial(HISTORY_FORM, (role, filters, lists.version), lambda: {
        "filters": filters,
        "link_args": filters.as_args(),
        "crews": lists.crews,
        "reviewers": lists.users if is_lead else [],
        "decisions": [(value, value) for value in DECISIONS],
        "outcomes": [(value, value) for value in OUTCOMES],
        "is_lead": is_lead,
    })


@bp.route("/history")
@opens_below_blueprint(Role.REVIEWER)
def history():
    filters = _history_filters()
    try:
        return _listing("audit/history.html", history_page, filters, heading_and_form=_history_form(filters),
                        is_lead=_is_lead())
    except SearchTooBroad as exc:
        abort_with(400, str(exc))
        raise  # pragma: no cover - abort_with raises


def _export(fmt: str, stream: Callable[[HistoryFilters], Iterator[bytes]], mimetype: str) -> Response:
    filters = _history_filters()
    record_event("history_exported", actor=current_user, details={"format": fmt, "filters": filters.as_args()})
    db.session.commit()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = Response(stream_with_context(stream(filters)), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="reviewapp-history-{stamp}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/history/export.csv")
def export_csv():
    return _export("csv", csv_stream, "text/csv")


@bp.route("/history/export.jsonl")
def export_jsonl():
    return _export("jsonl", jsonl_stream, "application/jsonl")


@bp.route("/events")
def events():
    return _listing("audit/events.html", events_page, _or_400(parse_event_filters, request.args))


@bp.route("/executions/<int:execution_id>")
def execution_timeline(execution_id: int):
    timeline = build_timeline(load_execution(execution_id))
    return render_template("audit/timeline.html", timeline=timeline, execution=timeline.execution)


@bp.route("/metrics")
def metrics():
    now = utcnow()
    filters = _or_400(parse_metric_filters, request.args, today=now.date())
    dashboard = build_dashboard(filters, now)
    return render_template(
        "audit/metrics.html", dashboard=dashboard, filters=filters, crews=crew_choices()
    )
