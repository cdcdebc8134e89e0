#!/usr/bin/env python3
"""Feature-store benchmark: Plinth versus Feast 0.67 (DuckDB offline store, SQLite online store).

One generated data set, the same definitions in both, the same measurements:

  1. historical retrieval   100k entity rows against 10k entities x 30 days of hourly rows
                            (~6.8M rows, 1% duplicated event times with different `created`),
                            time and peak memory; the two outputs are compared row for row
  2. materialization        the newest row per entity into the online store, time
  3. online serving         p50/p99 latency and requests/s for 1 and 100 entities per request,
                            at 1 and 8 concurrent clients (closed loop, keep-alive), measured by
                            a small Rust load generator (`plinth-loadgen`) so the client costs
                            little next to the server

Usage (see bench/README.md, "Feature-store benchmark"):

    python3 bench/features.py [--with-feast] [--plinth-bin PATH] [--scale full|small]
                              [--json OUT] [--online-seconds S]
                              [--large-entity-rows N[,N...] [--entity-chunk-rows C]]

`--large-entity-rows` adds Plinth-only retrievals of N generated entity rows through `plinth
features get-historical`, with the server answering C rows at a time: time, the server's and the
CLI's peak memory, and a check that every row comes back once, in input order.

Plinth's retrieval goes through its HTTP route (Arrow IPC in and out, what `plinth features
get-historical` does); its peak memory is the server's peak RSS during the retrieval. Feast's
retrieval runs `FeatureStore.get_historical_features(...).to_arrow()` in a child process whose
peak RSS (ru_maxrss) is Feast's peak memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracking as common  # noqa: E402  (bench/tracking.py: venv bootstrap, server processes, builds)
from tracking import CACHE_DIR, MIB, REPO_ROOT, BenchFailure, ServerProcess, SetupError, log  # noqa: E402

FEAST_VENV = CACHE_DIR / "venv-bench-feast"
FEAST_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-feast.txt"
FEATURES = ["driver_hourly:conv_rate", "driver_hourly:acc_rate", "driver_hourly:avg_daily_trips"]
TTL_HOURS = 24
ARROW_STREAM = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Scale:
    name: str
    entities: int
    days: int
    entity_rows: int
    online_seconds: float


SCALES = {
    "full": Scale("full", entities=10_000, days=30, entity_rows=100_000, online_seconds=10.0),
    "small": Scale("small", entities=1_000, days=7, entity_rows=10_000, online_seconds=3.0),
}


@dataclass
class Result:
    name: str
    version: str = ""
    retrieval_s: Optional[float] = None
    retrieval_peak_mib: Optional[float] = None
    materialize_s: Optional[float] = None
    online: dict[str, dict] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def generate(root: Path, scale: Scale, seed: int = 42) -> dict[str, Any]:
    """Writes the feature rows (one Parquet file) and the entity rows; returns their facts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    hours = scale.days * 24
    end = np.datetime64("2026-11-01T00:00:00", "us")
    start = end - np.timedelta64(hours, "h")
    # Each entity has ~94.4% of its hours (gaps make the TTL matter).
    ids = np.repeat(np.arange(1, scale.entities + 1, dtype=np.int64), hours)
    hour = np.tile(np.arange(hours, dtype=np.int64), scale.entities)
    keep = rng.random(ids.size) < 0.944
    ids, hour = ids[keep], hour[keep]
    ts = start + hour.astype("timedelta64[h]").astype("timedelta64[us]")
    created = ts + rng.integers(1, 600, ids.size).astype("timedelta64[s]").astype("timedelta64[us]")
    # 1% duplicated event times with a different (later or earlier) created time and values.
    dup = rng.random(ids.size) < 0.01
    d_ids, d_ts = ids[dup], ts[dup]
    d_created = created[dup] + rng.choice([-1, 1], d_ids.size) * rng.integers(1, 300, d_ids.size).astype("timedelta64[s]").astype("timedelta64[us]")
    ids = np.concatenate([ids, d_ids])
    ts = np.concatenate([ts, d_ts])
    created = np.concatenate([created, d_created])
    n = ids.size
    conv = rng.random(n)
    conv[rng.random(n) < 0.005] = np.nan  # some null values
    table = pa.table(
        {
            "driver_id": pa.array(ids),
            "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "created": pa.array(created, pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array(conv, pa.float64(), from_pandas=True),
            "acc_rate": pa.array(rng.random(n).astype(np.float32)),
            "avg_daily_trips": pa.array(rng.integers(0, 1000, n, dtype=np.int64)),
        }
    )
    data_dir = root / "data"
    data_dir.mkdir()
    stats = data_dir / "driver_stats.parquet"
    pq.write_table(table, stats, row_group_size=1 << 20)
    # Entity rows: 1% unknown drivers, times over the whole range and a day before it.
    m = scale.entity_rows
    e_ids = rng.integers(1, int(scale.entities * 1.01) + 1, m, dtype=np.int64)
    e_ts = start - np.timedelta64(1, "D") + rng.integers(0, (hours + 24) * 3600, m).astype("timedelta64[s]").astype("timedelta64[us]")
    entities = pa.table(
        {
            "driver_id": pa.array(e_ids),
            "event_timestamp": pa.array(e_ts, pa.timestamp("us", tz="UTC")),
            "row_id": pa.array(np.arange(m, dtype=np.int64)),
        }
    )
    entity_path = root / "entities.parquet"
    pq.write_table(entities, entity_path)
    return {
        "stats": stats,
        "data_dir": data_dir,
        "entities": entity_path,
        "feature_rows": n,
        "duplicates": int(dup.sum()),
        "end": end,
        "start": start,
        "known_ids": np.arange(1, scale.entities + 1),
    }


