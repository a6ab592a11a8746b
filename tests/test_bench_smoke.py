"""The bench still runs: seeding plus one case (webhook ingestion) at a trivial scale,
on SQLite, served in-process (no gunicorn, no wrk). Not a timing test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from bench import run
from bench.harness import cookie_header, login
from bench.seed import BENCH_PASSWORD, bench_app, seed, seed_review_task
from reviewapp.amp.serving import BackgroundServer
from reviewapp.extensions import db
from reviewapp.models import Decision, ReviewRound, RoundState


@contextmanager
def served(app) -> Iterator[str]:
    """``app`` served in-process on loopback, its PUBLIC_URL pointing there; yields the URL."""
    server = BackgroundServer(app).start()
    try:
        app.config["PUBLIC_URL"] = server.url
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def bench_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    summary = seed(url, decisions=40, pending=12, output_bytes=512)
    return url, summary


def test_seed_fills_the_database(bench_db):
    url, summary = bench_db
    round_id = seed_review_task(url, output_bytes=4000, earlier=5)
    app = bench_app(url)
    with app.app_context():
        assert summary["decisions"] == 40
        assert db.session.scalar(select(func.count()).select_from(Decision)) == 40 + 5
        pending = select(func.count()).select_from(ReviewRound).where(ReviewRound.state == RoundState.PENDING)
        assert db.session.scalar(pending) == 12 + 1
        task = db.session.get(ReviewRound, round_id)
        assert task.round_number == 6 and task.state is RoundState.PENDING
        assert len(task.output) > 3000


def test_webhook_case_runs_and_verifies_storage(bench_db):
    url, _ = bench_db
    app = bench_app(url)
    with served(app) as server_url:
        res = run.Results("sqlite")
        scale = run.Scale(decisions=40, pending=12, seconds=1, decides=2, hooks=25, metric_calls=1)
        run.case_webhooks(res, server_url, app, scale)
    checks = res.checks["webhooks"]
    runs = run.WEBHOOK_RUNS  # bursts of 25, each of new executions
    assert checks["sent"] == 25 * runs and checks["unique"] == 20 * runs
    assert checks["rounds"] == 20 * runs and checks["accepted"] == 20 * runs and checks["duplicate"] == 5 * runs
    assert checks["ok"] is True
    figure = res.figures["webhook burst (20% duplicates)"]
    assert figure.errors == 0 and figure.requests == 25 and figure.rps > 0
    assert len(figure.extra["req/s of the runs"].split("/")) == runs
    assert res.checks["webhooks_requests_client"]["ok"] is True  # the same burst, the earlier rounds' client
    # only the budgets of the cases that ran are held (and printed)
    [(name, measured, met)] = run.budgets(res, {"webhooks"})
    assert name.startswith("webhooks >= 500/s") and measured.endswith("/s, ok") and met is (figure.rps >= 500)


def test_decide_case_runs_both_ways_and_every_job_succeeds(tmp_path):
    sandbox = run.Sandbox()
    try:
        url = f"sqlite:///{tmp_path / 'decide.sqlite3'}"
        seed(url, decisions=8, pending=4, output_bytes=256, sandbox_url=sandbox.url)
        app = bench_app(url)
        with served(app) as server_url:
            res = run.Results("sqlite")
            scale = run.Scale(decisions=8, pending=4, seconds=1, decides=3, hooks=5, metric_calls=1)
            run.case_decide(res, server_url, app, sandbox, scale)
    finally:
        sandbox.close()
    assert res.checks["decide_jobs"] == {"succeeded": 6}
    for name in ("decision submit -> /resume", "decision submit -> /resume, one at a time"):
        figure = res.figures[name]
        assert figure.errors == 0 and figure.requests == 3
    assert "decide_overhead_p50_ms" in res.checks and "decide_overhead_one_at_a_time_p50_ms" in res.checks
    four = res.figures["decision submit -> /resume"]
    # each submit less its own /resume call (logged by the app), which took some time
    assert 0 < res.checks["decide_overhead_own_call_p50_ms"] < four.p50_ms
    assert four.extra["CPU ms per decision"].startswith("app ") and "sandbox" in four.extra["CPU ms per decision"]


def test_export_case_exports_every_row_each_run(bench_db, monkeypatch):
    """(In-process instead of gunicorn: the worker is this process.)"""
    url, summary = bench_db
    app = bench_app(url)

    @contextmanager
    def in_process(env, **options):
        with served(app) as server_url:
            yield SimpleNamespace(url=server_url, worker_pids=lambda: [os.getpid()])

    monkeypatch.setattr(run, "gunicorn", in_process)
    res = run.Results("sqlite")
    run.case_export(res, {})
    figure = res.figures["CSV export (whole history)"]
    assert res.checks["export"]["rows"] == summary["decisions"]
    runs = [float(rate) for rate in figure.extra["rows/s of the runs"].split("/")]
    assert len(runs) == run.EXPORT_RUNS and min(runs) <= res.checks["export"]["rows_per_s"] <= max(runs)
    assert res.checks["export"]["peak_rss_mb"] > 0


def test_settle_folds_the_wal_into_the_database(bench_db, tmp_path):
    url, summary = bench_db
    wal = Path(f"{tmp_path / 'bench.sqlite3'}-wal")
    app = bench_app(url)
    with app.app_context():  # a write, so the WAL holds something; the pool keeps its
        # connection open, so closing does not checkpoint it away before settle() does
        db.session.execute(ReviewRound.__table__.update().where(ReviewRound.id == 1).values(agent="settle me"))
        db.session.commit()
        assert wal.stat().st_size > 0
    run.settle(url)
    assert wal.stat().st_size == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Decision)) == summary["decisions"]
        assert db.session.scalar(select(ReviewRound.agent).where(ReviewRound.id == 1)) == "settle me"


def test_pages_in_turn_times_both_pages_and_refuses_a_failed_page(bench_db, monkeypatch):
    url, _ = bench_db
    app = bench_app(url)
    monkeypatch.setattr(run, "IN_TURN_PAIRS", 6)
    monkeypatch.setattr(run, "IN_TURN_WARMUP", 1)
    with served(app) as server_url:
        lead = cookie_header(login(server_url, "lead", BENCH_PASSWORD))
        first_ms, deep_ms = run._pages_in_turn(server_url, lead, "/audit/history", "/audit/history?decision=approve")
        assert first_ms > 0 and deep_ms > 0
        with pytest.raises(RuntimeError, match="answered 302"):  # not signed in: the login redirect
            run._pages_in_turn(server_url, "", "/audit/history", "/audit/history?decision=approve")
