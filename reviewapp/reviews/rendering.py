"""Agent output is untrusted: Markdown -> HTML, then an allowlist sanitiser.

markdown-it-py turns the text into HTML with raw HTML switched off (so ``<script>`` in
the output becomes text), images are replaced by a text placeholder (no remote fetches),
and nh3 (ammonia) keeps only the tags and attributes listed here, forces
``rel="noopener noreferrer"`` on links and allows only http(s)/mailto URLs.
Diffs between rounds are computed with difflib and escaped by the template.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
    "ul", "ol", "li", "dl", "dt", "dd", "strong", "em", "b", "i", "s", "del", "code", "pre",
    "a", "table", "thead", "tbody", "tr", "th", "td", "span", "sup", "sub",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
    "span": {"class"},
    "code": {"class"},
}
URL_SCHEMES = {"http", "https", "mailto"}

# Above this size the page shows the raw text first (rendering still available on demand).
RENDER_LIMIT_BYTES = 256 * 1024
# Above this many characters (both sides together) no line diff is computed.
DIFF_LIMIT_CHARS = 200_000
DIFF_LIMIT_LINES = 5000  # per side
DIFF_MAX_LINES = 4000


def _image_as_text(renderer: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = "".join(child.content for child in (token.children or [])) or "image"
    src = token.attrGet("src") or ""
    return f'<span class="img-placeholder">[image not loaded: {escape(alt)} — {escape(src)}]</span>'


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_text)
    return md


_MD = _markdown()


def sanitise_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


# Rendering is pure and outputs never change, so each process keeps the HTML of the
# last few large outputs (a 200 KB output takes ~0.5 s to render, ~0 s to look up).
RENDER_CACHE_MIN_CHARS = 16 * 1024
RENDER_CACHE_ENTRIES = 16


def render_markdown(text: str) -> Markup:
    """Safe HTML for untrusted Markdown (the only place ``Markup`` wraps agent output)."""
    html = _cached_html(text) if len(text) >= RENDER_CACHE_MIN_CHARS else _safe_html(text)
    return Markup(html)  # noqa: S704 - sanitised by nh3 in _safe_html


def _safe_html(text: str) -> str:
    return sanitise_html(_MD.render(text))


@lru_cache(maxsize=RENDER_CACHE_ENTRIES)
def _cached_html(text: str) -> str:
    return _safe_html(text)


def is_large(text: str) -> bool:
    return len(text.encode("utf-8", "surrogatepass")) > RENDER_LIMIT_BYTES


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "ctx"
    text: str


@dataclass(frozen=True)
class RoundDiff:
    lines: list[DiffLine]
    too_large: bool = False
    truncated: bool = False

    @property
    def unchanged(self) -> bool:
        return not self.too_large and not self.lines


def _kind(line: str) -> str:
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "ctx"


def diff_outputs(previous: str, current: str) -> RoundDiff:
    """A unified line diff of two outputs (plain strings; the template escapes them)."""
    before, after = previous.splitlines(), current.splitlines()
    too_long = len(before) > DIFF_LIMIT_LINES or len(after) > DIFF_LIMIT_LINES
    if too_long or len(previous) + len(current) > DIFF_LIMIT_CHARS:
        return RoundDiff(lines=[], too_large=True)
    raw = difflib.unified_diff(
        before, after,
        fromfile="previous round", tofile="this round", lineterm="", n=2,
    )
    lines: list[DiffLine] = []
    for index, line in enumerate(raw):
        if index < 2:  # the ---/+++ file header
            continue
        if len(lines) >= DIFF_MAX_LINES:
            return RoundDiff(lines=lines, truncated=True)
        lines.append(DiffLine(_kind(line), line))
    return RoundDiff(lines=lines)
