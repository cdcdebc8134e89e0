#!/usr/bin/env python3
"""Tracking-server benchmark: Plinth versus the MLflow tracking server.

Both servers are driven by the same Python driver over MLflow's REST tracking
API, with JSON bodies shaped exactly as the ``mlflow`` client sends them:

  1. log-batch ingest     runs x 1,000 metric points, 8 client threads
  2. search               runs/search with a filter and an order-by over >=10k runs
  3. metric history       metrics/get-history for a 10k- and a 100k-point metric
  4. artifacts            streamed PUT / GET of a large file through the artifact proxy
  5. process figures      start-up time, idle RSS, peak RSS, server CPU per phase

Usage (see bench/README.md):

    python3 bench/tracking.py [--with-mlflow] [--plinth-bin PATH]
                              [--scale full|small] [--json OUT]
                              [--servers plinth,mlflow]

The script bootstraps its own virtualenv ($HOME/.cache/plinth/venv-bench) and
re-executes itself inside it, so it can be started with any python3 >= 3.9.
Only the standard library is used before that point.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional
from urllib.parse import urlparse

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CACHE_DIR = Path.home() / ".cache" / "plinth"
VENV_DIR = CACHE_DIR / "venv-bench"
VENV_STAMP = VENV_DIR / ".plinth-bench-requirements"
DRIVER_REQUIREMENTS = BENCH_DIR / "requirements-driver.txt"
MLFLOW_REQUIREMENTS = BENCH_DIR / "requirements-mlflow.txt"
REEXEC_ENV = "PLINTH_BENCH_IN_VENV"

# Third-party modules, imported by import_driver_deps() once we run inside the venv.
requests: Any = None
psutil: Any = None

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
# The mlflow client's page size for metrics/get-history (GET_METRIC_HISTORY_MAX_RESULTS).
HISTORY_PAGE_SIZE = 25_000
# How often the start-up probe polls GET /health, and the RSS sampler's period.
HEALTH_POLL_S = 0.002
RSS_SAMPLE_S = 0.05
# How long the idle server's background CPU use is measured after start-up.
IDLE_CPU_WINDOW_S = 3.0
MIB = 1 << 20


def log(msg: str) -> None:
    """Progress messages go to stderr; stdout carries only the report."""
    print(msg, file=sys.stderr, flush=True)


class BenchFailure(Exception):
    """A real failure: a non-2xx answer, a wrong result, a server that died."""


class SetupError(Exception):
    """The benchmark could not be set up (venv, build, missing binary)."""


# --------------------------------------------------------------------------------------
# Virtualenv bootstrap (standard library only)
# --------------------------------------------------------------------------------------


def _requirement_lines(path: Path) -> set[str]:
    lines = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.add(line)
    return lines


def ensure_venv(with_mlflow: bool, script: Optional[Path] = None, *,
               venv_dir: Path = VENV_DIR, requirements: Optional[list[Path]] = None) -> None:
    """Create/update the benchmark venv and re-exec `script` (default: this file) inside it.

    `venv_dir` and `requirements` name another virtualenv and its requirement files (the
    feature-store benchmark's, whose Feast pins do not mix with MLflow's).

    Idempotent: a stamp file records the requirement lines already installed, so a
    second run does no pip work at all. Setting PLINTH_BENCH_NO_VENV=1 skips all of
    this and uses the current interpreter (which must then provide the packages).
    """
    if os.environ.get("PLINTH_BENCH_NO_VENV") == "1":
        return
    req_files = requirements or [DRIVER_REQUIREMENTS] + ([MLFLOW_REQUIREMENTS] if with_mlflow else [])
    stamp = venv_dir / VENV_STAMP.name
    wanted: set[str] = set()
    for f in req_files:
        wanted |= _requirement_lines(f)

    venv_python = venv_dir / "bin" / "python"
    if not venv_python.exists():
        log(f"creating virtualenv {venv_dir}")
        venv_dir.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "venv", str(venv_dir)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SetupError(f"python3 -m venv failed:\n{proc.stdout}{proc.stderr}")

    installed = set(stamp.read_text().split("\n")) if stamp.exists() else set()
    if not wanted <= installed:
        log(f"installing {', '.join(sorted(wanted - installed))} into {venv_dir}")
        cmd = [str(venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for f in req_files:
            cmd += ["-r", str(f)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(f"pip install failed:\n{proc.stdout}{proc.stderr}")
        stamp.write_text("\n".join(sorted(installed | wanted)))

    inside = Path(sys.prefix).resolve() == venv_dir.resolve()
    if not inside:
        if os.environ.get(REEXEC_ENV) == "1":
            raise SetupError(f"re-exec did not land in {venv_dir} (sys.prefix={sys.prefix})")
        env = dict(os.environ, **{REEXEC_ENV: "1"})
        os.execve(str(venv_python), [str(venv_python), str((script or Path(__file__)).resolve())]
                  + sys.argv[1:], env)


def import_driver_deps() -> None:
    global requests, psutil
    try:
        import psutil as _psutil
        import requests as _requests
    except ImportError as e:  # only with PLINTH_BENCH_NO_VENV=1
        raise SetupError(
            f"missing driver dependency ({e}); pip install -r {DRIVER_REQUIREMENTS}") from e
    requests, psutil = _requests, _psutil


# --------------------------------------------------------------------------------------
# Configuration and result records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Workload sizes. `full` is the published benchmark; `small` proves the driver."""

    name: str
    ingest_runs: int
    search_runs: int
    history_short: int
    history_long: int
    artifact_bytes: int
    points_per_run: int = 1_000
    batch_size: int = 1_000  # the mlflow client's own log-batch chunk size for metrics
    threads: int = 8
    search_repeats: int = 30
    history_repeats: int = 5


