"""The one module that speaks HTTP to CrewAI AMP (see ../shared/amp-contract.md).

Every call has a connect and a read timeout, follows no redirects and sends the crew's
Bearer token. Answers become small dataclasses; failures become one of four errors:

- :class:`AmpRejected` — 400/404/422 (and other 4xx): the request itself is refused;
  sending it again will not help.
- :class:`AmpUnauthorized` — 401/403: the crew's token is wrong or revoked; an admin
  must fix it.
- :class:`AmpUnavailable` — 5xx, 408/429, or no connection could be made: nothing was
  applied; retry later.
- :class:`AmpAmbiguous` — the request was sent but no answer came back (read timeout,
  connection dropped, 504 from a gateway): it may or may not have been applied.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from flask import Flask, current_app
from urllib3.exceptions import NewConnectionError

from ..models import Crew
from .crypto import decrypt_secret
from .webhooks import REDACTED, URL_FIELDS, all_webhooks

BODY_TEXT_LIMIT = 4000
RESUME_STATUSES = ("resumed", "retrying", "completed")
USER_AGENT = "reviewapp-amp-client/1"


# --------------------------------------------------------------------------- errors


class AmpError(Exception):
    """Any failed call to AMP. ``http_status`` is None when no answer came back."""

    def __init__(
        self, message: str, *, http_status: int | None = None, body_text: str | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.body_text = body_text


class AmpRejected(AmpError):
    """AMP refused the request (400/404/422, or another 4xx): do not retry."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        body_text: str | None = None,
        not_pending: bool = False,
        not_found: bool = False,
        missing_inputs: list[str] | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, body_text=body_text)
        self.not_pending = not_pending
        self.not_found = not_found
        self.missing_inputs = missing_inputs or []


class AmpUnauthorized(AmpError):
    """401/403: the crew's token is wrong or revoked."""


class AmpUnavailable(AmpError):
    """Transient: 5xx, 408/429, or the connection could not be made. Safe to retry."""


class AmpAmbiguous(AmpError):
    """The request was sent but the answer was lost: it may have been applied."""


# --------------------------------------------------------------------------- results


@dataclass
class ResumeResult:
    status: str  # "resumed" | "retrying" | "completed"
    message: str | None
    http_status: int
    body_text: str


@dataclass
class StatusResult:
    state: str  # "running" | "waiting" | "completed" | "failed" | "unknown"
    raw: dict[str, Any]
    result: str | None
    error: str | None


_RUNNING = {"running", "started", "pending", "queued", "in_progress", "in progress", "retry", "processing", "received"}
_COMPLETED = {"completed", "complete", "success", "succeeded", "finished", "done"}
_FAILED = {"error", "failed", "failure", "revoked", "cancelled", "canceled", "aborted", "timeout"}


def normalise_state(value: Any) -> str:
    """Map AMP's ``state``/``status`` value to running/waiting/completed/failed/unknown."""
    if not isinstance(value, str) or not value.strip():
        return "unknown"
    text = value.strip()
    if "HUMAN" in text.upper():  # PENDING_HUMAN_INPUT, "Pending Human Input", ...
        return "waiting"
    word = text.lower()
    if word in _RUNNING:
        return "running"
    if word in _COMPLETED:
        return "completed"
    if word in _FAILED:
        return "failed"
    return "unknown"