REPO_TOML = f"""
[[entity]]
name = "driver"
join_keys = [{{ name = "driver_id", type = "int64" }}]

[[source]]
name = "driver_stats"
path = "data/driver_stats.parquet"
timestamp_field = "event_timestamp"
created_timestamp_column = "created"

[[feature_view]]
name = "driver_hourly"
entities = ["driver"]
source = "driver_stats"
ttl = "{TTL_HOURS}h"
features = [
  {{ name = "conv_rate", type = "float64" }},
  {{ name = "acc_rate", type = "float32" }},
  {{ name = "avg_daily_trips", type = "int64" }},
]
"""

FEAST_DEFS = f"""
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
driver_stats = FileSource(name="driver_stats", path="{{path}}", timestamp_field="event_timestamp",
                          created_timestamp_column="created")
driver_hourly = FeatureView(
    name="driver_hourly", entities=[driver], ttl=timedelta(hours={TTL_HOURS}), online=True, source=driver_stats,
    schema=[Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float32),
            Field(name="avg_daily_trips", dtype=Int64)],
)
"""

FEAST_YAML = """project: bench
provider: local
registry: {root}/registry.db
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: {root}/online.db
entity_key_serialization_version: 3
"""


def online_bodies(path: Path, known_ids, per_request: int, count: int = 1000, seed: int = 9) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed + per_request)
    with open(path, "w") as f:
        for _ in range(count):
            ids = rng.choice(known_ids, per_request, replace=False).tolist()
            f.write(json.dumps({"features": FEATURES, "entities": {"driver_id": ids}}) + "\n")
    return path


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def loadgen(binary: Path, url: str, bodies: Path, clients: int, seconds: float) -> dict:
    proc = subprocess.run(
        [str(binary), "--url", url, "--bodies", str(bodies), "--clients", str(clients), "--seconds", str(seconds), "--warmup-seconds", "1"],
        capture_output=True, text=True, timeout=seconds + 120,
    )
    if proc.returncode != 0:
        raise BenchFailure(f"plinth-loadgen failed: {proc.stderr}")
    return json.loads(proc.stdout)


def run_online(result: Result, loadgen_bin: Path, url: str, bodies: dict[int, Path], seconds: float) -> None:
    for per_request in (1, 100):
        for clients in (1, 8):
            key = f"{per_request}x{clients}"
            log(f"[{result.name}] online: {per_request} entities per request, {clients} clients, {seconds:.0f} s")
            r = loadgen(loadgen_bin, url, bodies[per_request], clients, seconds)
            if r["errors"]:
                what = ", ".join(f"{n} {'connection failures' if s == '0' else 'HTTP ' + s}"
                                 for s, n in sorted(r.get("errors_by_status", {}).items()))
                result.failures.append(f"online {key}: {r['errors']} failed requests ({what})")
            result.online[key] = r


