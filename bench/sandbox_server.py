"""The AMP sandbox as its own process for the bench (so its work is not timed with
the load client's): ``python -m bench.sandbox_server PORT [STEP_SECONDS]``. Crew tokens
are the bench crews' (:func:`bench.seed.crew_token`); STEP_SECONDS is the time a crew
takes per step (see bench.run.SANDBOX_STEP_SECONDS; 0 when not given)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from reviewapp.amp.sandbox import EXAMPLE_CREWS, Sandbox

from .seed import crew_token


def main() -> None:
    port = int(sys.argv[1])
    step_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sandbox = Sandbox(tokens={name: crew_token(name) for name in EXAMPLE_CREWS}, step_delay=step_seconds)
    sandbox.serve("127.0.0.1", port)
    print(f"sandbox on {sandbox.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(3600)  # bounded: a forgotten sandbox ends within the hour
    sandbox.close()


if __name__ == "__main__":
    main()
