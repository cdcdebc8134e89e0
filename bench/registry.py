#!/usr/bin/env python3
"""Model-registry benchmark: Plinth versus the MLflow tracking server's registry.

Both servers are driven by the same Python driver over MLflow's REST registry API,
with JSON bodies shaped exactly as the ``mlflow`` client sends them:

  1. concurrent registration   N threads (default 32) create versions of ONE
                               registered model; throughput, latency, errors, and
                               whether the version numbers are exactly 1..M
  2. registry search           model-versions/search (by name, by tag, by run id,
                               full listing page by page), registered-models/search
                               and registered-models/get over >=10k versions

Usage (see bench/README.md, "Registry benchmark"):

    python3 bench/registry.py [--with-mlflow] [--plinth-bin PATH]
                              [--scale full|small] [--json OUT] [--threads N]
                              [--servers plinth,mlflow]

The process machinery (virtualenv bootstrap, server start/stop, RSS and CPU
sampling, the HTTP client, the Plinth build) is shared with bench/tracking.py,
which this script imports. Only the standard library is used before the
virtualenv re-exec.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracking as common  # noqa: E402  (bench/tracking.py: the shared machinery)
from tracking import API, MIB, BenchFailure, ServerProcess, SetupError, log  # noqa: E402

# How many threads populate the search phase's data set (untimed setup).
POPULATE_THREADS = 8
# Page size of every timed model-versions/search (the brief's max_results).
VERSION_PAGE_SIZE = 1_000
# registered-models/search page size (the client's SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT).
MODEL_PAGE_SIZE = 100
# The registration phase gives up after this many failed requests (a dead server).
MIN_ERROR_BUDGET = 100


# --------------------------------------------------------------------------------------
# Configuration and result records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Workload sizes. `full` is the published benchmark; `small` proves the driver."""

    name: str
    register_versions: int   # phase 1: versions of one model, created concurrently
    search_versions: int     # phase 2: versions spread over `models` registered models
    models: int = 100
    runs: int = 100          # runs the phase-2 versions point at (round robin)
    tag_every: int = 10      # every 10th version gets the tag stage=candidate
    search_repeats: int = 30


SCALES = {
    "full": Scale("full", register_versions=2_000, search_versions=10_000),
    "small": Scale("small", register_versions=200, search_versions=1_000),
}


@dataclass
class RegistrationResult:
    threads: int
    target_versions: int
    created: int
    errors: int
    wall_s: float
    versions_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    server_cpu_ms: float
    server_cpu_ms_per_version: float
    # Checks on the version numbers the server answered with.
    distinct: bool
    gap_free: bool            # sorted(returned) == [1, 2, ..., target]
    duplicate_numbers: int    # answers that repeated an already-returned number
    missing_numbers: int      # numbers in 1..target never returned
    missing_sample: list[int] = field(default_factory=list)
    unexpected_sample: list[int] = field(default_factory=list)  # returned, outside 1..target
    # What the server stored afterwards (model-versions/search name='<model>').
    stored_versions: Optional[int] = None
    stored_distinct: Optional[bool] = None
    stored_gap_free: Optional[bool] = None
    latest_version: Optional[int] = None  # registered-models/get latest_versions
    error_samples: list[str] = field(default_factory=list)
    cleanup_error: Optional[str] = None   # registered-models/delete afterwards


@dataclass
class QueryTiming:
    endpoint: str
    params: dict
    expected: Optional[int]   # what the driver computes from what it created
    count: int                # what the server returned (all pages)
    pages: int
    repeats: int
    median_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float
    server_cpu_ms_per_call: float


@dataclass
class SearchPhaseResult:
    versions: int
    models: int
    runs: int
    tagged_versions: int
    populate_s: float
    populate_versions_per_s: float
    populate_threads: int
    queries: dict[str, Optional[QueryTiming]] = field(default_factory=dict)


@dataclass
class RegistryServerResult:
    name: str
    version: str = "unknown"
    command: list[str] = field(default_factory=list)
    startup_ms: Optional[float] = None
    idle_rss_mib: Optional[float] = None
    peak_rss_mib: Optional[float] = None
    registration: Optional[RegistrationResult] = None
    search: Optional[SearchPhaseResult] = None
    server_cpu_ms_total: Optional[float] = None
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# HTTP: the registry calls, bodies shaped as the mlflow client's message_to_json output
# --------------------------------------------------------------------------------------


