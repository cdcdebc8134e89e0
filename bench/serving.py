#!/usr/bin/env python3
"""Serving benchmark: Plinth versus `mlflow models serve` (MLflow 3.17.2), on three scikit-learn
models (a logistic-regression pipeline, a random forest, a gradient-boosting regressor).

Plinth serves the models converted to ONNX (skl2onnx), each as a deployment of a registered
version; MLflow serves the same fitted models logged with `mlflow.sklearn`, as its users do. The
same closed-loop load generator (`plinth-loadgen`: N clients, each on its own keep-alive
connection) sends 1-row and 64-row requests at 1 and 8 concurrent clients:

  Plinth REST   POST /v2/models/{name}/infer (OIP JSON tensors)
  Plinth gRPC   ModelInfer through tritonclient.grpc (a Python client: it bounds the figures)
  MLflow        POST /invocations ({"dataframe_split": ...})
  floor         ONNX Runtime in-process (Python onnxruntime, session.run), per call

and also: the time from `POST /api/plinth/v1/deployments` to a ready deployment, `mlflow models
serve`'s start-up time and memory, and a promotion under load (the deployment follows an alias
that moves while 8 clients send requests: every request must succeed).

Usage (see bench/README.md, "Serving benchmark"):

    python3 bench/serving.py [--with-mlflow] [--plinth-bin PATH] [--seconds S] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracking as common  # noqa: E402  (bench/tracking.py: venv bootstrap, server processes, builds)
from features import build_loadgen, loadgen  # noqa: E402
from tracking import CACHE_DIR, MIB, REPO_ROOT, BenchFailure, ServerProcess, SetupError, log  # noqa: E402

VENV = CACHE_DIR / "venv-bench-serving"
VENV_MLFLOW = CACHE_DIR / "venv-bench-serving-mlflow"
SERVING_REQUIREMENTS = REPO_ROOT / "tests" / "serving" / "requirements.txt"
MLFLOW_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-mlflow-serve.txt"
MODELS = ["logreg", "forest", "gbr"]
ROWS = [1, 64]
CLIENTS = [1, 8]


def fitted_models():
    """The serving tests' models (tests/serving/make_models.py), fitted the same way."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "serving"))
    import make_models

    return {name: (estimator, x) for name, estimator, x in make_models.models() if name in MODELS}


def to_onnx(estimator, x):
    from skl2onnx import to_onnx as convert

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    return convert(estimator, x[:1], options=options, target_opset=17)


def bodies_file(path: Path, make, x, rows: int, count: int = 200) -> Path:
    """`count` request bodies of `rows` rows each, taken in turn from `x`."""
    with open(path, "w") as out:
        for i in range(count):
            start = (i * rows) % (len(x) - rows)
            out.write(json.dumps(make(x[start : start + rows])) + "\n")
    return path


def oip_body(chunk) -> dict:
    return {"inputs": [{"name": "X", "shape": list(chunk.shape), "datatype": "FP32", "data": chunk.ravel().tolist()}]}


def mlflow_body(chunk) -> dict:
    return {"dataframe_split": {"columns": [f"f{i}" for i in range(chunk.shape[1])], "data": chunk.tolist()}}


