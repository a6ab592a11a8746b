"""A burst of human-input notifications from many threads at once, over real loopback
HTTP, with redeliveries among them: every one answered, each new one stored once, each
redelivery recorded as a duplicate (the receivers' writes take turns on SQLite)."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from reviewapp.extensions import db
from reviewapp.models import ReviewRound, WebhookDelivery

from .test_receivers import notice

UNIQUE, REDELIVERED, THREADS = 48, 16, 8


def test_a_burst_with_redeliveries_from_many_threads(app, crew, secret_of, live_server):
    research = crew("research")
    url = f"{live_server.url}/hooks/amp/{research}/human-input"
    headers = {"Authorization": f"Bearer {secret_of(research)}"}
    originals = [notice(f"Output {i}", execution=f"burst-{i}") for i in range(UNIQUE)]
    burst = originals + random.Random(7).sample(originals, REDELIVERED)
    random.Random(8).shuffle(burst)

    def send(payload: dict) -> tuple[int, str]:
        with requests.Session() as http:
            answer = http.post(url, json=payload, headers=headers, timeout=30)
        return answer.status_code, answer.json().get("status", "")

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(send, burst))

    assert {code for code, _ in answers} == {200}
    assert Counter(status for _, status in answers) == {"accepted": UNIQUE, "duplicate": REDELIVERED}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ReviewRound)) == UNIQUE
        outcomes = dict(db.session.execute(
            select(WebhookDelivery.outcome, func.count()).group_by(WebhookDelivery.outcome)).all())
        assert outcomes == {"accepted": UNIQUE, "duplicate": REDELIVERED}
