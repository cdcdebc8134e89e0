#!/usr/bin/env python3
"""Auth benchmark: what authentication costs on the request path, Plinth versus MLflow.

One Python driver sends the same two requests to each server, in each auth mode, with
1 and 8 client threads (`--threads`), a fixed number of requests per case:

  read    GET  /api/2.0/mlflow/experiments/get?experiment_id=0
  write   POST /api/2.0/mlflow/runs/log-metric   (to a run the caller may write)

Modes:

  Plinth   auth off (the baseline); auth on with HTTP Basic as the bootstrap admin;
           HTTP Basic as a member holding a READ grant on experiment 0 (writing to a
           run of its own experiment); a Bearer API token of that member
  MLflow   (with --with-mlflow) the plain server, auth off; the basic-auth app
           (`mlflow server --app-name basic-auth`) with its admin, and with a
           non-admin user granted READ on experiment 0 (writing to its own run)

plus the latency of failed sign-ins (a wrong password for a known user, and an unknown
user), sent one at a time: on Plinth each should cost about one argon2id verification.

Usage (see bench/README.md, "Auth benchmark"):

    python3 bench/auth.py [--with-mlflow] [--plinth-bin PATH]
                          [--scale full|small] [--threads 1,8] [--json OUT]
                          [--servers plinth,mlflow]

The process machinery (virtualenv bootstrap, server start/stop, CPU and RSS sampling,
the Plinth build, the report helpers) is shared with bench/tracking.py, which this
script imports. Only the standard library is used before the virtualenv re-exec.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracking as common  # noqa: E402  (bench/tracking.py: the shared machinery)
from tracking import API, MIB, BenchFailure, ServerProcess, SetupError, log  # noqa: E402

PLINTH_V1 = "/api/plinth/v1"
READ_PATH = f"{API}/experiments/get?experiment_id=0"
WRITE_PATH = f"{API}/runs/log-metric"
REQUESTS = {"read": ("GET", READ_PATH), "write": ("POST", WRITE_PATH)}
# Plinth's failed-sign-in limiter, raised so that it never answers 429 during the run.
FAILURE_LIMIT = 1_000_000
# Untimed requests each client session sends before a case's clock starts.
WARMUP_PER_SESSION = 5
# How long worker threads wait for each other at the start line.
BARRIER_TIMEOUT_S = 120.0
# The Plinth principals (the admin is auth.bootstrap_admin's default).
PLINTH_ADMIN = "admin"
PLINTH_MEMBER = "bench-member"
# MLflow basic-auth principals.
MLFLOW_ADMIN = "admin"
MLFLOW_USER = "bench-user"


# --------------------------------------------------------------------------------------
# MLflow's auth extra
# --------------------------------------------------------------------------------------


def ensure_mlflow_auth_extra() -> None:
    """Install `mlflow[auth]` (Flask-WTF) into the benchmark venv if it is missing.

    The basic-auth app refuses to start without Flask-WTF, which requirements-mlflow.txt
    (shared with the other benchmarks) does not pull in. Runs inside the venv, after
    common.ensure_venv; a second run finds the module and does no pip work.
    """
    if importlib.util.find_spec("flask_wtf") is not None:
        return
    pins = [line for line in common._requirement_lines(common.MLFLOW_REQUIREMENTS)
            if line.lower().startswith("mlflow==")]
    requirement = "mlflow[auth]" + (pins[0][len("mlflow"):] if pins else "")
    if os.environ.get("PLINTH_BENCH_NO_VENV") == "1":
        raise SetupError(f"MLflow's basic-auth app needs Flask-WTF; pip install '{requirement}'")
    log(f"installing {requirement} into {sys.prefix}")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", requirement],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"pip install {requirement} failed:\n{proc.stdout}{proc.stderr}")
    importlib.invalidate_caches()


# --------------------------------------------------------------------------------------
# Configuration and result records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Workload sizes. `full` is the published benchmark; `small` proves the driver."""

    name: str
    requests: int         # per case: (server, mode, request, threads)
    failed_signins: int   # per failed-sign-in case, sent one at a time