SCALES = {
    "full": Scale("full", ingest_runs=200, search_runs=10_000, history_short=10_000,
                  history_long=100_000, artifact_bytes=256 * MIB),
    "small": Scale("small", ingest_runs=16, search_runs=1_000, history_short=10_000,
                   history_long=20_000, artifact_bytes=32 * MIB),
}


@dataclass
class IngestResult:
    runs: int
    points: int
    requests: int
    wall_s: float
    points_per_s: float
    server_cpu_ms: float
    server_cpu_ms_per_1k_points: float
    driver_cpu_ms: float


@dataclass
class SearchResult:
    runs: int
    matching_runs: int
    returned_runs: int
    repeats: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    server_cpu_ms_per_search: float


@dataclass
class HistoryTiming:
    points: int
    pages: int
    repeats: int
    median_ms: float
    min_ms: float
    max_ms: float
    server_cpu_ms_per_fetch: float


@dataclass
class HistoryResult:
    short: HistoryTiming
    long: HistoryTiming


@dataclass
class ArtifactResult:
    bytes: int
    upload_s: float
    download_s: float
    upload_mb_s: float
    download_mb_s: float
    upload_server_cpu_ms: float
    download_server_cpu_ms: float
    sha256_match: bool


@dataclass
class ServerResult:
    name: str
    version: str = "unknown"
    command: list[str] = field(default_factory=list)
    startup_ms: Optional[float] = None
    idle_rss_mib: Optional[float] = None
    idle_cpu_ms_per_s: Optional[float] = None
    peak_rss_mib: Optional[float] = None
    idle_processes: list[dict] = field(default_factory=list)
    ingest: Optional[IngestResult] = None
    search: Optional[SearchResult] = None
    history: Optional[HistoryResult] = None
    artifacts: Optional[ArtifactResult] = None
    server_cpu_ms_total: Optional[float] = None
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Server processes: spawn, readiness, CPU / RSS of the whole process tree, teardown
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One server under test, started in its own session (process group).

    If `ready_regex` is given, the base URL is parsed from the server's stdout (Plinth
    prints `listening on http://127.0.0.1:<port>`); otherwise `url` is known up front.
    Start-up time runs from spawn until GET /health answers 200.
    """

    def __init__(self, name: str, argv: list[str], workdir: Path, *, url: Optional[str] = None,
                 ready_regex: Optional[str] = None, env: Optional[dict[str, str]] = None):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.url = url
        self.ready_regex = re.compile(ready_regex) if ready_regex else None
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = workdir / f"{name.lower()}-server.log"
        self._log_file = None
        self._url_found = threading.Event()
        self._sampler_stop = threading.Event()
        self._sampler: Optional[threading.Thread] = None
        self.peak_rss = 0

    # --- process tree accounting -------------------------------------------------------

    def _tree(self) -> list:
        """The server process and all its descendants (psutil.Process objects)."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """utime+stime of every live process in the tree, plus what reaped children used."""
        total = 0.0
        for p in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def rss_bytes(self, procs: Optional[list] = None) -> int:
        """Sum of RSS over the process tree (shared pages count once per process)."""
        total = 0
        for p in self._tree() if procs is None else procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
        return total

    def describe_tree(self) -> list[dict]:
        """pid, command line and RSS of every process in the tree (for the JSON report)."""
        out = []
        for p in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                out.append({"pid": p.pid, "cmdline": " ".join(p.cmdline())[:200],
                            "rss_mib": round(p.memory_info().rss / MIB, 1)})
        return out

    def _sample_rss(self) -> None:
        # Walking /proc for descendants costs more than reading RSS, so the process list
        # is refreshed every 10 samples (0.5 s) and RSS is read every 50 ms.
        procs: list = []
        i = 0
        while not self._sampler_stop.is_set():
            if i % 10 == 0:
                procs = self._tree()
            i += 1
            self.peak_rss = max(self.peak_rss, self.rss_bytes(procs))
            self._sampler_stop.wait(RSS_SAMPLE_S)

    # --- lifecycle --------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            if self._log_file:
                self._log_file.flush()
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        return ""

    def _pump_stdout(self) -> None:
        """Copy the server's stdout to its log, noting the readiness line's URL."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self._log_file.write(line)
            self._log_file.flush()
            if not self._url_found.is_set() and self.ready_regex:
                m = self.ready_regex.search(line)
                if m:
                    self.url = m.group(1).rstrip("/")
                    self._url_found.set()

    def start(self, timeout_s: float) -> float:
        """Spawn the server; return the start-up time in seconds."""
        self._log_file = open(self.log_path, "w")
        t0 = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.ready_regex else self._log_file,
                stderr=self._log_file,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,  # own process group: stop() signals the whole tree
            )
        except OSError as e:
            raise BenchFailure(f"cannot start {self.argv[0]}: {e}") from e
        self._sampler = threading.Thread(target=self._sample_rss, name="rss-sampler", daemon=True)
        self._sampler.start()
        if self.ready_regex:
            threading.Thread(target=self._pump_stdout, name="stdout-pump", daemon=True).start()
        deadline = t0 + timeout_s

        # 1. Wait for the readiness line (only when the port is chosen by the server).
        while self.url is None:
            if self._url_found.wait(HEALTH_POLL_S):
                break
            self._check_starting(deadline, "readiness line")

        # 2. Poll GET /health until it answers 200.
        probe = requests.Session()
        try:
            while True:
                with contextlib.suppress(requests.RequestException):
                    if probe.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return time.perf_counter() - t0
                self._check_starting(deadline, "GET /health = 200")
                time.sleep(HEALTH_POLL_S)
        finally:
            probe.close()

    def _check_starting(self, deadline: float, waiting_for: str) -> None:
        if not self.alive():
            raise BenchFailure(f"{self.name} exited with code {self.proc.returncode} before "
                               f"{waiting_for}; log tail:\n{self.log_tail()}")
        if time.perf_counter() > deadline:
            raise BenchFailure(f"{self.name} did not reach {waiting_for} in time; log tail:\n"
                               f"{self.log_tail()}")

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it (and any stray descendant) after grace_s."""
        self._sampler_stop.set()
        if self.proc is not None:
            tree = self._tree()
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            # Descendants that left the process group (none expected) are ours too.
            for p in tree[1:]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    if p.is_running():
                        p.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log_file:
            self._log_file.close()
            self._log_file = None


# --------------------------------------------------------------------------------------
# HTTP driver: one requests.Session per worker thread
# --------------------------------------------------------------------------------------


class Api:
    """A thin MLflow REST client. Every non-2xx answer raises BenchFailure."""

    # (connect, read) timeouts; generous because MLflow on SQLite can be slow under load.
    TIMEOUT = (10, 900)

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")
        self._local = threading.local()
        self._sessions: list = []
        self._lock = threading.Lock()

    @property
    def session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()

    @staticmethod
    def check(resp, what: str) -> None:
        if not 200 <= resp.status_code < 300:
            raise BenchFailure(f"{what} -> HTTP {resp.status_code}: {resp.text[:2000]}")

    def post_raw(self, path: str, body: bytes) -> bytes:
        """POST an already-encoded JSON body; return the raw response body."""
        resp = self.session.post(self.base + path, data=body, timeout=self.TIMEOUT,
                                 headers={"Content-Type": "application/json"})
        self.check(resp, f"POST {path}")
        return resp.content

    def post(self, path: str, body: dict) -> dict:
        raw = self.post_raw(path, json.dumps(body).encode())
        return json.loads(raw) if raw.strip() else {}

    def get_raw(self, path: str, params: dict) -> bytes:
        resp = self.session.get(self.base + path, params=params, timeout=self.TIMEOUT)
        self.check(resp, f"GET {path}?{'&'.join(f'{k}={v}' for k, v in params.items())}")
        return resp.content

    # --- MLflow calls, bodies shaped as the mlflow client's message_to_json output ---

    def create_experiment(self, name: str) -> str:
        return self.post(f"{API}/experiments/create", {"name": name})["experiment_id"]

    def create_run(self, experiment_id: str) -> dict:
        """Returns the run's `info` object (run_id, artifact_uri, ...)."""
        body = {"experiment_id": experiment_id, "start_time": now_ms()}
        return self.post(f"{API}/runs/create", body)["run"]["info"]

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        # Empty repeated fields are omitted, as protobuf's JSON encoding does.
        body: dict[str, Any] = {"run_id": run_id}
        if metrics:
            body["metrics"] = list(metrics)
        if params:
            body["params"] = list(params)
        if tags:
            body["tags"] = list(tags)
        self.post_raw(f"{API}/runs/log-batch", json.dumps(body).encode())


