"""Helpers shared by the MLflow compatibility tests (imported by conftest.py and the tests).

The suite drives a `plinth server` with the real `mlflow` client. For checking the tests
themselves it can also drive a real MLflow tracking server: set
``PLINTH_COMPAT_REFERENCE=mlflow`` (and optionally ``PLINTH_COMPAT_MLFLOW_BIN``, default
``$HOME/.cache/plinth/venv-bench/bin/mlflow``). Tests marked ``plinth_only`` assert a
deliberate difference from MLflow and are skipped in that mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

READY_RE = re.compile(r"listening on (http://\S+)")
READY_TIMEOUT_S = 20.0
REFERENCE_READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0

REFERENCE = os.environ.get("PLINTH_COMPAT_REFERENCE", "").strip().lower() == "mlflow"

# A run id that is well formed but never exists.
MISSING_RUN_ID = "0123456789abcdef0123456789abcdef"

FLOAT_MAX = 1.7976931348623157e308


# ---------------------------------------------------------------------------------------------
# No response may be a 5xx: every requests.Session (the clients' own too) goes through
# Session.send, so 5xx answers are recorded there and the suites' autouse fixtures fail the test
# that received one.

_FIVE_XX: list[str] = []
_FIVE_XX_LOCK = threading.Lock()


def watch_server_errors() -> None:
    """Records every 5xx answer any requests.Session receives in this process (idempotent)."""
    if getattr(requests.Session.send, "_plinth_watch", False):
        return
    original = requests.Session.send

    def recording_send(self, request, **kwargs):
        response = original(self, request, **kwargs)
        if response.status_code >= 500:
            try:
                text = response.text[:800]
            except Exception as exc:  # a streamed body that cannot be read
                text = f"<unreadable body: {exc!r}>"
            with _FIVE_XX_LOCK:
                _FIVE_XX.append(f"{request.method} {request.url} -> {response.status_code}: {text}")
        return response

    recording_send._plinth_watch = True
    requests.Session.send = recording_send


@pytest.fixture(autouse=True)
def no_server_errors():
    """Fails the test that received a 5xx answer (import it into a conftest to use it)."""
    take_server_errors()
    yield
    seen = take_server_errors()
    if seen:
        pytest.fail("the server answered with 5xx:\n" + "\n".join(seen), pytrace=False)


def take_server_errors() -> list[str]:
    """The 5xx answers recorded since the last call."""
    with _FIVE_XX_LOCK:
        seen = list(_FIVE_XX)
        _FIVE_XX.clear()
    return seen


def plinth_bin() -> Path:
    explicit = os.environ.get("PLINTH_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "plinth" / "target")
    return Path(target) / "debug" / "plinth"


def mlflow_bin() -> Path:
    explicit = os.environ.get("PLINTH_COMPAT_MLFLOW_BIN")
    if explicit:
        return Path(explicit)
    return Path.home() / ".cache" / "plinth" / "venv-bench" / "bin" / "mlflow"


def uniq(prefix: str = "x") -> str:
    """A name no other test uses (tests share a module-scoped server)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class ServerProcess:
    """One running tracking server and everything it printed."""

    url: str
    data_dir: Path
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    reference: bool = False

    def output(self) -> str:
        return "".join(self.lines)

    def rest(self) -> "Rest":
        return Rest(self.url)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> list[str]:
        """Stops the server; returns the problems seen (non-zero exit, panic, hang)."""
        problems: list[str] = []
        if self.proc.poll() is not None:
            problems.append(f"server exited on its own with status {self.proc.returncode}")
        else:
            try:
                if self.reference:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                else:
                    self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problems.append(f"server did not stop within {STOP_TIMEOUT_S}s of SIGTERM")
                with contextlib.suppress(ProcessLookupError):
                    if self.reference:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    else:
                        self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            rc = self.proc.returncode
            if rc != 0 and not self.reference and not problems:
                problems.append(f"server exited with status {rc} on SIGTERM")
        if self.reader is not None:
            self.reader.join(timeout=5)
        if "panicked at" in self.output():
            problems.append("server output contains a panic")
        return problems


def _pump(stream, lines: list[str], q: "queue.Queue[str | None]") -> None:
    for raw in iter(stream.readline, ""):
        lines.append(raw)
        q.put(raw)
    q.put(None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(srv: ServerProcess) -> None:
    """Stops `srv`; fails the test, with the server's output, if it reported problems (a 5xx, a panic)."""
    problems = srv.stop()
    if problems:
        tail = srv.output()[-6000:]
        pytest.fail(f"server at {srv.url}: " + "; ".join(problems) + "\n--- server output (tail) ---\n" + tail, pytrace=False)


def start_server(data_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """Starts a fresh server on `data_dir` and waits for its readiness line.

    `env` adds (or overrides) environment variables of the server process only, e.g.
    ``{"PLINTH__WEBHOOKS__INITIAL_BACKOFF_MS": "100"}``; the reference server ignores them.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if REFERENCE:
        return _start_reference(data_dir)
    binary = plinth_bin()
    if not binary.exists():
        pytest.fail(f"plinth binary not found at {binary} (set PLINTH_BIN or build it)")
    argv = [str(binary), "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)]
    full_env = dict(os.environ)
    full_env.setdefault("RUST_BACKTRACE", "1")
    full_env.update(env or {})
    proc, lines, q, reader = _spawn(argv, env=full_env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            pytest.fail(
                f"no readiness line from {argv} within {READY_TIMEOUT_S}s; output:\n" + "".join(lines)
            )
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            proc.wait()
            pytest.fail(
                f"{argv} exited with status {proc.returncode} before it was ready; output:\n"
                + "".join(lines)
            )
        m = READY_RE.search(line)
        if m:
            url = m.group(1).rstrip("/")
            return ServerProcess(url=url, data_dir=data_dir, proc=proc, lines=lines, reader=reader)


def _spawn(argv: list[str], **popen_kwargs):
    """Starts `argv` with stdout and stderr merged; a thread collects the lines and queues them."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
        **popen_kwargs,
    )
    lines: list[str] = []
    q: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines, q), daemon=True)
    reader.start()
    return proc, lines, q, reader


