"""Who may open what: one check for every route, by construction.

Every endpoint requires a logged-in, active user with at least the reviewer role,
unless its view is marked :func:`public`. A blueprint can raise the floor for all of
its routes (:func:`blueprint_requires`) and a view can raise it further
(:func:`requires`). The effective role is the highest of these, except for a view
marked :func:`opens_below_blueprint`, which skips its blueprint's floor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, abort, current_app, redirect, request, url_for
from flask_login import current_user

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


def can_open(endpoint: str) -> bool:
    """For templates: may the current user open this endpoint? (used by the nav)"""
    if endpoint not in current_app.view_functions:
        return False
    if is_public(endpoint):
        return True
    return bool(current_user.is_authenticated and current_user.has_role(required_role(endpoint)))


def _enforce() -> Any:
    endpoint = request.endpoint
    if endpoint is None or is_public(endpoint):
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if current_user.must_change_password and endpoint not in _PASSWORD_CHANGE_ALLOWED:
        return redirect(url_for("auth.change_password"))
    needed = required_role(endpoint)
    if not current_user.has_role(needed):
        from .audit.services import record_security_event

        record_security_event(
            "authorization_failed",
            actor=current_user,
            details={"endpoint": endpoint, "path": request.path, "required": needed.value},
        )
        abort(403)
    return None


def init_app(app: Flask) -> None:
    app.before_request(_enforce)
    app.jinja_env.globals["can_open"] = can_open
    app.jinja_env.globals["Role"] = Role