SCALES = {
    "full": Scale("full", requests=5_000, failed_signins=20),
    "small": Scale("small", requests=500, failed_signins=10),
}


@dataclass(frozen=True)
class Mode:
    key: str
    label: str


# Modes in report order; a key shared by Plinth and MLflow is compared in the ratio table.
MODES = {
    "off": Mode("off", "auth off"),
    "basic-admin": Mode("basic-admin", "Basic, admin"),
    "basic-user": Mode("basic-user", "Basic, non-admin user, grant"),
    "bearer-user": Mode("bearer-user", "Bearer token, same user"),
}
PLINTH_MODES = ["off", "basic-admin", "basic-user", "bearer-user"]
MLFLOW_MODES = ["off", "basic-admin", "basic-user"]
SIGNIN_CASES = {"wrong-password": "wrong password, known user",
                "unknown-user": "unknown user"}


@dataclass
class CaseResult:
    server: str           # "plinth" / "mlflow"
    mode: str             # a MODES key
    request: str          # "read" / "write"
    threads: int
    method: str
    path: str
    requests: int
    wall_s: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    server_cpu_ms: float
    server_cpu_us_per_req: float


@dataclass
class SigninResult:
    server: str
    case: str             # a SIGNIN_CASES key
    requests: int
    status: int           # every answer's HTTP status (401 expected)
    p50_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    server_cpu_ms_per_attempt: float


@dataclass
class InstanceResult:
    """One server process: Plinth with auth off or on, MLflow plain or basic-auth."""

    server: str
    auth: bool
    name: str
    version: str = "unknown"
    command: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    startup_ms: Optional[float] = None
    idle_rss_mib: Optional[float] = None
    peak_rss_mib: Optional[float] = None
    cases: list[CaseResult] = field(default_factory=list)
    signins: list[SigninResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Principal:
    """Who sends a case's requests: its Authorization header and a run it may write."""

    mode: str
    authorization: Optional[str]
    run_id: str = ""
    step: int = 0          # the next log-metric step, so no two points collide


def new_session(authorization: Optional[str]):
    s = common.requests.Session()
    if authorization:
        s.headers["Authorization"] = authorization
    return s


class Admin:
    """Untimed set-up calls as one principal; every non-2xx answer raises BenchFailure."""

    TIMEOUT = (10, 300)

    def __init__(self, base: str, authorization: Optional[str]):
        self.base = base
        self.session = new_session(authorization)

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, body: Optional[dict] = None,
             expect: int = 200) -> dict:
        kwargs: dict[str, Any] = {"timeout": self.TIMEOUT}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            kwargs["headers"] = {"Content-Type": "application/json"}
        resp = self.session.request(method, self.base + path, **kwargs)
        if resp.status_code != expect:
            raise BenchFailure(f"{method} {path} -> HTTP {resp.status_code} (expected {expect}): "
                               f"{resp.text[:1000]}")
        if expect != 200 or not resp.content.strip():
            return {}  # e.g. MLflow's 401 answer is plain text
        return resp.json()

    def own_run(self) -> str:
        """An experiment created by this principal (so it owns it) and a run in it."""
        exp = self.call("POST", f"{API}/experiments/create",
                        {"name": f"bench-auth-{uuid.uuid4().hex[:8]}"})["experiment_id"]
        run = self.call("POST", f"{API}/runs/create",
                        {"experiment_id": exp, "start_time": common.now_ms()})
        return run["run"]["info"]["run_id"]


def write_bodies(p: Principal, n: int) -> list[bytes]:
    """log-metric bodies as MlflowClient.log_metric sends them (RestStore.log_metric)."""
    base_ts = common.now_ms()
    bodies = []
    for i in range(n):
        step = p.step + i
        bodies.append(json.dumps({"run_uuid": p.run_id, "run_id": p.run_id, "key": "bench_auth",
                                  "value": 1.0 / (step + 1), "timestamp": base_ts + i,
                                  "step": step}).encode())
    p.step += n
    return bodies