class RegistryApi(common.Api):
    """common.Api plus the registry endpoints (RestStore in mlflow/store/model_registry)."""

    def create_registered_model(self, name: str) -> dict:
        return self.post(f"{API}/registered-models/create", {"name": name})["registered_model"]

    def create_model_version(self, name: str, run_id: str, tags=()) -> dict:
        return self.post(f"{API}/model-versions/create", version_body(name, run_id, tags))[
            "model_version"]

    def delete(self, path: str, body: dict) -> None:
        # DeleteRegisteredModel is a DELETE with a JSON body, as the client sends it.
        resp = self.session.delete(self.base + path, data=json.dumps(body).encode(),
                                   timeout=self.TIMEOUT,
                                   headers={"Content-Type": "application/json"})
        self.check(resp, f"DELETE {path}")


def version_body(name: str, run_id: str, tags=()) -> dict:
    """CreateModelVersion as MlflowClient.create_model_version(name, source, run_id, tags)
    sends it: empty fields (tags, run_link, description, model_id) are omitted."""
    body: dict[str, Any] = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id}
    if tags:
        body["tags"] = [{"key": k, "value": v} for k, v in tags]
    return body


def fetch_all(api: RegistryApi, path: str, params: dict, key: str) -> tuple[float, list, int]:
    """GET a search endpoint and follow next_page_token to the end, as a paging client does.

    The client sends GET requests with the message's fields as query parameters (empty
    ones omitted). Returns (seconds spent in HTTP round trips, all items, pages); the
    driver's JSON decoding is not timed.
    """
    token, elapsed, items, pages = None, 0.0, [], 0
    while True:
        q = dict(params)
        if token:
            q["page_token"] = token
        t0 = time.perf_counter()
        raw = api.get_raw(path, q)
        elapsed += time.perf_counter() - t0
        page = json.loads(raw)
        items += page.get(key, [])
        pages += 1
        token = page.get("next_page_token")
        if not token:
            return elapsed, items, pages
        if pages > 10_000:
            raise BenchFailure(f"{path}: next_page_token never ends")


def quote(s: str) -> str:
    return "'" + s.replace("'", "\\'") + "'"


# --------------------------------------------------------------------------------------
# Phase 1: concurrent registration of one model
# --------------------------------------------------------------------------------------


