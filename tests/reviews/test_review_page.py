"""The review page: claims (open, heartbeat, takeover, release), safe rendering, large
outputs, earlier rounds with their diff, the preview and the shortcuts."""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select, text

from reviewapp.extensions import db
from reviewapp.models import (
    CLAIM_COLUMNS,
    QUEUE_CARD_COLUMNS,
    ROUNDS_FILLFACTOR,
    Crew,
    ReviewRound,
    utcnow,
)
from reviewapp.reviews import services
from tests.conftest import is_postgres
from tests.sqlcapture import captured_statements

from .helpers import audit_events, claim_as, round_row


@pytest.fixture
def app_config():
    return {"CLAIM_MINUTES": 3}


def expire_claim(app, round_id: int) -> None:
    with app.app_context():
        db.session.get(ReviewRound, round_id).claim_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()


def test_opening_a_round_claims_it(app, client, login_as, make_round):
    rid = make_round()
    me = login_as("reviewer")
    before = utcnow()
    response = client.get(f"/rounds/{rid}")
    assert response.status_code == 200
    row = round_row(app, rid)
    assert row.claimed_by_id == me.id
    assert before + timedelta(minutes=3) <= row.claim_expires_at <= utcnow() + timedelta(minutes=3)
    assert b"You are reviewing this round" in response.data


def test_others_see_who_reviews_and_cannot_take_it(app, client, login_as, make_user, make_round):
    rid = make_round()
    other = make_user("bob", "reviewer")
    claim_as(app, rid, other)
    login_as("reviewer")
    page = client.get(f"/rounds/{rid}").get_data(as_text=True)
    assert "Being reviewed by <strong>bob</strong>" in page
    assert "Take over" not in page  # reviewers cannot
    assert re.search(r'<input[^>]*disabled[^>]*value="Approve"', page)
    assert round_row(app, rid).claimed_by_id == other.id


def test_opening_again_writes_nothing_while_more_than_half_the_claim_is_left(app, client, login_as, make_round):
    from tests.sqlcapture import captured_statements

    rid = make_round()
    login_as("reviewer")
    client.get(f"/rounds/{rid}")
    first = round_row(app, rid).claim_expires_at
    with captured_statements(app) as seen:
        assert client.get(f"/rounds/{rid}").status_code == 200
    assert not [statement for statement in seen if statement.startswith("UPDATE")], seen
    assert round_row(app, rid).claim_expires_at == first
    with app.app_context():  # 1.4 of the 3 minutes left: the next view extends the claim
        db.session.get(ReviewRound, rid).claim_expires_at = utcnow() + timedelta(minutes=1.4)
        db.session.commit()
    before = utcnow()
    client.get(f"/rounds/{rid}")
    assert round_row(app, rid).claim_expires_at >= before + timedelta(minutes=3)


def test_an_expired_claim_can_be_taken(app, client, login_as, make_user, make_round):
    rid = make_round()
    other = make_user("bob", "reviewer")
    claim_as(app, rid, other)
    expire_claim(app, rid)
    me = login_as("reviewer")
    client.get(f"/rounds/{rid}")
    assert round_row(app, rid).claimed_by_id == me.id


def heartbeat(client, rid, csrf=None):
    headers = {"Accept": "application/json"}
    if csrf:
        headers["X-CSRFToken"] = csrf
    return client.post(f"/rounds/{rid}/heartbeat", headers=headers)