def send(session, base: str, request: str, body: Optional[bytes]):
    if request == "read":
        return session.get(base + READ_PATH, timeout=Admin.TIMEOUT)
    return session.post(base + WRITE_PATH, data=body, timeout=Admin.TIMEOUT,
                        headers={"Content-Type": "application/json"})


def check_answer(resp, request: str) -> None:
    if resp.status_code != 200:
        raise BenchFailure(f"{request} -> HTTP {resp.status_code}: {resp.text[:1000]}")


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def measure_case(srv: ServerProcess, server: str, p: Principal, request: str, threads: int,
                 count: int) -> CaseResult:
    """`threads` workers, each with its own keep-alive session, send `count` requests.

    The workers take request slots from one shared counter until `count` have been sent,
    so the faster threads do more. Every session first sends WARMUP_PER_SESSION untimed
    requests (its connection is open before the clock starts). The wall time runs from
    the first worker's start to the last worker's end, after a common start line.
    """
    base = srv.url
    sessions = [new_session(p.authorization) for _ in range(threads)]
    try:
        warm = write_bodies(p, threads * WARMUP_PER_SESSION) if request == "write" else None

        def warm_up(i: int) -> None:
            for k in range(WARMUP_PER_SESSION):
                body = warm[i * WARMUP_PER_SESSION + k] if warm else None
                check_answer(send(sessions[i], base, request, body), request)

        common.run_parallel(warm_up, range(threads), threads)

        bodies = write_bodies(p, count) if request == "write" else None
        lock = threading.Lock()
        next_slot = [0]
        stop = threading.Event()
        start_line = threading.Barrier(threads, timeout=BARRIER_TIMEOUT_S)

        def worker(i: int) -> tuple[float, float, list[float]]:
            s = sessions[i]
            lat: list[float] = []
            start_line.wait()
            t_start = time.perf_counter()
            try:
                while not stop.is_set():
                    with lock:
                        slot = next_slot[0]
                        if slot >= count:
                            break
                        next_slot[0] = slot + 1
                    body = bodies[slot] if bodies else None
                    t0 = time.perf_counter()
                    resp = send(s, base, request, body)
                    lat.append(time.perf_counter() - t0)
                    check_answer(resp, request)
            except BaseException:
                stop.set()
                raise
            return t_start, time.perf_counter(), lat

        cpu0 = srv.cpu_seconds()
        parts = common.run_parallel(worker, range(threads), threads)
        cpu_ms = (srv.cpu_seconds() - cpu0) * 1000
    finally:
        for s in sessions:
            s.close()

    wall = max(end for _, end, _ in parts) - min(start for start, _, _ in parts)
    lat_ms = [x * 1000 for _, _, lat in parts for x in lat]
    if len(lat_ms) != count:
        raise BenchFailure(f"sent {len(lat_ms)} requests, expected {count}")
    method, path = REQUESTS[request]
    return CaseResult(server=server, mode=p.mode, request=request, threads=threads,
                      method=method, path=path, requests=count, wall_s=wall,
                      req_per_s=count / wall, p50_ms=statistics.median(lat_ms),
                      p99_ms=common.percentile(lat_ms, 99), mean_ms=statistics.fmean(lat_ms),
                      min_ms=min(lat_ms), max_ms=max(lat_ms), server_cpu_ms=cpu_ms,
                      server_cpu_us_per_req=cpu_ms * 1000 / count)


def measure_signins(srv: ServerProcess, server: str, case: str, authorization: str,
                    count: int) -> SigninResult:
    """`count` failed sign-ins (the read request with bad credentials), one at a time.

    One untimed attempt first. Every answer must be 401.
    """
    s = new_session(authorization)
    try:
        statuses = set()
        resp = send(s, srv.url, "read", None)
        statuses.add(resp.status_code)
        lat = []
        cpu0 = srv.cpu_seconds()
        for _ in range(count):
            t0 = time.perf_counter()
            resp = send(s, srv.url, "read", None)
            lat.append((time.perf_counter() - t0) * 1000)
            statuses.add(resp.status_code)
        cpu_ms = (srv.cpu_seconds() - cpu0) * 1000
    finally:
        s.close()
    if statuses != {401}:
        raise BenchFailure(f"failed sign-ins ({SIGNIN_CASES[case]}) answered HTTP "
                           f"{sorted(statuses)}, expected only 401: {resp.text[:500]}")
    return SigninResult(server=server, case=case, requests=count, status=401,
                        p50_ms=statistics.median(lat), mean_ms=statistics.fmean(lat),
                        min_ms=min(lat), max_ms=max(lat),
                        server_cpu_ms_per_attempt=cpu_ms / count)


