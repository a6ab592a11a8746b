"""Benchmark plumbing: a gunicorn server on loopback, wrk runs, a Python load client,
and figures printed as ratios against baselines measured in the same run."""

from __future__ import annotations

import http.client
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fixed_work() -> int:
    """A fixed pure-Python workload (dict lookups, string formatting, integer adds): the
    kind of work a request spends its time on, with no I/O."""
    table: dict[str, int] = {}
    total = 0
    for i in range(200_000):
        key = f"k{i % 997}"
        table[key] = table.get(key, 0) + i
        total += len(key)
    return total


def machine_speed_ms(rounds: int = 3) -> float:
    """Milliseconds the fixed workload takes (fastest of ``rounds``): how fast this machine
    runs Python right now. Printed before seeding and after the cases of each database, so
    the absolute figures of runs on different machines, or in a slow spell, can be compared
    (the same machine kind has served the plain baseline anywhere from 1,900 to 6,000 req/s)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        _fixed_work()
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


@dataclass
class Figure:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int = 0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Server:
    url: str
    pid: int  # the gunicorn master

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set size) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM over from the current RSS (Linux: ``echo 5 > /proc/<pid>/clear_refs``),
    so a peak reached earlier (argon2 at login takes 64 MiB) does not hide the export's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 2, threads: int = 4, port: int | None = None) -> Iterator[Server]:
    """Serve bench.benchapp:app on 127.0.0.1:<port or a free one>; yields the server."""
    port = port or free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "bench.benchapp:app",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        "--worker-class", "gthread", "--log-level", "warning", "--timeout", "120",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/_bench/plain", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not start")
        yield Server(url, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def login(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(url + "/login", timeout=10).text
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    data = {"username": username, "password": password}
    if match:
        data["csrf_token"] = match.group(1)
    response = session.post(url + "/login", data=data, timeout=10, allow_redirects=False)
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")
    return session


class _NoDelayConnection(http.client.HTTPConnection):
    """Nagle off on every socket it opens, also after a server closed the last one:
    http.client writes a request's headers and its body separately, and with Nagle the
    body could wait for the server's delayed ACK (40 ms)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LightClient:
    """GETs, and POSTs of ready-encoded bodies, over one keep-alive connection per thread,
    with ``http.client``: the load client shares the machine's two cores with the server,
    and requests spends about seven times the CPU per call (2.1-2.7 ms against 0.3 ms
    for a webhook POST here, most of it reading the environment twice per call), which
    the server then does not get. A failed call is not retried (a POST retried after an
    ambiguous failure could be applied twice): it raises."""

    def __init__(self, url: str, headers: dict[str, str], *, content_type: str = "application/json",
                 timeout: float = 30) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Content-Type": content_type, **headers}
        self._get_headers = dict(headers)
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            conn.close()  # readable while idle: the server closed it (keep-alive timeout), as urllib3 checks
        if conn is None:
            conn = self._local.conn = _NoDelayConnection(self.host, self.port, timeout=self.timeout)
        return conn

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self._send("POST", path, body, self.headers)

    def get(self, path: str) -> tuple[int, bytes]:
        return self._send("GET", path, None, self._get_headers)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = self._connection()
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


WARMUP_SECONDS = 2
# wrk keeps its connections, and each stays with the gunicorn worker that accepted it: a
# run in which one worker took (nearly) all of them measures one core, about half the
# throughput. Such a run is repeated (up to BALANCE_ATTEMPTS runs in all).
MIN_WORKER_SHARE = 0.25  # of the workers' CPU time during the run, with two workers
BALANCE_ATTEMPTS = 4


def wrk(name: str, url: str, *, cookie: str | None = None, seconds: int = 5,
        connections: int = 8, threads: int = 2, warmup: int = WARMUP_SECONDS,
        server: Server | None = None) -> Figure:
    """``seconds`` of wrk against ``url``, after ``warmup`` seconds of the same load whose
    figures are dropped (every worker's first requests fill its caches and connection
    pool, and the database's buffers: steady state is what a throughput figure is for;
    cold first views are measured on their own, see ``case_review``). With ``server``,
    a run whose connections went (nearly) all to one worker is repeated, see
    MIN_WORKER_SHARE; the figure notes the split and how many runs it took."""
    runs = 0
    while True:
        runs += 1
        if warmup:
            _wrk_output(url, cookie=cookie, seconds=warmup, connections=connections, threads=threads)
        before = _worker_cpu(server)
        out = _wrk_output(url, cookie=cookie, seconds=seconds, connections=connections, threads=threads)
        share = _smallest_share(before, _worker_cpu(server))
        if share is None or share >= MIN_WORKER_SHARE or runs == BALANCE_ATTEMPTS:
            break
    figure = _wrk_figure(name, out)
    if share is not None:
        figure.extra["smallest worker CPU share"] = f"{share:.0%}" + (f" (run {runs})" if runs > 1 else "")
    return figure


