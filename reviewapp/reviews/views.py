"""The review loop's pages: queue, review page, decision outcome, failed deliveries.

Views stay thin: parse input, call one service, commit once, redirect (or render).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy.exc import IntegrityError

from ..access import requires
from ..audit.filter_lists import filter_lists
from ..audit.pagination import Cursor, CursorError
from ..audit.templating import utc_seconds
from ..auth.forms import EmptyForm
from ..errors import abort_with
from ..extensions import db
from ..fragments import cached_partial
from ..models import Decision, ResumeJob, ReviewRound, Role, RoundState, utcnow
from . import delivery, rendering, services
from .forms import DecisionForm

bp = Blueprint("reviews", __name__)

SHORTCUTS = [
    ("f", "focus the Feedback box"),
    ("Esc", "leave the Feedback box"),
    ("a", "Approve"),
    ("r", "Request revision (asks to confirm)"),
    ("n", "Review next"),
]


# --------------------------------------------------------------------------- helpers


@bp.app_template_filter("ago")
def _ago(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``when`` was (a page of many rows passes one ``now`` for all)."""
    if when is None:
        return "—"
    seconds = max(0, int(((now or utcnow()) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


# ``2025-01-31 09:05:00``: a filter, which Jinja calls directly, where a ``strftime``
# method call would go through the template context for every row.
bp.add_app_template_filter(utc_seconds, "utc_seconds")


@bp.app_template_filter("pretty_json")
def _pretty_json(value: Any) -> str:
    """Indented JSON as plain text (the template escapes it; unlike |tojson it keeps < > & readable)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _found(row: Any, message: str) -> Any:
    if row is None:
        abort_with(404, message)
    return row


def _round_or_404(round_id: int) -> ReviewRound:
    return _found(services.get_round(round_id), "No such review round.")


def _decision_or_404(decision_id: int) -> Decision:
    decision = _found(services.get_decision(decision_id), "No such decision.")
    if not services.may_view_decision(decision, current_user):
        abort_with(403, "Only the reviewer who made this decision, or a lead, can open it.")
    return decision


def _job_or_404(job_id: int) -> ResumeJob:
    return _found(services.get_job(job_id), "No such delivery.")


def _require_post_form() -> None:
    if not EmptyForm().validate_on_submit():
        abort_with(400, "The form was incomplete.")


def _filters_from_request() -> services.QueueFilters:
    args = request.values
    crew = args.get("crew", "").strip()
    if crew and not crew.isdigit():
        abort_with(400, "Unknown crew filter. Pick a crew from the list.")
    age = args.get("age", "")
    if age not in services.AGE_WINDOWS:
        abort_with(400, "Unknown age filter. Pick an age from the list.")
    sort = args.get("sort", "")
    if sort not in ("", "oldest", "newest"):
        abort_with(400, "Unknown sort order. Use oldest or newest first.")
    return services.QueueFilters(
        crew_id=int(crew) if crew else None,
        task_id=args.get("task", "").strip()[:200] or None,
        age=age,
        q=args.get("q", "").strip()[:200],
        newest_first=sort == "newest",
    )


# --------------------------------------------------------------------------- queue


@bp.route("/")
def queue():
    filters = _filters_from_request()
    after = None
    if request.args.get("after"):
        try:
            after = Cursor.decode(request.args["after"])
        except CursorError as exc:
            abort_with(400, str(exc))
    now = utcnow()
    page = services.list_queue(filters, after=after, now=now)
    filter_args = filters.as_args()
    return render_template(
        "reviews/queue.html",
        page=page,
        now=now,
        filters=filters,
        filter_args=filter_args,
        filter_form=_queue_filter_form(filters, filter_args),
        first_page=after is None,
    )


QUEUE_FILTERS = "reviews/_queue_filters.html"


def _queue_filter_form(filters: services.QueueFilters, filter_args: dict[str, str]) -> Markup:
    """The queue's filter form, rendered once per filters, mount point and crew list:
    it shows nothing else (the Review-next form, with its CSRF token, is outside it)."""
    lists = filter_lists()
    return cached_partial(QUEUE_FILTERS, (filters, lists.version), lambda: {
        "filters": filters, "filter_args": filter_args, "crews": lists.crews, "ages": services.AGE_WINDOWS,
    })


@bp.route("/next", methods=["POST"])
def review_next():
    _require_post_form()
    filters = _filters_from_request()
    round_ = services.review_next(current_user, filters)
    db.session.commit()
    if round_ is None:
        flash("Nothing left to review that you can take right now.", "info")
        return redirect(url_for("reviews.queue", **filters.as_args()))
    return redirect(url_for("reviews.review", round_id=round_.id))


# --------------------------------------------------------------------------- review page


def _shown_body(crew, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The /resume body as the reviewer may see it (secret masked); None if the crew's
    stored secret cannot be decrypted (the page says so instead of failing)."""
    from ..amp.client import build_resume_body, redact_body
    from ..amp.crypto import SecretUnreadable

    try:
        return redact_body(build_resume_body(crew, **fields))
    except SecretUnreadable:
        return None


def _previews(round_: ReviewRound, feedback: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The /resume bodies of Approve and of Request revision as shown, built once: the
    two differ only in ``is_approve`` (building one decrypts the inbound secret)."""
    approve = _shown_body(round_.crew, services.resume_fields(round_, feedback=feedback, is_approve=True))
    return approve, None if approve is None else {**approve, "is_approve": False}


def _output_view(round_: ReviewRound) -> tuple[str, rendering.ShownOutput]:
    """("rendered" or "raw", the output's facts and HTML): large outputs open as raw text.
    The round may come without its output: it is read only if the cache lacks it."""
    wanted = request.args.get("view", "")
    render = False if wanted == "raw" else True if wanted == "rendered" else None
    shown = rendering.shown_output((round_.id, round_.output_sha256), lambda: services.round_output(round_),
                                   render=render)
    return ("rendered" if shown.html is not None and wanted != "raw" else "raw"), shown


def _diff(earlier: list[ReviewRound], round_: ReviewRound, shown: rendering.ShownOutput) -> Any:
    """The line diff against the previous round; the outputs are read only when the
    current one is small enough to be compared at all."""
    if not earlier:
        return None
    if rendering.too_large_to_diff(0, shown.chars):
        return rendering.TOO_LARGE_TO_DIFF
    return rendering.diff_outputs(earlier[-1].output, round_.output)


def _earlier(round_: ReviewRound) -> list[tuple[ReviewRound, rendering.OutputStart]]:
    """Earlier rounds of the task, each with the start of its output."""
    rounds = services.earlier_rounds(round_)
    starts = rendering.output_starts({(r.id, r.output_sha256): r.id for r in rounds}, services.output_starts)
    return [(r, starts[(r.id, r.output_sha256)]) for r in rounds]


def _review_page(round_: ReviewRound, form: DecisionForm, *, status: int = 200) -> Any:
    earlier = _earlier(round_)
    view, shown = _output_view(round_)
    claim = services.claim_status(round_, current_user)
    preview_approve, preview_revise = _previews(round_, form.feedback.data or "")
    page = render_template(
        "reviews/review.html",
        round=round_,
        execution=round_.execution,
        crew=round_.crew,
        earlier=earlier,
        diff=_diff([r for r, _ in earlier], round_, shown),
        view=view,
        output=shown,
        claim=claim,
        can_decide=round_.state is RoundState.PENDING and claim.held,
        form=form,
        preview_approve=preview_approve,
        preview_revise=preview_revise,
        shortcuts=SHORTCUTS,
        heartbeat_seconds=_heartbeat_seconds(),
        is_lead=current_user.has_role(Role.LEAD),
    )
    return page, status


def _heartbeat_seconds() -> int:
    """How often the open page extends its claim: a third of the claim, at most a minute
    (``CLAIM_HEARTBEAT_SECONDS`` overrides it, e.g. for browser tests)."""
    configured = current_app.config.get("CLAIM_HEARTBEAT_SECONDS")
    if configured:
        return max(1, int(configured))
    return max(10, min(60, services.claim_minutes() * 20))


def _decision_form() -> DecisionForm:
    return DecisionForm().set_reasons(services.revision_reasons())


@bp.route("/rounds/<int:round_id>")
def review(round_id: int):
    """Opening a pending round claims it (a time-limited soft lock, extended by the page;
    see services.claim_on_open).

    The page is built before the claim is committed: after the commit every loaded row
    would be expired and read again (the round, its crew and execution, the user)."""
    round_ = _found(services.get_round_for_page(round_id), "No such review round.")
    claimed = round_.state is RoundState.PENDING
    if claimed:
        services.claim_on_open(round_, current_user)
    page = _review_page(round_, _decision_form())
    if claimed:
        db.session.commit()
    return page


@bp.route("/rounds/<int:round_id>/output.txt")
def raw_output(round_id: int):
    round_ = _round_or_404(round_id)
    response = Response(round_.output, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'inline; filename="round-{round_.id}.txt"'
    return response


@bp.route("/rounds/<int:round_id>/heartbeat", methods=["POST"])
def heartbeat(round_id: int):
    """Extends the claim while the review page is open (called by static/js/review.js)."""
    round_ = services.get_round(round_id)
    if round_ is None:
        return jsonify(error="Not Found", message="No such review round."), 404
    if round_.state is RoundState.PENDING:
        status = services.claim_round(round_, current_user)
        db.session.commit()
    else:
        status = services.claim_status(round_, current_user)
    return jsonify(status.as_json())


@bp.route("/rounds/<int:round_id>/take-over", methods=["POST"])
@requires(Role.LEAD)
def take_over(round_id: int):
    _require_post_form()
    round_ = _round_or_404(round_id)
    try:
        services.take_over(round_, current_user)
    except services.ReviewError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash("You took this review over.", "success")
    return redirect(url_for("reviews.review", round_id=round_id))


@bp.route("/rounds/<int:round_id>/release", methods=["POST"])
def release(round_id: int):
    _require_post_form()
    round_ = _round_or_404(round_id)
    if services.release_claim(round_, current_user):
        flash("Released: someone else can take this round now.", "info")
    db.session.commit()
    return redirect(url_for("reviews.queue"))


@bp.route("/rounds/<int:round_id>/decide", methods=["POST"])
def decide(round_id: int):
    # Without the output (up to megabytes, which deciding does not read; a page shown
    # again after an invalid form reads it when it needs it).
    round_ = _found(services.get_round(round_id, output=False), "No such review round.")
    form = _decision_form()
    if not form.validate_on_submit():
        return _review_page(round_, form, status=400)
    lease = delivery.inline_lease()
    try:
        submitted = services.submit_decision(
            round_,
            current_user,
            is_approve=form.is_approve,
            feedback=form.feedback.data or "",
            reason_code=form.reason.data or None,
            lease=lease,
        )
        # Built before the commit expires the round, its execution and crew (no reload).
        outbound = delivery.prepare(submitted.job_id, submitted.job_body, round_) if submitted.leased else None
        db.session.commit()
    except services.RoundConflict as exc:
        db.session.rollback()
        return _conflict_page(exc.round, str(exc), form)
    except IntegrityError:  # the unique decision per round: a racing twin got there first
        db.session.rollback()
        round_ = _round_or_404(round_id)
        return _conflict_page(round_, "This round was already decided.", form)
    except services.ReviewError as exc:
        db.session.rollback()
        form.feedback.errors = [*form.feedback.errors, str(exc)]
        return _review_page(round_, form, status=400)
    _deliver_now(submitted.job_id if submitted.leased else None, lease[0], outbound)
    return redirect(url_for("reviews.decision", decision_id=submitted.decision_id))


def _deliver_now(job_id: int | None, owner: str, outbound: delivery.Outbound | None) -> None:
    """The first delivery attempt, inline: the job was committed leased to this request
    (so exactly-once holds). If this fails, or the process dies, the lease expires and
    the worker takes over (status check first). No job id: nothing was leased (a crew
    whose token is broken waits for an admin)."""
    if job_id is None:
        return
    try:
        delivery.deliver_leased(job_id, worker_id=owner, outbound=outbound)
    except Exception:
        db.session.rollback()
        current_app.logger.exception("inline delivery of resume job %s failed; the worker will retry", job_id)


def _conflict_page(round_: ReviewRound, message: str, form: DecisionForm) -> Any:
    db.session.refresh(round_)
    return render_template(
        "reviews/conflict.html",
        round=round_,
        message=message,
        decision=round_.decision,
        typed_feedback=services.normalise_feedback(form.feedback.data),
        typed_action="Approve" if form.is_approve else "Request revision",
        typed_reason=form.reason.data or None,
        claim=services.claim_status(round_, current_user),
        is_lead=current_user.has_role(Role.LEAD),
        action=EmptyForm(),
    ), 409


# --------------------------------------------------------------------------- outcome


@bp.route("/decisions/<int:decision_id>")
def decision(decision_id: int):
    decision = _decision_or_404(decision_id)
    job = decision.job
    sent = _shown_body(job.crew, services.job_fields(job)) if job is not None else None
    return render_template(
        "reviews/decision.html",
        decision=decision,
        round=decision.round,
        job=job,
        summary=delivery.describe(job) if job is not None else None,
        sent=sent,
        action=EmptyForm(),
        is_lead=current_user.has_role(Role.LEAD),
    )


@bp.route("/decisions/<int:decision_id>/status")
def decision_status(decision_id: int):
    """JSON polled by the outcome page until the delivery reaches a final state."""
    decision = services.get_decision(decision_id)
    if decision is None or decision.job is None:
        return jsonify(error="Not Found", message="No such decision."), 404
    if not services.may_view_decision(decision, current_user):
        return jsonify(error="Forbidden", message="Not your decision."), 403
    return jsonify(delivery.describe(decision.job).as_json())


# --------------------------------------------------------------------------- failed deliveries


@bp.route("/resume-jobs")
@requires(Role.LEAD)
def jobs():
    rows = [(job, delivery.describe(job)) for job in services.jobs_needing_attention()]
    return render_template("reviews/jobs.html", rows=rows, action=EmptyForm())


def _job_action(job_id: int, change, done: str) -> Any:
    _require_post_form()
    job = _job_or_404(job_id)
    try:
        change(job, current_user)
    except services.JobActionError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("reviews.jobs"))


@bp.route("/resume-jobs/<int:job_id>/retry", methods=["POST"])
@requires(Role.LEAD)
def retry_job(job_id: int):
    return _job_action(job_id, services.retry_job, "The delivery will be retried by the worker now.")


@bp.route("/resume-jobs/<int:job_id>/dismiss", methods=["POST"])
@requires(Role.LEAD)
def dismiss_job(job_id: int):
    return _job_action(job_id, services.dismiss_job, "The delivery was dismissed; nothing will be sent.")
