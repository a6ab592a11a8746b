"""Transport and browser hardening for every response.

- Content-Security-Policy: same-origin only, no inline script or style. A template
  that truly needs an inline ``<script>`` calls ``csp_nonce()`` and the policy then
  allows that one nonce for that one response.
- nosniff, Referrer-Policy, frame denial, COOP/CORP, Permissions-Policy.
- HSTS on HTTPS responses.
- ``Cache-Control: no-store`` on everything but static files (pages carry CSRF tokens
  and reviewers' data; the back button after logout must not show them).
- Reverse-proxy handling (``PROXY_FIX`` hops) and the session-lifetime hook.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .auth import sessions

BASE_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "font-src": "'self'",
    "connect-src": "'self'",
    "media-src": "'none'",
    "object-src": "'none'",
    "frame-src": "'none'",
    "worker-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}

STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

HSTS = "max-age=31536000; includeSubDomains"


def csp_nonce() -> str:
    """A per-response nonce for an inline script: ``<script nonce="{{ csp_nonce() }}">``."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return str(g.csp_nonce)


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


_BASE_POLICY = _policy(BASE_CSP)  # most responses: no inline script


def content_security_policy() -> str:
    if "csp_nonce" not in g:
        return _BASE_POLICY
    directives = dict(BASE_CSP)
    directives["script-src"] += f" 'nonce-{g.csp_nonce}'"
    return _policy(directives)


_STATIC_ITEMS = tuple(STATIC_HEADERS.items())
_NOT_KEPT = ("expires", "last-modified", "cache-control")  # replaced by no-store, except for static files


def _headers(response: Response) -> Response:
    """Our headers, where the response does not set its own. One pass over the response's
    headers (werkzeug's ``setdefault`` searches them once per name: ~0.1 ms a response)."""
    headers = response.headers
    present = {name.lower() for name in headers.keys()}
    wanted = [("Content-Security-Policy", content_security_policy()), *_STATIC_ITEMS]
    if request.is_secure:
        wanted.append(("Strict-Transport-Security", HSTS))
    if request.endpoint != "static":
        if present.intersection(_NOT_KEPT):
            for name in _NOT_KEPT:
                headers.pop(name, None)
        present.discard("cache-control")
        wanted.append(("Cache-Control", "no-store"))
    headers.extend([(name, value) for name, value in wanted if name.lower() not in present])
    return response


def install_proxy_fix(app: Flask) -> None:
    """Trust ``PROXY_FIX`` reverse proxies for the client address and scheme only
    (X-Forwarded-For / -Proto); the Host header is checked against TRUSTED_HOSTS."""
    hops = int(app.config.get("PROXY_FIX") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)  # type: ignore[method-assign]


def init_app(app: Flask) -> None:
    install_proxy_fix(app)
    sessions.init_app(app)  # registered before access.init_app: expiry comes first
    app.after_request(_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
