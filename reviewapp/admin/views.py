"""Account administration. Every route here needs the admin role (one check)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from ..access import blueprint_requires
from ..auth import totp
from ..auth.forms import EmptyForm
from ..errors import abort_with
from ..extensions import db
from ..models import Role, User
from . import services
from .forms import CreateUserForm, ResetPasswordForm, RoleForm

bp = Blueprint("admin", __name__)
blueprint_requires(bp, Role.ADMIN)


def _user_or_404(user_id: int) -> User:
    user = services.get_user(user_id)
    if user is None:
        abort_with(404, "No such account.")
    return user  # type: ignore[return-value]


def _one_time_page(user: User, password: str):
    return render_template("admin/one_time_password.html", user=user, password=password)


@bp.route("/")
def index():
    return redirect(url_for("admin.users"))


@bp.route("/users")
def users():
    return render_template(
        "admin/users.html", users=services.list_users(), form=CreateUserForm(), action=EmptyForm()
    )


@bp.route("/users/new", methods=["POST"])
def create_user():
    form = CreateUserForm()
    if form.validate_on_submit():
        try:
            user, one_time = services.create_user(
                form.username.data or "",
                Role(form.role.data),
                form.password.data or None,
                actor=current_user,
            )
        except services.AccountError as exc:
            form.username.errors.append(str(exc))
        else:
            db.session.commit()
            if one_time:
                return _one_time_page(user, one_time)
            flash(f"Account '{user.username}' created.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_template(
        "admin/users.html", users=services.list_users(), form=form, action=EmptyForm()
    ), 400


@bp.route("/users/<int:user_id>")
def user_detail(user_id: int):
    user = _user_or_404(user_id)
    return render_template(
        "admin/user.html",
        user=user,
        role_form=RoleForm(role=user.role.value),
        reset_form=ResetPasswordForm(),
        action=EmptyForm(),
    )


def _apply(user_id: int, change) -> object:
    """Run one account change behind a CSRF-checked form; flash its outcome."""
    user = _user_or_404(user_id)
    try:
        message = change(user)
    except services.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        if message:
            flash(message, "success")
    return redirect(url_for("admin.user_detail", user_id=user_id))


@bp.route("/users/<int:user_id>/role", methods=["POST"])
def change_role(user_id: int):
    form = RoleForm()
    if not form.validate_on_submit():
        abort_with(400, "Choose a valid role.")

    def change(user: User) -> str:
        services.change_role(user, Role(form.role.data), actor=current_user)
        return f"{user.username} is now {user.role.label}; their sessions were ended."

    return _apply(user_id, change)


@bp.route("/users/<int:user_id>/deactivate", methods=["POST"])
def deactivate(user_id: int):
    if not EmptyForm().validate_on_submit():
        abort_with(400, "The form was incomplete.")

    def change(user: User) -> str:
        services.set_active(user, False, actor=current_user)
        return f"{user.username} is deactivated; their sessions were ended."

    return _apply(user_id, change)


@bp.route("/users/<int:user_id>/reactivate", methods=["POST"])
def reactivate(user_id: int):
    if not EmptyForm().validate_on_submit():
        abort_with(400, "The form was incomplete.")

    def change(user: User) -> str:
        services.set_active(user, True, actor=current_user)
        return f"{user.username} is active again."

    return _apply(user_id, change)


@bp.route("/users/<int:user_id>/reset-totp", methods=["POST"])
def reset_totp(user_id: int):
    if not EmptyForm().validate_on_submit():
        abort_with(400, "The form was incomplete.")

    def change(user: User) -> str:
        if not totp.reset(user, actor=current_user):
            return f"{user.username} has no two-factor login to reset."
        return f"Two-factor login reset for {user.username}; their sessions were ended."

    return _apply(user_id, change)


@bp.route("/users/<int:user_id>/reset-password", methods=["POST"])
def reset_password(user_id: int):
    user = _user_or_404(user_id)
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return redirect(url_for("admin.user_detail", user_id=user_id))
    try:
        one_time = services.reset_password(user, form.temporary.data or None, actor=current_user)
    except services.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.user_detail", user_id=user_id))
    db.session.commit()
    if one_time:
        return _one_time_page(user, one_time)
    flash(
        f"Temporary password set for {user.username}; they must change it at next login.",
        "success",
    )
    return redirect(url_for("admin.user_detail", user_id=user_id))
