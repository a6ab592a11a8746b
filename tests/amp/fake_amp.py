"""A tiny, independent AMP written from the contract for client tests: each test
scripts the answers (status, headers, body) per method and path, or asks it to drop the
connection after reading the request. It records what it received."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DROP = "drop"


class FakeAmp:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self.received: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.received.append({"method": self.command, "path": self.path,
                                      "headers": dict(self.headers), "body": body})
                answer = fake.routes.get((self.command, self.path), (404, {}, {"error": "Not Found",
                                                                             "message": "no route"}))
                if answer == DROP:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, headers, payload = answer
                data = payload if isinstance(payload, bytes) else (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # noqa: N815 - http.server's naming

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answer(self, method: str, path: str, status: int, body: Any = None, **headers: str) -> None:
        self.routes[(method, path)] = (status, headers, body if body is not None else {})

    def drop(self, method: str, path: str) -> None:
        self.routes[(method, path)] = DROP

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
