"""Journey 5: a crew whose output (and agent name, task description, inputs) carries XSS
payloads. Wherever that text appears — queue, review page (rendered and raw), the diff
of round 2, the outcome page, history, timeline, the crew's execution page — nothing
runs: no dialog, no request to a foreign host, no CSP violation in the console, and no
live script, handler, remote image or ``javascript:`` URL in the DOM.

The sandbox serves one extra crew, ``hostile``, whose agent writes the payloads; a
revision quotes the reviewer's feedback (itself a payload) into round 2."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from reviewapp.amp.sandbox import EXAMPLE_CREWS, CrewSpec, Sandbox, TaskSpec
from reviewapp.extensions import db
from reviewapp.models import Execution
from tests.conftest import PASSWORD
from tests.e2e.conftest import ui_login
from tests.e2e.helpers import (
    DECISION_URL,
    assert_clean,
    kick_off,
    wait_for_round,
    wait_until,
)

pytestmark = pytest.mark.e2e

PAYLOADS = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "<svg onload=alert(1)>",
    "![](http://evil.example/x.png)",
    '<a href="javascript:alert(2)">click</a>',
    "<iframe src=http://evil.example/frame></iframe>",
    "<style>body{background:url(http://evil.example/bg.png)}</style>",
    "<javascript:alert(3)>",
    "<img src=http://evil.example/direct.png>",
)
FEEDBACK = "Redo it <script>alert('fb')</script> <img src=x onerror=alert('fb')> ![](http://evil.example/fb.png)"

# What a page may never contain, whatever the text it shows (run in the page).
DOM_PROBE = """() => {
  const here = location.origin;
  const foreign = (url) => url && new URL(url, location.href).origin !== here;
  const all = [...document.querySelectorAll('*')];
  return {
    scripts: [...document.scripts].filter(s => !s.src || foreign(s.src)).map(s => s.outerHTML),
    handlers: all.filter(el => [...el.attributes].some(a => a.name.startsWith('on'))).map(el => el.outerHTML),
    embedded: [...document.querySelectorAll('img, iframe, object, embed, svg, style, video, audio')]
      .map(el => el.outerHTML),
    jsUrls: all.filter(el => ['href', 'src', 'action', 'formaction']
      .some(name => /^\\s*javascript:/i.test(el.getAttribute(name) || ''))).map(el => el.outerHTML),
    foreignLinks: [...document.querySelectorAll('link[href]')].filter(l => foreign(l.href)).map(l => l.href),
  };
}"""


def hostile_output(inputs: dict[str, Any], feedback: list[str]) -> str:
    lines = [f"# Report on {inputs.get('topic', '')}", "", *PAYLOADS]
    if feedback:
        lines += ["", f"Revision {len(feedback)}. The reviewer asked: {feedback[-1]}"]
    return "\n\n".join(lines)


HOSTILE = CrewSpec(
    name="hostile",
    inputs=("topic",),
    tasks=(
        TaskSpec("xss_task", "Mallory <img src=x onerror=alert('agent')>", "<script>alert('desc')</script>",
                 "<svg onload=alert('expected')>", hostile_output),
    ),
    status_shape="observed",
    notice_keys=("execution_id", "task_id", "output"),
)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox({**EXAMPLE_CREWS, "hostile": HOSTILE}, step_delay=0.01, webhook_timeout=5.0).serve()
    yield box
    box.close()


def assert_inert(page, watch, where: str) -> None:
    page.wait_for_load_state("load")
    found = page.evaluate(DOM_PROBE)
    assert found == {key: [] for key in found}, f"{where}: {found}"
    assert_clean(watch)


def open_all_details(page) -> None:
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")


def test_payloads_render_inert_everywhere(app, sandbox, sandbox_crew, make_user, new_page):
    sandbox_crew("hostile")
    make_user("rita", "reviewer")
    make_user("lena", "lead")
    execution_id = kick_off(app, sandbox, "hostile", {"topic": "<script>alert('topic')</script>"})
    first = wait_for_round(app, execution_id)

    page, watch = new_page()
    ui_login(page, "rita", PASSWORD)
    page.get_by_role("link", name="Queue").click()
    assert "<img src=x onerror=alert(1)>" in page.locator("td.snippet").inner_text()
    assert_inert(page, watch, "queue")

    page.get_by_role("link", name="xss_task").click()
    page.wait_for_url(re.compile(rf"/rounds/{first}$"))
    output = page.locator("#output").inner_text()
    for shown in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>"):
        assert shown in output  # shown as text, not dropped silently and not run
    assert "[image not loaded:" in output
    assert page.locator("#output a").count() == page.locator("#output a[href^='http']").count()
    open_all_details(page)
    assert_inert(page, watch, "review page (rendered)")

    page.get_by_role("link", name="Raw text").click()
    assert "<svg onload=alert(1)>" in page.locator("#output").inner_text()
    assert_inert(page, watch, "review page (raw)")

    page.get_by_label("Feedback").fill(FEEDBACK)
    page.get_by_role("button", name="Request revision").click()
    page.wait_for_url(DECISION_URL)
    assert FEEDBACK in page.locator("pre.feedback").inner_text()
    assert_inert(page, watch, "outcome of the revision")

    second = wait_for_round(app, execution_id, round_number=2)
    page.goto(f"/rounds/{second}")
    assert any(FEEDBACK in line for line in page.locator("pre.diff .diff-add").all_inner_texts())
    open_all_details(page)
    assert_inert(page, watch, "round 2 with its diff")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(DECISION_URL)
    page.get_by_text("Delivered: the execution has completed.").wait_for()
    assert_inert(page, watch, "outcome of the approval")
    wait_until(lambda: execution_result(app, execution_id), what="the execution's final result")

    lead, lead_watch = new_page()
    ui_login(lead, "lena", PASSWORD)
    lead.get_by_role("link", name="History").click()
    assert FEEDBACK in lead.locator("table.history").inner_text()
    assert_inert(lead, lead_watch, "history")

    lead.get_by_role("link", name=f"#{execution_id}").first.click()
    lead.wait_for_url(re.compile(rf"/audit/executions/{execution_id}$"))
    open_all_details(lead)
    assert "<script>alert(1)</script>" in lead.locator("ol.timeline").inner_text()
    assert_inert(lead, lead_watch, "timeline")

    lead.goto(f"/crews/executions/{execution_id}")
    assert "<script>alert('topic')</script>" in lead.locator("main").inner_text()
    assert_inert(lead, lead_watch, "crew execution page")


def execution_result(app, execution_id: int) -> str | None:
    with app.app_context():
        return db.session.scalar(select(Execution.result).where(Execution.id == execution_id))


def test_the_watch_sees_what_it_must(make_user, new_page):
    """The checks above can fail: an injected remote image is refused by the CSP and
    reported (as a console error and a foreign request), an injected inline script is
    refused, and a dialog is recorded."""
    make_user("rita", "reviewer")
    page, watch = new_page()
    ui_login(page, "rita", PASSWORD)
    with page.expect_console_message(lambda msg: "Content Security Policy" in msg.text):
        page.evaluate("""() => { const img = document.createElement('img');
                                 img.src = 'http://evil.example/probe.png'; document.body.append(img); }""")
    with page.expect_console_message(lambda msg: "Content Security Policy" in msg.text):
        page.evaluate("""() => { const s = document.createElement('script');
                                 s.textContent = 'window.ran = true'; document.body.append(s); }""")
    assert page.evaluate("window.ran === undefined")
    with page.expect_event("dialog"):
        page.evaluate("() => { setTimeout(() => alert('probe'), 0); }")
    assert watch.dialogs == ["probe"]
    assert len(watch.console_errors) == 2
    assert watch.foreign_requests == ["http://evil.example/probe.png"]
    with pytest.raises(AssertionError):
        assert_clean(watch)
