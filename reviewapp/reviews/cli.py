"""CLI for the review loop: the background worker."""

from __future__ import annotations

import signal
import threading

import click
from flask import Flask, current_app


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def register(app: Flask) -> None:
    """Add the ``worker`` command to ``app.cli``."""

    @app.cli.command("worker")
    @click.option("--once", is_flag=True, help="Run a single pass and exit.")
    @click.option(
        "--interval", type=click.FloatRange(min=0.1, max=3600), default=1.0, show_default=True,
        help="Seconds to wait between passes.",
    )
    def worker_command(once: bool, interval: float) -> None:
        """Poll AMP for execution status and deliver resume jobs (with retries)."""
        from ..worker import run_forever, run_once

        app_obj = current_app._get_current_object()  # type: ignore[attr-defined]
        if once:
            summary = run_once(app_obj)
            click.echo(
                f"Checked {summary['status_checked']} execution(s), "
                f"worked on {summary['delivered']} resume job(s)."
            )
            return
        stop = threading.Event()
        _stop_on_signals(stop)
        click.echo(f"Worker running (every {interval:g} s); stop with Ctrl+C or SIGTERM.")
        run_forever(app_obj, stop=stop, interval=interval)
        click.echo("Worker stopped.")