def phase_register(api: RegistryApi, srv: ServerProcess, scale: Scale,
                   threads: int) -> RegistrationResult:
    """`threads` clients create versions of one registered model until `target` exist.

    A failed request (non-2xx, connection error) counts as an error and its slot is
    retried, so the phase ends with `target` acknowledged versions unless the error
    budget runs out. Errors and odd version numbers are reported, not raised.
    """
    tag = uuid.uuid4().hex[:8]
    exp = api.create_experiment(f"bench-registry-{tag}")
    run_id = api.create_run(exp)["run_id"]
    model = f"bench-register-{tag}"
    api.create_registered_model(model)
    target = scale.register_versions
    path = f"{API}/model-versions/create"
    body = json.dumps(version_body(model, run_id)).encode()  # encoded before the clock

    lock = threading.Lock()
    stop = threading.Event()
    left = [target]
    errors = [0]
    budget = max(MIN_ERROR_BUDGET, target)
    latencies: list[float] = []
    numbers: list[int] = []
    error_samples: list[str] = []
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait()
        while not stop.is_set():
            with lock:
                if left[0] <= 0 or errors[0] >= budget:
                    return
                left[0] -= 1
            t0 = time.perf_counter()
            try:
                raw = api.post_raw(path, body)
                dt = time.perf_counter() - t0
                number = int(json.loads(raw)["model_version"]["version"])
            except (BenchFailure, common.requests.RequestException, KeyError, ValueError,
                    TypeError) as e:
                with lock:
                    left[0] += 1  # the slot is retried
                    errors[0] += 1
                    sample = f"{type(e).__name__}: {str(e)[:500]}"
                    if len(error_samples) < 5 and sample not in error_samples:
                        error_samples.append(sample)
                if not srv.alive():
                    stop.set()
                continue
            with lock:
                latencies.append(dt * 1000)
                numbers.append(number)

    workers = [threading.Thread(target=worker, name=f"register-{i}", daemon=True)
               for i in range(threads)]
    for t in workers:
        t.start()
    cpu0 = srv.cpu_seconds()
    try:
        start.wait()
        t0 = time.perf_counter()
        for t in workers:
            t.join()
    except BaseException:
        stop.set()
        start.abort()
        raise
    wall = time.perf_counter() - t0
    cpu_ms = (srv.cpu_seconds() - cpu0) * 1000
    log(f"  registration: {len(numbers):,} versions, {errors[0]} errors, {wall:.1f} s")
    if not numbers:
        raise BenchFailure(f"registration: no version was created ({errors[0]} errors); "
                           f"first error: {error_samples[0] if error_samples else '?'}")

    expected = set(range(1, target + 1))
    got = set(numbers)
    missing = sorted(expected - got)
    res = RegistrationResult(
        threads=threads, target_versions=target, created=len(numbers), errors=errors[0],
        wall_s=wall, versions_per_s=len(numbers) / wall,
        p50_ms=statistics.median(latencies), p99_ms=common.percentile(latencies, 99),
        mean_ms=statistics.fmean(latencies), min_ms=min(latencies), max_ms=max(latencies),
        server_cpu_ms=cpu_ms, server_cpu_ms_per_version=cpu_ms / len(numbers),
        distinct=len(got) == len(numbers), gap_free=sorted(numbers) == sorted(expected),
        duplicate_numbers=len(numbers) - len(got), missing_numbers=len(missing),
        missing_sample=missing[:10], unexpected_sample=sorted(got - expected)[:10],
        error_samples=error_samples)
    if not (res.distinct and res.gap_free):
        log(f"  registration: version numbers are not exactly 1..{target} "
            f"({res.duplicate_numbers} repeated, {res.missing_numbers} missing)")

    # Untimed: what the server stored, and what registered-models/get calls the latest.
    _, stored, _ = fetch_all(api, f"{API}/model-versions/search",
                             {"filter": f"name={quote(model)}", "max_results": VERSION_PAGE_SIZE},
                             "model_versions")
    stored_numbers = [int(v["version"]) for v in stored]
    res.stored_versions = len(stored_numbers)
    res.stored_distinct = len(set(stored_numbers)) == len(stored_numbers)
    res.stored_gap_free = sorted(stored_numbers) == list(range(1, len(stored_numbers) + 1))
    rm = json.loads(api.get_raw(f"{API}/registered-models/get", {"name": model}))
    latest = rm.get("registered_model", {}).get("latest_versions", [])
    res.latest_version = max((int(v["version"]) for v in latest), default=None)

    # Remove the model so that the search phase lists exactly its own versions.
    try:
        api.delete(f"{API}/registered-models/delete", {"name": model})
    except (BenchFailure, common.requests.RequestException) as e:
        res.cleanup_error = str(e)
    return res


# --------------------------------------------------------------------------------------
# Phase 2: registry search over >= 10k versions
# --------------------------------------------------------------------------------------


def model_name(i: int) -> str:
    return f"model-{i:03d}"


# The timed queries, in the order they run (their definitions are in phase_search).
QUERY_ORDER = ["mv_name", "mv_tag", "mv_run", "mv_list", "rm_search", "rm_get"]


