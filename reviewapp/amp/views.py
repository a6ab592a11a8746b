"""Crew pages: leads see crews and kick them off; admins add, edit and remove them."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..access import blueprint_requires, can_open, requires
from ..audit.services import record_event
from ..auth.forms import EmptyForm
from ..errors import abort_with
from ..extensions import db
from ..models import Crew, Execution, ReviewRound, Role, WebhookDelivery
from . import crews as services
from .client import AmpAmbiguous, AmpError, AmpRejected, AmpUnauthorized, client_for
from .crypto import SecretUnreadable
from .executions import kickoff_execution
from .forms import (
    CrewForm,
    EditCrewForm,
    FixTokenForm,
    RemoveCrewForm,
    kickoff_form,
    parse_input_names,
)
from .webhooks import receivers_for_display

bp = Blueprint("crews", __name__)
blueprint_requires(bp, Role.LEAD)

RECENT_EXECUTIONS = 20
RECENT_DELIVERIES = 10
PAGE_READ_TIMEOUT = 5.0  # a crew page must not hang on a slow deployment


def _crew_or_404(name: str) -> Crew:
    crew = services.get_crew(name)
    if crew is None:
        abort_with(404, "No crew with this name.")
    return crew  # type: ignore[return-value]


def _refuse(message: str, code: int = 400) -> NoReturn:
    abort_with(code, message)
    raise AssertionError("abort_with raises")  # pragma: no cover


def _require_form(form: Any) -> None:
    if not form.validate_on_submit():
        _refuse("The form was incomplete or expired; reload the page and try again.")


def execution_url(execution: Execution) -> str:
    """The audit timeline when it exists and may be opened, else our own page."""
    if can_open("audit.execution_timeline"):
        return url_for("audit.execution_timeline", execution_id=execution.id)
    return url_for("crews.execution", execution_id=execution.id)


# --------------------------------------------------------------------------- AMP lookups


def _page_client(crew: Crew):
    return client_for(crew, read_timeout=float(current_app.config.get("AMP_PAGE_READ_TIMEOUT", PAGE_READ_TIMEOUT)))


def _ask(crew: Crew, what: str) -> tuple[Any, str | None]:
    """``health`` or ``inputs`` from AMP for a page: (value, error message)."""
    if crew.token_broken:
        return None, "Not asked: the crew's token needs to be replaced first."
    try:
        client = _page_client(crew)
        return getattr(client, what)(), None
    except SecretUnreadable as exc:
        return None, str(exc)
    except AmpUnauthorized as exc:
        services.mark_token_broken(crew, str(exc))
        db.session.commit()
        return None, str(exc)
    except AmpError as exc:
        return None, str(exc)


def _recent_executions(crew: Crew) -> list[tuple[Execution, int]]:
    rounds = (
        select(func.count(ReviewRound.id)).where(ReviewRound.execution_id == Execution.id).scalar_subquery()
    )
    rows = db.session.execute(
        select(Execution, rounds)
        .options(selectinload(Execution.started_by))
        .where(Execution.crew_id == crew.id)
        .order_by(Execution.created_at.desc(), Execution.id.desc())
        .limit(RECENT_EXECUTIONS)
    )
    return [(execution, count) for execution, count in rows]


def _recent_deliveries(crew: Crew) -> list[WebhookDelivery]:
    return list(db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.crew_id == crew.id)
        .order_by(WebhookDelivery.id.desc()).limit(RECENT_DELIVERIES)
    ))


def _receivers(crew: Crew, *, reveal: bool) -> tuple[list[dict[str, str]], str | None]:
    try:
        return receivers_for_display(crew, reveal=reveal), None
    except SecretUnreadable as exc:
        return [], str(exc)


def _crew_page(crew: Crew, *, kickoff=None, kickoff_error: str | None = None, status: int = 200):
    health, health_error = _ask(crew, "health")
    if kickoff is None:
        names, inputs_error = _ask(crew, "inputs")
        kickoff = kickoff_form(names) if names is not None else None
    else:
        names, inputs_error = kickoff.names, None
    receivers, receivers_error = _receivers(crew, reveal=False)
    return render_template(
        "crews/crew.html",
        crew=crew,
        health=health,
        health_error=health_error,
        inputs=names,
        inputs_error=inputs_error,
        kickoff=kickoff,
        kickoff_error=kickoff_error,
        receivers=receivers,
        receivers_error=receivers_error,
        executions=_recent_executions(crew),
        deliveries=_recent_deliveries(crew),
        execution_url=execution_url,
        edit_form=EditCrewForm(base_url=crew.base_url),
        fix_form=FixTokenForm(),
        remove_form=RemoveCrewForm(),
        action=EmptyForm(),
    ), status


# --------------------------------------------------------------------------- pages


@bp.route("/")
def index():
    return _index_page(CrewForm())


def _index_page(form: CrewForm):
    rows = db.session.execute(
        select(Execution.crew_id, func.count(Execution.id)).group_by(Execution.crew_id)
    )
    counts = {crew_id: total for crew_id, total in rows}
    return render_template("crews/index.html", crews=services.list_crews(), counts=counts, form=form)


@bp.route("/new", methods=["POST"])
@requires(Role.ADMIN)
def create():
    form = CrewForm()
    if form.validate_on_submit():
        try:
            crew = services.create_crew(form.name.data or "", form.base_url.data or "",
                                        form.token.data or "", actor=current_user)
        except services.CrewError as exc:
            form.name.errors.append(str(exc))
        else:
            db.session.commit()
            flash(f"Crew '{crew.name}' added. Its token is stored encrypted and will not be shown again.", "success")
            return redirect(url_for("crews.crew", name=crew.name))
    return _index_page(form), 400


@bp.route("/<name>")
def crew(name: str):
    return _crew_page(_crew_or_404(name))


@bp.route("/<name>/edit", methods=["POST"])
@requires(Role.ADMIN)
def edit(name: str):
    crew = _crew_or_404(name)
    form = EditCrewForm()
    _require_form(form)
    return _update(crew, base_url=form.base_url.data, token=form.token.data)


@bp.route("/<name>/token", methods=["POST"])
@requires(Role.ADMIN)
def fix_token(name: str):
    crew = _crew_or_404(name)
    form = FixTokenForm()
    if not form.validate_on_submit():
        flash("Enter the new token.", "error")
        return redirect(url_for("crews.crew", name=crew.name))
    return _update(crew, base_url=None, token=form.token.data)


def _update(crew: Crew, *, base_url: str | None, token: str | None):
    try:
        changed = services.update_crew(crew, base_url=base_url, token=token, actor=current_user)
    except services.CrewError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        if "token" in changed:
            flash("Token replaced; the crew can be used again.", "success")
        elif changed:
            flash("Base URL changed.", "success")
        else:
            flash("Nothing was changed.", "info")
    return redirect(url_for("crews.crew", name=crew.name))


@bp.route("/<name>/remove", methods=["POST"])
@requires(Role.ADMIN)
def remove(name: str):
    crew = _crew_or_404(name)
    form = RemoveCrewForm()
    _require_form(form)
    try:
        services.remove_crew(crew, force=bool(form.delete_history.data), actor=current_user)
    except services.CrewError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("crews.crew", name=name))
    db.session.commit()
    flash(f"Crew '{name}' removed.", "success")
    return redirect(url_for("crews.index"))


@bp.route("/<name>/secret", methods=["POST"])
@requires(Role.ADMIN)
def reveal_secret(name: str):
    """Show the receivers with the inbound secret, once, to configure another system."""
    crew = _crew_or_404(name)
    _require_form(EmptyForm())
    receivers, error = _receivers(crew, reveal=True)
    if error:
        flash(error, "error")
        return redirect(url_for("crews.crew", name=name))
    record_event("crew_secret_revealed", actor=current_user, target_type="crew",
                 target_id=crew.id, target_name=crew.name)
    db.session.commit()
    return render_template("crews/secret.html", crew=crew, receivers=receivers, action=EmptyForm())


@bp.route("/<name>/rotate-secret", methods=["POST"])
@requires(Role.ADMIN)
def rotate_secret(name: str):
    crew = _crew_or_404(name)
    _require_form(EmptyForm())
    services.rotate_inbound_secret(crew, actor=current_user)
    db.session.commit()
    flash("New inbound secret generated. Executions started before keep calling with the old "
          "one until their next resume; update any system you configured by hand.", "warning")
    return redirect(url_for("crews.crew", name=name))


@bp.route("/<name>/kickoff", methods=["GET", "POST"])
def kickoff(name: str):
    crew = _crew_or_404(name)
    if request.method == "GET":
        return redirect(url_for("crews.crew", name=name) + "#kickoff")
    if crew.token_broken:
        flash("This crew's token was refused by AMP; an admin must replace it before a kickoff.", "error")
        return redirect(url_for("crews.crew", name=name))
    names = parse_input_names(request.form.get("input_names"))
    if names is None:
        return _refuse("The kickoff form was damaged; reload the crew page and try again.")
    form = kickoff_form(names)
    if not form.validate_on_submit():
        return _crew_page(crew, kickoff=form, status=400)
    try:
        execution = kickoff_execution(crew, form.values(), actor=current_user)
    except AmpUnauthorized:
        db.session.commit()  # keeps the token_broken mark
        flash("AMP refused the crew's token; an admin must replace it. Nothing was started.", "error")
        return redirect(url_for("crews.crew", name=name))
    except AmpAmbiguous as exc:
        db.session.rollback()
        flash(f"AMP did not answer in time ({exc}). The execution may have started: it will appear "
              "here when AMP notifies reviewapp. Check before kicking off again.", "warning")
        return redirect(url_for("crews.crew", name=name))
    except AmpRejected as exc:
        db.session.rollback()
        form.add_missing(exc.missing_inputs)
        return _crew_page(crew, kickoff=form, kickoff_error=str(exc), status=400)
    except (AmpError, SecretUnreadable) as exc:
        db.session.rollback()
        return _crew_page(crew, kickoff=form, kickoff_error=f"Nothing was started: {exc}", status=503)
    db.session.commit()
    flash(f"Kicked off: execution {execution.kickoff_id} is running. Its outputs arrive in the "
          "queue when the crew pauses for review.", "success")
    return redirect(url_for("crews.crew", name=name))


@bp.route("/executions/<int:execution_id>")
def execution(execution_id: int):
    row = db.session.get(Execution, execution_id)
    if row is None:
        return _refuse("No such execution.", 404)
    deliveries = list(db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.execution_id == row.id).order_by(WebhookDelivery.id)
    ))
    return render_template("crews/execution.html", execution=row, deliveries=deliveries)
