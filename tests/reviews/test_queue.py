"""The queue: pending rounds, filters, keyset pagination, count, Review next."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import Join, Subquery, event, func, select

from reviewapp import create_app
from reviewapp.audit.pagination import Cursor
from reviewapp.extensions import db
from reviewapp.models import ReviewRound, RoundState, utcnow
from reviewapp.reviews import services
from reviewapp.reviews.services import QueueFilters
from tests.conftest import _base_config

from .helpers import claim_as, round_row


def listed_ids(page_html: str) -> list[int]:
    return [int(x) for x in re.findall(r'href="/rounds/(\d+)"', page_html)]


@pytest.fixture
def three_rounds(make_round):
    now = utcnow()
    old = make_round("old output about llamas", received_at=now - timedelta(hours=30))
    mid = make_round("middle output 100% done", task_id="analysis_task", received_at=now - timedelta(hours=2), crew="travel")
    new = make_round("new output", received_at=now - timedelta(minutes=5), agent="Writer")
    return old, mid, new


def test_queue_lists_pending_oldest_first_with_count(client, login_as, three_rounds):
    login_as("reviewer")
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert listed_ids(page) == list(three_rounds)
    assert "<strong>3</strong> pending rounds" in page
    for text in ("research", "travel", "analysis_task", "Writer", "Review next"):
        assert text in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"crew": "TRAVEL"}, [1]),
        ({"task": "research_task"}, [0, 2]),
        ({"age": "gt24h"}, [0]),
        ({"age": "gt1h"}, [0, 1]),
        ({"age": "lt1h"}, [2]),
        ({"q": "LLAMAS"}, [0]),
        ({"q": "100%"}, [1]),
        ({"q": "middle done"}, [1]),
        ({"q": "output"}, [0, 1, 2]),
        ({"q": "%"}, []),
        ({"q": "zebra"}, []),
        ({"sort": "newest"}, [2, 1, 0]),
    ],
)
def test_filters_and_count_agree(app, client, login_as, three_rounds, query, expected):
    login_as("reviewer")
    if query.get("crew") == "TRAVEL":
        query = {"crew": str(round_row(app, three_rounds[1]).crew_id)}
    page = client.get("/", query_string=query).get_data(as_text=True)
    assert listed_ids(page) == [three_rounds[i] for i in expected]
    if expected:
        assert f"<strong>{len(expected)}</strong> pending round" in page
    else:
        assert "<strong>0</strong> pending rounds" in page


def test_decided_and_stale_rounds_leave_the_queue(app, client, login_as, make_round):
    keep, decided, stale = make_round("a"), make_round("b"), make_round("c")
    with app.app_context():
        db.session.get(ReviewRound, decided).state = RoundState.DECIDED
        db.session.get(ReviewRound, stale).state = RoundState.STALE
        db.session.commit()
    login_as("reviewer")
    page = client.get("/").get_data(as_text=True)
    assert listed_ids(page) == [keep]
    assert "<strong>1</strong> pending round" in page


@pytest.mark.parametrize(
    "query",
    [{"crew": "abc"}, {"age": "forever"}, {"sort": "sideways"}, {"after": "not-a-cursor"}, {"after": "9" * 40 + "-1"}],
)
def test_bad_filter_values_are_a_clear_400(client, login_as, query):
    login_as("reviewer")
    response = client.get("/", query_string=query)
    assert response.status_code == 400
    assert b"Traceback" not in response.data
    assert re.search(rb"filter|page link|sort order", response.data)


def test_keyset_pages_cover_every_row_once(app, make_round):
    now = utcnow()
    same_time = now - timedelta(hours=1)
    ids = [make_round(f"out {i}", received_at=same_time if i % 3 == 0 else now - timedelta(seconds=i)) for i in range(23)]
    for newest_first in (False, True):
        filters = QueueFilters(newest_first=newest_first)
        seen, cursor, totals = [], None, set()
        with app.app_context():
            for _ in range(10):
                page = services.list_queue(filters, after=cursor, limit=5)
                seen += [row.round_id for row in page.rows]
                totals.add(page.total)
                if page.next_cursor is None:
                    break
                cursor = Cursor.decode(page.next_cursor)
        assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
        assert totals == {23}
        with app.app_context():
            times = {r.id: (r.received_at, r.id) for r in db.session.scalars(select(ReviewRound))}
        keys = [times[i] for i in seen]
        assert keys == sorted(keys, reverse=newest_first)


def test_next_page_link_keeps_filters(app, client, login_as, make_round):
    for i in range(services.QUEUE_PAGE_SIZE + 3):
        make_round(f"item {i}", task_id="t1")
    make_round("other task", task_id="t2")
    login_as("reviewer")
    first = client.get("/", query_string={"task": "t1"}).get_data(as_text=True)
    assert len(listed_ids(first)) == services.QUEUE_PAGE_SIZE
    link = re.search(r'href="(/\?[^"]*after=[^"]*)" rel="next"', first).group(1).replace("&amp;", "&")
    assert "task=t1" in link
    second = client.get(link).get_data(as_text=True)
    assert len(listed_ids(second)) == 3
    assert not set(listed_ids(first)) & set(listed_ids(second))
    assert f"<strong>{services.QUEUE_PAGE_SIZE + 3}</strong> pending rounds" in second


def test_review_next_claims_the_oldest_unclaimed(app, client, login_as, make_user, make_round):
    now = utcnow()
    first = make_round("first", received_at=now - timedelta(hours=3))
    second = make_round("second", received_at=now - timedelta(hours=2))
    other = make_user("other", "reviewer")
    claim_as(app, first, other)
    me = login_as("reviewer")
    response = client.post("/next")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/rounds/{second}"
    assert round_row(app, second).claimed_by_id == me.id
    page = client.get("/").get_data(as_text=True)
    assert "other" in page  # "being reviewed by" column


def test_review_next_with_nothing_left(client, login_as):
    login_as("reviewer")
    response = client.post("/next", follow_redirects=True)
    assert response.status_code == 200
    assert b"Nothing left to review" in response.data


def test_review_next_respects_filters(app, client, login_as, make_round):
    make_round("a", task_id="alpha", received_at=utcnow() - timedelta(hours=1))
    wanted = make_round("b", task_id="beta")
    login_as("reviewer")
    response = client.post("/next", data={"task": "beta"})
    assert response.headers["Location"] == f"/rounds/{wanted}"


def test_a_text_count_past_the_cap_is_shown_as_a_lower_bound(client, login_as, make_round, monkeypatch):
    monkeypatch.setattr(services, "QUEUE_COUNT_CAP", 2)
    ids = [make_round(f"needle number {i}") for i in range(3)]
    make_round("hay only")
    login_as("reviewer")
    page = client.get("/", query_string={"q": "needle"}).get_data(as_text=True)
    assert listed_ids(page) == ids  # the rows stay exact
    assert "<strong>2+</strong> pending rounds match these filters" in page
    at_cap = client.get("/", query_string={"q": "number 1"}).get_data(as_text=True)
    assert "<strong>1</strong> pending round match these filters" in at_cap


def test_the_count_is_exact_on_every_page_and_past_the_end(app, client, login_as, make_round):
    """The count rides on the page query; a page past the end still counts."""
    ids = [make_round(f"item {i}") for i in range(services.QUEUE_PAGE_SIZE + 2)]
    login_as("reviewer")
    with app.app_context():
        last = round_row(app, ids[-1])
        beyond = Cursor(last.received_at, last.id).encode()
    second = client.get("/", query_string={"after": Cursor.decode(beyond).encode()})
    assert f"<strong>{len(ids)}</strong> pending rounds" in second.get_data(as_text=True)
    with app.app_context():
        empty = services.list_queue(QueueFilters(task_id="nothing-like-this"))
        assert (empty.rows, empty.total) == ([], 0)
        assert services.count_queue(QueueFilters()) == (len(ids), False)


def test_queue_rows_are_escaped(client, login_as, make_round):
    hostile = "<script>alert('x')</script> & \"quoted\""
    make_round(hostile, task_id=hostile, agent=hostile)
    login_as("reviewer")
    page = client.get("/").get_data(as_text=True)
    assert "<script>" not in page
    assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;") == 3


# --------------------------------------------------------------------------- page statement


SHAPES = [
    QueueFilters(),
    QueueFilters(newest_first=True),
    QueueFilters(crew_id=1),
    QueueFilters(task_id="research_task"),
    QueueFilters(age="lt1h"),
    QueueFilters(age="gt1h", newest_first=True),
    QueueFilters(crew_id=1, task_id="research_task", age="gt1h"),
    QueueFilters(q="needle"),
    QueueFilters(q="needle", crew_id=1, newest_first=True),
]


@pytest.fixture
def mixed_rounds(app, make_round, make_user):
    """Rounds of two crews and two tasks, some received at the same instant, one claimed,
    one decided: every filter keeps some and drops some."""
    now = utcnow()
    same = now - timedelta(hours=2)
    ids = []
    for i in range(14):
        received = same if i % 4 == 0 else now - timedelta(minutes=17 * i + 1)
        ids.append(make_round(
            f"output {i}" + (" needle" if i % 3 else ""),
            crew="research" if i % 2 else "travel",
            task_id="research_task" if i % 5 else "analysis_task",
            received_at=received,
        ))
    claim_as(app, ids[3], make_user("holder", "reviewer"))
    with app.app_context():
        db.session.get(ReviewRound, ids[5]).state = RoundState.DECIDED
        db.session.commit()
    return ids


def _expected(app, filters: QueueFilters) -> list[int]:
    """The queue's rows by brute force: every round read, filtered and sorted in Python."""
    now = utcnow()
    _, older, younger = services.AGE_WINDOWS[filters.age]
    with app.app_context():
        rounds = db.session.scalars(select(ReviewRound)).all()
        keep = [
            r for r in rounds
            if r.state is RoundState.PENDING
            and (not filters.crew_id or r.crew_id == filters.crew_id)
            and (not filters.task_id or r.task_id == filters.task_id)
            and (older is None or r.received_at <= now - older)
            and (younger is None or r.received_at > now - younger)
            and all(word.lower() in r.output.lower() for word in filters.q.split())
        ]
        keep.sort(key=lambda r: (r.received_at, r.id), reverse=filters.newest_first)
        return [r.id for r in keep]