def phase_search(api: RegistryApi, srv: ServerProcess, scale: Scale,
                 failures: list[str]) -> SearchPhaseResult:
    """Populate `search_versions` versions over `models` models, then time six queries.

    A query that fails (non-2xx, wrong count) is recorded in `failures` and the others
    still run; its entry in `queries` is None when it has no timing.
    """
    exp = api.create_experiment(f"bench-registry-search-{uuid.uuid4().hex[:8]}")
    per_model = scale.search_versions // scale.models
    total = per_model * scale.models

    # --- populate (untimed as a headline; its wall time is reported) --------------------
    log(f"  search setup: {scale.models} models, {scale.runs} runs, {total:,} versions")
    t0 = time.perf_counter()
    run_ids = common.run_parallel(lambda _: api.create_run(exp)["run_id"], range(scale.runs),
                                  POPULATE_THREADS)

    def global_index(m: int, v: int) -> int:  # v is the 1-based version number
        return m * per_model + (v - 1)

    def tags_of(g: int) -> list[tuple[str, str]]:
        return [("stage", "candidate")] if g % scale.tag_every == 0 else []

    def populate_model(m: int) -> None:
        # One task per model: its versions are created in order, one after the other, so
        # version v of model m is known in advance (the concurrent case is phase 1's).
        name = model_name(m)
        api.create_registered_model(name)
        for v in range(1, per_model + 1):
            g = global_index(m, v)
            mv = api.create_model_version(name, run_ids[g % scale.runs], tags_of(g))
            if int(mv["version"]) != v:
                raise BenchFailure(f"populate: {name} answered version {mv['version']}, "
                                   f"expected {v}")

    common.run_parallel(populate_model, range(scale.models), POPULATE_THREADS)
    populate_s = time.perf_counter() - t0
    res = SearchPhaseResult(versions=total, models=scale.models, runs=scale.runs,
                            tagged_versions=sum(1 for g in range(total) if g % scale.tag_every
                                                == 0),
                            populate_s=populate_s, populate_versions_per_s=total / populate_s,
                            populate_threads=POPULATE_THREADS)
    log(f"  search setup done in {populate_s:.1f} s")

    # --- what each query must return -------------------------------------------------
    probe_model = 42 % scale.models
    probe_run = 42 % scale.runs
    by_run = sum(1 for m in range(scale.models) for v in range(1, per_model + 1)
                 if global_index(m, v) % scale.runs == probe_run)
    mv = f"{API}/model-versions/search"
    queries: dict[str, tuple[str, dict, str, int]] = {
        "mv_name": (mv, {"filter": f"name={quote(model_name(probe_model))}",
                         "max_results": VERSION_PAGE_SIZE}, "model_versions", per_model),
        "mv_tag": (mv, {"filter": "tags.stage='candidate'", "max_results": VERSION_PAGE_SIZE},
                   "model_versions", res.tagged_versions),
        "mv_run": (mv, {"filter": f"run_id={quote(run_ids[probe_run])}",
                        "max_results": VERSION_PAGE_SIZE}, "model_versions", by_run),
        "mv_list": (mv, {"max_results": VERSION_PAGE_SIZE}, "model_versions", total),
        "rm_search": (f"{API}/registered-models/search",
                      {"filter": "name LIKE 'model-0%'", "max_results": MODEL_PAGE_SIZE},
                      "registered_models",
                      sum(1 for m in range(scale.models) if model_name(m).startswith("model-0"))),
        # registered-models/get: the count is the number of latest_versions (one: stage None).
        "rm_get": (f"{API}/registered-models/get", {"name": model_name(probe_model)},
                   "registered_model", 1),
    }

    for key in QUERY_ORDER:
        path, params, items_key, expected = queries[key]
        if not srv.alive():
            failures.append(f"search {key}: skipped, server exited")
            res.queries[key] = None
            continue
        try:
            res.queries[key] = time_query(api, srv, scale, key, path, params, items_key,
                                          expected, per_model, failures)
        except (BenchFailure, common.requests.RequestException, KeyError, ValueError) as e:
            failures.append(f"search {key}: {type(e).__name__}: {e}")
            log(f"  search {key} FAILED: {e}")
            res.queries[key] = None
    return res