def _cpu_ticks(pid: int) -> int:
    """CPU ticks (user + system, all threads) of a process so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _worker_cpu(server: Server | None) -> dict[int, int] | None:
    """CPU ticks of each worker of ``server`` so far."""
    if server is None:
        return None
    return {pid: _cpu_ticks(pid) for pid in server.worker_pids()}


def _postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (its backends and helpers)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


@dataclass
class CpuSplit:
    """CPU time spent by each process of a run, in ms (see :func:`cpu_split`)."""

    ms: dict[str, float] = field(default_factory=dict)

    def per(self, count: int) -> str:
        return "; ".join(f"{name} {ms / count:.1f}" for name, ms in self.ms.items())


@contextmanager
def cpu_split(server: Server | None, sandbox_pid: int | None, *, settle_seconds: float = 0.5
              ) -> Iterator[CpuSplit]:
    """Where the CPU time of the block went: the app's gunicorn workers, the sandbox (if
    given), the PostgreSQL server (new backends included; none on SQLite) and this driver. Reads
    /proc at the start and ``settle_seconds`` after the end (work the block set off,
    such as the sandbox's webhooks, finishes by then)."""

    def sample() -> dict[str, int]:
        driver = os.times()
        workers = server.worker_pids() if server is not None else []
        ticks = {"app": sum(_cpu_ticks(pid) for pid in workers),
                 "sandbox": _cpu_ticks(sandbox_pid) if sandbox_pid is not None else None,
                 "database": sum(_cpu_ticks(pid) for pid in _postgres_pids()),
                 "driver": round((driver.user + driver.system) * TICKS)}
        return {name: value for name, value in ticks.items() if value is not None}

    split = CpuSplit()
    before = sample()
    yield split
    time.sleep(settle_seconds)
    after = sample()
    split.ms.update({name: (after[name] - before[name]) * 1000 / TICKS for name in after})


TICKS = os.sysconf("SC_CLK_TCK")


def _smallest_share(before: dict[int, int] | None, after: dict[int, int] | None) -> float | None:
    if before is None or after is None or len(after) < 2:
        return None
    used = {pid: after[pid] - before.get(pid, 0) for pid in after}
    total = sum(used.values())
    return min(used.values()) / total if total else None


def _wrk_figure(name: str, out: str) -> Figure:
    if "Latency Distribution" not in out or " 0 requests in" in out:
        raise RuntimeError(f"wrk {name}: no usable result:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Figure(name, rps, p50, p99, total, int(bad.group(1)) if bad else 0)


def _wrk_output(url: str, *, cookie: str | None, seconds: int, connections: int, threads: int) -> str:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s",
           "--latency", url]
    if cookie:
        cmd[1:1] = ["-H", f"Cookie: {cookie}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout


def timed_calls(name: str, call: Callable[[int], bool], *, count: int, concurrency: int = 4,
                pause_seconds: float = 0.0) -> Figure:
    """Run ``call(i)`` ``count`` times on a thread pool; latency per call, errors counted.
    Each thread waits ``pause_seconds`` (untimed) after each of its calls."""
    latencies: list[float] = []
    errors = 0

    def one(i: int) -> tuple[float, bool]:
        start = time.perf_counter()
        ok = call(i)
        elapsed = time.perf_counter() - start
        time.sleep(pause_seconds)
        return elapsed, ok

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for elapsed, ok in pool.map(one, range(count)):
            latencies.append(elapsed * 1000)
            errors += 0 if ok else 1
    wall = time.perf_counter() - started
    latencies.sort()
    return Figure(
        name, count / wall, statistics.median(latencies),
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], count, errors,
    )


def print_table(title: str, figures: list[Figure], baselines: dict[str, Figure]) -> None:
    print(f"\n### {title}\n")
    names = list(baselines)
    header = "| case | req/s | p50 ms | p99 ms | n | errors | " + " | ".join(f"vs {n}" for n in names) + " | notes |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for f in figures:
        ratios = " | ".join(f"{f.rps / baselines[n].rps:.2f}x" for n in names)
        notes = ", ".join(f"{k}={v}" for k, v in f.extra.items())
        print(f"| {f.name} | {f.rps:.1f} | {f.p50_ms:.1f} | {f.p99_ms:.1f} | {f.requests} | {f.errors} | {ratios} | {notes} |")
    sys.stdout.flush()
