"""History page: columns, filters, a reviewer's own view, search, bad input."""

from __future__ import annotations

import pytest

from reviewapp.models import JobState
from tests.audit.factories import at
from tests.conftest import is_postgres


def rows_of(response) -> int:
    """Number of decision rows on a history page."""
    return response.get_data(as_text=True).count('class="feedback"')


@pytest.fixture
def seeded(factory):
    """Four decisions over three days, two crews, two reviewers."""
    factory.decided(crew="research", reviewer="rita", approve=True, feedback="solid sources alpha",
                    received_at=at(0), output="The quarterly numbers are in.")
    factory.decided(crew="research", reviewer="sam", approve=False, feedback="needs citations beta",
                    reason="incomplete", received_at=at(days=1), job_state=JobState.FAILED, http_status=500)
    factory.decided(crew="ops", reviewer="rita", approve=False, feedback="wrong region gamma",
                    received_at=at(days=2), job_state=JobState.STALE, http_status=400)
    factory.decided(crew="ops", reviewer="sam", approve=True, feedback="ok delta",
                    received_at=at(days=2, minutes=30), job_state=None)
    factory.commit()


def test_history_shows_every_column(client, login_as, seeded):
    login_as("lead")
    page = client.get("/audit/history").get_data(as_text=True)
    assert rows_of_text(page) == 4
    for text in ("2025-03-04 09:05:00", "sam", "research", "research_task", "revise",
                 "incomplete", "needs citations beta", "failed", "HTTP 500", "1 attempt"):
        assert text in page
    assert "no job" in page  # the decision without a resume job


def rows_of_text(page: str) -> int:
    return page.count('class="feedback"')


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"alpha", "beta", "gamma", "delta"}),
        ("decision=approve", {"alpha", "delta"}),
        ("decision=revise", {"beta", "gamma"}),
        ("outcome=failed", {"beta"}),
        ("outcome=stale", {"gamma"}),
        ("from=2025-03-04", {"beta", "gamma", "delta"}),
        ("to=2025-03-04", {"alpha", "beta"}),  # the 'to' day is included
        ("from=2025-03-04&to=2025-03-04", {"beta"}),
        ("from=2025-03-06", set()),
    ],
)
def test_filters(client, login_as, seeded, query, expected):
    login_as("lead")
    page = client.get(f"/audit/history?{query}").get_data(as_text=True)
    found = {word for word in ("alpha", "beta", "gamma", "delta") if f" {word}</div>" in page}
    assert found == expected
    assert rows_of_text(page) == len(expected)


def test_crew_and_reviewer_filters(app, client, login_as, seeded, factory):
    from sqlalchemy import select

    from reviewapp.extensions import db
    from reviewapp.models import Crew, User

    crew_id = db.session.scalar(select(Crew.id).where(Crew.name == "ops"))
    sam_id = db.session.scalar(select(User.id).where(User.username == "sam"))
    login_as("lead")
    page = client.get(f"/audit/history?crew={crew_id}").get_data(as_text=True)
    assert "gamma" in page and "delta" in page and "alpha" not in page
    page = client.get(f"/audit/history?reviewer={sam_id}&crew={crew_id}").get_data(as_text=True)
    assert rows_of_text(page) == 1 and "delta" in page


def test_reviewer_sees_only_their_own_decisions(client, login_as, factory):
    me = login_as("reviewer", "rita")
    factory.decided(reviewer="rita", feedback="mine one")
    factory.decided(reviewer="sam", feedback="theirs one", received_at=at(5))
    factory.commit()
    page = client.get("/audit/history").get_data(as_text=True)
    assert "Your decisions" in page
    assert "mine one" in page and "theirs one" not in page
    # Asking for someone else's decisions still shows only one's own.
    from sqlalchemy import select

    from reviewapp.extensions import db
    from reviewapp.models import User

    sam_id = db.session.scalar(select(User.id).where(User.username == "sam"))
    page = client.get(f"/audit/history?reviewer={sam_id}").get_data(as_text=True)
    assert "theirs one" not in page and "mine one" in page
    assert me.username == "rita"
    # No reviewer filter, no export links, no timeline links for a reviewer.
    assert 'name="reviewer"' not in page
    assert "export.csv" not in page
    assert "/audit/executions/" not in page


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("citations", {"beta"}),  # feedback
        ("CITATIONS", {"beta"}),  # case-insensitive
        ("quarterly", {"alpha"}),  # the round's output
        ("wrong region", {"gamma"}),  # every word
        ("wrong alpha", set()),  # words from different decisions
        ("nothingmatches", set()),
        ("%", set()),  # LIKE wildcards are literal
        ("_", set()),
    ],
)
def test_search_over_feedback_and_output(client, login_as, seeded, q, expected):
    login_as("lead")
    page = client.get("/audit/history", query_string={"q": q}).get_data(as_text=True)
    found = {word for word in ("alpha", "beta", "gamma", "delta") if f" {word}</div>" in page}
    assert found == expected