@pytest.mark.parametrize("filters", SHAPES, ids=repr)
def test_every_filter_shape_pages_through_exactly_its_rows(app, mixed_rounds, filters):
    """Keyset pages of 3 (so cursor pages too) list the brute-force rows, in order, once;
    the count on every page is theirs."""
    expected = _expected(app, filters)
    assert 0 < len(expected) < len(mixed_rounds) - 1 or not filters.crew_id and not filters.q
    seen, cursor, totals = [], None, set()
    with app.app_context():
        for _ in range(len(mixed_rounds)):
            page = services.list_queue(filters, after=cursor, limit=3)
            seen += [row.round_id for row in page.rows]
            totals.add((page.total, page.total_is_lower_bound))
            if page.next_cursor is None:
                break
            cursor = Cursor.decode(page.next_cursor)
        row = services.list_queue(filters).rows[0]
    assert seen == expected
    assert totals == {(len(expected), False)}
    assert (row.crew_name, row.task_id, row.snippet) == (
        *(lambda r: (r.crew.name, r.task_id))(_round_with_crew(app, row.round_id)),
        f"output {mixed_rounds.index(row.round_id)}" + (" needle" if mixed_rounds.index(row.round_id) % 3 else ""),
    )


def _round_with_crew(app, round_id: int) -> ReviewRound:
    with app.app_context():
        round_ = services.get_round(round_id)
        assert round_ is not None
        db.session.expunge_all()
        return round_