def test_heartbeat_extends_the_claim_with_the_csrf_header(app, client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    page = client.get(f"/rounds/{rid}").get_data(as_text=True)
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    first = round_row(app, rid).claim_expires_at
    app.config["WTF_CSRF_ENABLED"] = True
    assert heartbeat(client, rid).status_code == 400  # no token: refused
    time.sleep(0.01)
    response = heartbeat(client, rid, csrf)
    assert response.status_code == 200
    body = response.get_json()
    assert body["held"] is True and body["state"] == "pending"
    assert round_row(app, rid).claim_expires_at > first


def test_heartbeat_after_a_takeover_tells_the_page(app, client, login_as, make_user, make_round):
    rid = make_round()
    login_as("reviewer")
    client.get(f"/rounds/{rid}")
    lead = make_user("lena", "lead")
    with app.app_context():
        services.take_over(db.session.get(ReviewRound, rid), lead)
        db.session.commit()
    body = heartbeat(client, rid).get_json()
    assert body == {**body, "held": False, "holder": "lena", "state": "pending"}


def test_claims_are_hot_updates_on_postgres_and_in_the_card_index_on_sqlite(app, make_user, make_round):
    """Opening a round claims it, the page's heartbeat extends the claim, a lead takes it
    over, the holder lets it go. On PostgreSQL no index holds the claim, so each of these
    is a HOT update: no index of the row gets an entry, and the pending rounds' search
    GIN does not parse the output again (20 ms for 200 KB). SQLite's card index holds
    the claim: SQLite stores it after a long output in the row, which the queue would
    walk to reach it."""
    rid = make_round("# Findings\n\n" + "evidence " * 22_000)  # ~200 KB
    ann, lena = make_user("ann"), make_user("lena", "lead")
    with app.app_context():
        round_ = db.session.get(ReviewRound, rid)
        services.claim_round(round_, db.session.merge(ann))
        services.claim_round(round_, db.session.merge(ann))
        services.take_over(round_, db.session.merge(lena))
        assert services.release_claim(round_, db.session.merge(lena))
        if is_postgres():  # this transaction's counts, before they are flushed to pg_stat
            writes = db.session.execute(text(
                "SELECT pg_stat_get_xact_tuples_updated(c.oid), pg_stat_get_xact_tuples_hot_updated(c.oid),"
                " c.reloptions FROM pg_class c WHERE c.relname = 'review_rounds'")).one()
        else:
            card = db.session.scalars(text("SELECT name FROM pragma_index_info('ix_review_rounds_pending_card')"))
            card_columns = tuple(card)
        db.session.commit()
    if is_postgres():
        assert tuple(writes) == (4, 4, [f"fillfactor={ROUNDS_FILLFACTOR}"])  # room for them on the page
    else:
        assert set(CLAIM_COLUMNS) <= set(card_columns) and card_columns == QUEUE_CARD_COLUMNS


def test_heartbeat_for_unknown_round_is_json_404(client, login_as):
    login_as("reviewer")
    response = heartbeat(client, 424242)
    assert response.status_code == 404 and response.get_json()["message"]


def test_lead_takes_over_and_it_is_audited(app, client, auth, login_as, make_user, make_round):
    rid = make_round()
    holder = make_user("bob", "reviewer")
    claim_as(app, rid, holder)
    lead = login_as("lead")
    page = client.get(f"/rounds/{rid}").get_data(as_text=True)
    assert "Take over from bob" in page
    response = client.post(f"/rounds/{rid}/take-over")
    assert response.status_code == 302 and response.headers["Location"] == f"/rounds/{rid}"
    assert round_row(app, rid).claimed_by_id == lead.id
    events = audit_events(app, "claim_takeover")
    assert len(events) == 1 and events[0].details == {"from": "bob"} and events[0].actor_id == lead.id


def test_reviewer_cannot_take_over(client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    assert client.post(f"/rounds/{rid}/take-over").status_code == 403


def test_release_frees_the_round(app, client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    client.get(f"/rounds/{rid}")
    response = client.post(f"/rounds/{rid}/release")
    assert response.status_code == 302
    assert round_row(app, rid).claimed_by_id is None


XSS_PAYLOADS = [
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "![pic](https://evil.example/track.png)",
    "[click](javascript:alert(1))",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<iframe src=\"https://evil.example\"></iframe>",
    "<svg onload=alert(1)>",
    "<div style=\"background:url(https://evil.example)\">styled</div>",
    "[data](data:text/html;base64,PHNjcmlwdD4=)",
    "<scr<script>ipt>alert(1)</script>",
    "\"><script>alert(1)</script>",
    "<details open ontoggle=alert(1)>",
]


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_in(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = TagCollector()
    collector.feed(html)
    return collector.tags


@pytest.mark.parametrize("view", ["rendered", "raw"])
def test_xss_payloads_in_output_render_inert(client, login_as, make_round, view):
    rid = make_round("\n\n".join(XSS_PAYLOADS) + "\n\n[fine](https://example.com/ok)")
    login_as("reviewer")
    page = client.get(f"/rounds/{rid}", query_string={"view": view}).get_data(as_text=True)
    output = page.split('id="output">', 1)[1].split("</section>", 1)[0]
    tags = tags_in(output)
    names = {name for name, _ in tags}
    assert not names & {"script", "img", "iframe", "svg", "details", "div", "object", "embed", "style"}
    for name, attrs in tags:
        assert not [a for a in attrs if a.startswith("on") or a == "style" or a == "src"], (name, attrs)
        if name == "a":
            assert attrs["href"].startswith(("https://", "http://", "mailto:")), attrs
            assert attrs["rel"] == "noopener noreferrer"
    if view == "rendered":
        assert ("a", {"href": "https://example.com/ok", "rel": "noopener noreferrer"}) in tags
        assert "image not loaded" in output
    else:
        assert names == set()  # raw view: text only
    # every <script> on the page is our own external file
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/js/review.js">']


def test_untrusted_fields_are_escaped_in_queue_and_page(client, login_as, make_round):
    rid = make_round("ok", task_id="<script>t()</script>", agent="<b onmouseover=x()>agent</b>")
    login_as("reviewer")
    for url in ("/", f"/rounds/{rid}"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>t()" not in page and "<b onmouseover" not in page
        assert "&lt;script&gt;t()&lt;/script&gt;" in page


def test_a_one_megabyte_output_stays_usable(app, client, login_as, make_round):
    big = ("## Section\n\nSome *text* with a [link](https://example.com) and `code`.\n\n" * 16000)[: 1024 * 1024]
    rid = make_round(big)
    login_as("reviewer")
    started = time.monotonic()
    response = client.get(f"/rounds/{rid}")
    assert response.status_code == 200
    assert time.monotonic() - started < 5
    page = response.get_data(as_text=True)
    assert "opens as raw text" in page and '<pre class="raw-output" id="output">' in page
    rendered = client.get(f"/rounds/{rid}", query_string={"view": "rendered"})
    assert rendered.status_code == 200 and b'<div class="rendered-output"' in rendered.data
    text = client.get(f"/rounds/{rid}/output.txt")
    assert text.status_code == 200 and text.mimetype == "text/plain"
    assert text.get_data(as_text=True) == big
    assert text.headers["X-Content-Type-Options"] == "nosniff"


def test_earlier_rounds_with_feedback_and_diff(app, client, login_as, make_round):
    execution = str(uuid.uuid4())
    first = make_round("Line one\nLine <two>\nLine three", execution_id=execution)
    reviewer = login_as("reviewer")
    client.get(f"/rounds/{first}")
    with app.app_context():
        services.submit_decision(db.session.get(ReviewRound, first), reviewer,
                                 is_approve=False, feedback="Cite <sources>", reason_code="needs-sources")
        db.session.commit()
    second = make_round("Line one\nLine 2 with sources\nLine three", execution_id=execution)
    row = round_row(app, second)
    assert row.round_number == 2
    page = client.get(f"/rounds/{second}").get_data(as_text=True)
    assert "Earlier rounds of this task" in page
    assert "Revision requested by reviewer1" in page and "(needs-sources)" in page
    assert "Cite &lt;sources&gt;" in page
    assert '<span class="diff-del">-Line &lt;two&gt;</span>' in page
    assert '<span class="diff-add">+Line 2 with sources</span>' in page
    assert "Changes since round 1" in page


def test_preview_shows_the_body_without_secrets(app, client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    page = client.get(f"/rounds/{rid}").get_data(as_text=True)
    with app.app_context():
        crew = db.session.scalar(select(Crew))
        from reviewapp.amp.webhooks import inbound_secret

        secret = inbound_secret(crew)
        kickoff = db.session.get(ReviewRound, rid).execution.kickoff_id
    assert secret not in page
    assert "Exactly what will be sent to AMP" in page
    assert f"&#34;execution_id&#34;: &#34;{kickoff}&#34;" in page
    assert "&#34;is_approve&#34;: false" in page and "&#34;is_approve&#34;: true" in page
    assert "•••" in page


def test_each_preview_is_the_body_its_button_would_send(app, client, login_as, make_round):
    """Both previews come from one built body (the two differ only in is_approve); each
    must still equal, masked, the body built for its own decision."""
    from reviewapp.amp.client import build_resume_body, redact_body

    rid = make_round()
    login_as("reviewer")
    page = client.get(f"/rounds/{rid}").get_data(as_text=True)
    shown = {name: json.loads(html.unescape(body))
             for name, body in re.findall(r'id="preview-(approve|revise)" data-body="([^"]*)"', page)}
    with app.app_context():
        round_ = db.session.get(ReviewRound, rid)
        for name, is_approve in (("approve", True), ("revise", False)):
            fields = services.resume_fields(round_, feedback="", is_approve=is_approve)
            assert shown[name] == redact_body(build_resume_body(round_.crew, **fields))
            assert list(shown[name]) == list(build_resume_body(round_.crew, **fields))  # same key order


def test_shortcuts_are_listed_and_the_form_is_labelled(client, login_as, make_round):
    rid = make_round()
    login_as("reviewer")
    page = client.get(f"/rounds/{rid}").get_data(as_text=True)
    assert '<label for="feedback">Feedback</label>' in page
    assert 'value="Approve"' in page and 'value="Request revision"' in page
    assert "Keyboard shortcuts" in page
    for key in ("<kbd>f</kbd>", "<kbd>a</kbd>", "<kbd>r</kbd>", "<kbd>n</kbd>"):
        assert key in page


def test_the_review_script_is_vendored(client):
    response = client.get("/static/js/review.js")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "X-CSRFToken" in text and "innerHTML" not in text.replace("never innerHTML", "")


def test_unknown_round_is_404(client, login_as):
    login_as("reviewer")
    assert client.get("/rounds/31337").status_code == 404
    assert client.get("/rounds/31337/output.txt").status_code == 404


def test_a_page_shown_again_reads_no_output(app, client, login_as, make_round):
    """Outputs never change: the rendered output is kept per process, by round, and the
    earlier rounds' outputs are read only as far as the page shows them."""

    execution = str(uuid.uuid4())
    long_output = "x" * 30_000
    first = make_round(long_output, execution_id=execution)
    login_as("reviewer")
    client.get(f"/rounds/{first}")
    with app.app_context():
        round_ = db.session.get(ReviewRound, first)
        services.submit_decision(round_, services.get_round(first).claimed_by, is_approve=False,
                                 feedback="Shorter, please.", reason_code=None)
        db.session.commit()
    second = make_round("Round two, " + "y" * 200_000, execution_id=execution)  # too large to diff
    assert client.get(f"/rounds/{second}").status_code == 200
    with captured_statements(app) as seen:
        page = client.get(f"/rounds/{second}").get_data(as_text=True)
    assert not [s for s in seen if "review_rounds.output," in s or "review_rounds.output " in s], seen
    assert "Round two" in page and "(200,011 characters)" in page
    assert "x" * 20_000 in page and "x" * 20_001 not in page  # the earlier round's start
    assert f'href="/rounds/{first}/output.txt">Full output of round 1</a>' in page
    assert "too large to compare" in page
