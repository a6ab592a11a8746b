"""Error pages: a clear message and the right 4xx, never a stack trace.

Two failures keep what the reviewer typed: a form whose CSRF token no longer matches
(e.g. the session ended and a new one began in another tab) and a POST that arrives
after the session timed out. When such a POST carried a ``feedback`` field, the page
shows it back in a read-only text area so it can be copied and submitted again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, SecurityError

from .redirects import safe_next

MESSAGES = {
    400: "The request could not be understood.",
    401: "Please log in again.",
    403: "You do not have permission to open this page.",
    404: "There is nothing at this address.",
    405: "This address does not accept that kind of request.",
    413: "The request is too large.",
    429: "Too many attempts. Please wait a moment and try again.",
    500: "Something went wrong on our side. The error has been logged.",
}

CSRF_MESSAGE = (
    "Your form had expired or was missing its security token, so nothing was changed. "
    "Go back, reload the page and submit again."
)
EXPIRY_MESSAGES = {
    "idle": "Your session ended after a period without activity, so nothing was changed.",
    "absolute": "Your session reached its maximum length, so nothing was changed.",
    "revoked": "This session was logged out, so nothing was changed.",
}
# The form field whose text is worth saving when a submission is refused.
KEPT_FIELD = "feedback"
KEPT_LIMIT = 100_000


def wants_json() -> bool:
    return request.path.startswith("/hooks/") or (
        request.accept_mimetypes.best == "application/json"
    )


def _plain(code: int, text: str) -> Response:
    """For requests that cannot build URLs (an untrusted Host header)."""
    return Response(f"{code}: {text}\n", status=code, mimetype="text/plain")


def render_error(code: int, message: str | None = None) -> tuple[Any, int] | Response:
    text = message or MESSAGES.get(code, "Error")
    if wants_json():
        return jsonify(error=MESSAGES.get(code, "Error").rstrip("."), message=text), code
    if request_ctx.url_adapter is None:
        return _plain(code, text)
    return render_template("errors/error.html", code=code, message=text), code


def kept_feedback() -> str | None:
    """The ``feedback`` text of the failed POST, if any (form already parsed or small)."""
    if request.method != "POST":
        return None
    try:
        text = request.form.get(KEPT_FIELD)
    except HTTPException:  # e.g. the body was too large to parse
        return None
    return text[:KEPT_LIMIT] if text and text.strip() else None


def _same_site_referrer() -> str | None:
    """The page the form was on, if it was on this site (for a "back to the form" link)."""
    parts = urlsplit(request.referrer or "")
    if parts.netloc != request.host:
        return None
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def render_kept(code: int, message: str, feedback: str) -> tuple[Any, int]:
    return (
        render_template(
            "errors/form_refused.html",
            code=code,
            message=message,
            feedback=feedback,
            back=_same_site_referrer(),
        ),
        code,
    )


def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    if isinstance(exc, SecurityError):
        return _plain(400, "This host name is not served here.")
    # Only our own short descriptions are shown; werkzeug's defaults are replaced.
    custom = exc.description if getattr(exc, "_reviewapp_message", False) else None
    return render_error(code, custom)


def _csrf_error(exc: CSRFError) -> Any:
    feedback = kept_feedback()
    if feedback and not wants_json() and request_ctx.url_adapter is not None:
        return render_kept(400, CSRF_MESSAGE, feedback)
    return render_error(400, CSRF_MESSAGE)


def session_expired(reason: str) -> Any:
    """The response for a request whose session just timed out (see auth.sessions)."""
    message = EXPIRY_MESSAGES.get(reason, EXPIRY_MESSAGES["idle"])
    if wants_json():
        return render_error(401, message + " Log in again.")
    feedback = kept_feedback()
    if feedback:
        return render_kept(401, message, feedback)
    flash(message + " Please log in again.", "info")
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.login", next=safe_next(target)), code=303)


def _server_error(exc: Exception) -> Any:
    return render_error(500)


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(500, _server_error)


def abort_with(code: int, message: str) -> None:
    """Abort with one of our own messages (shown to the user as is)."""
    from werkzeug.exceptions import default_exceptions

    exc = default_exceptions[code](description=message)
    exc._reviewapp_message = True  # type: ignore[attr-defined]
    raise exc
