"""The main navigation: which links a user sees and which one is the current page;
and URL prefixes that let a many-row page link each row without a ``url_for`` per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, request, url_for
from flask_login import current_user

from .access import can_open


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str
    # Endpoints (or "blueprint." prefixes) under which this link is the current page.
    covers: tuple[str, ...]

    def is_current(self, endpoint: str | None) -> bool:
        if not endpoint:
            return False
        return any(
            endpoint == c or (c.endswith(".") and endpoint.startswith(c)) for c in self.covers
        )


NAV = (
    NavItem("reviews.queue", "Queue", ("reviews.queue", "reviews.review", "reviews.decision")),
    NavItem("reviews.jobs", "Deliveries", ("reviews.jobs",)),
    NavItem(
        "audit.history", "History", ("audit.history", "audit.events", "audit.execution_timeline")
    ),
    NavItem("audit.metrics", "Metrics", ("audit.metrics",)),
    NavItem("crews.index", "Crews", ("crews.",)),
    NavItem("admin.users", "Accounts", ("admin.",)),
)


@dataclass(frozen=True)
class NavLink:
    item: NavItem
    url: str

    @property
    def label(self) -> str:
        return self.item.label


def _visible_links() -> tuple[NavLink, ...]:
    """The links the current user's role may open, built once per app, role and mount
    point: which endpoints a role may open is fixed once the app is set up (access.py
    reads it from the view functions), and the user's role is read on every request."""
    cache: dict[tuple[object, str], tuple[NavLink, ...]] = current_app.extensions.setdefault(
        "reviewapp.nav", {}
    )
    key = (getattr(current_user, "role", None), request.script_root)
    links = cache.get(key)
    if links is None:
        links = tuple(NavLink(item, url_for(item.endpoint)) for item in NAV if can_open(item.endpoint))
        cache[key] = links
    return links


def nav_items() -> list[tuple[NavLink, bool]]:
    """The links the current user may open, each with whether it is the current page."""
    endpoint = request.endpoint
    return [(link, link.item.is_current(endpoint)) for link in _visible_links()]


_SENTINEL = 987_654_321_012


def url_prefix(endpoint: str, argument: str) -> str:
    """The URL of ``endpoint`` without its last part, the integer ``argument``:
    ``url_prefix('reviews.review', 'round_id')`` is ``/rounds/``, so a template appends
    each row's id instead of building 50 URLs through the routing map."""
    marker = str(_SENTINEL)
    values: dict[str, Any] = {argument: _SENTINEL}
    url = url_for(endpoint, **values)
    if not url.endswith(marker) or url.count(marker) != 1:
        raise ValueError(f"{argument} is not the last part of the URL of {endpoint}")
    return url[: -len(marker)]


def init_app(app: Flask) -> None:
    app.jinja_env.globals["nav_items"] = nav_items
    app.jinja_env.globals["url_prefix"] = url_prefix
