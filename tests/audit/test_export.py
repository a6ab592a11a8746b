"""Streamed CSV / JSON Lines export: content, filters, formula neutralising, no secrets."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import select

from reviewapp.audit import export
from reviewapp.audit.export import COLUMNS, neutralise
from reviewapp.audit.filters import HistoryFilters, parse_history_filters
from reviewapp.extensions import db
from reviewapp.models import AuditEvent, Crew, JobState, User
from tests.audit.factories import AuditFactory, at


def csv_rows(response) -> list[dict[str, str]]:
    return csv_rows_of(response.get_data())


def csv_rows_of(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode(), newline="")))


@pytest.fixture
def two(factory):
    factory.decided(crew="research", reviewer="rita", approve=True, feedback="Fine, ship it.",
                    received_at=at(0), wait_minutes=5)
    factory.decided(crew="ops", reviewer="sam", approve=False, feedback="Line one\nline, \"two\"",
                    reason="incomplete", received_at=at(days=1), job_state=JobState.FAILED, http_status=503)
    factory.commit()


def test_csv_has_the_filtered_history_oldest_first(client, login_as, two):
    login_as("lead")
    response = client.get("/audit/history/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="reviewapp-history-')
    rows = csv_rows(response)
    assert list(rows[0].keys()) == list(COLUMNS)
    assert [r["feedback"] for r in rows] == ["Fine, ship it.", 'Line one\nline, "two"']
    first, second = rows
    assert first == {
        "decision_id": "1", "decided_at": "2025-03-03T09:05:00+00:00", "reviewer": "rita",
        "crew": "research", "execution_id": "1", "kickoff_id": "00000000-0000-4000-8000-000000000001",
        "task_id": "research_task", "round": "1", "decision": "approve", "reason_code": "",
        "feedback": "Fine, ship it.", "notified_at": "2025-03-03T09:00:00+00:00",
        "resume_state": "succeeded", "resume_outcome": "resumed", "last_http_status": "200",
        "attempts": "1",
    }
    assert (second["decision"], second["reason_code"], second["resume_state"], second["last_http_status"]) == (
        "revise", "incomplete", "failed", "503")


def test_export_applies_the_filters(client, login_as, two):
    login_as("lead")
    rows = csv_rows(client.get("/audit/history/export.csv?decision=revise"))
    assert [r["reviewer"] for r in rows] == ["sam"]
    rows = csv_rows(client.get("/audit/history/export.csv?q=ship"))
    assert [r["reviewer"] for r in rows] == ["rita"]
    assert client.get("/audit/history/export.csv?from=nope").status_code == 400


def test_jsonl_keeps_exact_values(client, login_as, two):
    login_as("lead")
    response = client.get("/audit/history/export.jsonl")
    assert response.status_code == 200
    assert response.mimetype == "application/jsonl"
    lines = response.get_data(as_text=True).splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2
    assert records[1]["feedback"] == 'Line one\nline, "two"'
    assert records[1]["last_http_status"] == 503 and records[0]["reason_code"] is None
    assert list(records[0]) == list(COLUMNS)


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_cells_are_neutralised(client, login_as, factory, start):
    payload = f"{start}HYPERLINK(\"http://evil.test\",\"x\")"
    factory.decided(feedback=payload, reason=f"{start}cmd", task_id=f"{start}task", crew=f"{start}crew")
    factory.commit()
    login_as("lead")
    row = csv_rows(client.get("/audit/history/export.csv"))[0]
    assert row["feedback"] == "'" + payload
    assert row["reason_code"] == f"'{start}cmd"
    assert row["task_id"] == f"'{start}task"
    assert row["crew"] == f"'{start}crew"
    record = json.loads(client.get("/audit/history/export.jsonl").get_data(as_text=True))
    assert record["feedback"] == payload  # JSON Lines is for programs: exact value


def test_neutralise_leaves_other_values_alone():
    assert neutralise("fine") == "fine"
    assert neutralise("a=b") == "a=b"
    assert neutralise(-5) == -5
    assert neutralise(None) is None


def test_xss_payloads_are_plain_data_in_exports(client, login_as, factory):
    factory.decided(feedback="<script>alert(1)</script>", reviewer="<img src=x onerror=alert(1)>")
    factory.commit()
    login_as("lead")
    response = client.get("/audit/history/export.csv")
    assert response.mimetype == "text/csv"  # never served as HTML
    assert csv_rows(response)[0]["feedback"] == "<script>alert(1)</script>"


def test_export_is_streamed_in_chunks(app, client, login_as, monkeypatch):
    """Several cursor batches and several response chunks. No app context is held
    around the request here (unlike the factory fixture), as in production: the
    view's session is closed before streaming starts, and on PostgreSQL the rows come
    from a server-side cursor that must belong to the streaming context."""
    monkeypatch.setattr(export, "EXPORT_BATCH", 50)
    count = 2 * 50 + 10
    with app.app_context():
        factory = AuditFactory()
        for n in range(count):
            factory.decided(feedback=f"row {n}", received_at=at(n), job_state=None)
        factory.commit()
    login_as("lead")
    response = client.get("/audit/history/export.csv", buffered=False)
    assert response.is_streamed
    chunks = list(response.response)
    response.close()
    assert len(chunks) == 1 + 3  # the header, then at most EXPORT_BATCH rows per chunk
    text = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks).decode()
    assert text.count("\r\n") == count + 1
    assert f"row {count - 1}" in text


def test_no_secrets_in_the_export(client, login_as, factory):
    factory.decided(feedback="fine")
    factory.commit()
    login_as("lead")
    text = client.get("/audit/history/export.csv").get_data(as_text=True)
    text += client.get("/audit/history/export.jsonl").get_data(as_text=True)
    for secret_ish in ("not-a-real-ciphertext", "beef", "human_feedback", "token", "password"):
        assert secret_ish not in text


def test_an_export_is_itself_audited(client, login_as, two):
    lead = login_as("lead")
    client.get("/audit/history/export.jsonl?decision=revise")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "history_exported"))
    assert event.actor_name == lead.username
    assert event.details == {"format": "jsonl", "filters": {"decision": "revise"}}


@pytest.mark.parametrize("url", ["/audit/history/export.csv", "/audit/history/export.jsonl"])
def test_reviewers_cannot_export(client, login_as, url):
    login_as("reviewer")
    assert client.get(url).status_code == 403


def test_times_are_written_as_isoformat(client, login_as, factory):
    """The database formats the times; they read exactly as ``datetime.isoformat()``."""
    exact = factory.decided(received_at=at(0), wait_minutes=5)
    fractional = factory.decided(received_at=at(days=1), wait_minutes=5.5 + 0.123456 / 60)
    factory.commit()
    expected = [exact.created_at.isoformat(), fractional.created_at.isoformat()]
    assert expected[1].endswith(".123456+00:00")
    login_as("lead")
    assert [r["decided_at"] for r in csv_rows(client.get("/audit/history/export.csv"))] == expected
    lines = client.get("/audit/history/export.jsonl").get_data(as_text=True).splitlines()
    assert [json.loads(line)["notified_at"] for line in lines] == [at(0).isoformat(), at(days=1).isoformat()]


# Cells that CSV writers quote, escape or could write differently: PostgreSQL's COPY and
# Python's csv module must agree on every one of them.
AWKWARD = [
    "", "plain", "a,b", 'say "hi"', '"', ",", "line\nbreak", "crlf\r\nend", "cr\ronly",
    "=1+2", "-", "+x", "@SUM(A1)", "\tlead", "\rlead", "ünïcødé ✓ 日本語 🙂", " spaced ", "\\.",
    "tab\tinside", "trailing\n", "'already",
]


@pytest.fixture
def awkward(factory):
    for n, text in enumerate(AWKWARD):
        factory.decided(
            crew=f"crew {text}", reviewer=f"rev{n}", approve=n % 4 != 1, feedback=text, reason=text or None, task_id=f"{text}task",
            received_at=at(n, days=n), wait_minutes=5 + n * 0.0101,
            job_state=(None, JobState.FAILED, JobState.SUCCEEDED)[n % 3], http_status=(None, 503)[n % 2],
        )
    factory.commit()


def test_csv_is_the_same_bytes_on_every_path(client, login_as, awkward):
    """On PostgreSQL the database writes the CSV (COPY): byte for byte what Python's csv
    module writes from the same rows (on SQLite that is the path itself)."""
    login_as("lead")
    body = client.get("/audit/history/export.csv").get_data()
    assert body == export.CSV_HEADER + b"".join(export.written_csv(HistoryFilters()))
    assert body.count(b"\r\n") >= len(AWKWARD) + 1
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))[1:]
    assert [row[COLUMNS.index("feedback")] for row in rows] == [neutralise(text) for text in AWKWARD]
    assert [row[COLUMNS.index("reason_code")] for row in rows] == [neutralise(text) for text in AWKWARD]
    assert [row[COLUMNS.index("last_http_status")] for row in rows] == [
        "503" if n % 3 and n % 2 else "" for n in range(len(AWKWARD))]
    assert {row[COLUMNS.index("attempts")] for row in rows[::3]} == {""}  # no resume job


def _ids(model, name_column, value):
    return db.session.scalar(select(model.id).where(name_column == value))


@pytest.mark.parametrize("args", [
    {"q": "break", "from": "2025-03-03", "decision": "approve"},
    {"crew": "crew plain"}, {"reviewer": "rev3"}, {"outcome": "failed"}, {"decision": "revise"},
    {"from": "2025-03-10", "to": "2025-03-20"},
])
def test_csv_filters_give_the_same_bytes_on_every_path(client, login_as, awkward, args):
    """Every filter shape (the crew and the reviewer are parameters of the cached
    statement, the state and the dates are written into it)."""
    if "crew" in args:
        args = args | {"crew": str(_ids(Crew, Crew.name, args["crew"]))}
    if "reviewer" in args:
        args = args | {"reviewer": str(_ids(User, User.username, args["reviewer"]))}
    login_as("lead")
    body = client.get("/audit/history/export.csv", query_string=args).get_data()
    assert body == export.CSV_HEADER + b"".join(export.written_csv(parse_history_filters(args)))
    assert 0 < len(csv_rows_of(body)) < len(AWKWARD)
    if "q" in args:
        assert [row["feedback"] for row in csv_rows_of(body)] == ["line\nbreak"]


@pytest.mark.parametrize("q", ["it's", "back\\slash", "100%", "%(crew_id)s", "'); SELECT 1; --"])
def test_search_text_is_only_ever_a_value_in_the_csv_statement(client, login_as, awkward, q):
    """PostgreSQL's COPY takes its values merged into the statement: quotes, backslashes
    and percent signs in the search box stay a search."""
    login_as("lead")
    response = client.get("/audit/history/export.csv", query_string={"q": q})
    assert response.status_code == 200
    assert response.get_data() == export.CSV_HEADER + b"".join(export.written_csv(HistoryFilters(q=q)))


def test_a_csv_export_left_half_read_leaves_the_app_working(app, client, login_as, monkeypatch):
    """A client that goes away mid-export: the stream is closed (on PostgreSQL the COPY
    is cancelled), and the next export is whole."""
    monkeypatch.setattr(export, "EXPORT_BATCH", 50)
    with app.app_context():
        factory = AuditFactory()
        for n in range(200):
            factory.decided(feedback=f"row {n}", received_at=at(n), job_state=None)
        factory.commit()
    login_as("lead")
    response = client.get("/audit/history/export.csv", buffered=False)
    chunks = iter(response.response)
    next(chunks), next(chunks)
    response.close()
    assert len(csv_rows_of(client.get("/audit/history/export.csv").get_data())) == 200
