"""The app under benchmark, plus the two baselines served by the same process.

- ``/_bench/plain``: a minimal Flask endpoint returning a static string;
- ``/_bench/fortunes``: one small ORM query + a template, as TechEmpower's "fortunes"
  test asks: ORM objects fetched, one more added at request time, the list sorted by
  its text, rendered by a compiled template that escapes.

Only the benchmark loads this module; the product app has no such routes.
"""

from __future__ import annotations

import os
import re
import time
from typing import NamedTuple

from flask import render_template
from sqlalchemy import select

from reviewapp import create_app
from reviewapp.access import public
from reviewapp.extensions import csrf, db
from reviewapp.models import User

FORTUNES = """{% autoescape true %}<!doctype html><html><head><title>Fortunes</title></head><body>
<table><tr><th>id</th><th>message</th></tr>
{% for fortune in fortunes %}<tr><td>{{ fortune.id }}</td><td>{{ fortune.message }}</td></tr>{% endfor %}
</table></body></html>{% endautoescape %}"""


class Fortune(NamedTuple):
    id: int
    message: str


EXTRA_FORTUNE = Fortune(0, "Additional fortune added at request time.")

app = create_app()
# Compiled once, as an app's template files are (render_template_string compiles the
# source on every call, which more than doubled this baseline's view time: 2.64 against 1.25 ms).
FORTUNES_TEMPLATE = app.jinja_env.from_string(FORTUNES)


@public
def plain() -> str:
    return "Hello, World!"


@public
def fortunes() -> str:
    found = [Fortune(user.id, user.username) for user in db.session.scalars(select(User).order_by(User.id).limit(12))]
    return render_template(FORTUNES_TEMPLATE, fortunes=sorted([*found, EXTRA_FORTUNE], key=lambda f: f.message))


app.add_url_rule("/_bench/plain", "bench_plain", csrf.exempt(plain))
app.add_url_rule("/_bench/fortunes", "bench_fortunes", csrf.exempt(fortunes))


def _cpu_logged(wsgi_app, path: str):
    """Append each request's thread CPU and wall time (ms) and its path (numbers as N) to ``path``:
    where a worker's CPU goes, request by request (``BENCH_CPU_LOG``, for profiling)."""

    def logged(environ, start_response):
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return wsgi_app(environ, start_response)
        finally:
            route = re.sub(r"\d+", "N", environ.get("PATH_INFO", ""))
            with open(path, "a") as log:
                log.write(f"{environ['REQUEST_METHOD']} {route} {(time.thread_time() - cpu) * 1000:.3f} "
                          f"{(time.perf_counter() - wall) * 1000:.3f}\n")

    return logged


if os.environ.get("BENCH_CPU_LOG"):
    app.wsgi_app = _cpu_logged(app.wsgi_app, os.environ["BENCH_CPU_LOG"])  # type: ignore[method-assign]