def now_ms() -> int:
    return int(time.time() * 1000)


def run_parallel(fn: Callable[[Any], Any], items: Iterable[Any], threads: int) -> list:
    """Apply fn to items on `threads` worker threads, keeping order.

    The first exception stops the remaining work (queued items are skipped) and is
    re-raised in the caller; Ctrl-C does the same.
    """
    items = list(items)
    stop = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def wrapped(item):
        if stop.is_set():
            return None
        try:
            return fn(item)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            with lock:
                errors.append(e)
            stop.set()
            return None

    ex = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="driver")
    try:
        futures = [ex.submit(wrapped, it) for it in items]
        results = [f.result() for f in futures]
    except BaseException:
        stop.set()
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    if errors:
        raise errors[0]
    return results


def driver_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    k = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[k]


# --------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------


def metric_chunks(run_id: str, key: str, n: int, batch: int, rng: random.Random,
                  base_ts: int) -> list[bytes]:
    """Pre-encoded log-batch bodies logging steps 0..n-1 of `key` to `run_id`."""
    bodies = []
    for start in range(0, n, batch):
        metrics = [{"key": key, "value": 1.0 / (i + 1) + rng.random() * 1e-3,
                    "timestamp": base_ts + i, "step": i}
                   for i in range(start, min(n, start + batch))]
        bodies.append(json.dumps({"run_id": run_id, "metrics": metrics}).encode())
    return bodies


