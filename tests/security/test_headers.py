"""Response headers: CSP, nosniff, referrer, HSTS on HTTPS, no-store; no CDN, no inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import render_template_string

from reviewapp.access import public

ROOT = Path(__file__).resolve().parents[2]


def csp(response) -> dict[str, str]:
    parts = [p.strip() for p in response.headers["Content-Security-Policy"].split(";")]
    return {p.split(" ", 1)[0]: p.split(" ", 1)[1] for p in parts if p}


@pytest.mark.parametrize("path", ["/login", "/", "/does-not-exist"])
def test_every_page_gets_the_strict_policy(client, login_as, path):
    login_as("reviewer")
    response = client.get(path)
    policy = csp(response)
    assert policy["script-src"] == "'self'"  # no inline script, no eval, no CDN
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["img-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert policy["form-action"] == "'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_logged_in_pages_are_not_stored(client, login_as):
    login_as("reviewer")
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_login_page_with_its_csrf_token_is_not_stored(client):
    assert client.get("/login").headers["Cache-Control"] == "no-store"


def test_static_files_may_be_cached_but_not_sniffed(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    secure = client.get("/login", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_a_template_may_use_a_nonce_for_one_inline_script(app, client):
    @public
    def page():
        return render_template_string('<script nonce="{{ csp_nonce() }}">1</script>')

    app.add_url_rule("/_test/nonce", "test_nonce", page)
    first, second = client.get("/_test/nonce"), client.get("/_test/nonce")
    nonce = re.search(r'nonce="([^"]+)"', first.get_data(as_text=True)).group(1)
    assert csp(first)["script-src"] == f"'self' 'nonce-{nonce}'"
    assert csp(second)["script-src"] != csp(first)["script-src"]  # fresh per response
    assert csp(client.get("/login"))["script-src"] == "'self'"  # only where used


def _project_files(*patterns: str) -> list[Path]:
    found: list[Path] = []
    for folder in ("templates", "static"):
        for pattern in patterns:
            found.extend((ROOT / folder).rglob(pattern))
    return found


def test_no_cdn_or_remote_asset_anywhere():
    remote = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.I)
    css_remote = re.compile(r"""(@import|url\()\s*["']?(https?:)?//""", re.I)
    offenders = []
    for path in _project_files("*.html", "*.css", "*.js"):
        text = path.read_text(encoding="utf-8", errors="replace")
        if remote.search(text) or css_remote.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_templates_have_no_inline_script_style_or_handlers():
    """The CSP would block them in the browser (style-src 'self' includes style="")."""
    inline_style = re.compile(r"""<style|<[^>]+\sstyle\s*=""", re.I)
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*\bnonce=)[^>]*>", re.I)
    handler = re.compile(r"""<[^>]+\son[a-z]+\s*=""", re.I)
    js_url = re.compile(r"""href\s*=\s*["']\s*javascript:""", re.I)
    offenders = []
    for path in _project_files("*.html"):
        text = path.read_text(encoding="utf-8")
        if any(p.search(text) for p in (inline_script, inline_style, handler, js_url)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
