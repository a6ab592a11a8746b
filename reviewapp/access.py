"""Who may open what: one check for every route, by construction.

Every endpoint requires a logged-in, active user with at least the reviewer role,
unless its view is marked :func:`public`. A blueprint can raise the floor for all of
its routes (:func:`blueprint_requires`) and a view can raise it further
(:func:`requires`). The effective role is the highest of these, except for a view
marked :func:`opens_below_blueprint`, which skips its blueprint's floor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, abort, current_app, redirect, request, url_for
from flask_login import current_user
from jinja2.runtime import Context
from jinja2.utils import pass_context

from .extensions import login_manager
from .models import Role

F = TypeVar("F", bound=Callable[..., Any])

_BLUEPRINT_ROLES: dict[str, Role] = {}
# Endpoints a user who must change their password may still open.
_PASSWORD_CHANGE_ALLOWED = {"auth.change_password", "auth.logout", "static"}


def public(view: F) -> F:
    """Mark a view as reachable without logging in (login page, webhook receivers)."""
    view._public = True  # type: ignore[attr-defined]
    return view


def requires(role: Role) -> Callable[[F], F]:
    def mark(view: F) -> F:
        view._min_role = role  # type: ignore[attr-defined]
        return view

    return mark


def opens_below_blueprint(role: Role) -> Callable[[F], F]:
    """Let one view of a raised-floor blueprint be opened with ``role`` (the blueprint's
    floor is ignored for it, the reviewer floor still applies). For a page that filters
    what it shows by role, e.g. the audit history reviewers may open for their own rows."""

    def mark(view: F) -> F:
        view._min_role = role  # type: ignore[attr-defined]
        view._ignores_blueprint_floor = True  # type: ignore[attr-defined]
        return view

    return mark


def blueprint_requires(bp: Blueprint, role: Role) -> None:
    _BLUEPRINT_ROLES[bp.name] = role


def is_public(endpoint: str, app: Flask | None = None) -> bool:
    app = app or current_app
    if endpoint == "static":
        return True
    view = app.view_functions.get(endpoint)
    return bool(getattr(view, "_public", False))


def required_role(endpoint: str, app: Flask | None = None) -> Role:
    app = app or current_app
    roles = [Role.REVIEWER]
    blueprint = endpoint.rsplit(".", 1)[0] if "." in endpoint else None
    view = app.view_functions.get(endpoint)
    lowered = bool(getattr(view, "_ignores_blueprint_floor", False))
    if blueprint in _BLUEPRINT_ROLES and not lowered:
        roles.append(_BLUEPRINT_ROLES[blueprint])
    if view is not None and hasattr(view, "_min_role"):
        roles.append(view._min_role)
    return max(roles, key=lambda r: r.rank)


def _role_may_open(role: Role | None, endpoint: str) -> bool:
    if endpoint not in current_app.view_functions:
        return False
    if is_public(endpoint):
        return True
    return role is not None and role.allows(required_role(endpoint))


def _may_open(app: Flask, user: Any, endpoint: str) -> bool:
    """Answered once per app, role and endpoint: which endpoints a role may open is
    fixed once the app is set up."""
    role = user.role if user.is_authenticated else None
    cache: dict[tuple[Role | None, str], bool] = app.extensions.setdefault("reviewapp.can_open", {})
    allowed = cache.get((role, endpoint))
    if allowed is None:
        allowed = cache[(role, endpoint)] = _role_may_open(role, endpoint)
    return allowed


def can_open(endpoint: str) -> bool:
    """May the current user open this endpoint? (the nav, and pages linking elsewhere)"""
    return _may_open(current_app, current_user._get_current_object(), endpoint)


@pass_context
def _template_can_open(context: Context, endpoint: str) -> bool:
    """:func:`can_open` for templates, with the app and the user of the template's
    context (Flask-Login puts the user there) instead of the context-local proxies."""
    user = context.get("current_user") or current_user._get_current_object()  # not rendered by Flask
    return _may_open(cast(Any, context.environment).app, user, endpoint)


def _enforce() -> Any:
    endpoint = request.endpoint
    if endpoint is None or is_public(endpoint):
        return None
    user = current_user._get_current_object()  # the proxy resolves the user on every access
    if not user.is_authenticated:
        return login_manager.unauthorized()
    if user.must_change_password and endpoint not in _PASSWORD_CHANGE_ALLOWED:
        return redirect(url_for("auth.change_password"))
    needed = required_role(endpoint)
    if not user.has_role(needed):
        from .audit.services import record_security_event

        record_security_event(
            "authorization_failed",
            actor=user,
            details={"endpoint": endpoint, "path": request.path, "required": needed.value},
        )
        abort(403)
    return None


def init_app(app: Flask) -> None:
    app.before_request(_enforce)
    app.jinja_env.globals["can_open"] = _template_can_open
    app.jinja_env.globals["Role"] = Role