def fetch_history(api: Api, run_id: str, key: str) -> tuple[float, int, int]:
    """Fetch a whole metric history the way the client does (pages of 25,000).

    Returns (seconds spent in HTTP round trips, points, pages). JSON decoding in the
    driver is not timed, only request-sent -> response-body-received.
    """
    token, elapsed, points, pages = None, 0.0, 0, 0
    while True:
        # The client sends both run_uuid and run_id (GetMetricHistory as query params).
        params: dict[str, Any] = {"run_uuid": run_id, "run_id": run_id, "metric_key": key,
                                  "max_results": HISTORY_PAGE_SIZE}
        if token:
            params["page_token"] = token
        t0 = time.perf_counter()
        raw = api.get_raw(f"{API}/metrics/get-history", params)
        elapsed += time.perf_counter() - t0
        page = json.loads(raw)
        points += len(page.get("metrics", []))
        pages += 1
        token = page.get("next_page_token")
        if not token:
            return elapsed, points, pages
        if pages > 10_000:
            raise BenchFailure(f"get-history for {key}: next_page_token never ends")


def phase_ingest(api: Api, srv: ServerProcess, scale: Scale) -> IngestResult:
    """Many runs, 1,000 metric points each, logged with runs/log-batch by 8 threads."""
    exp = api.create_experiment(f"bench-ingest-{uuid.uuid4().hex[:8]}")
    infos = run_parallel(lambda _: api.create_run(exp), range(scale.ingest_runs), scale.threads)
    rng = random.Random(1)
    base_ts = now_ms()
    # Bodies are encoded before the clock starts so the driver's JSON work is not timed.
    bodies = [b for info in infos for b in metric_chunks(
        info["run_id"], "loss", scale.points_per_run, scale.batch_size, rng, base_ts)]
    points = scale.ingest_runs * scale.points_per_run

    cpu0, drv0 = srv.cpu_seconds(), driver_cpu_s()
    t0 = time.perf_counter()
    run_parallel(lambda b: api.post_raw(f"{API}/runs/log-batch", b), bodies, scale.threads)
    wall = time.perf_counter() - t0
    cpu_ms = (srv.cpu_seconds() - cpu0) * 1000
    drv_ms = (driver_cpu_s() - drv0) * 1000

    # Untimed spot check: the last run holds every point.
    _, got, _ = fetch_history(api, infos[-1]["run_id"], "loss")
    if got != scale.points_per_run:
        raise BenchFailure(f"ingest: get-history returned {got} points, "
                           f"expected {scale.points_per_run}")
    return IngestResult(runs=scale.ingest_runs, points=points, requests=len(bodies),
                        wall_s=wall, points_per_s=points / wall, server_cpu_ms=cpu_ms,
                        server_cpu_ms_per_1k_points=cpu_ms / (points / 1000),
                        driver_cpu_ms=drv_ms)


SEARCH_FILTER = "metrics.acc > 0.5 and params.model = 'cnn'"
SEARCH_MAX_RESULTS = 100