# --------------------------------------------------------------------------------------
# Servers and their principals
# --------------------------------------------------------------------------------------


def clean_env(prefixes: tuple[str, ...]) -> dict[str, str]:
    """os.environ without variables that would change the server's auth set-up."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def plinth_instance(binary: Path, workdir: Path, auth: bool, admin_password: str) -> ServerProcess:
    """common.plinth_server's command line, with auth set explicitly in the environment."""
    srv = common.plinth_server(binary, workdir)
    env = clean_env(("PLINTH__AUTH__",))
    if auth:
        env.update({
            "PLINTH__AUTH__ENABLED": "true",
            "PLINTH__AUTH__BOOTSTRAP_ADMIN_PASSWORD": admin_password,
            "PLINTH__AUTH__MAX_FAILURES_PER_ADDRESS": str(FAILURE_LIMIT),
            "PLINTH__AUTH__MAX_FAILURES_PER_USER": str(FAILURE_LIMIT),
        })
    else:
        env["PLINTH__AUTH__ENABLED"] = "false"
    srv.env = env
    return srv


def mlflow_instance(workdir: Path, args: argparse.Namespace, auth: bool,
                    admin_password: str) -> tuple[ServerProcess, dict]:
    """common.mlflow_server's command line; with auth, plus `--app-name basic-auth` and
    a basic_auth.ini (its own SQLite user store) named by MLFLOW_AUTH_CONFIG_PATH."""
    srv = common.mlflow_server(workdir, args.mlflow_workers, not args.mlflow_no_job_runner)
    env = {k: v for k, v in (srv.env or os.environ).items()
           if k not in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME",
                        "MLFLOW_AUTH_ADMIN_PASSWORD")}
    settings: dict[str, Any] = {"workers": args.mlflow_workers,
                                "job_runner": not args.mlflow_no_job_runner}
    if auth:
        ini = workdir / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{workdir / 'basic_auth.db'}\n"
            f"admin_username = {MLFLOW_ADMIN}\n"
            f"admin_password = {admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {args.mlflow_auth_cache_ttl}\n")
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        # The basic-auth app refuses to start without a static key for its CSRF protection.
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(32)
        srv.argv = srv.argv + ["--app-name", "basic-auth"]
        settings.update({"app_name": "basic-auth", "default_permission": "READ",
                         "auth_cache_ttl_seconds": args.mlflow_auth_cache_ttl})
    srv.env = env
    return srv, settings


def plinth_principals(base: str, auth: bool, admin_password: str) -> tuple[list[Principal],
                                                                           dict[str, str]]:
    """Set up the principals of each Plinth mode; returns them and the failed-sign-in
    Authorization headers (auth on only)."""
    if not auth:
        anon = Admin(base, None)
        try:
            anon.call("GET", READ_PATH)  # auth really is off
            return [Principal("off", None, anon.own_run())], {}
        finally:
            anon.close()

    admin_auth = basic(PLINTH_ADMIN, admin_password)
    member_password = "member-" + secrets.token_urlsafe(18)
    member_auth = basic(PLINTH_MEMBER, member_password)
    anon, admin = Admin(base, None), Admin(base, admin_auth)
    member = Admin(base, member_auth)
    try:
        anon.call("GET", READ_PATH, expect=401)  # auth really is on
        admin.call("POST", f"{PLINTH_V1}/users", {"name": PLINTH_MEMBER, "role": "member",
                                                  "password": member_password})
        admin.call("PUT", f"{PLINTH_V1}/grants", {"user": PLINTH_MEMBER, "kind": "experiment",
                                                  "resource": "0", "level": "READ"})
        member.call("GET", READ_PATH)
        member_run = member.own_run()
        token = member.call("POST", f"{PLINTH_V1}/tokens", {"name": "bench-auth"})["secret"]
        principals = [
            Principal("basic-admin", admin_auth, admin.own_run()),
            Principal("basic-user", member_auth, member_run),
            Principal("bearer-user", f"Bearer {token}", member_run),
        ]
    finally:
        for c in (anon, admin, member):
            c.close()
    signins = {"wrong-password": basic(PLINTH_MEMBER, "wrong-" + secrets.token_urlsafe(18)),
               "unknown-user": basic("bench-nobody", "wrong-" + secrets.token_urlsafe(18))}
    return principals, signins


