"""The per-process cache of rendered large outputs (issue 7: review page with 200 KB)."""

from reviewapp.reviews import rendering


def _large(marker: str) -> str:
    return f"<script>alert('{marker}')</script>\n\n" + ("A paragraph of **findings**.\n\n" * 1200)


def test_large_output_is_rendered_once_and_stays_sanitised():
    rendering._cached_html.cache_clear()
    text = _large("x")
    assert len(text) >= rendering.RENDER_CACHE_MIN_CHARS
    first = rendering.render_markdown(text)
    second = rendering.render_markdown(str(text))  # an equal string loaded anew hits the cache
    assert first == second
    assert rendering._cached_html.cache_info().hits == 1
    assert "<script>" not in first and "&lt;script&gt;" in first
    assert "<strong>findings</strong>" in first


def test_small_outputs_bypass_the_cache():
    rendering._cached_html.cache_clear()
    assert rendering.render_markdown("*hi* <b>x</b>") == "<p><em>hi</em> &lt;b&gt;x&lt;/b&gt;</p>\n"
    assert rendering._cached_html.cache_info().currsize == 0


def test_cache_is_bounded():
    rendering._cached_html.cache_clear()
    for index in range(rendering.RENDER_CACHE_ENTRIES + 3):
        rendering.render_markdown(_large(str(index)))
    assert rendering._cached_html.cache_info().currsize == rendering.RENDER_CACHE_ENTRIES
