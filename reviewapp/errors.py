"""Error pages: a clear message and the right 4xx, never a stack trace."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to open this page.",
    404: "There is nothing at this address.",
    405: "This address does not accept that kind of request.",
    413: "The request is too large.",
    429: "Too many attempts. Please wait a moment and try again.",
    500: "Something went wrong on our side. The error has been logged.",
}


def wants_json() -> bool:
    return request.path.startswith("/hooks/") or (
        request.accept_mimetypes.best == "application/json"
    )


def render_error(code: int, message: str | None = None) -> tuple[Any, int]:
    text = message or MESSAGES.get(code, "Error")
    if wants_json():
        return jsonify(error=MESSAGES.get(code, "Error").rstrip("."), message=text), code
    return render_template("errors/error.html", code=code, message=text), code


def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    # Only our own short descriptions are shown; werkzeug's defaults are replaced.
    custom = exc.description if getattr(exc, "_reviewapp_message", False) else None
    return render_error(code, custom)


def _csrf_error(exc: CSRFError) -> Any:
    return render_error(
        400,
        "Your form had expired or was missing its security token, so nothing was changed. "
        "Go back, reload the page and submit again.",
    )


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
