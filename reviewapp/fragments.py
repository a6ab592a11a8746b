"""Pieces of a page that depend only on a few values, rendered once per app and key.

A list page's heading and filter form (the tabs, every crew and reviewer as an option,
the export links) are the same for every request with the same filters, role and crew
and reviewer lists: rendered each time, they were a tenth of the history page. The
caller names every value the piece depends on in its key; nothing else may reach it
(no user's own data, no CSRF token). The store is per app and bounded: when full, it
starts over.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from flask import current_app, render_template, request
from markupsafe import Markup

FRAGMENTS_KEPT = 512  # keys held per app before the store starts over (a piece is a few KB)
_STORE = "reviewapp.fragments"


def cached_fragment(key: Hashable, render: Callable[[], str]) -> Markup:
    """The markup ``render()`` returns for ``key``: rendered on the first request with
    this key, then reused. ``render`` must depend on nothing but what ``key`` holds."""
    store: dict[Hashable, Markup] = current_app.extensions.setdefault(_STORE, {})
    html = store.get(key)
    if html is None:
        if len(store) >= FRAGMENTS_KEPT:
            store.clear()
        html = store[key] = Markup(render())  # noqa: S704 - a rendered (autoescaped) template
    return html


def cached_partial(template: str, key: tuple[Hashable, ...], context: Callable[[], dict[str, Any]]) -> Markup:
    """``render_template(template, **context())``, once per template, mount point (the
    links in it) and ``key``, which must hold every value ``context`` builds on."""
    return cached_fragment((template, request.script_root, *key), lambda: render_template(template, **context()))