def mlflow_principals(base: str, auth: bool, admin_password: str) -> tuple[list[Principal],
                                                                           dict[str, str]]:
    if not auth:
        anon = Admin(base, None)
        try:
            anon.call("GET", READ_PATH)
            return [Principal("off", None, anon.own_run())], {}
        finally:
            anon.close()

    admin_auth = basic(MLFLOW_ADMIN, admin_password)
    user_password = "user-" + secrets.token_urlsafe(18)
    user_auth = basic(MLFLOW_USER, user_password)
    anon, admin, user = Admin(base, None), Admin(base, admin_auth), Admin(base, user_auth)
    try:
        anon.call("GET", READ_PATH, expect=401)
        admin.call("POST", f"{API}/users/create", {"username": MLFLOW_USER,
                                                   "password": user_password})
        # The per-user grant API of MLflow 3.17's RBAC store (experiments/permissions/create
        # of older releases is gone).
        admin.call("POST", "/api/3.0/mlflow/users/permissions/grant",
                   {"username": MLFLOW_USER, "resource_type": "experiment", "resource_id": "0",
                    "permission": "READ"})
        user.call("GET", READ_PATH)
        principals = [Principal("basic-admin", admin_auth, admin.own_run()),
                      Principal("basic-user", user_auth, user.own_run())]
    finally:
        for c in (anon, admin, user):
            c.close()
    signins = {"wrong-password": basic(MLFLOW_USER, "wrong-" + secrets.token_urlsafe(18)),
               "unknown-user": basic("bench-nobody", "wrong-" + secrets.token_urlsafe(18))}
    return principals, signins


def run_instance(srv: ServerProcess, result: InstanceResult, setup: Callable[[str], tuple],
                 threads_list: list[int], count: int, signin_count: int,
                 startup_timeout: float) -> None:
    """Start one server, set up its principals, run every case; fill `result`."""
    result.command = srv.argv
    log(f"[{result.name}] starting: {' '.join(srv.argv)}")
    try:
        result.startup_ms = srv.start(startup_timeout) * 1000
        log(f"[{result.name}] ready at {srv.url} after {result.startup_ms:.0f} ms")
        time.sleep(1.0)
        result.idle_rss_mib = srv.rss_bytes() / MIB
        principals, signins = setup(srv.url)
    except (BenchFailure, common.requests.RequestException, KeyError, ValueError) as e:
        result.failures.append(f"start-up and set-up: {type(e).__name__}: {e}")
        log(f"[{result.name}] set-up FAILED: {e}")
        return

    try:
        for p in principals:
            for request in REQUESTS:
                for threads in threads_list:
                    what = f"{MODES[p.mode].label}, {request}, {threads} thread(s)"
                    if not srv.alive():
                        result.failures.append(f"{what}: skipped, server exited with code "
                                               f"{srv.proc.returncode}; log tail:\n"
                                               f"{srv.log_tail()}")
                        continue
                    try:
                        case = measure_case(srv, result.server, p, request, threads, count)
                    except (BenchFailure, common.requests.RequestException, KeyError,
                            ValueError, threading.BrokenBarrierError) as e:
                        result.failures.append(f"{what}: {type(e).__name__}: {e}")
                        log(f"[{result.name}] {what} FAILED: {e}")
                        continue
                    result.cases.append(case)
                    log(f"[{result.name}] {what}: {case.req_per_s:,.0f} req/s, "
                        f"p50 {case.p50_ms:.2f} ms, p99 {case.p99_ms:.2f} ms")
        for case, authorization in signins.items():
            what = f"failed sign-ins, {SIGNIN_CASES[case]}"
            try:
                r = measure_signins(srv, result.server, case, authorization, signin_count)
            except (BenchFailure, common.requests.RequestException) as e:
                result.failures.append(f"{what}: {type(e).__name__}: {e}")
                log(f"[{result.name}] {what} FAILED: {e}")
                continue
            result.signins.append(r)
            log(f"[{result.name}] {what}: p50 {r.p50_ms:.2f} ms, server CPU "
                f"{r.server_cpu_ms_per_attempt:.1f} ms per attempt")
    finally:
        result.peak_rss_mib = srv.peak_rss / MIB if srv.peak_rss else None


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def find_case(results: list[InstanceResult], server: str, mode: str, request: str,
              threads: int) -> Optional[CaseResult]:
    for r in results:
        for c in r.cases:
            if (c.server, c.mode, c.request, c.threads) == (server, mode, request, threads):
                return c
    return None


