"""Webhook receivers AMP calls: human input, task, step and crew notifications.

``POST /hooks/amp/<crew>/<kind>`` with ``Authorization: Bearer <inbound secret>``, or
``POST /hooks/amp/<crew>/<kind>/<inbound secret>``; ``kind`` is ``human-input``,
``task``, ``step`` or ``crew``. Public (AMP has no session) and CSRF-exempt; the crew's
inbound secret authenticates, compared in constant time. Bodies are size-limited.

Every delivery is recorded (``WebhookDelivery``; unauthenticated ones without their
payload). Answers are JSON: 200 accepted/duplicate, 400 malformed, 401 bad secret,
404 unknown crew, 413 too large, 422 missing fields, 503 when reviewapp cannot process
it right now. Never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected

from ..access import public
from ..audit.services import record_security_event
from ..extensions import csrf, db
from ..models import WebhookKind
from .crypto import SecretUnreadable, decrypt_secret
from .executions import (
    CrewRef,
    KnownExecution,
    PayloadError,
    ReceiverCrew,
    crew_named,
    crew_with_execution,
    execution_id_of,
    receive_crew_finished,
    receive_progress,
    record_delivery,
)
from .executions import receive_human_input as ingest_human_input  # the lean path, no ORM round
from .webhooks import REDACTED, SEGMENT_KINDS
from .writer_lock import one_writer_at_a_time

bp = Blueprint("hooks", __name__)
log = logging.getLogger("reviewapp.amp.receivers")

DEFAULT_MAX_BYTES = 1024 * 1024
# Access loggers that print request paths, which carry the secret for task/step/crew.
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access")
_SECRET_IN_PATH = re.compile(r"(/hooks/amp/[^/\s]+/(?:human-input|task|step|crew)/)[^\s?\"]+")


class RedactHookSecrets(logging.Filter):
    """Masks the inbound secret in logged receiver paths (``…/task/•••``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        redacted = _SECRET_IN_PATH.sub(r"\1" + REDACTED, message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


@bp.record_once
def _install_log_redaction(state: Any) -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactHookSecrets) for f in logger.filters):
            logger.addFilter(RedactHookSecrets())


class Refused(Exception):
    """A delivery we answer with a 4xx/503 (and record as rejected)."""

    def __init__(self, status: int, title: str, message: str, *, keep_payload: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.keep_payload = keep_payload


def _max_bytes() -> int:
    configured = int(current_app.config.get("AMP_WEBHOOK_MAX_BYTES", DEFAULT_MAX_BYTES))
    app_limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return min(configured, int(app_limit)) if app_limit else configured


def _read_body() -> bytes:
    limit = _max_bytes()
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, "Payload Too Large", f"The body is larger than {limit} bytes.", keep_payload=False)
    try:
        data = request.stream.read(limit + 1)
    except ClientDisconnected as exc:
        raise Refused(400, "Bad Request", "The body ended early.", keep_payload=False) from exc
    if len(data) > limit:
        raise Refused(413, "Payload Too Large", f"The body is larger than {limit} bytes.", keep_payload=False)
    return data


def _presented_secret(path_secret: str | None) -> str | None:
    if path_secret is not None:
        return path_secret
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError):
            return None
        return decoded.partition(":")[2]
    return None


def _authenticate(crew: ReceiverCrew, path_secret: str | None) -> None:
    try:
        expected = decrypt_secret(crew.inbound_secret_encrypted)
    except SecretUnreadable as exc:
        raise Refused(503, "Service Unavailable",
                      "reviewapp cannot read this crew's inbound secret; an admin must fix the "
                      "encryption key.", keep_payload=False) from exc
    presented = _presented_secret(path_secret)
    if not presented or not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
        raise Refused(401, "Unauthorized", "Missing or wrong inbound secret for this crew.", keep_payload=False)


