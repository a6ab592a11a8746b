"""The main navigation: which links a user sees and which one is the current page."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, request

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


def nav_items() -> list[tuple[NavItem, bool]]:
    """The links the current user may open, each with whether it is the current page."""
    return [(item, item.is_current(request.endpoint)) for item in NAV if can_open(item.endpoint)]


def init_app(app: Flask) -> None:
    app.jinja_env.globals["nav_items"] = nav_items