def phase_search(api: Api, srv: ServerProcess, scale: Scale) -> SearchResult:
    """runs/search with a metric+param filter and a metric order-by over many runs."""
    exp = api.create_experiment(f"bench-search-{uuid.uuid4().hex[:8]}")
    rng = random.Random(2)
    models = ["cnn", "mlp", "transformer"]
    specs = [(rng.random(), rng.choice(models), rng.choice([1e-4, 3e-4, 1e-3, 3e-3]),
              rng.choice(["vision", "nlp", "infra", "research"]))
             for _ in range(scale.search_runs)]
    ts = now_ms()

    def make_run(spec):
        acc, model, lr, team = spec
        run_id = api.create_run(exp)["run_id"]
        api.log_batch(run_id,
                      metrics=[{"key": "acc", "value": acc, "timestamp": ts, "step": 0}],
                      params=[{"key": "lr", "value": str(lr)}, {"key": "model", "value": model}],
                      tags=[{"key": "team", "value": team}])
        return run_id

    log(f"  search setup: creating {scale.search_runs:,} runs (untimed)")
    run_ids = run_parallel(make_run, specs, scale.threads)
    matching = sorted(((spec[0], rid) for spec, rid in zip(specs, run_ids)
                       if spec[0] > 0.5 and spec[1] == "cnn"), reverse=True)
    expected = [rid for _, rid in matching[:SEARCH_MAX_RESULTS]]

    # Exactly what MlflowClient.search_runs sends (run_view_type defaults to ACTIVE_ONLY).
    body = json.dumps({"experiment_ids": [exp], "filter": SEARCH_FILTER,
                       "run_view_type": "ACTIVE_ONLY", "max_results": SEARCH_MAX_RESULTS,
                       "order_by": ["metrics.acc DESC"]}).encode()

    # One untimed warm-up request, also used to check the answer.
    got = [r["info"]["run_id"] for r in json.loads(api.post_raw(f"{API}/runs/search", body))
           .get("runs", [])]
    if got != expected:
        first_diff = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                          min(len(got), len(expected)))
        at = (f"got {got[first_diff] if first_diff < len(got) else 'nothing'}, expected "
              f"{expected[first_diff] if first_diff < len(expected) else 'nothing'}")
        raise BenchFailure(f"search: wrong result ({len(got)} runs, expected {len(expected)} "
                           f"of {len(matching)} matching; first difference at position "
                           f"{first_diff}: {at})")

    times = []
    cpu0 = srv.cpu_seconds()
    for _ in range(scale.search_repeats):
        t0 = time.perf_counter()
        raw = api.post_raw(f"{API}/runs/search", body)
        times.append((time.perf_counter() - t0) * 1000)
        n = len(json.loads(raw).get("runs", []))
        if n != len(expected):
            raise BenchFailure(f"search: returned {n} runs, expected {len(expected)}")
    cpu_ms = (srv.cpu_seconds() - cpu0) * 1000
    return SearchResult(runs=scale.search_runs, matching_runs=len(matching),
                        returned_runs=len(expected), repeats=len(times),
                        median_ms=statistics.median(times), p90_ms=percentile(times, 90),
                        min_ms=min(times), max_ms=max(times),
                        server_cpu_ms_per_search=cpu_ms / len(times))


def phase_history(api: Api, srv: ServerProcess, scale: Scale) -> HistoryResult:
    """metrics/get-history for a short and a long metric of one run."""
    exp = api.create_experiment(f"bench-history-{uuid.uuid4().hex[:8]}")
    run_id = api.create_run(exp)["run_id"]
    rng = random.Random(3)
    base_ts = now_ms()
    keys = {"short": ("loss_short", scale.history_short), "long": ("loss_long", scale.history_long)}
    log(f"  history setup: logging {scale.history_short:,} + {scale.history_long:,} points "
        "(untimed)")
    bodies = [b for key, n in keys.values()
              for b in metric_chunks(run_id, key, n, scale.batch_size, rng, base_ts)]
    run_parallel(lambda b: api.post_raw(f"{API}/runs/log-batch", b), bodies, scale.threads)

    timings = {}
    for label, (key, n) in keys.items():
        _, points, _ = fetch_history(api, run_id, key)  # untimed warm-up + check
        if points != n:
            raise BenchFailure(f"get-history {key}: got {points} points, expected {n}")
        samples, pages = [], 0
        cpu0 = srv.cpu_seconds()
        for _ in range(scale.history_repeats):
            elapsed, points, pages = fetch_history(api, run_id, key)
            if points != n:
                raise BenchFailure(f"get-history {key}: got {points} points, expected {n}")
            samples.append(elapsed * 1000)
        cpu_ms = (srv.cpu_seconds() - cpu0) * 1000
        timings[label] = HistoryTiming(points=n, pages=pages, repeats=len(samples),
                                       median_ms=statistics.median(samples),
                                       min_ms=min(samples), max_ms=max(samples),
                                       server_cpu_ms_per_fetch=cpu_ms / len(samples))
    return HistoryResult(short=timings["short"], long=timings["long"])


