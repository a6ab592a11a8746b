"""Agent output is untrusted: Markdown -> HTML, then an allowlist sanitiser.

markdown-it-pyrs (markdown-it.rs, ~20x faster than markdown-it-py on a 200 KB output;
markdown-it-py for the few inputs on which it panics) turns the text into HTML with raw
HTML switched off (so ``<script>`` in the output becomes text), images are replaced by a
text placeholder (no remote fetches), and nh3 (ammonia) keeps only the tags and attributes listed here, forces
``rel="noopener noreferrer"`` on links and allows only http(s)/mailto URLs.
Diffs between rounds are computed with difflib and escaped by the template.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from html import unescape as html_unescape
from typing import Any, Generic, TypeVar

import nh3
from flask import current_app
from markdown_it import MarkdownIt as PythonMarkdownIt
from markdown_it_pyrs import MarkdownIt, Node
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


log = logging.getLogger("reviewapp.rendering")


def _placeholder(alt: str, src: str) -> str:
    shown = alt if alt.strip() else "image"
    return f'<span class="img-placeholder">[image not loaded: {escape(shown)} — {escape(src)}]</span>'


# ---- markdown-it.rs


def _markdown() -> MarkdownIt:
    """markdown-it.rs's "zero" preset (nothing on) plus CommonMark's block and inline rules,
    GFM tables and strikethrough. Not html_block / html_inline (raw HTML stays text), not
    linkify / autolink_ext (bare URLs stay text), not replacements / smartquotes."""
    return MarkdownIt("zero").enable_many([
        "blockquote", "code", "fence", "heading", "hr", "lheading", "list", "paragraph",
        "reference", "autolink", "backticks", "emphasis", "entity", "escape", "image", "link",
        "newline", "table", "strikethrough",
    ])


_MD = _markdown()

# With raw HTML off, every ``<img`` in the renderer's HTML is an image it rendered itself
# (text ``<img`` comes out as ``&lt;img``), and its attribute values have ``&<>"`` escaped.
_IMG_TAG = re.compile(r"<img\b([^>]*)>")
_ATTRIBUTE = re.compile(r'([a-z]+)="([^"]*)"')
_ALT_TEXT_NODES = {"text", "text_special"}  # text_special: entities, backslash escapes, autolinks
_LINE_BREAKS = {"softbreak", "hardbreak"}


def _alt_text(image: Node) -> str:
    """An image's description as plain text, as CommonMark puts it in ``alt``
    (markdown-it.rs's own ``alt`` drops entities, escapes and line breaks)."""
    parts: list[str] = []
    for node in image.walk(include_self=False):
        if node.name in _ALT_TEXT_NODES:
            parts.append(node.meta.get("content", ""))
        elif node.name in _LINE_BREAKS:
            parts.append("\n")
    return "".join(parts)


def _outer_images(root: Node) -> list[Node]:
    """The images in document order, not those inside another image's description
    (they are part of its alt text, as in the HTML)."""
    images: list[Node] = []
    pending = list(reversed(root.children))
    while pending:
        node = pending.pop()
        if node.name == "image":
            images.append(node)
        else:
            pending.extend(reversed(node.children))
    return images


def _images_as_text(html: str, text: str) -> str:
    """Each ``<img>`` the renderer wrote, replaced by a placeholder naming its description
    and its URL (normalised, as rendered)."""
    if "<img" not in html:
        return html
    tags = [
        {name: html_unescape(value) for name, value in _ATTRIBUTE.findall(attributes)}
        for attributes in _IMG_TAG.findall(html)
    ]
    alts = [_alt_text(image) for image in _outer_images(_MD.tree(text))]
    if len(alts) != len(tags):  # never seen; the tag's own (lossy) alt is still safe text
        alts = [tag.get("alt", "") for tag in tags]
    placeholders = iter([_placeholder(alt, tag.get("src", "")) for alt, tag in zip(alts, tags, strict=True)])
    return _IMG_TAG.sub(lambda _: next(placeholders), html)


# ---- markdown-it-py: the same rules, for the inputs markdown-it.rs 0.6.0 panics on
# (e.g. an unclosed link label holding code spans: "[a `b` `c", markdown-it-rust/markdown-it#40)


def _image_as_text(renderer: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    return _placeholder(alt, token.attrGet("src") or "")


def _python_markdown() -> PythonMarkdownIt:
    md = PythonMarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_text)
    return md


_PYTHON_MD = _python_markdown()


# markdown-it.rs 0.6.0 is not safe on every input: deep nesting overflows its stack (the
# process dies: ~20k nested list markers on one line, ~50k nested emphasis), nested
# emphasis and runs of reference definitions take time quadratic in their number (20k
# nested emphasis: 8 s; 8k consecutive definitions: 2.4 s). Inputs that could be such go
# to markdown-it-py (linear here, nesting capped at 20). No ordinary output comes near.
MAX_CONTAINER_PREFIX = 100  # container markers (>, -, *, +, 1.) opening one line
MAX_INLINE_MARKERS = 2000  # *, _, ~, [ in one blank-line-separated block: ~20 ms when nested
MAX_REFERENCE_MARKS = 300  # "]:" in the whole text: ~10 ms when consecutive definitions
_CONTAINER_PREFIX = rf"[ \t]*(?:(?:>|[-*+]|\d{{1,9}}[.)])[ \t]*){{{MAX_CONTAINER_PREFIX}}}"
# Searched as "a newline, then the prefix" (and matched at the start): a search that
# starts with a literal skips ahead to each newline, where "^" under re.M is tried at
# every character (1.4 ms against 0.5 ms on a 200 KB output).
_DEEP_CONTAINERS = re.compile("\n" + _CONTAINER_PREFIX)
_DEEP_FIRST_LINE = re.compile(_CONTAINER_PREFIX)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _inline_markers(block: str) -> int:
    return block.count("*") + block.count("_") + block.count("~") + block.count("[")


def _safe_for_markdown_it_rs(text: str) -> bool:
    return (
        text.count("]:") <= MAX_REFERENCE_MARKS
        and _DEEP_FIRST_LINE.match(text) is None
        and _DEEP_CONTAINERS.search(text) is None
        and (_inline_markers(text) <= MAX_INLINE_MARKERS
             or all(_inline_markers(block) <= MAX_INLINE_MARKERS
                    for block in _BLANK_LINE.split(text) if len(block) > MAX_INLINE_MARKERS))
    )


def _is_panic(error: BaseException) -> bool:
    """A Rust panic surfaced by pyo3 (a BaseException, not an Exception)."""
    return type(error).__module__ == "pyo3_runtime" and type(error).__name__ == "PanicException"


def markdown_html(text: str) -> str:
    """Unsanitised HTML of ``text``, images already replaced by placeholders."""
    if _safe_for_markdown_it_rs(text):
        try:
            return _images_as_text(_MD.render(text), text)
        except BaseException as error:
            if not _is_panic(error):
                raise
            log.warning("markdown-it.rs panicked (%s) on %d characters; markdown-it-py renders them", error, len(text))
    return _PYTHON_MD.render(text)


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
# last few large outputs (a 200 KB output takes ~30 ms to render and sanitise, ~15 of them
# in nh3, ~0 s to look up; ~0.3 s on the inputs markdown-it-py renders).
RENDER_CACHE_MIN_CHARS = 16 * 1024
RENDER_CACHE_ENTRIES = 16


def render_markdown(text: str, *, cached: bool = True) -> Markup:
    """Safe HTML for untrusted Markdown (the only place ``Markup`` wraps agent output).
    ``cached=False``: for a caller that keeps the result itself (:func:`shown_output`)."""
    cache = cached and len(text) >= RENDER_CACHE_MIN_CHARS
    html = _cached_html(text) if cache else _safe_html(text)
    return Markup(html)  # noqa: S704 - sanitised by nh3 in _safe_html


def _safe_html(text: str) -> str:
    return sanitise_html(markdown_html(text))


@lru_cache(maxsize=RENDER_CACHE_ENTRIES)
def _cached_html(text: str) -> str:
    return _safe_html(text)


def is_large(text: str) -> bool:
    return len(text.encode("utf-8", "surrogatepass")) > RENDER_LIMIT_BYTES


# --------------------------------------------------------------------------- review page


@dataclass(frozen=True)
class ShownOutput:
    """What the review page shows of a round's output, without the text itself."""

    chars: int  # its length in characters
    large: bool  # above RENDER_LIMIT_BYTES: opens as raw text unless rendering is asked for
    html: Markup | None  # sanitised HTML; None while only the raw text was asked for


# Per process (and app), the outputs shown last, by round: a page shown again needs
# neither the text (200 KB read, decompressed and decoded, several times over before)
# nor a render. Bounded by the characters held.
CACHE_CHARS = 32 * 1024 * 1024
_LOCK_STRIPES = 16
V = TypeVar("V")


class _OutputCache(Generic[V]):
    """A least-recently-used map bounded by the characters its values hold, safe across
    threads. A render runs once per output at a time: concurrent requests for an output
    missing in a fresh worker wait for the first one's render instead of each rendering."""

    def __init__(self, size: Callable[[V], int], max_chars: int) -> None:
        self._size = size
        self.max_chars = max_chars
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._chars -= self._size(previous)
            self._entries[key] = value
            self._chars += self._size(value)
            while self._chars > self.max_chars and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                self._chars -= self._size(evicted)

    @contextmanager
    def filling(self, key: Hashable) -> Iterator[None]:
        with self._stripes[hash(key) % _LOCK_STRIPES]:
            yield


def _app_cache(name: str, size: Callable[[V], int]) -> _OutputCache[V]:
    """The app's cache ``name`` (per app: tests run many apps, each on its own database)."""
    cache: _OutputCache[V] | None = current_app.extensions.get(name)
    if cache is None:
        cache = current_app.extensions.setdefault(name, _OutputCache(size, CACHE_CHARS))
    return cache


def _shown_cache() -> _OutputCache[ShownOutput]:
    return _app_cache("reviewapp.shown_outputs", lambda shown: len(shown.html or ""))


def _wants_html(large: bool, render: bool | None) -> bool:
    return render if render is not None else not large


def _answers(shown: ShownOutput, render: bool | None) -> bool:
    return shown.html is not None or not _wants_html(shown.large, render)


def _shown(text: str, render: bool | None) -> ShownOutput:
    large = is_large(text)
    html = render_markdown(text, cached=False) if _wants_html(large, render) else None
    return ShownOutput(len(text), large, html)


def shown_output(key: Hashable, load: Callable[[], str], *, render: bool | None) -> ShownOutput:
    """The facts of an output and, if ``render`` (None: unless it is large), its HTML.

    ``key`` must change whenever the text could (a round's id and digest: outputs never
    change); ``load`` reads the text, called only when the cache cannot answer."""
    cache = _shown_cache()
    shown = cache.get(key)
    if shown is not None and _answers(shown, render):
        return shown
    with cache.filling(key):
        shown = cache.get(key)  # rendered meanwhile by the request this one waited for?
        if shown is None or not _answers(shown, render):
            shown = _shown(load(), render)
            cache.put(key, shown)
        return shown


EARLIER_OUTPUT_CHARS = 20_000  # of an earlier round's output, the review page shows this much


@dataclass(frozen=True)
class OutputStart:
    text: str  # the first EARLIER_OUTPUT_CHARS characters of an output
    truncated: bool  # the output is longer


def output_starts(
    keys: dict[Hashable, int], load: Callable[[list[int], int], dict[int, str]]
) -> dict[Hashable, OutputStart]:
    """The starts of earlier rounds' outputs, by cache key (see :func:`shown_output`),
    with ``load(round_ids, chars)`` reading those the cache lacks in one statement.

    Kept per process like the shown outputs: the page shows five of them, whose reading
    (each a slice of a compressed 200 KB value) cost the database more than the rest of
    the page."""
    cache: _OutputCache[OutputStart] = _app_cache("reviewapp.output_starts", lambda start: len(start.text))
    starts: dict[Hashable, OutputStart] = {}
    missing: dict[int, Hashable] = {}
    for key, round_id in keys.items():
        found = cache.get(key)
        if found is None:
            missing[round_id] = key
        else:
            starts[key] = found
    if missing:
        for round_id, text in load(list(missing), EARLIER_OUTPUT_CHARS + 1).items():
            start = OutputStart(text[:EARLIER_OUTPUT_CHARS], len(text) > EARLIER_OUTPUT_CHARS)
            starts[missing[round_id]] = start
            cache.put(missing[round_id], start)
    return starts


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


def too_large_to_diff(previous_chars: int, current_chars: int) -> bool:
    """Known from the lengths alone (the texts need not be read)."""
    return previous_chars + current_chars > DIFF_LIMIT_CHARS


TOO_LARGE_TO_DIFF = RoundDiff(lines=[], too_large=True)


def diff_outputs(previous: str, current: str) -> RoundDiff:
    """A unified line diff of two outputs (plain strings; the template escapes them)."""
    if too_large_to_diff(len(previous), len(current)):
        return TOO_LARGE_TO_DIFF
    before, after = previous.splitlines(), current.splitlines()
    if len(before) > DIFF_LIMIT_LINES or len(after) > DIFF_LIMIT_LINES:
        return TOO_LARGE_TO_DIFF
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