def floor(onnx_path: Path, x) -> dict:
    """ONNX Runtime in-process: the median time of `session.run` for 1 and 64 rows."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    out = {}
    for rows in ROWS:
        feed = {"X": x[:rows]}
        for _ in range(200):
            session.run(None, feed)
        times = []
        for _ in range(2000):
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t0)
        out[rows] = {"p50_us": common.percentile(times, 50) * 1e6}
    return out


def register(api: str, name: str, onnx_path: Path) -> int:
    """Logs `onnx_path` as a run's `model/model.onnx` artifact and registers a version of `name`."""
    s = requests.Session()
    exp = s.post(f"{api}/api/2.0/mlflow/experiments/create", json={"name": f"bench-{name}-{time.time_ns()}"}).json()["experiment_id"]
    run = s.post(f"{api}/api/2.0/mlflow/runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]
    r = s.put(f"{api}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/model/model.onnx", data=onnx_path.read_bytes())
    r.raise_for_status()
    s.post(f"{api}/api/2.0/mlflow/registered-models/create", json={"name": name})
    r = s.post(f"{api}/api/2.0/mlflow/model-versions/create", json={"name": name, "source": f"runs:/{run}/model", "run_id": run})
    r.raise_for_status()
    return int(r.json()["model_version"]["version"])


def run_points(loadgen_bin: Path, url: str, bodies: dict[int, Path], seconds: float, label: str) -> dict:
    out = {}
    for rows in ROWS:
        for clients in CLIENTS:
            log(f"[{label}] {rows} row(s) per request, {clients} client(s), {seconds:.0f} s")
            r = loadgen(loadgen_bin, url, bodies[rows], clients, seconds)
            if r["errors"]:
                raise BenchFailure(f"{label}: {r['errors']} failed requests ({r.get('errors_by_status')})")
            out[f"{rows}x{clients}"] = {"rps": r["rps"], "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
                                        "rows_per_s": r["rps"] * rows}
    return out


def grpc_points(host: str, name: str, x, seconds: float) -> dict:
    """tritonclient.grpc in threads, 1-row requests: a Python client, so these bound from below."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    out = {}
    for clients in CLIENTS:
        stop = time.perf_counter() + seconds
        latencies: list[list[float]] = [[] for _ in range(clients)]

        def worker(i: int):
            client = grpcclient.InferenceServerClient(url=host)
            tensor = grpcclient.InferInput("X", [1, x.shape[1]], "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(x[i : i + 1]))
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                client.infer(name, inputs=[tensor])
                latencies[i].append(time.perf_counter() - t0)
            client.close()

        log(f"[Plinth gRPC] {name}, 1 row per request, {clients} client(s), {seconds:.0f} s")
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        flat = [v for per in latencies for v in per]
        out[f"1x{clients}"] = {"rps": len(flat) / seconds, "p50_ms": common.percentile(flat, 50) * 1e3, "p99_ms": common.percentile(flat, 99) * 1e3}
    return out


def plinth_phase(binary: Path, loadgen_bin: Path, root: Path, fitted: dict, seconds: float) -> dict:
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    os.environ["ORT_DYLIB_PATH"] = str(sorted(capi.glob("libonnxruntime.so.*"))[0])
    work = root / "plinth"
    work.mkdir()
    srv = common.plinth_server(binary, work)
    result: dict[str, Any] = {"startup_s": srv.start(60), "models": {}}
    try:
        for name, (estimator, x) in fitted.items():
            path = root / f"{name}.onnx"
            path.write_bytes(to_onnx(estimator, x).SerializeToString())
            version = register(srv.url, f"bench-{name}", path)
            t0 = time.perf_counter()
            r = requests.post(f"{srv.url}/api/plinth/v1/deployments", json={"name": name, "model": f"bench-{name}/{version}"})
            ready_s = time.perf_counter() - t0
            if r.status_code != 200 or r.json()["deployment"]["variants"][0]["state"] != "READY":
                raise BenchFailure(f"deploying {name}: {r.text}")
            bodies = {rows: bodies_file(root / f"plinth-{name}-{rows}.jsonl", oip_body, x, rows) for rows in ROWS}
            model = {"ready_s": ready_s, "floor": floor(path, x)}
            model["rest"] = run_points(loadgen_bin, f"{srv.url}/v2/models/{name}/infer", bodies, seconds, f"Plinth REST {name}")
            if name == "logreg":
                model["grpc"] = grpc_points(srv.url.removeprefix("http://"), name, x, seconds)
            result["models"][name] = model
        result["promotion"] = promotion_under_load(srv, loadgen_bin, root, fitted["logreg"], seconds)
        result["peak_rss_mib"] = srv.peak_rss / MIB
    finally:
        srv.stop()
    return result


def promotion_under_load(srv: ServerProcess, loadgen_bin: Path, root: Path, fitted, seconds: float) -> dict:
    """8 clients on a deployment that follows `champion`; the alias moves mid-run."""
    estimator, x = fitted
    path = root / "promo.onnx"
    path.write_bytes(to_onnx(estimator, x).SerializeToString())
    first = register(srv.url, "bench-promo", path)
    requests.post(f"{srv.url}/api/2.0/mlflow/registered-models/alias", json={"name": "bench-promo", "alias": "champion", "version": str(first)}).raise_for_status()
    r = requests.post(f"{srv.url}/api/plinth/v1/deployments", json={"name": "promo", "model": "bench-promo@champion"})
    if r.status_code != 200:
        raise BenchFailure(f"deploying promo: {r.text}")
    second = register(srv.url, "bench-promo", path)
    bodies = bodies_file(root / "promo.jsonl", oip_body, x, 1)
    box: dict[str, Any] = {}
    run = threading.Thread(target=lambda: box.update(loadgen(loadgen_bin, f"{srv.url}/v2/models/promo/infer", bodies, 8, seconds)))
    run.start()
    time.sleep(seconds / 2)
    requests.post(f"{srv.url}/api/2.0/mlflow/registered-models/alias", json={"name": "bench-promo", "alias": "champion", "version": str(second)}).raise_for_status()
    run.join()
    served = requests.get(f"{srv.url}/api/plinth/v1/deployments/promo").json()["deployment"]["variants"][0]["version"]
    log(f"[promotion] {box['requests']} requests, {box['errors']} failed; serving version {served} (moved from {first} to {second})")
    return {"requests": box["requests"], "errors": box["errors"], "switched": served == second}


def mlflow_venv() -> Path:
    """The virtualenv `mlflow models serve` runs from (MLflow's pins do not mix with tritonclient's)."""
    python = VENV_MLFLOW / "bin" / "python"
    stamp = VENV_MLFLOW / ".requirements"
    wanted = MLFLOW_REQUIREMENTS.read_text()
    if not python.exists():
        log(f"creating virtualenv {VENV_MLFLOW}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV_MLFLOW)], check=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        log(f"installing {MLFLOW_REQUIREMENTS.name} into {VENV_MLFLOW}")
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(MLFLOW_REQUIREMENTS)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(f"pip install failed:\n{proc.stdout}{proc.stderr}")
        stamp.write_text(wanted)
    return VENV_MLFLOW / "bin" / "mlflow"


def mlflow_phase(loadgen_bin: Path, root: Path, fitted: dict, seconds: float) -> dict:
    # Saved here with mlflow-skinny (the driver's), served by the full MLflow of its own virtualenv.
    import mlflow.sklearn

    out: dict[str, Any] = {"models": {}}
    mlflow_bin = mlflow_venv()
    for name, (estimator, x) in fitted.items():
        model_dir = root / f"mlflow-{name}"
        import pandas as pd

        # cloudpickle: MLflow 3.17's default (skops) needs a package the driver does not have.
        mlflow.sklearn.save_model(estimator, str(model_dir), serialization_format="cloudpickle",
                                  input_example=pd.DataFrame(x[:2], columns=[f"f{i}" for i in range(x.shape[1])]))
        port = common.free_port()
        work = root / f"mlflow-serve-{name}"
        work.mkdir()
        # `mlflow models serve` starts uvicorn by name: its virtualenv's bin goes first on PATH.
        path = f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = dict(os.environ, PATH=path, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        argv = [str(mlflow_bin), "models", "serve", "-m", str(model_dir), "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
        srv = ServerProcess(f"mlflow-{name}", argv, work, url=f"http://127.0.0.1:{port}", env=env)
        startup = srv.start(180)
        try:
            bodies = {rows: bodies_file(root / f"mlflow-{name}-{rows}.jsonl", mlflow_body, x, rows) for rows in ROWS}
            points = run_points(loadgen_bin, f"{srv.url}/invocations", bodies, seconds, f"MLflow {name}")
            out["models"][name] = {"startup_s": startup, "rest": points, "rss_mib": srv.rss_bytes() / MIB}
        finally:
            srv.stop()
    return out


def render(plinth: dict, mlflow_result: Optional[dict]) -> str:
    lines = []
    head = f"{'model':8} {'rows':>4} {'clients':>7} | {'Plinth req/s':>12} {'p50 ms':>7} {'p99 ms':>7}"
    if mlflow_result:
        head += f" | {'MLflow req/s':>12} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>6}"
    lines.append(head)
    lines.append("-" * len(head))
    for name, model in plinth["models"].items():
        for key, p in model["rest"].items():
            rows, clients = key.split("x")
            line = f"{name:8} {rows:>4} {clients:>7} | {p['rps']:>12,.0f} {p['p50_ms']:>7.3f} {p['p99_ms']:>7.3f}"
            m = (mlflow_result or {}).get("models", {}).get(name, {}).get("rest", {}).get(key)
            if m:
                line += f" | {m['rps']:>12,.0f} {m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} | {p['rps'] / m['rps']:>5.0f}x"
            lines.append(line)
    lines.append("")
    lines.append("ONNX Runtime in-process (the floor), Python session.run, median per call; Plinth's 1-client p50 over it:")
    for name, model in plinth["models"].items():
        for rows in ROWS:
            f = model["floor"][rows]["p50_us"]
            p50 = model["rest"][f"{rows}x1"]["p50_ms"] * 1e3
            lines.append(f"  {name:8} {rows:>3} row(s): floor {f:8.1f} µs, Plinth REST p50 {p50:8.1f} µs (+{p50 - f:.1f} µs, client and HTTP included)")
    if "grpc" in plinth["models"].get("logreg", {}):
        lines.append("")
        lines.append("Plinth gRPC, logreg, 1 row (tritonclient.grpc in Python threads: the client bounds these):")
        for key, p in plinth["models"]["logreg"]["grpc"].items():
            lines.append(f"  {key.split('x')[1]} client(s): {p['rps']:,.0f} req/s, p50 {p['p50_ms']:.3f} ms, p99 {p['p99_ms']:.3f} ms")
    lines.append("")
    lines.append("ready after POST /deployments: " + ", ".join(f"{n} {m['ready_s'] * 1e3:.0f} ms" for n, m in plinth["models"].items()))
    if mlflow_result:
        lines.append("mlflow models serve start-up: " + ", ".join(f"{n} {m['startup_s']:.1f} s ({m['rss_mib']:.0f} MiB)" for n, m in mlflow_result["models"].items()))
    p = plinth["promotion"]
    lines.append(f"promotion under load (8 clients): {p['requests']:,} requests, {p['errors']} failed, switched: {'yes' if p['switched'] else 'NO'}")
    lines.append(f"Plinth server start-up {plinth['startup_s']:.2f} s, peak RSS {plinth['peak_rss_mib']:.0f} MiB (all deployments)")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-mlflow", action="store_true", help="also run `mlflow models serve` (mlflow==3.17.2, in a virtualenv of its own)")
    ap.add_argument("--plinth-bin", help="the plinth binary (default: cargo build --release -p plinth)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per load point (default 5)")
    ap.add_argument("--json", help="write the raw figures here")
    return ap.parse_args(argv)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        common.ensure_venv(False, Path(__file__), venv_dir=VENV, requirements=[SERVING_REQUIREMENTS, common.DRIVER_REQUIREMENTS])
        common.import_driver_deps()
        global requests
        import requests
        signal.signal(signal.SIGTERM, _raise_interrupt)
        binary = common.resolve_plinth_binary(args.plinth_bin)
        loadgen_bin = build_loadgen()
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2
    fitted = fitted_models()
    root = Path(tempfile.mkdtemp(prefix="plinth-bench-serving-"))
    failures = []
    plinth: Optional[dict] = None
    mlflow_result: Optional[dict] = None
    try:
        try:
            plinth = plinth_phase(binary, loadgen_bin, root, fitted, args.seconds)
            if plinth["promotion"]["errors"] or not plinth["promotion"]["switched"]:
                failures.append("the promotion under load failed requests or did not switch")
        except BenchFailure as e:
            failures.append(f"Plinth: {e}")
        if args.with_mlflow:
            try:
                mlflow_result = mlflow_phase(loadgen_bin, root, fitted, args.seconds)
            except (BenchFailure, SetupError, OSError, ValueError, ImportError) as e:
                failures.append(f"MLflow: {e}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    machine = common.machine_info()
    print(f"\nPlinth serving benchmark: {', '.join(MODELS)}; {args.seconds:.0f} s per point; closed loop (plinth-loadgen)")
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB RAM")
    if plinth:
        print()
        print(render(plinth, mlflow_result))
    if failures:
        print("\nFAILURES:")
        for f in failures:
            print(f"  - {f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "plinth": plinth, "mlflow": mlflow_result}, indent=2, default=str) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