def make_blob(path: Path, size: int) -> str:
    """Write `size` random bytes to `path` in 1 MiB chunks; return their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(MIB, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def artifact_url(api: Api, run_info: dict, exp_id: str, file_name: str) -> str:
    """Resolve `<artifact_uri>/<file>` to the artifact proxy URL, as the client does.

    An `mlflow-artifacts:/<path>` artifact URI maps to
    `/api/2.0/mlflow-artifacts/artifacts/<path>`; anything else falls back to the
    layout MLflow uses by default, `<exp_id>/<run_id>/artifacts`.
    """
    uri = run_info.get("artifact_uri", "")
    parsed = urlparse(uri)
    if parsed.scheme == "mlflow-artifacts":
        rel = parsed.path.strip("/")
    else:
        rel = f"{exp_id}/{run_info['run_id']}/artifacts"
    return f"{api.base}{ARTIFACTS_API}/{rel}/{file_name}"


def phase_artifacts(api: Api, srv: ServerProcess, blob: Path, blob_sha: str,
                    scratch: Path) -> ArtifactResult:
    """Streamed PUT of a large file through the artifact proxy, then a streamed GET."""
    size = blob.stat().st_size
    exp = api.create_experiment(f"bench-artifacts-{uuid.uuid4().hex[:8]}")
    info = api.create_run(exp)
    url = artifact_url(api, info, exp, "big.bin")
    session = api.session

    # Upload: requests streams a file object from disk (as HttpArtifactRepository does).
    cpu0 = srv.cpu_seconds()
    with open(blob, "rb") as f:
        t0 = time.perf_counter()
        resp = session.put(url, data=f, timeout=api.TIMEOUT,
                           headers={"Content-Type": "application/octet-stream"})
        up_s = time.perf_counter() - t0
    api.check(resp, f"PUT {url[len(api.base):]}")
    cpu1 = srv.cpu_seconds()

    # Download: stream to disk in 1 MiB chunks (as the client's _download_file does).
    out = scratch / "big.download.bin"
    try:
        received = 0
        t0 = time.perf_counter()
        with session.get(url, stream=True, timeout=api.TIMEOUT) as resp:
            api.check(resp, f"GET {url[len(api.base):]}")
            with open(out, "wb") as f:
                for chunk in resp.iter_content(chunk_size=MIB):
                    f.write(chunk)
                    received += len(chunk)
        down_s = time.perf_counter() - t0
        cpu2 = srv.cpu_seconds()
        if received != size or out.stat().st_size != size:
            raise BenchFailure(f"artifact size mismatch: uploaded {size} bytes, "
                               f"downloaded {received}")
        sha_ok = sha256_file(out) == blob_sha
        if not sha_ok:
            raise BenchFailure("artifact content mismatch: sha256 of the download differs")
    finally:
        with contextlib.suppress(OSError):
            out.unlink()
    return ArtifactResult(bytes=size, upload_s=up_s, download_s=down_s,
                          upload_mb_s=size / 1e6 / up_s, download_mb_s=size / 1e6 / down_s,
                          upload_server_cpu_ms=(cpu1 - cpu0) * 1000,
                          download_server_cpu_ms=(cpu2 - cpu1) * 1000, sha256_match=sha_ok)


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def plinth_server(binary: Path, workdir: Path) -> ServerProcess:
    data = workdir / "data"
    data.mkdir()  # a fresh, existing, empty directory
    argv = [str(binary), "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data)]
    return ServerProcess("Plinth", argv, workdir, ready_regex=r"listening on (http://\S+)")


def mlflow_server(workdir: Path, workers: int, job_runner: bool) -> ServerProcess:
    port = free_port()
    mlflow_bin = Path(sys.prefix) / "bin" / "mlflow"
    if not mlflow_bin.exists():  # PLINTH_BENCH_NO_VENV=1 with mlflow on PATH
        mlflow_bin = Path(shutil.which("mlflow") or mlflow_bin)
    argv = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"),
            "--workers", str(workers)]
    # Nothing outside 127.0.0.1 is reachable or wanted: keep usage telemetry off.
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    if not job_runner:
        # MLflow 3.x starts a job runner with several huey consumers by default; they poll
        # continuously. --mlflow-no-job-runner turns them off to compare request handling only.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return ServerProcess("MLflow", argv, workdir, url=f"http://127.0.0.1:{port}", env=env)


def run_server_benchmark(srv: ServerProcess, result: ServerResult, scale: Scale,
                         blob: Path, blob_sha: str, startup_timeout: float) -> None:
    """Start one server, run every phase against it, fill `result`. Failures are
    recorded per phase; the remaining phases still run while the server is alive."""
    result.command = srv.argv
    log(f"[{srv.name}] starting: {' '.join(srv.argv)}")
    cpu_start = None
    try:
        startup_s = srv.start(startup_timeout)
        result.startup_ms = startup_s * 1000
        log(f"[{srv.name}] ready at {srv.url} after {result.startup_ms:.0f} ms")
        time.sleep(1.0)  # let start-up work settle before the idle sample
        result.idle_rss_mib = srv.rss_bytes() / MIB
        result.idle_processes = srv.describe_tree()
        # Background CPU with no requests at all (pollers, timers, ...).
        cpu_start = srv.cpu_seconds()
        time.sleep(IDLE_CPU_WINDOW_S)
        result.idle_cpu_ms_per_s = (srv.cpu_seconds() - cpu_start) * 1000 / IDLE_CPU_WINDOW_S
    except BenchFailure as e:
        result.failures.append(f"start-up: {e}")
        return

    api = Api(srv.url)
    try:
        phases: list[tuple[str, Callable[[], Any]]] = [
            ("ingest", lambda: phase_ingest(api, srv, scale)),
            ("search", lambda: phase_search(api, srv, scale)),
            ("history", lambda: phase_history(api, srv, scale)),
            ("artifacts", lambda: phase_artifacts(api, srv, blob, blob_sha, srv.workdir)),
        ]
        for name, phase in phases:
            if not srv.alive():
                result.failures.append(f"{name}: skipped, server exited with code "
                                       f"{srv.proc.returncode}; log tail:\n{srv.log_tail()}")
                continue
            log(f"[{srv.name}] phase {name}")
            t0 = time.perf_counter()
            try:
                setattr(result, name, phase())
            except (BenchFailure, requests.RequestException, KeyError, ValueError) as e:
                result.failures.append(f"{name}: {type(e).__name__}: {e}")
                log(f"[{srv.name}] phase {name} FAILED: {e}")
            log(f"[{srv.name}] phase {name} done in {time.perf_counter() - t0:.1f} s")
        result.server_cpu_ms_total = (srv.cpu_seconds() - cpu_start) * 1000
    finally:
        api.close()
        result.peak_rss_mib = srv.peak_rss / MIB if srv.peak_rss else None


def resolve_plinth_binary(arg: Optional[str]) -> Path:
    """--plinth-bin, or `cargo build --release -p plinth` into $CARGO_TARGET_DIR."""
    if arg:
        path = Path(arg).expanduser().resolve()
        if not os.access(path, os.X_OK):
            raise SetupError(f"--plinth-bin {path} is not an executable file")
        return path
    target = Path(os.environ.get("CARGO_TARGET_DIR", CACHE_DIR / "target"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    log(f"building plinth: cargo build --release -p plinth (CARGO_TARGET_DIR={target})")
    proc = subprocess.run(["cargo", "build", "--release", "-p", "plinth"], cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        raise SetupError("cargo build --release -p plinth failed")
    return target / "release" / "plinth"


def plinth_version(binary: Path) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=10)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0]
    return "unknown"


def git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return rev.stdout.strip() + ("-dirty" if dirty else "")
    return "no commit"


def machine_info() -> dict:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    get: Callable[[ServerResult], Optional[float]]
    higher_is_better: bool
    better: str  # ratio wording when Plinth wins, e.g. "faster"
    worse: str   # ... and when it loses, e.g. "slower"


def _rows(scale: Scale) -> list[Row]:
    def g(*attrs):
        def get(r):
            v = r
            for a in attrs:
                v = getattr(v, a, None) if v is not None else None
            return v
        return get

    art = f"{scale.artifact_bytes // MIB} MiB"
    return [
        Row("start-up time (ms)", g("startup_ms"), False, "faster", "slower"),
        Row("idle RSS (MiB)", g("idle_rss_mib"), False, "less memory", "more memory"),
        Row("peak RSS (MiB)", g("peak_rss_mib"), False, "less memory", "more memory"),
        Row("idle server CPU (ms / s)", g("idle_cpu_ms_per_s"), False, "less CPU", "more CPU"),
        Row(f"log-batch ingest, {scale.ingest_runs} runs (points/s)", g("ingest", "points_per_s"),
            True, "faster", "slower"),
        Row("ingest server CPU (ms / 1k points)", g("ingest", "server_cpu_ms_per_1k_points"),
            False, "less CPU", "more CPU"),
        Row(f"search {scale.search_runs:,} runs, median (ms)", g("search", "median_ms"), False,
            "faster", "slower"),
        Row(f"search {scale.search_runs:,} runs, p90 (ms)", g("search", "p90_ms"), False,
            "faster", "slower"),
        Row(f"get-history {scale.history_short // 1000}k points, median (ms)",
            g("history", "short", "median_ms"), False, "faster", "slower"),
        Row(f"get-history {scale.history_long // 1000}k points, median (ms)",
            g("history", "long", "median_ms"), False, "faster", "slower"),
        Row(f"artifact upload {art} (MB/s)", g("artifacts", "upload_mb_s"), True, "faster",
            "slower"),
        Row(f"artifact download {art} (MB/s)", g("artifacts", "download_mb_s"), True, "faster",
            "slower"),
    ]


def fmt_num(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio_text(row: Row, plinth: Optional[float], mlflow: Optional[float]) -> str:
    """Phrase the ratio so that a factor > 1 always means Plinth is better."""
    if plinth is None or mlflow is None:
        return ""
    num, den = (plinth, mlflow) if row.higher_is_better else (mlflow, plinth)
    if num <= 0 and den <= 0:
        return "both ≈ 0"
    if den <= 0 or num <= 0:
        return "Plinth ≈ 0" if plinth <= 0 else "MLflow ≈ 0"
    r = num / den
    if r >= 1:
        return f"{r:.1f}× {row.better}"
    return f"{1 / r:.1f}× {row.worse}"


def cell(result: Optional[ServerResult], row: Row, ran: bool) -> str:
    if not ran or result is None:
        return "not run"
    v = row.get(result)
    if v is None:
        return "FAILED" if result.failures else "-"
    return fmt_num(v)


def render_table(results: dict[str, ServerResult], scale: Scale) -> str:
    header = ("metric", "Plinth", "MLflow", "ratio (>1: Plinth better)")
    lines = [header]
    p, m = results.get("plinth"), results.get("mlflow")
    for row in _rows(scale):
        pv = row.get(p) if p else None
        mv = row.get(m) if m else None
        lines.append((row.label, cell(p, row, p is not None), cell(m, row, m is not None),
                      ratio_text(row, pv, mv)))
    widths = [max(len(r[i]) for r in lines) for i in range(4)]
    out = []
    for i, r in enumerate(lines):
        out.append(f"{r[0]:<{widths[0]}} | {r[1]:>{widths[1]}} | {r[2]:>{widths[2]}} | {r[3]}")
        if i == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def add_server_args(ap: argparse.ArgumentParser, scales: dict, with_mlflow_help: str) -> None:
    """The options every benchmark driver shares: which servers, which binary, the scale, JSON
    output and MLflow's server settings."""
    ap.add_argument("--with-mlflow", action="store_true", help=with_mlflow_help)
    ap.add_argument("--servers", help="comma-separated subset of plinth,mlflow to run "
                    "(default: plinth, plus mlflow with --with-mlflow)")
    ap.add_argument("--plinth-bin", help="plinth binary to use instead of building "
                    "`cargo build --release -p plinth`")
    ap.add_argument("--scale", choices=sorted(scales), default="full")
    ap.add_argument("--json", metavar="OUT", help="write the raw figures to OUT as JSON")
    ap.add_argument("--mlflow-workers", type=int, default=1,
                    help="`mlflow server --workers` (default 1; MLflow's own default is 4)")
    ap.add_argument("--mlflow-no-job-runner", action="store_true",
                    help="start MLflow with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (default: "
                    "MLflow's default, job runner on)")
    ap.add_argument("--startup-timeout", type=float, default=300.0,
                    help="seconds to wait for a server's GET /health (default 300)")