def as_text(value: Any) -> str | None:
    """A result/output field as text: strings as is, structures as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("raw"), str):
        return value["raw"]
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# --------------------------------------------------------------------------- response parsing


def _body_text(response: requests.Response) -> str:
    try:
        text = response.text
    except (UnicodeError, LookupError):
        text = response.content.decode("utf-8", "replace")
    return text[:BODY_TEXT_LIMIT]


def _json_or_none(response: requests.Response) -> Any:
    try:
        return json.loads(response.content.decode("utf-8"))
    except (ValueError, UnicodeError):
        return None


def _fastapi_detail(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail[:10]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                msg = str(item.get("msg", "invalid"))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return json.dumps(detail)[:300]


def error_message(data: Any, fallback: str) -> str:
    """The human-readable part of an AMP error body (documented or FastAPI-style)."""
    if isinstance(data, dict):
        for key in ("message", "detail", "error"):
            if data.get(key):
                return _fastapi_detail(data[key])[:500]
    text = fallback.strip()
    return text[:200] if text else "no details given"


def _missing_inputs(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    details = data.get("details")
    if isinstance(details, dict) and isinstance(details.get("missing_inputs"), list):
        return [str(name) for name in details["missing_inputs"]]
    detail = data.get("detail")
    names: list[str] = []
    if isinstance(detail, list):  # FastAPI: [{"loc": ["body", "inputs", "topic"], ...}]
        for item in detail:
            if isinstance(item, dict) and item.get("loc"):
                names.append(str(item["loc"][-1]))
    return names


def _raise_for_status(response: requests.Response, *, resume: bool = False) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    text = _body_text(response)
    data = _json_or_none(response)
    detail = error_message(data, text)
    kw: dict[str, Any] = {"http_status": code, "body_text": text}
    if code in (401, 403):
        raise AmpUnauthorized(f"AMP refused the crew's token ({code}): {detail}", **kw)
    if code == 404:
        raise AmpRejected(f"AMP does not know it (404): {detail}", not_found=True, **kw)
    if code == 400:
        pending_words = "pending" in detail.lower()
        raise AmpRejected(f"AMP rejected the request (400): {detail}", not_pending=resume or pending_words, **kw)
    if code == 422:
        raise AmpRejected(f"AMP rejected the request (422): {detail}", missing_inputs=_missing_inputs(data), **kw)
    if code == 504:  # a gateway gave up waiting: the crew may have applied it
        raise AmpAmbiguous(f"AMP's gateway timed out (504): {detail}", **kw)
    if code >= 500 or code in (408, 425, 429):
        raise AmpUnavailable(f"AMP is unavailable ({code}): {detail}", **kw)
    if 300 <= code < 400:
        where = response.headers.get("Location", "?")[:200]
        raise AmpRejected(
            f"AMP answered with a redirect ({code} to {where}); redirects are not followed: "
            "check the crew's base URL",
            **kw,
        )
    raise AmpRejected(f"AMP rejected the request ({code}): {detail}", **kw)


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    data = _json_or_none(response)
    if not isinstance(data, dict):
        raise AmpError(
            f"AMP's answer to {what} is not a JSON object",
            http_status=response.status_code,
            body_text=_body_text(response),
        )
    return data


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (requests/urllib3 nest them a few levels deep)."""
    found: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(found) < 12:
        item = todo.pop()
        if not isinstance(item, BaseException) or item in found:
            continue
        found.append(item)
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
        todo.extend(item.args[:2])
    return found


def _never_sent(exc: BaseException) -> bool:
    """True when the connection was never made, so the request cannot have arrived."""
    return any(isinstance(c, (NewConnectionError, ConnectionRefusedError)) for c in _causes(exc))


# --------------------------------------------------------------------------- client


class AmpClient:
    """HTTP client for one crew deployment."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = (connect_timeout, read_timeout)
        self._session = session or new_http_session()
        self._environment = environment_settings(self.base_url)

    def __repr__(self) -> str:  # never show the token
        return f"<AmpClient {self.base_url}>"

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        url = self.base_url + path
        try:
            return self._session.request(
                method, url, json=body, headers=headers, timeout=self.timeout, allow_redirects=False,
                **self._environment,
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise AmpUnavailable(f"could not connect to {self.base_url} in time") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise AmpAmbiguous(f"{method} {path}: no answer within {self.timeout[1]} s") from exc
        except requests.exceptions.SSLError as exc:
            raise AmpUnavailable(f"TLS handshake with {self.base_url} failed") from exc
        except requests.exceptions.ConnectionError as exc:
            if _never_sent(exc):
                raise AmpUnavailable(f"could not connect to {self.base_url}") from exc
            raise AmpAmbiguous(f"{method} {path}: the connection dropped before an answer") from exc
        except requests.exceptions.RequestException as exc:
            raise AmpError(f"{method} {path} could not be sent: {type(exc).__name__}") from exc

    def health(self) -> str:
        """``GET /``: the deployment's health text (``Healthy`` when up)."""
        response = self._send("GET", "/")
        _raise_for_status(response)
        return _body_text(response).strip()[:200]

    def inputs(self) -> list[str]:
        """``GET /inputs``: names of the crew's required inputs."""
        response = self._send("GET", "/inputs")
        _raise_for_status(response)
        items = _json_object(response, "GET /inputs").get("inputs")
        if not isinstance(items, list):
            raise AmpError("AMP's answer to GET /inputs has no 'inputs' list",
                           http_status=response.status_code, body_text=_body_text(response))
        names = []
        for item in items:
            name = item.get("name") if isinstance(item, dict) else item
            if isinstance(name, str) and name.strip():
                names.append(name)
        return names

    def kickoff(self, inputs: dict[str, Any], *, meta: dict[str, Any] | None = None,
                webhooks: dict[str, Any]) -> str:
        """``POST /kickoff``: start an execution; returns its ``kickoff_id``."""
        body: dict[str, Any] = {"inputs": inputs}
        if meta is not None:
            body["meta"] = meta
        body.update(webhooks)
        response = self._send("POST", "/kickoff", body)
        _raise_for_status(response)
        data = _json_object(response, "POST /kickoff")
        kickoff_id = data.get("kickoff_id") or data.get("execution_id") or data.get("id")
        if not isinstance(kickoff_id, str | int) or not str(kickoff_id).strip():
            raise AmpError("AMP's answer to POST /kickoff has no kickoff_id",
                           http_status=response.status_code, body_text=_body_text(response))
        return str(kickoff_id).strip()

    def status(self, kickoff_id: str) -> StatusResult:
        """``GET /status/{kickoff_id}``, documented and observed shapes alike."""
        response = self._send("GET", "/status/" + quote(kickoff_id, safe=""))
        _raise_for_status(response)
        data = _json_object(response, "GET /status")
        value = data.get("state") if data.get("state") is not None else data.get("status")
        error = data.get("error")
        return StatusResult(
            state=normalise_state(value),
            raw=data,
            result=as_text(data.get("result")),
            error=as_text(error) if error else None,
        )

    def resume(self, body: dict[str, Any]) -> ResumeResult:
        """``POST /resume`` with a body from :func:`build_resume_body`."""
        response = self._send("POST", "/resume", body)
        _raise_for_status(response, resume=True)
        text = _body_text(response)
        data = _json_object(response, "POST /resume")
        status = str(data.get("status", "")).strip().lower()
        if status not in RESUME_STATUSES:
            raise AmpError(f"AMP's answer to POST /resume has an unexpected status {status!r}",
                           http_status=response.status_code, body_text=text)
        message = data.get("message")
        return ResumeResult(status=status, message=message if isinstance(message, str) else None,
                            http_status=response.status_code, body_text=text)


