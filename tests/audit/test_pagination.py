"""Keyset pagination edges: empty, exactly one page, ties, the end, damaged cursors."""

from __future__ import annotations

import re

import pytest

from reviewapp.audit.pagination import PAGE_SIZE, Cursor, CursorError
from tests.audit.factories import T0, at

OLDER = re.compile(r'rel="next" href="[^"]*[?&]after=([0-9.]+)')
NEWER = re.compile(r'rel="prev" href="[^"]*[?&]before=([0-9.]+)')
ROW_ID = re.compile(r'<div class="feedback">decision (\d+)</div>')


def make_decisions(factory, count: int, *, same_time: bool = False) -> None:
    for n in range(count):
        factory.decided(feedback=f"decision {n}", received_at=T0 if same_time else at(n), job_state=None)
    factory.commit()


def shown(page: str) -> list[int]:
    return [int(n) for n in ROW_ID.findall(page)]


def links(page: str) -> tuple[str | None, str | None]:
    newer, older = NEWER.search(page), OLDER.search(page)
    return (newer.group(1) if newer else None, older.group(1) if older else None)


def get(client, **args) -> str:
    response = client.get("/audit/history", query_string=args)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_empty_history_has_no_page_links(client, login_as):
    login_as("lead")
    page = get(client)
    assert "No decisions match these filters." in page
    assert links(page) == (None, None)


def test_exactly_one_page(client, login_as, factory):
    make_decisions(factory, PAGE_SIZE)
    login_as("lead")
    page = get(client)
    assert shown(page) == list(reversed(range(PAGE_SIZE)))
    assert links(page) == (None, None)


def test_one_more_than_a_page_and_back(client, login_as, factory):
    make_decisions(factory, PAGE_SIZE + 1)
    login_as("lead")
    first = get(client)
    assert len(shown(first)) == PAGE_SIZE
    newer, older = links(first)
    assert newer is None and older is not None

    second = get(client, after=older)
    assert shown(second) == [0]
    newer, older = links(second)
    assert older is None and newer is not None

    back = get(client, before=newer)
    assert shown(back) == shown(first)
    assert links(back)[0] is None  # reached the newest rows: a first page again


def test_ties_in_time_are_walked_once_each_way(client, login_as, factory):
    """Same created_at for every row: the id breaks ties, nothing is skipped or repeated."""
    total = 2 * PAGE_SIZE + 7
    make_decisions(factory, total, same_time=True)
    login_as("lead")
    seen, pages, args = [], [], {}
    while True:
        page = get(client, **args)
        pages.append(shown(page))
        seen += shown(page)
        older = links(page)[1]
        if older is None:
            break
        args = {"after": older}
    assert len(pages) == 3 and [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 7]
    assert seen == list(reversed(range(total)))

    newer = links(page)[0]
    middle = get(client, before=newer)
    assert shown(middle) == pages[1]
    first = get(client, before=links(middle)[0])
    assert shown(first) == pages[0]


def test_cursor_at_the_end_shows_an_empty_page_with_a_way_back(client, login_as, factory):
    make_decisions(factory, 3)
    login_as("lead")
    from reviewapp.extensions import db
    from reviewapp.models import Decision

    oldest = db.session.get(Decision, 1)
    page = get(client, after=Cursor(oldest.created_at, oldest.id).encode(), decision="approve")
    assert "No more decisions here." in page
    assert links(page) == (None, None)
    assert 'href="/audit/history?decision=approve">Back to the newest' in page


def test_filters_survive_in_page_links(client, login_as, factory):
    make_decisions(factory, PAGE_SIZE + 2)
    login_as("lead")
    page = get(client, decision="approve", q="decision")
    assert re.search(r'after=[0-9.]+&amp;decision=approve&amp;q=decision"', page)


@pytest.mark.parametrize(
    "args",
    [
        {"after": "garbage"},
        {"after": "1.2.3"},
        {"after": "-5.1"},
        {"before": "1.99999999999999999999"},
        {"after": "12345678901234567.1"},
        {"after": "1.1", "before": "1.1"},
        {"after": """ 1.1' OR '1'='1"""},
    ],
)
def test_damaged_cursor_is_400_with_a_message(client, login_as, args):
    login_as("lead")
    response = client.get("/audit/history", query_string=args)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "page link" in text


def test_cursor_far_in_the_future_or_past_is_fine(client, login_as, factory):
    make_decisions(factory, 2)
    login_as("lead")
    assert len(shown(get(client, after="9999999999999999.999999999999999999"))) == 2
    assert shown(get(client, before="0.0")) == [1, 0]


def test_cursor_round_trip():
    cursor = Cursor(at(3), 42)
    assert Cursor.decode(cursor.encode()) == cursor
    with pytest.raises(CursorError):
        Cursor.decode("253402300800000000.1")