@pytest.mark.parametrize("after", [False, True])
@pytest.mark.parametrize("filters", SHAPES, ids=repr)
def test_the_page_picks_its_rounds_in_a_limited_subquery_over_review_rounds_alone(filters, after):
    """A deferred join: the page statement's rows come from a subquery that reads
    ``review_rounds`` only and stops at the page's limit; crews, executions and users
    are joined to those rows. (Joined in one SELECT, SQLite sorted every pending round.)"""
    shape = services._Shape.of(filters)
    keys = services._page_keys(shape, newest_first=filters.newest_first, after=after, limit=50)
    count_cap = None if filters.q else services.QUEUE_COUNT_CAP
    stmt = services._page_rows(keys, shape, newest_first=filters.newest_first, count_cap=count_cap)
    (joined,) = stmt.get_final_froms()
    leftmost = joined
    while isinstance(leftmost, Join):
        leftmost = leftmost.left
    assert isinstance(leftmost, Subquery)
    picked = leftmost.element
    assert [table.name for table in picked.get_final_froms()] == ["review_rounds"]
    assert picked._limit_clause.value == 51  # the page's rows and one more (is there a next page?)


# sqlite_stat1 of the 1M-decision bench database: 1.01M rounds of which 10k pending, 5 crews
BENCH_SQLITE_STATS = [
    ("review_rounds", "ix_review_rounds_queue", "1010000 505000 1 1"),
    ("review_rounds", "ix_review_rounds_pending_crew", "10000 2000 1"),
    ("review_rounds", "ix_review_rounds_pending_card", "10000 1 1 1 1 1 1 1 1 1 1"),
    ("review_rounds", "ix_review_rounds_crew_id", "1010000 202000"),
    ("review_rounds", "sqlite_autoindex_review_rounds_1", "1010000 4 1 1"),
    ("review_rounds", "sqlite_autoindex_review_rounds_2", "1010000 4 1 1"),
    ("crews", "sqlite_autoindex_crews_1", "5 1"),
    ("users", "sqlite_autoindex_users_1", "21 1"),
    ("executions", "sqlite_autoindex_executions_1", "252500 50500 1"),
]