def applied_plinth(binary: Path, root: Path, facts: dict, name: str, env: Optional[dict[str, str]] = None) -> ServerProcess:
    """A started `plinth server` (in `root/name`, with `env` added to its environment) with the
    benchmark's repository applied."""
    repo = root / f"{name}-repo"
    (repo / "data").mkdir(parents=True)
    os.symlink(facts["stats"], repo / "data" / "driver_stats.parquet")
    (repo / "features.toml").write_text(REPO_TOML)
    workdir = root / name
    (workdir / "data").mkdir(parents=True)
    srv = ServerProcess("Plinth", [str(binary), "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(workdir / "data")],
                        workdir, ready_regex=r"listening on (http://\S+)", env=dict(os.environ, **(env or {})))
    try:
        srv.start(120)
        out = subprocess.run([str(binary), "features", "apply", str(repo)], env=dict(os.environ, PLINTH_SERVER=srv.url),
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchFailure(f"plinth features apply failed: {out.stdout}{out.stderr}")
    except BaseException:
        srv.stop()
        raise
    return srv


def plinth_phase(result: Result, binary: Path, loadgen_bin: Path, root: Path, facts: dict, scale: Scale, seconds: float):
    import pyarrow as pa
    import pyarrow.parquet as pq

    srv = applied_plinth(binary, root, facts, "plinth")
    try:
        entities = pq.read_table(facts["entities"])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, entities.schema) as w:
            w.write_table(entities)
        body = sink.getvalue().to_pybytes()
        log(f"[Plinth] historical retrieval of {entities.num_rows} entity rows")
        srv.peak_rss = srv.rss_bytes()
        t0 = time.perf_counter()
        r = requests.post(
            f"{srv.url}/api/plinth/v1/features/historical",
            params={"features": ",".join(FEATURES)},
            data=body,
            headers={"Content-Type": ARROW_STREAM},
            timeout=900,
        )
        if r.status_code != 200:
            raise BenchFailure(f"historical retrieval answered {r.status_code}: {r.text[:500]}")
        table = pa.ipc.open_stream(r.content).read_all()
        result.retrieval_s = time.perf_counter() - t0
        time.sleep(0.1)
        result.retrieval_peak_mib = srv.peak_rss / MIB
        log(f"[Plinth] materialization")
        t0 = time.perf_counter()
        r = requests.post(f"{srv.url}/api/plinth/v1/features/materialize", json={"end_ts": int(facts["end"].astype("int64")) * 1000}, timeout=900)
        if r.status_code != 200:
            raise BenchFailure(f"materialize answered {r.status_code}: {r.text[:500]}")
        result.materialize_s = time.perf_counter() - t0
        bodies = {k: online_bodies(root / f"bodies-{k}.jsonl", facts["known_ids"], k) for k in (1, 100)}
        run_online(result, loadgen_bin, f"{srv.url}/get-online-features", bodies, seconds)
        return table
    finally:
        srv.stop()


def large_phase(binary: Path, root: Path, facts: dict, rows: int, chunk_rows: int) -> dict:
    """Plinth only: `plinth features get-historical` over `rows` entity rows with the server
    answering `chunk_rows` at a time; returns time, the server's and the CLI's peak RSS, and
    whether the output has every row once, in input order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    tag = f"large-{rows}"
    entities = root / f"entities-{tag}.parquet"
    schema = pa.schema([("driver_id", pa.int64()), ("event_timestamp", pa.timestamp("us", tz="UTC")), ("row_id", pa.int64())])
    rng = np.random.default_rng(rows)
    hours = int((facts["end"] - facts["start"]) / np.timedelta64(1, "h"))
    unknown = len(facts["known_ids"]) * 101 // 100
    with pq.ParquetWriter(entities, schema) as w:
        for lo in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - lo)
            ts = facts["start"] - np.timedelta64(1, "D") + rng.integers(0, (hours + 24) * 3600, n).astype("timedelta64[s]").astype("timedelta64[us]")
            w.write_table(pa.table({"driver_id": rng.integers(1, unknown + 1, n, dtype=np.int64),
                                    "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                                    "row_id": np.arange(lo, lo + n, dtype=np.int64)}, schema=schema))
    workdir = root / f"plinth-{tag}"
    srv = applied_plinth(binary, root, facts, f"plinth-{tag}", {"PLINTH__FEATURES__ENTITY_CHUNK_ROWS": str(chunk_rows)})
    try:
        cli_env = dict(os.environ, PLINTH_SERVER=srv.url)
        log(f"[Plinth] historical retrieval of {rows:,} entity rows, {chunk_rows:,} per chunk, through the CLI")
        output = root / f"out-{tag}.parquet"
        srv.peak_rss = srv.rss_bytes()
        t0 = time.perf_counter()
        with open(workdir / "cli.log", "w") as cli_log:
            proc = subprocess.Popen([str(binary), "features", "get-historical", "--entities", str(entities), "--features", ",".join(FEATURES),
                                     "--out", str(output)], env=cli_env, stdout=cli_log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        time.sleep(0.1)
        if proc.returncode != 0:
            raise BenchFailure(f"get-historical over {rows:,} rows failed: {(workdir / 'cli.log').read_text()[-2000:]}")
        # Every row once, in input order, read back batch by batch.
        expected, in_order = 0, True
        for batch in pq.ParquetFile(output).iter_batches(columns=["row_id"], batch_size=1 << 20):
            ids = batch.column(0).to_numpy()
            in_order = in_order and bool((ids == np.arange(expected, expected + len(ids))).all())
            expected += len(ids)
        return {"rows": rows, "chunk_rows": chunk_rows, "seconds": seconds, "server_peak_mib": srv.peak_rss / MIB,
                "cli_peak_mib": usage.ru_maxrss / 1024.0, "every_row_in_order": in_order and expected == rows}
    finally:
        srv.stop()


FEAST_CHILD = r"""
import json, resource, sys, time
from datetime import datetime, timezone
import pyarrow.parquet as pq
from feast import FeatureStore
what, repo, arg = sys.argv[1], sys.argv[2], sys.argv[3]
store = FeatureStore(repo_path=repo)
features = json.loads(sys.argv[4])
t0 = time.perf_counter()
if what == "historical":
    entity_df = pq.read_table(arg).to_pandas()
    out = store.get_historical_features(entity_df=entity_df, features=features).to_arrow()
    elapsed = time.perf_counter() - t0
    pq.write_table(out, sys.argv[5])
elif what == "materialize":
    end = datetime.fromtimestamp(float(arg), tz=timezone.utc)
    store.materialize(start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=end)
    elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed}))