def change(new: float, old: float) -> str:
    """new versus old: a percentage for small changes, a factor for large ones."""
    if old <= 0 or new <= 0:
        return "-"
    r = new / old
    if r >= 2:
        return f"×{r:.1f}"
    if r <= 0.5:
        return f"÷{1 / r:.1f}"
    return f"{(r - 1) * 100:+.0f}%"


def signed(v: float) -> str:
    text = common.fmt_num(abs(v))
    if text.strip("0.,") == "":
        return "±0"
    return ("+" if v > 0 else "-") + text


def overhead_text(c: CaseResult, base: Optional[CaseResult]) -> str:
    """Auth-on versus auth-off for the same server, request and threads."""
    if c.mode == "off":
        return "(baseline)"
    if base is None:
        return "-"
    return (f"req/s {change(c.req_per_s, base.req_per_s)}, "
            f"p50 {signed(c.p50_ms - base.p50_ms)} ms ({change(c.p50_ms, base.p50_ms)}), "
            f"CPU {signed(c.server_cpu_us_per_req - base.server_cpu_us_per_req)} µs/req")


def render(lines: list[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = []
    for n, r in enumerate(lines):
        cells = [f"{c:>{w}}" if i in right else f"{c:<{w}}"
                 for i, (c, w) in enumerate(zip(r, widths))]
        out.append(" | ".join(cells).rstrip())
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def server_table(results: list[InstanceResult], server: str, modes: list[str],
                 threads_list: list[int]) -> str:
    lines = [("mode", "request", "threads", "req/s", "p50 (ms)", "p99 (ms)",
              "server CPU (µs/req)", "vs auth off (same server, request, threads)")]
    for mode in modes:
        for request in REQUESTS:
            for threads in threads_list:
                c = find_case(results, server, mode, request, threads)
                label = (MODES[mode].label, request, str(threads))
                if c is None:
                    lines.append(label + ("FAILED",) + ("-",) * 3 + ("",))
                    continue
                base = find_case(results, server, "off", request, threads)
                lines.append(label + (common.fmt_num(c.req_per_s), common.fmt_num(c.p50_ms),
                                      common.fmt_num(c.p99_ms),
                                      common.fmt_num(c.server_cpu_us_per_req),
                                      overhead_text(c, base)))
    return render(lines, {2, 3, 4, 5, 6})


def comparison_table(results: list[InstanceResult], threads_list: list[int]) -> str:
    rows = [common.Row("req/s", lambda c: c.req_per_s, True, "faster", "slower"),
            common.Row("p50", lambda c: c.p50_ms, False, "faster", "slower"),
            common.Row("p99", lambda c: c.p99_ms, False, "faster", "slower"),
            common.Row("CPU", lambda c: c.server_cpu_us_per_req, False, "less CPU", "more CPU")]
    lines = [("mode (Plinth ↔ MLflow)", "request", "threads", "req/s", "p50", "p99",
              "server CPU / req")]
    for mode in MLFLOW_MODES:
        for request in REQUESTS:
            for threads in threads_list:
                p = find_case(results, "plinth", mode, request, threads)
                m = find_case(results, "mlflow", mode, request, threads)
                cells = tuple((common.ratio_text(row, row.get(p), row.get(m)) or "-")
                              if p and m else "-" for row in rows)
                lines.append((MODES[mode].label, request, str(threads)) + cells)
    return render(lines, {2})


def signin_table(results: list[InstanceResult], servers: list[str]) -> str:
    names = {"plinth": "Plinth", "mlflow": "MLflow"}
    header = ["case"]
    for s in servers:
        header += [f"{names[s]} p50 (ms)", f"{names[s]} server CPU (ms/attempt)"]
    lines = [tuple(header)]
    for case, label in SIGNIN_CASES.items():
        row = [label]
        for s in servers:
            r = next((x for r in results for x in r.signins
                      if x.server == s and x.case == case), None)
            row += ([common.fmt_num(r.p50_ms), common.fmt_num(r.server_cpu_ms_per_attempt)]
                    if r else ["FAILED", "-"])
        lines.append(tuple(row))
    return render(lines, set(range(1, len(header))))


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_threads(raw: str) -> list[int]:
    try:
        values = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {raw!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("thread counts must be at least 1")
    return list(dict.fromkeys(values))


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_server_args(ap, SCALES, "also benchmark MLflow, plain and with its basic-auth app "
                           "(installs mlflow==3.17.2)")
    ap.add_argument("--threads", type=parse_threads, default=[1, 8],
                    help="comma-separated client thread counts (default 1,8)")
    ap.add_argument("--requests", type=int,
                    help="requests per case, overriding the scale's (full 5,000, small 500)")
    ap.add_argument("--mlflow-requests", type=int,
                    help="requests per MLflow case (default: the same as Plinth's). Every "
                    "basic-auth request runs MLflow's password hash, so full-size MLflow cases "
                    "are slow")
    ap.add_argument("--mlflow-auth-cache-ttl", type=int, default=0, metavar="S",
                    help="basic_auth.ini auth_cache_ttl_seconds (default 0, MLflow's default: "
                    "no cache, every request verifies the password hash)")
    args = ap.parse_args(argv)
    for opt in ("requests", "mlflow_requests"):
        if getattr(args, opt) is not None and getattr(args, opt) < 1:
            ap.error(f"--{opt.replace('_', '-')} must be at least 1")
    if args.mlflow_auth_cache_ttl < 0:
        ap.error("--mlflow-auth-cache-ttl must not be negative")
    common.resolve_servers(ap, args)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        common.ensure_venv(args.with_mlflow, script=Path(__file__))
        common.import_driver_deps()
        if args.with_mlflow:
            ensure_mlflow_auth_extra()
        signal.signal(signal.SIGTERM, common._raise_interrupt)
        scale = SCALES[args.scale]
        plinth_bin = common.resolve_plinth_binary(args.plinth_bin) \
            if "plinth" in args.server_list else None
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2
    count = args.requests or scale.requests
    mlflow_count = args.mlflow_requests or count
    threads_list = args.threads

    versions = {"driver_python": platform.python_version(),
                "requests": common.requests.__version__, "git_revision": common.git_revision()}
    if plinth_bin:
        versions["plinth"] = common.plinth_version(plinth_bin)
        versions["plinth_bin"] = str(plinth_bin)
    if args.with_mlflow:
        from importlib.metadata import version
        versions["mlflow"] = version("mlflow")
    machine = common.machine_info()

    results: list[InstanceResult] = []
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="plinth-bench-auth-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        for server in args.server_list:
            for auth in (False, True):
                tag = f"{server}-auth-{'on' if auth else 'off'}"
                workdir = root / tag
                workdir.mkdir()
                password = "admin-" + secrets.token_urlsafe(18)
                if server == "plinth":
                    srv = plinth_instance(plinth_bin, workdir, auth, password)
                    name = f"Plinth, auth {'on' if auth else 'off'}"
                    settings: dict[str, Any] = {"auth_enabled": auth}
                    if auth:
                        settings.update({"max_failures_per_address": FAILURE_LIMIT,
                                         "max_failures_per_user": FAILURE_LIMIT})
                    result = InstanceResult("plinth", auth, name, versions["plinth"],
                                            settings=settings)
                    setup = lambda url, a=auth, pw=password: plinth_principals(url, a, pw)  # noqa: E731
                    n = count
                else:
                    srv, settings = mlflow_instance(workdir, args, auth, password)
                    name = "MLflow, basic-auth app" if auth else "MLflow, auth off"
                    result = InstanceResult("mlflow", auth, name, versions["mlflow"],
                                            settings=settings)
                    setup = lambda url, a=auth, pw=password: mlflow_principals(url, a, pw)  # noqa: E731
                    n = mlflow_count
                srv.name = name
                results.append(result)
                try:
                    run_instance(srv, result, setup, threads_list, n, scale.failed_signins,
                                 args.startup_timeout)
                finally:
                    log(f"[{name}] stopping")
                    srv.stop()

    # --- report -------------------------------------------------------------------------
    print(f"Plinth auth benchmark, scale={scale.name} ({count:,} requests per case"
          + (f", MLflow {mlflow_count:,}" if args.with_mlflow and mlflow_count != count else "")
          + f"; client threads {', '.join(map(str, threads_list))}; "
          f"{scale.failed_signins} failed sign-ins per case, one at a time)")
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
          f"{machine['memory_gib']} GiB RAM, Linux {machine['kernel']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"requests: read = GET {READ_PATH}; write = POST {WRITE_PATH}")
    if "plinth" in args.server_list:
        print(f"plinth: auth on = PLINTH__AUTH__ENABLED=true, bootstrap admin, member with a "
              f"READ grant on experiment 0; failed-sign-in limits raised to {FAILURE_LIMIT:,}")
    if args.with_mlflow:
        jobs = "off" if args.mlflow_no_job_runner else "on (MLflow default)"
        cache = (f"auth_cache_ttl_seconds={args.mlflow_auth_cache_ttl}"
                 if args.mlflow_auth_cache_ttl else
                 "no credential cache (MLflow default: every request verifies the password)")
        print(f"mlflow server: --workers {args.mlflow_workers}, SQLite backend, job runner "
              f"{jobs}; auth = --app-name basic-auth, {cache}")
    for server, modes, title in (("plinth", PLINTH_MODES, "Plinth"),
                                 ("mlflow", MLFLOW_MODES, "MLflow")):
        if server in args.server_list:
            print(f"\n{title}")
            print(server_table(results, server, modes, threads_list))
    if "plinth" in args.server_list and args.with_mlflow:
        print("\nPlinth versus MLflow, same mode (ratio > 1: Plinth better)")
        print(comparison_table(results, threads_list))
    print(f"\nFailed sign-ins ({scale.failed_signins} read requests with bad HTTP Basic "
          f"credentials, one at a time, all answered 401)")
    print(signin_table(results, args.server_list))
    failures = [f"{r.name}: {f}" for r in results for f in r.failures]
    if failures:
        print("\nFAILURES:")
        for f in failures:
            print(f"  - {f}")

    if args.json:
        doc = {"benchmark": "auth", "scale": dataclasses.asdict(scale),
               "requests_per_case": {"plinth": count, "mlflow": mlflow_count},
               "threads": threads_list, "warmup_per_session": WARMUP_PER_SESSION,
               "machine": machine, "versions": versions,
               "mlflow_workers": args.mlflow_workers if args.with_mlflow else None,
               "mlflow_job_runner": (not args.mlflow_no_job_runner) if args.with_mlflow else None,
               "mlflow_auth_cache_ttl_seconds":
                   args.mlflow_auth_cache_ttl if args.with_mlflow else None,
               "instances": common.to_jsonable(results), "failures": failures,
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