@pytest.fixture
def sqlite_at_bench_scale(tmp_path):
    """An empty SQLite database (whatever the suite runs on) whose planner statistics
    are the bench database's."""
    app = create_app(_base_config(f"sqlite:///{tmp_path / 'bench-stats.sqlite3'}"))
    with app.app_context():
        db.create_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("DELETE FROM sqlite_stat1")
            for row in BENCH_SQLITE_STATS:
                conn.exec_driver_sql("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", row)
        db.engine.dispose()  # the statistics are read when a connection opens
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("after", [False, True])
@pytest.mark.parametrize("filters", SHAPES, ids=repr)
def test_sqlite_walks_an_index_in_page_order_at_bench_scale(sqlite_at_bench_scale, filters, after):
    """With the bench database's statistics, SQLite's plan for the page reads the page's
    rounds through an index in page order: no crew-by-crew scan, no sort of the pending
    rounds (the old single SELECT did both: 10-17 ms at 1M)."""
    statements = []

    def grab(conn, cursor, statement, parameters, context, many):
        statements.append((statement, parameters))

    with sqlite_at_bench_scale.app_context():
        event.listen(db.engine, "before_cursor_execute", grab)
        try:
            services.list_queue(filters, after=Cursor(utcnow() - timedelta(hours=3), 7) if after else None)
        finally:
            event.remove(db.engine, "before_cursor_execute", grab)
        statement, parameters = next((s, p) for s, p in statements if " AS page" in s)
        plan = db.session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    details = {node_id: (parent, detail) for node_id, parent, _, detail in plan}
    (page_node,) = [node for node, (_, detail) in details.items() if detail in ("MATERIALIZE page", "CO-ROUTINE page")]
    inside = [detail for parent, detail in details.values() if parent == page_node]
    index = "ix_review_rounds_pending_crew" if filters.crew_id else "ix_review_rounds_queue"
    assert inside[0].startswith("SEARCH review_rounds USING") and f"INDEX {index} " in inside[0], plan
    assert not any("TEMP B-TREE" in detail for detail in inside), plan
    assert not any(detail.startswith("SCAN crews") for _, detail in details.values()), plan
    # The page's columns of its rounds come from the card index: never the row, where a
    # long output lies before agent and the claim.
    outside = [detail for parent, detail in details.values() if parent != page_node and "review_rounds" in detail]
    assert "SEARCH review_rounds USING COVERING INDEX ix_review_rounds_pending_card (id=?)" in outside, plan
    assert not any("PRIMARY KEY" in detail for detail in outside), plan


# --------------------------------------------------------------------------- text search


def test_the_models_give_the_queue_search_an_index_of_pending_rounds_only(app):
    """The schema the tests create (db.create_all) has the migration's indexes too."""
    from tests.test_migrations import search_index_definition

    with app.app_context(), db.engine.connect() as conn:
        pending = search_index_definition(conn, "ix_review_rounds_pending_search")
        others = search_index_definition(conn, "ix_review_rounds_decided_search")
        if conn.dialect.name != "postgresql":
            assert (pending, others) == (None, None)  # SQLite searches with LIKE
            return
    assert pending is not None and pending.endswith("WHERE ((state)::text = 'pending'::text)")
    assert others is not None and others.endswith("WHERE ((state)::text <> 'pending'::text)")


def test_a_text_count_leaves_the_planner_settings_as_they_were(app, make_round):
    make_round("needle one")
    make_round("needle two", crew="travel")
    with app.app_context():
        postgres = db.session.get_bind().dialect.name == "postgresql"
        show = select(func.current_setting("enable_seqscan"), func.current_setting("enable_indexscan"))
        before = tuple(db.session.execute(show).one()) if postgres else None
        assert services.count_queue(QueueFilters(q="needle")) == (2, False)
        assert services.count_queue(QueueFilters(q="needle two")) == (1, False)
        if postgres:
            assert tuple(db.session.execute(show).one()) == before == ("on", "on")


