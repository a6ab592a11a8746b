"""Review queue and review pages (filled in by the review-loop issue)."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("reviews", __name__)


@bp.route("/")
def queue():
    return render_template("reviews/queue.html")