def resolve_servers(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Sets `args.server_list` (ordered, de-duplicated) and `args.with_mlflow` from `--servers`
    and `--with-mlflow`."""
    if args.servers:
        servers = [s.strip().lower() for s in args.servers.split(",") if s.strip()]
        unknown = set(servers) - {"plinth", "mlflow"}
        if unknown or not servers:
            ap.error(f"--servers: unknown server(s) {sorted(unknown)}; use plinth and/or mlflow")
    else:
        servers = ["plinth"] + (["mlflow"] if args.with_mlflow else [])
    args.server_list = list(dict.fromkeys(servers))
    args.with_mlflow = "mlflow" in args.server_list


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_args(ap, SCALES, "also benchmark the MLflow tracking server (installs mlflow==3.17.2)")
    args = ap.parse_args(argv)
    resolve_servers(ap, args)
    return args


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        ensure_venv(args.with_mlflow)
        import_driver_deps()
        # Make SIGTERM unwind like Ctrl-C so that every `finally` cleans up.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        scale = SCALES[args.scale]
        plinth_bin = resolve_plinth_binary(args.plinth_bin) if "plinth" in args.server_list \
            else None
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2

    versions = {"driver_python": platform.python_version(),
                "requests": requests.__version__, "git_revision": git_revision()}
    if plinth_bin:
        versions["plinth"] = plinth_version(plinth_bin)
        versions["plinth_bin"] = str(plinth_bin)
    if args.with_mlflow:
        from importlib.metadata import version
        versions["mlflow"] = version("mlflow")
    machine = machine_info()

    results: dict[str, ServerResult] = {}
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="plinth-bench-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        blob = root / "big.bin"
        log(f"writing {scale.artifact_bytes // MIB} MiB artifact source file")
        blob_sha = make_blob(blob, scale.artifact_bytes)

        for name in args.server_list:
            workdir = root / name
            workdir.mkdir()
            if name == "plinth":
                srv = plinth_server(plinth_bin, workdir)
                result = ServerResult("Plinth", version=versions["plinth"])
            else:
                srv = mlflow_server(workdir, args.mlflow_workers, not args.mlflow_no_job_runner)
                result = ServerResult("MLflow", version=versions["mlflow"])
            results[name] = result
            try:
                run_server_benchmark(srv, result, scale, blob, blob_sha, args.startup_timeout)
            finally:
                log(f"[{srv.name}] stopping")
                srv.stop()

    # --- report -------------------------------------------------------------------------
    print(f"Plinth tracking benchmark, scale={scale.name}")
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
          f"{machine['memory_gib']} GiB RAM, Linux {machine['kernel']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if args.with_mlflow:
        jobs = "off" if args.mlflow_no_job_runner else "on (MLflow default)"
        print(f"mlflow server: --workers {args.mlflow_workers}, SQLite backend, local artifacts, "
              f"job runner {jobs}")
    print()
    print(render_table(results, scale))
    failures = [f"{r.name}: {f}" for r in results.values() for f in r.failures]
    if failures:
        print("\nFAILURES:")
        for f in failures:
            print(f"  - {f}")

    if args.json:
        doc = {"scale": dataclasses.asdict(scale), "machine": machine, "versions": versions,
               "mlflow_workers": args.mlflow_workers if args.with_mlflow else None,
               "mlflow_job_runner": (not args.mlflow_no_job_runner) if args.with_mlflow else None,
               "servers": to_jsonable(results), "failures": failures,
               "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"raw figures written to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