def test_search_combines_with_filters(client, login_as, seeded):
    login_as("lead")
    page = client.get("/audit/history", query_string={"q": "citations", "decision": "approve"})
    assert rows_of(page) == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("crew=abc", "Choose a crew from the list."),
        ("crew=99999999999", "Choose a crew from the list."),
        ("reviewer=-1", "Choose a reviewer from the list."),
        ("decision=maybe", "The decision filter must be one of: approve, revise."),
        ("outcome=exploded", "The outcome filter must be one of"),
        ("from=2025-13-01", "The &#39;from&#39; date must look like 2025-01-31."),
        ("from=2025-03-05&to=2025-03-01", "The &#39;from&#39; date is after the &#39;to&#39; date."),
        ("to=9999-12-31", "too far in the future"),
        ("q=" + "x" * 201, "The q filter is longer than 200 characters."),
    ],
)
def test_bad_filters_are_400_with_a_message(client, login_as, query, message):
    login_as("lead")
    response = client.get(f"/audit/history?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_unknown_crew_id_is_just_empty(client, login_as, seeded):
    login_as("lead")
    response = client.get("/audit/history?crew=424242")
    assert response.status_code == 200
    assert "No decisions match these filters." in response.get_data(as_text=True)


def test_a_search_that_cannot_be_listed_in_time_is_400_with_a_message(app, client, login_as, seeded, monkeypatch):
    """PostgreSQL gathers every match before sorting by date: a word in most outputs could
    take a minute at a million decisions. It stops at HISTORY_SEARCH_TIMEOUT_SECONDS and
    the lead is told how to narrow the search. (SQLite has no statement timeout.)"""
    from sqlalchemy import and_, func

    from reviewapp.audit import history

    matches = history.text_matches

    def slow_matches(column, q):  # each candidate row now costs 50 ms, the time allowed is 20
        return and_(matches(column, q), func.pg_sleep(0.05).is_not(None)) if is_postgres() else matches(column, q)

    monkeypatch.setattr(history, "text_matches", slow_matches)
    app.config["HISTORY_SEARCH_TIMEOUT_SECONDS"] = 0.02
    login_as("lead")
    response = client.get("/audit/history", query_string={"q": "alpha"})
    if not is_postgres():
        assert response.status_code == 200 and rows_of(response) == 1
        return
    assert response.status_code == 400
    assert "match too many decisions to list in time" in response.get_data(as_text=True)
    assert rows_of(client.get("/audit/history")) == 4  # the session goes on


def test_a_search_leaves_the_planner_settings_as_they_were(app, seeded):
    """Within the same transaction: the settings the search ran with are put back."""
    from sqlalchemy import func, select

    from reviewapp.audit.filters import HistoryFilters
    from reviewapp.audit.history import history_page
    from reviewapp.extensions import db

    with app.app_context():
        shown = select(func.current_setting("statement_timeout"), func.current_setting("work_mem"))
        before = tuple(db.session.execute(shown).one()) if is_postgres() else None
        assert len(history_page(HistoryFilters(q="alpha")).rows) == 1
        if is_postgres():
            assert tuple(db.session.execute(shown).one()) == before
            assert before is not None and before[0] == "0"  # no timeout outside the search


def test_the_history_reads_a_rounds_columns_from_its_covering_index(app, seeded):
    """SQLite keeps a long output in the round's row: received_at, stored after it, would
    be reached by walking the whole output. The listing index has every round column the
    history needs. (PostgreSQL keeps long values out of the row.)"""
    from sqlalchemy import text

    from reviewapp.audit.filters import HistoryFilters
    from reviewapp.audit.history import FIRST, _page_statement, _Shape
    from reviewapp.extensions import db
    from tests.test_migrations import search_index_definition

    with app.app_context():
        if is_postgres():  # no hint there (long values live out of the row); the index is there
            with db.engine.connect() as conn:
                assert search_index_definition(conn, "ix_review_rounds_listing") is not None
            return
        stmt = _page_statement(_Shape.of(HistoryFilters()), FIRST)
        sql = str(stmt.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
    rounds = [detail for detail in plan if "review_rounds" in detail]
    assert rounds and all("COVERING INDEX ix_review_rounds_listing" in detail for detail in rounds), plan


def test_a_page_after_a_cursor_runs_on_a_generic_plan_on_postgresql(app, client, login_as, factory):
    """PostgreSQL would plan the page anew for every cursor (~2 ms at 1M decisions)."""

    for day in range(60):
        factory.decided(crew="research", reviewer="rita", approve=True, feedback=f"day {day}", received_at=at(day))
    factory.commit()
    login_as("lead")
    older = client.get("/audit/history").get_data(as_text=True).split("after=")[1].split('"')[0]
    with planner_modes(app) as modes:
        assert rows_of(client.get(f"/audit/history?after={older}")) == 10
    page_modes = [mode for statement, mode in modes if statement.startswith("SELECT decisions.id")]
    if not is_postgres():
        assert page_modes == [None]
        return
    assert page_modes == ["force_generic_plan"]
    assert {mode for statement, mode in modes if not statement.startswith("SELECT decisions.id")} == {"auto"}


def test_planner_settings_hold_inside_and_are_put_back(app):
    from sqlalchemy import func, select

    from reviewapp.audit.dialect import GENERIC_PLAN, planner_settings
    from reviewapp.extensions import db

    shown = select(func.current_setting("plan_cache_mode"), func.current_setting("work_mem"))
    with app.app_context():
        if not is_postgres():
            with planner_settings(**GENERIC_PLAN):  # nothing to set elsewhere
                assert db.session.scalar(select(1)) == 1
            return
        before = tuple(db.session.execute(shown).one())
        with planner_settings(plan_cache_mode="force_generic_plan", work_mem="7MB"):
            assert tuple(db.session.execute(shown).one()) == ("force_generic_plan", "7MB")
        assert tuple(db.session.execute(shown).one()) == before
        db.session.rollback()


def planner_modes(app):
    """(statement, the plan_cache_mode it ran under: None on SQLite) of each statement
    SQLAlchemy sends inside the ``with`` block."""
    from tests.sqlcapture import captured

    def mode(statement, cursor, context):
        if not is_postgres():
            return statement, None
        return statement, cursor.connection.execute("SELECT current_setting('plan_cache_mode')").fetchone()[0]

    return captured(app, mode)
