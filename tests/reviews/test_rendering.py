"""Markdown rendering of untrusted output (markdown-it.rs, markdown-it-py where it cannot)."""

import pytest
from markupsafe import escape

from reviewapp.reviews import rendering


def placeholder(alt: str, src: str) -> str:
    """The placeholder naming ``alt`` and ``src`` (plain text), as sanitised HTML."""
    return rendering.sanitise_html(f'<span class="img-placeholder">[image not loaded: {escape(alt)} — {escape(src)}]</span>')


@pytest.mark.parametrize(("markdown", "shown"), [
    ("![a chart](https://example.com/c.png)", placeholder("a chart", "https://example.com/c.png")),
    ('![say "hi"](https://example.com/q.png "a \\"title\\" > <")', placeholder('say "hi"', "https://example.com/q.png")),
    ("![R&amp;D & more](https://e.com/a?b=1&amp;c=2&d=3)", placeholder("R&D & more", "https://e.com/a?b=1&c=2&d=3")),
    ("![1 < 2 > 0](<https://e.com/a b.png> 'x > \"y\"')", placeholder("1 < 2 > 0", "https://e.com/a%20b.png")),
    ("![<script>alert(1)</script>](https://e.com/x.png)", placeholder("<script>alert(1)</script>", "https://e.com/x.png")),
    ("![it's \\*escaped\\* &copy;](x.png)", placeholder("it's *escaped* ©", "x.png")),
    ("![*em* `code` [link](https://e.com)](x.png)", placeholder("em code link", "x.png")),
    ("![outer ![inner](i.png) end](o.png)", placeholder("outer inner end", "o.png")),
    ("![](x.png)", placeholder("image", "x.png")),
    ("![x](javascript:alert(1))", "![x](javascript:alert(1))"),  # not an image: no such URL
    ("![x](data:image/png;base64,AAAA)", placeholder("x", "data:image/png;base64,AAAA")),
    ('![q](https://e.com/"><script>)', placeholder("q", "https://e.com/%22%3E%3Cscript%3E")),
])
def test_images_become_text_placeholders(markdown, shown):
    html = rendering.render_markdown(markdown, cached=False)
    assert html == f"<p>{shown}</p>\n"


def test_every_image_in_a_document_gets_its_own_description():
    markdown = "![one](1.png)\n\n> - ![two &amp; a half](2.png) text ![three](3.png)\n\n`![not](code.png)`"
    html = rendering.render_markdown(markdown, cached=False)
    assert placeholder("one", "1.png") in html
    assert placeholder("two & a half", "2.png") + " text " + placeholder("three", "3.png") in html
    assert "<code>![not](code.png)</code>" in html


def test_raw_html_and_bare_urls_stay_text():
    html = rendering.render_markdown(
        '<img src="x.png" alt="raw"> <b>bold</b>\n\n<div>block</div>\n\nhttps://example.com "quotes" -- (c)',
        cached=False,
    )
    assert "<img" not in html and "&lt;img" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;div&gt;block&lt;/div&gt;" in html
    assert "<a" not in html and "(c)" in html and "--" in html  # no linkify, no typographer


def test_tables_and_strikethrough_render():
    html = rendering.render_markdown("| a | b |\n|---|--:|\n| 1 | ~~2~~ |\n", cached=False)
    assert "<table>" in html and "<td><s>2</s></td>" in html


def test_javascript_links_are_not_links():
    html = rendering.render_markdown("[x](javascript:alert(1)) [y](https://e.com)", cached=False)
    assert "[x](javascript:alert(1))" in html
    assert '<a href="https://e.com" rel="noopener noreferrer">y</a>' in html


def test_inputs_markdown_it_rs_panics_on_render_with_markdown_it_py():
    # markdown-it.rs 0.6.0 panics on an unclosed link label holding backticks
    html = rendering.render_markdown("[foo `bar` baz` and ![pic](p.png)", cached=False)
    assert html == f"<p>[foo <code>bar</code> baz` and {placeholder('pic', 'p.png')}</p>\n"


@pytest.mark.parametrize("markdown", [
    "x\n\n" + "- " * 30_000 + "deep",  # overflowed markdown-it.rs's stack (the process died)
    "x\n\n" + "> " * 200 + "quoted",
    "- " * 30_000 + "deep",  # on the first line
    "  " + "> " * 200 + "quoted",
    "*a " * 3000 + "a* " * 3000,  # quadratic nested emphasis
    "".join(f"[r{i}]: /u{i}\n" for i in range(1000)) + "\n[r1]",  # quadratic reference definitions
], ids=["deep-list", "deep-quote", "deep-list-first-line", "deep-quote-first-line", "nested-emphasis",
        "definitions"])
def test_pathological_inputs_render_with_markdown_it_py(markdown):
    assert not rendering._safe_for_markdown_it_rs(markdown)
    assert rendering.render_markdown(markdown, cached=False).startswith(("<p>", "<ul>", "<blockquote>"))


def test_ordinary_documents_render_with_markdown_it_rs():
    section = "## Title\n\n- **bold** _it_ [l](https://e.com)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    assert rendering._safe_for_markdown_it_rs(section * 2000)
