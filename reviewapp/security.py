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


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", content_security_policy())
    for name, value in STATIC_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
        response.headers.pop("Expires", None)
        response.headers.pop("Last-Modified", None)
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
