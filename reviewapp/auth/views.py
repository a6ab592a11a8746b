from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from ..access import public
from ..audit.services import record_event
from ..extensions import db
from ..redirects import safe_next
from . import services
from .forms import ChangePasswordForm, LoginForm

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if current_user.is_authenticated:
        return redirect(url_for("reviews.queue"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = services.authenticate(form.username.data or "", form.password.data or "")
        except services.InvalidCredentials as exc:
            db.session.commit()  # keep the login_failed audit row
            form.password.errors.append(str(exc))
            return render_template("auth/login.html", form=form), 200
        session.clear()  # a fresh session on login (no fixation)
        login_user(user, remember=bool(form.remember.data))
        db.session.commit()
        if user.must_change_password:
            flash("Please choose a new password before you continue.", "info")
            return redirect(url_for("auth.change_password"))
        return redirect(safe_next(request.args.get("next")) or url_for("reviews.queue"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    record_event("logout", actor=current_user, target=current_user)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            services.change_own_password(
                current_user, form.current_password.data or "", form.new_password.data or ""
            )
        except services.AuthError as exc:
            form.new_password.errors.append(str(exc))
            return render_template("auth/change_password.html", form=form)
        db.session.commit()
        # The version bump ended every session, this one too: log in again with it.
        session.clear()
        login_user(current_user._get_current_object())
        flash("Your password has been changed. Other sessions have been logged out.", "success")
        return redirect(url_for("reviews.queue"))
    return render_template("auth/change_password.html", form=form)