def _start_reference(data_dir: Path) -> ServerProcess:
    port = _free_port()
    binary = mlflow_bin()
    argv = [
        str(binary),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{data_dir}/mlflow.db",
        "--artifacts-destination",
        str(data_dir / "artifacts"),
    ]
    proc, lines, _, reader = _spawn(argv, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + REFERENCE_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("reference mlflow server exited:\n" + "".join(lines))
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return ServerProcess(
                    url=url, data_dir=data_dir, proc=proc, lines=lines, reader=reader, reference=True
                )
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("reference mlflow server not ready:\n" + "".join(lines))


# --------------------------------------------------------------------------------------------
# Raw REST access, for wire-level checks.


class Rest:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.session = requests.Session()

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str, params: Any = None, **kw) -> requests.Response:
        return self.session.get(self.url(path), params=params, timeout=60, **kw)

    def post(self, path: str, body: Any = None, **kw) -> requests.Response:
        return self.session.post(self.url(path), json=body, timeout=60, **kw)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.session.request(method, self.url(path), **kw)

    # MLflow endpoints, 2.0 tracking API
    def api(self, method: str, endpoint: str, body: Any = None) -> requests.Response:
        path = "/api/2.0/mlflow/" + endpoint
        if method == "GET":
            return self.get(path, params=body)
        return self.request(method, path, json=body)

    def ok(self, method: str, endpoint: str, body: Any = None) -> dict:
        r = self.api(method, endpoint, body)
        assert r.status_code == 200, f"{method} {endpoint} {body!r:.300} -> {r.status_code} {r.text[:1000]}"
        return r.json()

    def create_experiment(self, name: str | None = None) -> str:
        return self.ok("POST", "experiments/create", {"name": name or uniq("exp")})["experiment_id"]

    def create_run(self, experiment_id: str, **extra) -> str:
        body = {"experiment_id": experiment_id, "start_time": int(time.time() * 1000), **extra}
        return self.ok("POST", "runs/create", body)["run"]["info"]["run_id"]


def error_body(resp: requests.Response) -> dict:
    ctype = resp.headers.get("content-type", "")
    assert "application/json" in ctype, (
        f"error response is not JSON ({ctype!r}): {resp.status_code} {resp.text[:500]}"
    )
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error_code"), str), body
    assert isinstance(body.get("message"), str), body
    return body


def expect_error(resp: requests.Response, code: str | set[str], status: int | None) -> dict:
    """Asserts an MLflow-shaped error: HTTP `status`, JSON {"error_code": code, "message": ...}."""
    codes = {code} if isinstance(code, str) else set(code)
    body = error_body(resp)
    assert body["error_code"] in codes, f"want {codes}, got {resp.status_code} {body}"
    if status is not None:
        assert resp.status_code == status, f"want HTTP {status}, got {resp.status_code} {body}"
    return body


@contextlib.contextmanager
def raises_mlflow(code: str, match: str | None = None):
    """Expects the MLflow client to raise MlflowException with `code` (e.g. 'RESOURCE_DOES_NOT_EXIST')."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        yield info
    assert info.value.error_code == code, f"want {code}, got {info.value.error_code}: {info.value}"
    if match is not None:
        assert re.search(match, str(info.value)), f"{match!r} not in {info.value}"


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Plinth's own API (/api/plinth/v1), for the plinth_only tests.


class Native:
    """Plinth's native JSON API. `user` is sent as HTTP Basic credentials (identity only)."""

    PREFIX = "/api/plinth/v1"

    def __init__(self, base: str, user: str | None = None):
        self.base = base.rstrip("/")
        self.user = user
        self.session = requests.Session()

    def as_user(self, user: str | None) -> "Native":
        return Native(self.base, user)

    def request(self, method: str, path: str, body: Any = None, params: Any = None) -> requests.Response:
        """`body` is sent as JSON, except for GET, where it is the query string (unless `params` is given)."""
        if method.upper() == "GET" and params is None:
            body, params = None, body
        kw: dict[str, Any] = {"timeout": 60, "params": params}
        if body is not None:
            kw["json"] = body
        if self.user is not None:
            kw["auth"] = (self.user, "any-password")
        return self.session.request(method, self.base + self.PREFIX + path, **kw)

    def ok(self, method: str, path: str, body: Any = None, params: Any = None) -> dict:
        r = self.request(method, path, body, params)
        assert r.status_code == 200, f"{method} {path} {body!r:.300} -> {r.status_code} {r.text[:1000]}"
        return r.json() if r.content else {}


def wait_for(what: str, probe, timeout: float = 20.0, interval: float = 0.05):
    """Calls `probe()` until it returns something truthy (returned) or `timeout` passes (fails)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last probe: {last!r}", pytrace=False)
        time.sleep(interval)