def test_a_text_count_looks_the_words_up_before_the_other_filters(app):
    """PostgreSQL: the words among all pending rounds, in a subquery the planner keeps
    apart (OFFSET), the crew and the rest applied to what it finds; with the crew next
    to the words it parsed the crew's every output instead of using the search index."""
    with app.app_context():
        stmt = services._text_matches(QueueFilters(q="needle", crew_id=1, age="gt1h"), utcnow())
        postgres = db.session.get_bind().dialect.name == "postgresql"
    (source,) = stmt.get_final_froms()
    if not postgres:
        assert source.name == "review_rounds"
        return
    assert isinstance(source, Subquery) and source.element._offset_clause is not None
    words_only = str(source.element.whereclause)
    assert "crew_id" not in words_only and "received_at" not in words_only and "output" in words_only
    assert "crew_id" in str(stmt.whereclause) and "received_at" in str(stmt.whereclause)


def test_a_count_past_the_cap_is_a_lower_bound_without_filters_too(app, client, login_as, make_round, monkeypatch):
    """The queue counts at most QUEUE_COUNT_CAP + 1 rounds: past it the page says "N+",
    on the first page, after a cursor and past the end alike; at the cap it is exact."""
    monkeypatch.setattr(services, "QUEUE_COUNT_CAP", 3)
    ids = [make_round(f"item {i}") for i in range(5)]
    login_as("reviewer")
    first = client.get("/").get_data(as_text=True)
    assert listed_ids(first) == ids
    assert "<strong>3+</strong> pending rounds (counting stops there)." in first
    with app.app_context():
        page = services.list_queue(QueueFilters(), limit=2)
        assert (page.total, page.total_is_lower_bound) == (3, True)
        later = services.list_queue(QueueFilters(), after=Cursor.decode(page.next_cursor), limit=2)
        assert (later.total, later.total_is_lower_bound) == (3, True)
        last = round_row(app, ids[-1])
        beyond = services.list_queue(QueueFilters(), after=Cursor(last.received_at, last.id))
        assert (beyond.rows, beyond.total, beyond.total_is_lower_bound) == ([], 3, True)
        assert services.count_queue(QueueFilters()) == (3, True)
    monkeypatch.setattr(services, "QUEUE_COUNT_CAP", 5)
    exact = client.get("/").get_data(as_text=True)
    assert "<strong>5</strong> pending rounds." in exact


def test_a_lead_past_the_cap_is_pointed_to_the_exact_depth(client, login_as, make_round, monkeypatch):
    monkeypatch.setattr(services, "QUEUE_COUNT_CAP", 1)
    make_round("one")
    make_round("two")
    login_as("lead")
    page = client.get("/").get_data(as_text=True)
    assert 'has the exact queue depth' in page and 'href="/audit/metrics"' in page


def crew_options(page: str) -> list[tuple[str, bool]]:
    select = re.search(r'<select id="f-crew" name="crew">(.*?)</select>', page, re.S)
    assert select is not None
    return [(name, bool(chosen)) for chosen, name in re.findall(r"<option value=\"\d+\" (selected)?>([^<]*)</option>",
                                                                select.group(1))]


def test_the_filter_form_is_rendered_once_per_filters_and_crew_list(app, client, login_as, make_round, make_crew):
    """The form is kept (reviewapp/fragments.py): the same filters reuse it, other
    filters get their own, a new crew shows at once, and the Review-next form's CSRF
    token stays outside it (each session has its own)."""
    from flask import template_rendered

    from reviewapp.reviews.views import QUEUE_FILTERS

    make_round(crew="research")
    login_as("reviewer")
    rendered = []

    def note(sender, template, context, **extra):
        rendered.append(template.name)

    with template_rendered.connected_to(note, app):
        first, again = client.get("/").get_data(as_text=True), client.get("/").get_data(as_text=True)
        assert rendered.count(QUEUE_FILTERS) == 1
        travel = make_crew("travel")
        chosen = client.get(f"/?crew={travel}").get_data(as_text=True)
        assert rendered.count(QUEUE_FILTERS) == 2
    assert first == again
    assert crew_options(first) == [("research", False)]
    assert crew_options(chosen) == [("research", False), ("travel", True)]
    form = re.search(r'<form method="get".*?</form>', chosen, re.S)
    assert form is not None and "csrf_token" not in form.group(0)
    assert re.search(r'id="review-next-form">\s*<input type="hidden" name="csrf_token" value="[^"]+">', chosen)
