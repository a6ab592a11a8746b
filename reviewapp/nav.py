"""The main navigation: which links a user sees and which one is the current page;
and URL prefixes that let a many-row page link each row without a ``url_for`` per row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from flask import Flask, current_app, request, url_for
from flask_login import current_user
from jinja2.runtime import Context
from jinja2.utils import pass_context

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


MAIN = "main"  # the top bar
AUDIT = "audit"  # the tabs of the audit pages (history, account events, metrics)
MENUS: dict[str, tuple[NavItem, ...]] = {
    MAIN: (
        NavItem("reviews.queue", "Queue", ("reviews.queue", "reviews.review", "reviews.decision")),
        NavItem("reviews.jobs", "Deliveries", ("reviews.jobs",)),
        NavItem(
            "audit.history", "History", ("audit.history", "audit.events", "audit.execution_timeline")
        ),
        NavItem("audit.metrics", "Metrics", ("audit.metrics",)),
        NavItem("crews.index", "Crews", ("crews.",)),
        NavItem("admin.users", "Accounts", ("admin.",)),
    ),
    AUDIT: (
        NavItem("audit.history", "Decisions", ("audit.history",)),
        NavItem("audit.events", "Account events", ("audit.events",)),
        NavItem("audit.metrics", "Metrics", ("audit.metrics",)),
    ),
}


@dataclass(frozen=True)
class NavLink:
    item: NavItem
    url: str

    @property
    def label(self) -> str:
        return self.item.label


def _visible_links(menu: str) -> tuple[NavLink, ...]:
    """The links of ``menu`` the current user's role may open, built once per app, menu,
    role and mount point: which endpoints a role may open is fixed once the app is set
    up (access.py reads it from the view functions), and the user's role is read on
    every request."""
    cache: dict[tuple[object, ...], tuple[NavLink, ...]] = current_app.extensions.setdefault(
        "reviewapp.nav", {}
    )
    key = (menu, getattr(current_user, "role", None), request.script_root)
    links = cache.get(key)
    if links is None:
        links = tuple(NavLink(item, url_for(item.endpoint)) for item in MENUS[menu] if can_open(item.endpoint))
        cache[key] = links
    return links


def nav_items(menu: str = MAIN) -> list[tuple[NavLink, bool]]:
    """The links of ``menu`` (the main navigation unless named) the current user may
    open, each with whether it is the current page."""
    endpoint = request.endpoint
    return [(link, link.item.is_current(endpoint)) for link in _visible_links(menu)]


_SENTINEL = 987_654_321_012


def _cached(app: Flask, root: str, name: str, key: tuple[Any, ...], build: Callable[[], str]) -> str:
    """A URL built once per app, mount point (``root``) and ``key``."""
    cache: dict[tuple[Any, ...], str] = app.extensions.setdefault(name, {})
    value = cache.get((*key, root))
    if value is None:
        value = cache[(*key, root)] = build()
    return value


def url_prefix(endpoint: str, argument: str) -> str:
    """The URL of ``endpoint`` without its last part, the integer ``argument``:
    ``url_prefix('reviews.review', 'round_id')`` is ``/rounds/``, so a template appends
    each row's id instead of building 50 URLs through the routing map. Built once per
    app and mount point."""
    return _cached(current_app, request.script_root, "reviewapp.url_prefix", (endpoint, argument),
                   lambda: _url_prefix(endpoint, argument))


def _url_prefix(endpoint: str, argument: str) -> str:
    marker = str(_SENTINEL)
    values: dict[str, Any] = {argument: _SENTINEL}
    url = url_for(endpoint, **values)
    if not url.endswith(marker) or url.count(marker) != 1:
        raise ValueError(f"{argument} is not the last part of the URL of {endpoint}")
    return url[: -len(marker)]


def fixed_url(endpoint: str, **values: Any) -> str:
    """``url_for`` for a link that is the same on every request (a page's own address,
    a static file, a form's action): built once per app and mount point. Every page
    has about a dozen; routing each costs as much as a table row."""
    return _cached(current_app, request.script_root, "reviewapp.fixed_url", (endpoint, *sorted(values.items())),
                   lambda: url_for(endpoint, **values))


# The templates' versions read the app and the request from the template context, not
# through the context-local proxies (``current_app``, ``request``: each access to one
# costs about half of building a URL).


def _app_and_root(context: Context) -> tuple[Flask, str]:
    app: Flask = cast(Any, context.environment).app
    return app, (context.get("request") or request).script_root  # the proxy if not rendered by Flask


@pass_context
def _template_url_prefix(context: Context, endpoint: str, argument: str) -> str:
    return _cached(*_app_and_root(context), "reviewapp.url_prefix", (endpoint, argument),
                   lambda: _url_prefix(endpoint, argument))


@pass_context
def _template_fixed_url(context: Context, endpoint: str, **values: Any) -> str:
    return _cached(*_app_and_root(context), "reviewapp.fixed_url", (endpoint, *sorted(values.items())),
                   lambda: url_for(endpoint, **values))


URL_SAFE = "!$'()*,/:;?@"  # left as they are in a query, as url_for (werkzeug) leaves them


@pass_context
def _template_url_with_args(context: Context, endpoint: str, args: dict[str, Any], **more: Any) -> str:
    """``url_for(endpoint, **args, **more)`` for an endpoint whose URL takes no values:
    its fixed URL and the arguments as the query string (a list page's links keep its
    filters; each ``url_for`` routes through the map again, a page has up to five)."""
    base: str = _template_fixed_url(context, endpoint)
    query = urlencode([(name, value) for name, value in {**more, **args}.items() if value is not None],
                      safe=URL_SAFE)
    return f"{base}?{query}" if query else base


def init_app(app: Flask) -> None:
    app.jinja_env.globals["nav_items"] = nav_items
    app.jinja_env.globals["url_prefix"] = _template_url_prefix
    app.jinja_env.globals["fixed_url"] = _template_fixed_url
    app.jinja_env.globals["url_with_args"] = _template_url_with_args
