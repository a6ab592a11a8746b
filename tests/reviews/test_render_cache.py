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


def test_shown_outputs_are_read_and_rendered_once_per_round(app):
    loads: list[int] = []

    def load() -> str:
        loads.append(1)
        return _large("y")

    with app.app_context():
        first = rendering.shown_output((1, "digest"), load, render=None)
        again = rendering.shown_output((1, "digest"), load, render=None)
        assert again is first and len(loads) == 1
        assert first.chars == len(_large("y")) and not first.large
        assert first.html is not None and "&lt;script&gt;" in first.html
        other = rendering.shown_output((1, "another digest"), load, render=None)  # a new output, same id
        assert other == first and len(loads) == 2


def test_a_large_output_is_rendered_only_when_asked(app):
    big = "word " * (rendering.RENDER_LIMIT_BYTES // 5 + 10)
    with app.app_context():
        raw = rendering.shown_output((2, "d"), lambda: big, render=None)
        assert raw.large and raw.html is None
        assert rendering.shown_output((2, "d"), lambda: big, render=False) is raw
        rendered = rendering.shown_output((2, "d"), lambda: big, render=True)
        assert rendered.html is not None and rendered.chars == len(big)
        assert rendering.shown_output((2, "d"), lambda: big, render=None) is rendered


def test_concurrent_requests_render_an_output_once(app):
    import threading
    import time

    loads: list[int] = []

    def slow_load() -> str:
        loads.append(1)
        time.sleep(0.2)
        return _large("z")

    def view() -> None:
        with app.app_context():
            rendering.shown_output((3, "d"), slow_load, render=None)

    threads = [threading.Thread(target=view) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1


def test_the_shown_cache_is_bounded_by_the_html_it_holds(app, monkeypatch):
    monkeypatch.setattr(rendering, "CACHE_CHARS", 10)
    with app.app_context():
        for key in range(3):
            rendering.shown_output((key, "d"), lambda: "*hi*", render=None)
        cache = app.extensions["reviewapp.shown_outputs"]
        assert cache.get((0, "d")) is None and cache.get((2, "d")) is not None
