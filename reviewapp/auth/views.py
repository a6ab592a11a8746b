from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from ..access import public
from ..audit.services import record_event
from ..extensions import db
from ..models import User
from ..redirects import safe_next
from . import devices, services, sessions, throttle, totp
from .forms import ChangePasswordForm, LoginForm, TotpCodeForm

bp = Blueprint("auth", __name__)

# Where the account page keeps a secret being enrolled until its first code is entered.
SETUP_SECRET = "_totp_setup"  # noqa: S105 - a session key name, not a secret


def _throttled(template: str, exc: throttle.Throttled, **context: Any):
    return (
        render_template(template, throttle_message=exc.message, **context),
        429,
        {"Retry-After": str(exc.retry_after)},
    )


def _finish_login(user: User, *, remember: bool) -> Any:
    """All factors passed: a fresh session, the login recorded, this browser known."""
    services.complete_login(user)
    sessions.start(user, remember=remember)
    db.session.commit()
    if user.must_change_password:
        flash("Please choose a new password before you continue.", "info")
        target = url_for("auth.change_password")
    else:
        target = safe_next(request.args.get("next")) or url_for("reviews.queue")
    response = redirect(target)
    devices.remember_device(response, user.username)
    return response


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if current_user.is_authenticated:
        return redirect(url_for("reviews.queue"))
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form)
    username = form.username.data or ""
    keys = throttle.login_keys(username, request.remote_addr, devices.device_id_for(username))
    try:
        user = services.password_login(username, form.password.data or "", keys)
    except throttle.Throttled as exc:
        return _throttled("auth/login.html", exc, form=form)
    except services.InvalidCredentials as exc:
        db.session.commit()  # keep the failure count and the audit rows
        form.password.errors.append(str(exc))
        return render_template("auth/login.html", form=form), 200
    remember = bool(form.remember.data)
    if totp.second_factor_needed(user):
        sessions.begin_second_factor(user, remember=remember, enrol=not totp.is_enrolled(user))
        db.session.commit()
        return redirect(url_for("auth.second_factor", next=safe_next(request.args.get("next"))))
    return _finish_login(user, remember=remember)


def _pending_step(*, enrol: bool) -> tuple[tuple[User, dict[str, Any]] | None, Any]:
    """The half-done login this step serves, or the redirect to the step it needs."""
    pending = sessions.pending_login()
    if pending is None:
        flash("Please log in again.", "info")
        return None, redirect(url_for("auth.login"))
    if bool(pending[1].get("enrol")) != enrol:
        step = "auth.second_factor_setup" if pending[1].get("enrol") else "auth.second_factor"
        return None, redirect(url_for(step, next=request.args.get("next")))
    return pending, None


def _code_step(template: str, page: dict[str, Any], check, user: User, remember: bool) -> Any:
    """Ask for a code; ``check(code)`` raises if it is wrong; a right one logs in."""
    form = page["form"]
    if not form.validate_on_submit():
        return render_template(template, **page)
    try:
        check(form.code.data or "")
    except throttle.Throttled as exc:
        return _throttled(template, exc, **page)
    except services.AuthError as exc:
        db.session.commit()  # keep the failure count
        form.code.errors.append(str(exc))
        return render_template(template, **page)
    return _finish_login(user, remember=remember)


@bp.route("/login/two-factor", methods=["GET", "POST"])
@public
def second_factor():
    pending, elsewhere = _pending_step(enrol=False)
    if pending is None:
        return elsewhere
    user, data = pending
    return _code_step(
        "auth/two_factor.html",
        {"form": TotpCodeForm()},
        lambda code: totp.verify_login(user, code),
        user,
        bool(data.get("remember")),
    )


@bp.route("/login/two-factor/setup", methods=["GET", "POST"])
@public
def second_factor_setup():
    """Enrolment a lead or admin must do before their login completes (REQUIRE_TOTP)."""
    pending, elsewhere = _pending_step(enrol=True)
    if pending is None:
        return elsewhere
    user, data = pending
    secret = totp.unseal(data.get("secret")) or totp.new_secret()
    sessions.set_pending_value("secret", totp.seal(secret))
    page = {
        "form": TotpCodeForm(),
        "user": user,
        "secret": secret,
        "uri": totp.provisioning_uri(user, secret),
        "at_login": True,
    }
    return _code_step(
        "auth/two_factor_setup.html",
        page,
        lambda code: totp.enable(user, secret, code),
        user,
        bool(data.get("remember")),
    )


@bp.route("/account/two-factor", methods=["GET"])
def two_factor():
    """The user's own two-factor settings: enrol (secret shown once) or turn off."""
    user = current_user._get_current_object()
    if totp.is_enrolled(user):
        session.pop(SETUP_SECRET, None)
        return render_template(
            "auth/two_factor_account.html", form=TotpCodeForm(), required=totp.required_for(user)
        )
    secret = totp.new_secret()
    session[SETUP_SECRET] = totp.seal(secret)
    return render_template(
        "auth/two_factor_setup.html",
        form=TotpCodeForm(),
        user=user,
        secret=secret,
        uri=totp.provisioning_uri(user, secret),
        at_login=False,
    )


def _account_change(change, success: str) -> Any:
    """Run a code-checked change of the user's own second factor; renew the session."""
    user = current_user._get_current_object()
    form = TotpCodeForm()
    if not form.validate_on_submit():
        flash("Enter the 6-digit code.", "error")
        return redirect(url_for("auth.two_factor"))
    try:
        change(user, form.code.data or "")
    except throttle.Throttled as exc:
        flash(exc.message, "error")
        return redirect(url_for("auth.two_factor"))
    except services.AuthError as exc:
        db.session.commit()  # keep the failure count
        flash(str(exc), "error")
        return redirect(url_for("auth.two_factor"))
    db.session.commit()
    session.pop(SETUP_SECRET, None)
    sessions.renew(user)  # privilege change: a new session, the others ended
    flash(success, "success")
    return redirect(url_for("auth.two_factor"))


@bp.route("/account/two-factor/enable", methods=["POST"])
def two_factor_enable():
    secret = totp.unseal(session.get(SETUP_SECRET))
    if not secret:
        flash("The setup had expired; here is a new secret.", "info")
        return redirect(url_for("auth.two_factor"))
    return _account_change(
        lambda user, code: totp.enable(user, secret, code),
        "Two-factor login is on. Your other sessions were logged out.",
    )


@bp.route("/account/two-factor/disable", methods=["POST"])
def two_factor_disable():
    return _account_change(totp.disable, "Two-factor login is off.")


@bp.route("/logout", methods=["POST"])
def logout():
    record_event("logout", actor=current_user, target=current_user)
    sessions.revoke_current()
    db.session.commit()
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            services.change_own_password(
                user, form.current_password.data or "", form.new_password.data or ""
            )
        except services.AuthError as exc:
            form.new_password.errors.append(str(exc))
            return render_template("auth/change_password.html", form=form)
        db.session.commit()
        # The version bump ended every session, this one too: renew it with the new one.
        sessions.renew(user)
        flash("Your password has been changed. Other sessions have been logged out.", "success")
        return redirect(url_for("reviews.queue"))
    return render_template("auth/change_password.html", form=form)