def time_query(api: RegistryApi, srv: ServerProcess, scale: Scale, key: str, path: str,
               params: dict, items_key: str, expected: int, per_model: int,
               failures: list[str]) -> QueryTiming:
    """One untimed warm-up call that checks the answer, then `search_repeats` timed calls.

    A timed call is the whole answer: every page, following next_page_token.
    """

    def call() -> tuple[float, int, int, Any]:
        if key == "rm_get":
            t0 = time.perf_counter()
            raw = api.get_raw(path, params)
            elapsed = time.perf_counter() - t0
            model = json.loads(raw)[items_key]
            return elapsed, len(model.get("latest_versions", [])), 1, model
        elapsed, items, pages = fetch_all(api, path, params, items_key)
        return elapsed, len(items), pages, items

    _, count, pages, answer = call()
    problems = []
    if count != expected:
        problems.append(f"returned {count}, expected {expected}")
    if key == "mv_list":
        pairs = {(v["name"], v["version"]) for v in answer}
        if len(pairs) != len(answer):
            problems.append(f"{len(answer) - len(pairs)} versions listed twice across pages")
    if key == "rm_get" and answer.get("latest_versions"):
        latest = int(answer["latest_versions"][0]["version"])
        if latest != per_model:
            problems.append(f"latest version {latest}, expected {per_model}")
    if problems:
        # The timing is still taken and reported; the wrong answer is a failure.
        failures.append(f"search {key} ({path} {params}): " + "; ".join(problems))

    times = []
    cpu0 = srv.cpu_seconds()
    for _ in range(scale.search_repeats):
        elapsed, n, pages, _ = call()
        times.append(elapsed * 1000)
        if n != count:
            raise BenchFailure(f"returned {count} on the warm-up call, then {n}")
    cpu_ms = (srv.cpu_seconds() - cpu0) * 1000
    return QueryTiming(endpoint=path, params=params, expected=expected, count=count,
                       pages=pages, repeats=len(times), median_ms=statistics.median(times),
                       p95_ms=common.percentile(times, 95), min_ms=min(times),
                       max_ms=max(times), server_cpu_ms_per_call=cpu_ms / len(times))


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def run_server_benchmark(srv: ServerProcess, result: RegistryServerResult, scale: Scale,
                         threads: int, startup_timeout: float) -> None:
    """Start one server, run both phases against it, fill `result`."""
    result.command = srv.argv
    log(f"[{srv.name}] starting: {' '.join(srv.argv)}")
    try:
        result.startup_ms = srv.start(startup_timeout) * 1000
        log(f"[{srv.name}] ready at {srv.url} after {result.startup_ms:.0f} ms")
        time.sleep(1.0)
        result.idle_rss_mib = srv.rss_bytes() / MIB
    except BenchFailure as e:
        result.failures.append(f"start-up: {e}")
        return

    api = RegistryApi(srv.url)
    cpu_start = srv.cpu_seconds()
    try:
        phases: list[tuple[str, Callable[[], Any]]] = [
            ("registration", lambda: phase_register(api, srv, scale, threads)),
            ("search", lambda: phase_search(api, srv, scale, result.failures)),
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
            except (BenchFailure, common.requests.RequestException, KeyError, ValueError) as e:
                result.failures.append(f"{name}: {type(e).__name__}: {e}")
                log(f"[{srv.name}] phase {name} FAILED: {e}")
            log(f"[{srv.name}] phase {name} done in {time.perf_counter() - t0:.1f} s")
        if result.registration and result.registration.cleanup_error:
            result.failures.append(f"registration clean-up (registered-models/delete): "
                                   f"{result.registration.cleanup_error}")
        result.server_cpu_ms_total = (srv.cpu_seconds() - cpu_start) * 1000
    finally:
        api.close()
        result.peak_rss_mib = srv.peak_rss / MIB if srv.peak_rss else None


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextRow:
    """A row whose cells are words (no ratio), e.g. the version-number check."""

    label: str
    get: Callable[[RegistryServerResult], Optional[str]]


def _get(*attrs):
    def get(r):
        v = r
        for a in attrs:
            if v is None:
                return None
            v = v.get(a) if isinstance(v, dict) else getattr(v, a, None)
        return v
    return get


def numbering_text(r: RegistryServerResult) -> Optional[str]:
    reg = r.registration
    if reg is None:
        return None
    if reg.distinct and reg.gap_free:
        return "yes"
    return f"NO: {reg.duplicate_numbers} repeated, {reg.missing_numbers} missing"


def _rows(scale: Scale, threads: int) -> list[Union[common.Row, TextRow]]:
    Row = common.Row
    n = scale.search_versions
    rows: list[Union[common.Row, TextRow]] = [
        Row(f"registration, {threads} threads (versions/s)",
            _get("registration", "versions_per_s"), True, "faster", "slower"),
        Row("registration latency p50 (ms)", _get("registration", "p50_ms"), False, "faster",
            "slower"),
        Row("registration latency p99 (ms)", _get("registration", "p99_ms"), False, "faster",
            "slower"),
        TextRow("registration errors (non-2xx)",
                lambda r: None if r.registration is None else str(r.registration.errors)),
        TextRow(f"versions exactly 1..{scale.register_versions:,}, distinct", numbering_text),
        Row("registration server CPU (ms / version)",
            _get("registration", "server_cpu_ms_per_version"), False, "less CPU", "more CPU"),
    ]
    labels = {
        "mv_name": "versions name='model-042'",
        "mv_tag": "versions tags.stage='candidate'",
        "mv_run": "versions run_id='<run>'",
        "mv_list": f"list all {n:,} versions, pages of {VERSION_PAGE_SIZE:,}",
        "rm_search": "models name LIKE 'model-0%'",
        "rm_get": "registered-models/get",
    }
    for key in QUERY_ORDER:
        for stat, word in (("median_ms", "median"), ("p95_ms", "p95")):
            rows.append(Row(f"{labels[key]}, {word} (ms)", _get("search", "queries", key, stat),
                            False, "faster", "slower"))
    rows += [
        Row("peak RSS (MiB)", _get("peak_rss_mib"), False, "less memory", "more memory"),
        Row(f"setup: populate {n:,} versions (s)", _get("search", "populate_s"), False,
            "faster", "slower"),
    ]
    return rows


def render_table(results: dict[str, RegistryServerResult], scale: Scale, threads: int) -> str:
    header = ("metric", "Plinth", "MLflow", "ratio (>1: Plinth better)")
    lines = [header]
    p, m = results.get("plinth"), results.get("mlflow")
    for row in _rows(scale, threads):
        if isinstance(row, TextRow):
            cells = []
            for r in (p, m):
                v = row.get(r) if r is not None else None
                cells.append("not run" if r is None else
                             v if v is not None else "FAILED" if r.failures else "-")
            lines.append((row.label, cells[0], cells[1], ""))
            continue
        pv = row.get(p) if p else None
        mv = row.get(m) if m else None
        lines.append((row.label, common.cell(p, row, p is not None),
                      common.cell(m, row, m is not None), common.ratio_text(row, pv, mv)))
    widths = [max(len(r[i]) for r in lines) for i in range(4)]
    out = []
    for i, r in enumerate(lines):
        out.append(f"{r[0]:<{widths[0]}} | {r[1]:>{widths[1]}} | {r[2]:>{widths[2]}} | {r[3]}")
        if i == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def render_counts(results: dict[str, RegistryServerResult]) -> tuple[str, str]:
    """Per-query result counts on each server; returns (table, verdict).

    The verdict is "yes" when every server returned the same count for every query,
    "NO" when some query's counts differ, and "incomplete" when a count is missing.
    """
    several = len(results) > 1
    lines = [("query", "expected") + tuple(r.name for r in results.values())
             + (("same",) if several else ())]
    differ = incomplete = False
    for key in QUERY_ORDER:
        counts, expected = [], None
        for r in results.values():
            q = (r.search.queries.get(key) if r.search else None)
            counts.append(q.count if q else None)
            if q and q.expected is not None:
                expected = q.expected
        if None in counts:
            incomplete, same = True, "-"
        elif len(set(counts)) == 1:
            same = "yes"
        else:
            differ, same = True, "NO"
        lines.append((key, "-" if expected is None else str(expected))
                     + tuple("-" if c is None else str(c) for c in counts)
                     + ((same,) if several else ()))
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = ["  ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(r, widths)))
           for r in lines]
    return "\n".join(out), "NO" if differ else "incomplete" if incomplete else "yes"


def registration_notes(results: dict[str, RegistryServerResult]) -> list[str]:
    notes = []
    for r in results.values():
        reg = r.registration
        if reg is None:
            continue
        verdict = ("distinct and gap-free (exactly 1..{:,})".format(reg.target_versions)
                   if reg.distinct and reg.gap_free else
                   f"NOT exactly 1..{reg.target_versions:,}: {reg.duplicate_numbers} answers "
                   f"repeated a number, {reg.missing_numbers} numbers never returned"
                   + (f" (e.g. {reg.missing_sample})" if reg.missing_sample else "")
                   + (f", outside the range: {reg.unexpected_sample}"
                      if reg.unexpected_sample else ""))
        stored = (f"; stored afterwards: {reg.stored_versions:,} versions, "
                  f"{'distinct' if reg.stored_distinct else 'NOT distinct'}, "
                  f"{'gap-free' if reg.stored_gap_free else 'with gaps'}, "
                  f"latest_versions says {reg.latest_version}"
                  if reg.stored_versions is not None else "")
        notes.append(f"{r.name}: {reg.created:,} versions acknowledged, {reg.errors} errors; "
                     f"numbers {verdict}{stored}")
        for e in reg.error_samples:
            notes.append(f"  {r.name} error sample: {e}")
    return notes


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_server_args(ap, SCALES, "also benchmark the MLflow server's registry "
                           "(installs mlflow==3.17.2)")
    ap.add_argument("--threads", type=int, default=32,
                    help="client threads of the concurrent registration phase (default 32)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    common.resolve_servers(ap, args)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        common.ensure_venv(args.with_mlflow, script=Path(__file__))
        common.import_driver_deps()
        signal.signal(signal.SIGTERM, common._raise_interrupt)
        scale = SCALES[args.scale]
        plinth_bin = common.resolve_plinth_binary(args.plinth_bin) \
            if "plinth" in args.server_list else None
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2

    versions = {"driver_python": platform.python_version(),
                "requests": common.requests.__version__, "git_revision": common.git_revision()}
    if plinth_bin:
        versions["plinth"] = common.plinth_version(plinth_bin)
        versions["plinth_bin"] = str(plinth_bin)
    if args.with_mlflow:
        from importlib.metadata import version
        versions["mlflow"] = version("mlflow")
    machine = common.machine_info()

    results: dict[str, RegistryServerResult] = {}
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="plinth-bench-registry-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        for name in args.server_list:
            workdir = root / name
            workdir.mkdir()
            if name == "plinth":
                srv = common.plinth_server(plinth_bin, workdir)
                result = RegistryServerResult("Plinth", version=versions["plinth"])
            else:
                srv = common.mlflow_server(workdir, args.mlflow_workers,
                                           not args.mlflow_no_job_runner)
                result = RegistryServerResult("MLflow", version=versions["mlflow"])
            results[name] = result
            try:
                run_server_benchmark(srv, result, scale, args.threads, args.startup_timeout)
            finally:
                log(f"[{srv.name}] stopping")
                srv.stop()

    # --- report -------------------------------------------------------------------------
    print(f"Plinth registry benchmark, scale={scale.name} "
          f"({scale.register_versions:,} concurrent registrations by {args.threads} threads; "
          f"search over {scale.search_versions:,} versions of {scale.models} models)")
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
          f"{machine['memory_gib']} GiB RAM, Linux {machine['kernel']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if args.with_mlflow:
        jobs = "off" if args.mlflow_no_job_runner else "on (MLflow default)"
        print(f"mlflow server: --workers {args.mlflow_workers}, SQLite backend, local artifacts, "
              f"job runner {jobs}")
    print()
    print(render_table(results, scale, args.threads))
    notes = registration_notes(results)
    if notes:
        print("\nversion numbering (concurrent registration):")
        for n in notes:
            print(f"  {n}")
    if any(r.search for r in results.values()):
        table, verdict = render_counts(results)
        print("\nresult counts per query (all pages):")
        print("  " + table.replace("\n", "\n  "))
        if len(results) > 1:
            print(f"  servers agree on every count: {verdict}")
    failures = [f"{r.name}: {f}" for r in results.values() for f in r.failures]
    if failures:
        print("\nFAILURES:")
        for f in failures:
            print(f"  - {f}")

    if args.json:
        doc = {"benchmark": "registry", "scale": dataclasses.asdict(scale),
               "threads": args.threads, "populate_threads": POPULATE_THREADS,
               "machine": machine, "versions": versions,
               "mlflow_workers": args.mlflow_workers if args.with_mlflow else None,
               "mlflow_job_runner": (not args.mlflow_no_job_runner) if args.with_mlflow else None,
               "servers": common.to_jsonable(results), "failures": failures,
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