# --------------------------------------------------------------------------- helpers


def new_http_session() -> requests.Session:
    """A ``requests.Session`` that does not consult the environment on every call (see
    :func:`environment_settings`, which reads it once instead)."""
    session = requests.Session()
    session.trust_env = False
    return session


@functools.lru_cache(maxsize=64)
def environment_settings(base_url: str) -> dict[str, Any]:
    """The proxies and CA bundle the environment sets for calls to ``base_url``
    (``HTTPS_PROXY``/``NO_PROXY``..., ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``), read
    once per process and base URL. requests would read them again on every call (a scan
    of the whole environment, twice: about a thousand Python calls per request), and
    with ``trust_env`` on it would also let a ``~/.netrc`` entry for the host replace
    the crew's Bearer token."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return {"proxies": requests.utils.get_environ_proxies(base_url), "verify": bundle or True}


def http_session(app: Flask) -> requests.Session:
    """The app's one shared ``requests.Session`` for AMP (connection pooling)."""
    session = app.extensions.get("amp_http")
    if session is None:
        session = app.extensions.setdefault("amp_http", new_http_session())
    return session


def client_for(crew: Crew, *, read_timeout: float | None = None) -> AmpClient:
    """A client for ``crew`` with its decrypted token and the configured timeouts."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return AmpClient(
        crew.base_url,
        decrypt_secret(crew.token_encrypted),
        connect_timeout=float(app.config["AMP_CONNECT_TIMEOUT"]),
        read_timeout=float(read_timeout or app.config["AMP_READ_TIMEOUT"]),
        session=http_session(app),
    )


def build_resume_body(crew: Crew, *, execution_id: str, task_id: str, human_feedback: str,
                      is_approve: bool) -> dict[str, Any]:
    """Exactly contract section 1, plus our webhooks so later notifications still arrive."""
    return {
        "execution_id": execution_id,
        "task_id": task_id,
        "human_feedback": human_feedback,
        "is_approve": bool(is_approve),
        **all_webhooks(crew),
    }


def redact_body(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the inbound secret masked (in ``humanInputWebhook`` and the URLs)."""
    redacted = copy.deepcopy(body)
    secrets_seen: list[str] = []
    hook = redacted.get("humanInputWebhook")
    auth = hook.get("authentication") if isinstance(hook, dict) else None
    if isinstance(auth, dict):
        for key in ("token", "password"):
            if isinstance(auth.get(key), str) and auth[key]:
                secrets_seen.append(auth[key])
                auth[key] = REDACTED
    for field, segment in URL_FIELDS.items():
        url = redacted.get(field)
        if not isinstance(url, str):
            continue
        for secret in secrets_seen:
            url = url.replace(quote(secret, safe=""), REDACTED)
        # Without the bearer to compare with, mask whatever follows the kind segment.
        marker = f"/{segment}/"
        if marker in url and not url.endswith(REDACTED):
            url = url[: url.rindex(marker) + len(marker)] + REDACTED
        redacted[field] = url
    return redacted