def _parse(raw: bytes) -> tuple[dict[str, Any], str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeError as exc:
        raise Refused(400, "Bad Request", "The body is not UTF-8 text.", keep_payload=False) from exc
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise Refused(400, "Bad Request", "The body is not valid JSON.") from exc
    if not isinstance(payload, dict):
        raise Refused(400, "Bad Request", "The body must be a JSON object.")
    return payload, text


def _crew_for(crew_name: str, kind: WebhookKind, parsed: tuple[dict[str, Any], str] | Refused
              ) -> tuple[ReceiverCrew | None, KnownExecution | None]:
    """The crew (None: unknown) and, for a well-formed human-input notification, what
    reviewapp knows of its execution: read together, in one statement."""
    kickoff_id = None
    if kind is WebhookKind.HUMAN_INPUT and not isinstance(parsed, Refused):
        try:
            kickoff_id = execution_id_of(parsed[0])
        except PayloadError:
            pass  # answered with a 422 once the caller is authenticated
    if kickoff_id is None:
        return crew_named(crew_name), None
    return crew_with_execution(crew_name, kickoff_id)


def _parsed(raw: bytes) -> tuple[dict[str, Any], str] | Refused:
    """The body as a JSON object and its text, or the refusal it earns (raised only once
    the caller is authenticated: a stranger learns nothing of the body's fate)."""
    try:
        return _parse(raw)
    except Refused as exc:
        return exc


def _process(crew: CrewRef, kind: WebhookKind, payload: dict[str, Any], text: str,
             known: KnownExecution | None) -> dict[str, Any]:
    ip = request.remote_addr
    if kind is WebhookKind.HUMAN_INPUT:
        round_ = ingest_human_input(crew, payload, raw=text, source_ip=ip, known_execution=known)
        return {"status": "accepted" if round_.created else "duplicate", "task_id": round_.task_id,
                "round": round_.round_number}
    if kind is WebhookKind.CREW:
        changed = receive_crew_finished(crew, payload, raw=text, source_ip=ip)
    else:
        changed = receive_progress(crew, kind, payload, raw=text, source_ip=ip)
    return {"status": "accepted" if changed else "duplicate"}


def _store_rejection(
    crew: CrewRef | None, kind: WebhookKind, error: str, payload: str | None, *, auth_failure: bool = False
) -> None:
    """Record a delivery we did not accept (and, for a wrong secret, a security event in
    the audit log); a database failure here is only logged."""
    try:
        db.session.rollback()
        record_delivery(crew, kind, outcome="rejected", error=error, payload=payload,
                        source_ip=request.remote_addr)
        if auth_failure and crew is not None:
            record_security_event(
                "webhook_auth_failed", target_type="crew", target_id=crew.id,
                target_name=crew.name, details={"receiver": kind.value}, commit=False,
            )
        db.session.commit()
    except Exception:
        log.exception("could not record a rejected webhook delivery")
        db.session.rollback()


def _refusal(exc: Refused, crew: CrewRef | None, kind: WebhookKind, text: str | None) -> Any:
    log.warning("webhook refused: crew=%r kind=%s status=%s reason=%r ip=%r",
                crew.name if crew else None, kind.value, exc.status, exc.message, request.remote_addr)
    _store_rejection(crew, kind, f"{exc.status}: {exc.message}", text if exc.keep_payload else None,
                     auth_failure=exc.status == 401)
    return jsonify(error=exc.title, message=exc.message), exc.status


@bp.route("/<crew_name>/<segment>", methods=["POST"])
@bp.route("/<crew_name>/<segment>/<path_secret>", methods=["POST"])
@public
@csrf.exempt
def receive(crew_name: str, segment: str, path_secret: str | None = None) -> Any:
    kind = SEGMENT_KINDS.get(segment)
    if kind is None:
        return jsonify(error="Not Found", message="Unknown receiver; use human-input, task, step or crew."), 404
    crew: ReceiverCrew | None = None
    text: str | None = None
    try:
        try:
            raw = _read_body()
        except Refused:
            crew = crew_named(crew_name)  # recorded against the crew it was sent to
            raise
        parsed = _parsed(raw)
        crew, known = _crew_for(crew_name, kind, parsed)
        if crew is None:
            raise Refused(404, "Not Found", "No crew with this name is registered.", keep_payload=False)
        _authenticate(crew, path_secret)
        text = raw.decode("utf-8", "replace")
        if isinstance(parsed, Refused):
            raise parsed
        payload, text = parsed
        with one_writer_at_a_time():
            try:
                answer = _process(crew, kind, payload, text, known)
            except PayloadError as exc:
                raise Refused(422, "Unprocessable Entity", str(exc)) from exc
            db.session.commit()
        return jsonify(answer), 200
    except Refused as exc:
        return _refusal(exc, crew, kind, text)
    except Exception:  # never a 500: AMP gets a clear, retryable answer
        log.exception("webhook processing failed: crew=%r kind=%s", crew_name, kind.value)
        _store_rejection(crew, kind, "503: reviewapp failed to process it", text)
        return jsonify(error="Service Unavailable",
                       message="reviewapp could not store this delivery; send it again later."), 503