"""


def feast_child_rss(python: Path, what: str, repo: Path, arg: str, extra: list[str]) -> tuple[float, float]:
    """Runs one Feast step in a child process, reaped with wait4 for its own peak RSS; returns
    (the step's own timing in seconds, the child's peak RSS in MiB)."""
    proc = subprocess.Popen([str(python), "-c", FEAST_CHILD, what, str(repo), arg, json.dumps(FEATURES), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo)
    # Drain the pipes without reaping, then wait4 for the rusage of this child alone.
    out_chunks: list[str] = []
    err_chunks: list[str] = []

    def drain(stream, into):
        for line in stream:
            into.append(line)

    threads = [threading.Thread(target=drain, args=(proc.stdout, out_chunks)), threading.Thread(target=drain, args=(proc.stderr, err_chunks))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchFailure(f"feast {what} failed:\n{''.join(err_chunks)[-3000:]}")
    seconds = json.loads("".join(out_chunks).strip().splitlines()[-1])["seconds"]
    return seconds, usage.ru_maxrss / 1024.0


def feast_phase(result: Result, loadgen_bin: Path, root: Path, facts: dict, seconds: float):
    import pyarrow.parquet as pq

    repo = root / "feast"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(FEAST_YAML.format(root=repo))
    (repo / "definitions.py").write_text(FEAST_DEFS.replace("{path}", str(facts["stats"])))
    python = Path(sys.executable)
    feast_cli = python.parent / "feast"
    out = subprocess.run([str(feast_cli), "apply"], cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchFailure(f"feast apply failed: {out.stdout}{out.stderr}")
    log("[Feast] historical retrieval (DuckDB offline store)")
    out_path = repo / "historical.parquet"
    result.retrieval_s, result.retrieval_peak_mib = feast_child_rss(python, "historical", repo, str(facts["entities"]), [str(out_path)])
    log("[Feast] materialization (SQLite online store)")
    end_s = int(facts["end"].astype("int64")) / 1e6
    result.materialize_s, _ = feast_child_rss(python, "materialize", repo, str(end_s), [])
    port = common.free_port()
    srv = ServerProcess("Feast", [str(feast_cli), "serve", "-h", "127.0.0.1", "-p", str(port)], repo, url=f"http://127.0.0.1:{port}",
                        env=dict(os.environ, FEAST_USAGE="False"))
    try:
        srv.start(180)
        bodies = {k: online_bodies(root / f"feast-bodies-{k}.jsonl", facts["known_ids"], k) for k in (1, 100)}
        run_online(result, loadgen_bin, f"{srv.url}/get-online-features", bodies, seconds)
    finally:
        srv.stop()
    return pq.read_table(out_path)


def compare(plinth, feast) -> list[str]:
    """Row-for-row comparison on row_id; returns the differences (at most 5 shown)."""
    import numpy as np

    problems = []
    if plinth.num_rows != feast.num_rows:
        problems.append(f"row counts differ: Plinth {plinth.num_rows}, Feast {feast.num_rows}")
    p = plinth.to_pandas().set_index("row_id").sort_index()
    f = feast.to_pandas().set_index("row_id").sort_index()
    common_ids = p.index.intersection(f.index)
    for col in ("conv_rate", "acc_rate", "avg_daily_trips"):
        a = p.loc[common_ids, col].to_numpy(dtype="float64")
        b = f.loc[common_ids, col].to_numpy(dtype="float64")
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        bad = np.flatnonzero(~same)
        if bad.size:
            examples = ", ".join(f"row {common_ids[i]}: {a[i]} vs {b[i]}" for i in bad[:5])
            problems.append(f"{col}: {bad.size} rows differ ({examples})")
    return problems


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def fmt(v: Optional[float], unit: str = "") -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 1:
        return f"{v:.2f}{unit}"
    return f"{v:.3f}{unit}"


def render(results: dict[str, Result]) -> str:
    p, f = results.get("plinth"), results.get("feast")
    rows: list[tuple[str, Optional[float], Optional[float], bool]] = [
        ("historical retrieval (s)", p and p.retrieval_s, f and f.retrieval_s, True),
        ("historical peak memory (MiB)", p and p.retrieval_peak_mib, f and f.retrieval_peak_mib, True),
        ("materialization (s)", p and p.materialize_s, f and f.materialize_s, True),
    ]
    for per_request in (1, 100):
        for clients in (1, 8):
            key = f"{per_request}x{clients}"
            get = lambda r, k: r.online.get(key, {}).get(k) if r else None  # noqa: E731
            label = f"online {per_request} entit{'y' if per_request == 1 else 'ies'}, {clients} client{'s' if clients > 1 else ''}"
            rows.append((f"{label}: p50 (ms)", get(p, "p50_us") and get(p, "p50_us") / 1000, get(f, "p50_us") and get(f, "p50_us") / 1000, True))
            rows.append((f"{label}: p99 (ms)", get(p, "p99_us") and get(p, "p99_us") / 1000, get(f, "p99_us") and get(f, "p99_us") / 1000, True))
            rows.append((f"{label}: requests/s", get(p, "rps"), get(f, "rps"), False))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':<{width}}  {'Plinth':>12}  {'Feast':>12}  {'ratio':>14}", "-" * (width + 44)]
    for label, pv, fv, lower_better in rows:
        ratio = ""
        if pv and fv:
            x = fv / pv if lower_better else pv / fv
            ratio = f"{x:,.1f}x " + ("faster" if "s)" in label or "ms" in label else "less" if "MiB" in label else "more")
        lines.append(f"{label:<{width}}  {fmt(pv):>12}  {fmt(fv):>12}  {ratio:>14}")
    return "\n".join(lines)


def build_loadgen() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", CACHE_DIR / "target"))
    binary = target / "release" / "plinth-loadgen"
    log("building plinth-loadgen: cargo build --release -p plinth-test-support --bin plinth-loadgen")
    proc = subprocess.run(["cargo", "build", "--release", "-p", "plinth-test-support", "--bin", "plinth-loadgen"],
                          cwd=REPO_ROOT, env=dict(os.environ, CARGO_TARGET_DIR=str(target)))
    if proc.returncode != 0:
        raise SetupError("cannot build plinth-loadgen")
    return binary


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-feast", action="store_true", help="also run Feast 0.67 (DuckDB offline, SQLite online)")
    ap.add_argument("--plinth-bin", help="the plinth binary (default: cargo build --release -p plinth)")
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--online-seconds", type=float, help="seconds per online measurement (default: the scale's)")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--large-entity-rows", default="",
                    help="comma-separated entity-row counts for Plinth-only retrievals through the CLI (e.g. 2000000,20000000)")
    ap.add_argument("--entity-chunk-rows", type=int, default=1_000_000,
                    help="the server's features.entity_chunk_rows for those retrievals (default 1,000,000)")
    return ap.parse_args(argv)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        common.ensure_venv(False, Path(__file__), venv_dir=FEAST_VENV, requirements=[FEAST_REQUIREMENTS])
        common.import_driver_deps()
        global requests
        import requests
        signal.signal(signal.SIGTERM, _raise_interrupt)
        binary = common.resolve_plinth_binary(args.plinth_bin)
        loadgen_bin = build_loadgen()
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2
    scale = SCALES[args.scale]
    seconds = args.online_seconds or scale.online_seconds
    results: dict[str, Result] = {}
    tables = {}
    large: list[dict] = []
    identical: Optional[bool] = None  # whether the two historical outputs matched, when both ran
    root = Path(tempfile.mkdtemp(prefix="plinth-bench-features-"))
    try:
        log(f"generating {scale.entities} entities x {scale.days} days of hourly rows and {scale.entity_rows} entity rows")
        facts = generate(root, scale)
        log(f"{facts['feature_rows']:,} feature rows ({facts['duplicates']:,} duplicated event times)")
        results["plinth"] = Result("Plinth", version=common.plinth_version(binary))
        try:
            tables["plinth"] = plinth_phase(results["plinth"], binary, loadgen_bin, root, facts, scale, seconds)
        except BenchFailure as e:
            results["plinth"].failures.append(str(e))
        if args.with_feast:
            from importlib.metadata import version

            results["feast"] = Result("Feast", version=version("feast"))
            try:
                tables["feast"] = feast_phase(results["feast"], loadgen_bin, root, facts, seconds)
            except BenchFailure as e:
                results["feast"].failures.append(str(e))
        if "plinth" in tables and "feast" in tables:
            problems = compare(tables["plinth"], tables["feast"])
            identical = not problems
            for problem in problems:
                results["plinth"].failures.append(f"historical output differs from Feast's: {problem}")
        tables.clear()
        for rows in [int(x) for x in args.large_entity_rows.split(",") if x.strip()]:
            try:
                large.append(large_phase(binary, root, facts, rows, args.entity_chunk_rows))
                if not large[-1]["every_row_in_order"]:
                    results["plinth"].failures.append(f"the {rows:,}-row retrieval lost, repeated or reordered rows")
            except BenchFailure as e:
                results["plinth"].failures.append(str(e))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    machine = common.machine_info()
    print(f"\nPlinth feature-store benchmark, scale={scale.name}: {scale.entities:,} entities x {scale.days} days hourly "
          f"({facts['feature_rows']:,} rows), {scale.entity_rows:,} entity rows, TTL {TTL_HOURS}h")
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB RAM")
    print("versions: " + ", ".join(f"{r.name} {r.version}" for r in results.values()))
    if identical is not None:
        print("historical outputs: " + ("identical row for row" if identical else "DIFFERENT (see failures)"))
    print()
    print(render(results))
    if large:
        print(f"\nPlinth, large entity sets through `plinth features get-historical` (CLI spools and streams; server answers chunk by chunk)")
        print(f"{'entity rows':>12} {'rows/chunk':>11} {'time (s)':>9} {'server peak (MiB)':>18} {'CLI peak (MiB)':>15}  every row once, in order")
        for r in large:
            print(f"{r['rows']:>12,} {r['chunk_rows']:>11,} {r['seconds']:>9.2f} {r['server_peak_mib']:>18,.0f} {r['cli_peak_mib']:>15,.0f}  "
                  f"{'yes' if r['every_row_in_order'] else 'NO'}")
    failures = [f"{r.name}: {x}" for r in results.values() for x in r.failures]
    if failures:
        print("\nFAILURES:")
        for x in failures:
            print(f"  - {x}")
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": scale.__dict__, "machine": machine,
                                               "results": {k: v.__dict__ for k, v in results.items()}, "large": large}, indent=2, default=str) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
