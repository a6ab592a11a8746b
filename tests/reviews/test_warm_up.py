"""The review page's reads are compiled when the app starts (outside tests), not inside
the first review page each worker serves; and the page reads what it shows with the round."""

from __future__ import annotations

import re
import uuid

import pytest

from reviewapp import create_app
from reviewapp.extensions import db
from reviewapp.models import ReviewRound
from reviewapp.reviews import services
from tests.sqlcapture import captured, captured_statements

# A text column read on its own (an attribute left unloaded, loaded when the template reads it).
LAZY_TEXT_READ = re.compile(r"SELECT (review_rounds|executions)\.(description|expected_output|meta|inputs)\b")

OUTPUT_COLUMN = re.compile(r"(?<!\()review_rounds\.output\b")  # the column itself, not substr() of it

# How the three reads of a first view that the warm-up runs are told apart.
PAGE_READS = {
    "round": lambda s: "FROM review_rounds LEFT OUTER JOIN executions" in s and "review_rounds.id =" in s,
    "earlier rounds": lambda s: "review_rounds.round_number <" in s,
    "output starts": lambda s: "substr(review_rounds.output" in s,
    "output": lambda s: s.startswith("SELECT review_rounds.output FROM review_rounds"),
    "claim": lambda s: s.startswith("UPDATE review_rounds SET claimed_by_id"),
}


def compiled_cache_hits(app):
    """Yields the list of (statement, whether its compiled form came from the engine's
    cache) of each statement sent inside the ``with`` block."""
    return captured(app, lambda statement, cursor, context: (
        statement, context.cache_hit == context.dialect.CACHE_HIT))


def _two_rounds(app, make_round) -> int:
    execution = str(uuid.uuid4())
    first = make_round("# Round one\n\nDraft.", execution_id=execution)
    with app.app_context():
        db.session.get(ReviewRound, first).state = services.RoundState.DECIDED
        db.session.commit()
    return make_round("# Round two\n\nBetter.", execution_id=execution)


@pytest.mark.parametrize("warmed", [False, True], ids=["cold", "warmed up"])
def test_a_first_view_finds_its_reads_compiled_after_the_warm_up(app, client, login_as, make_round, warmed):
    """Tests skip the warm-up at start (apps are many): ``cold`` is what a worker's first
    view met before, ``warmed up`` what it meets now."""
    round_id = _two_rounds(app, make_round)
    login_as("reviewer")
    if warmed:
        with app.app_context():
            services.warm_up_review_page()
            db.session.rollback()
    with compiled_cache_hits(app) as seen:
        assert client.get(f"/rounds/{round_id}").status_code == 200
    for name, matches in PAGE_READS.items():
        assert next(hit for statement, hit in seen if matches(statement)) is warmed, (name, seen)


def test_the_app_warms_up_at_start_and_keeps_no_connection(app, db_url):
    started = create_app({"SECRET_KEY": "s" * 40, "SQLALCHEMY_DATABASE_URI": db_url})
    with started.app_context():
        assert db.engine.pool.checkedout() == 0
    with compiled_cache_hits(started) as seen, started.app_context():
        services.get_round_for_page(0)
        db.session.rollback()
    assert [hit for _, hit in seen] == [True]


def test_the_app_starts_without_tables_and_creates_no_sqlite_file(tmp_path):
    missing = tmp_path / "missing.sqlite3"
    create_app({"SECRET_KEY": "s" * 40, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{missing}"})
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    started = create_app({"SECRET_KEY": "s" * 40, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{empty}"})
    with started.app_context():
        assert db.engine.pool.checkedout() == 0
        db.engine.dispose()


def test_the_page_reads_the_texts_it_shows_with_the_round(app, client, login_as, make_round):
    """Task description, expected output, meta and the execution's inputs come in the
    round's statement: each read on its own was a statement more on every view."""
    round_id = make_round("# Findings")
    with app.app_context():
        round_ = db.session.get(ReviewRound, round_id)
        round_.description = "Survey the heat pump market"
        round_.expected_output = "A two-page brief"
        round_.meta = {"ticket": "HP-7"}
        round_.execution.inputs = {"topic": "heat pumps in Lisbon"}
        db.session.commit()
    login_as("reviewer")
    client.get(f"/rounds/{round_id}")
    with captured_statements(app) as seen:
        page = client.get(f"/rounds/{round_id}").get_data(as_text=True)  # shown again: no claim written
    for shown in ("Survey the heat pump market", "A two-page brief", "HP-7", "heat pumps in Lisbon"):
        assert shown in page
    assert not [s for s in seen if LAZY_TEXT_READ.match(s)], seen
    (round_read,) = [s for s in seen if "FROM review_rounds LEFT OUTER JOIN executions" in s]
    assert "review_rounds.description" in round_read and "executions_1.inputs" in round_read


def test_a_claim_does_not_read_the_round_again(app, client, login_as, make_round):
    """The claim's UPDATE returns the claim; the whole row (its output with it, up to
    megabytes) was read again after every claim. The page reads the output once."""
    round_id = make_round("# Findings\n\n" + "Evidence. " * 2000)
    login_as("reviewer")
    with captured_statements(app) as seen:
        assert client.get(f"/rounds/{round_id}").status_code == 200
    output_reads = [s for s in seen if s.startswith("SELECT") and OUTPUT_COLUMN.search(s)]
    assert len(output_reads) == 1 and output_reads[0].startswith("SELECT review_rounds.output FROM"), seen
    assert any(s.startswith("UPDATE review_rounds SET claimed_by_id") and "RETURNING" in s for s in seen)
    with app.app_context():
        claimed = db.session.get(ReviewRound, round_id)
        assert claimed.claimed_by is not None and claimed.claim_expires_at is not None


def test_the_output_is_read_once_when_the_diff_needs_it_too(app, client, login_as, make_round):
    """The page reads this round's output for its own view and again for the diff against
    the earlier round (small outputs): one statement for it (the diff reads what the first
    read kept), and one for the earlier round's."""
    round_id = _two_rounds(app, make_round)
    login_as("reviewer")
    with captured(app, lambda statement, cursor, context: (statement, context.compiled_parameters)) as seen:
        page = client.get(f"/rounds/{round_id}").get_data(as_text=True)
    assert "Better." in page and "Draft." in page  # both outputs made it into the page (view and diff)
    read_of = [str(parameters) for statement, parameters in seen
               if statement.startswith("SELECT") and OUTPUT_COLUMN.search(statement)]
    assert len(read_of) == 2 and len(set(read_of)) == 2, read_of  # this round's, and the earlier one's
