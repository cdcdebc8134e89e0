"""Fixtures for the serving compatibility suite: the real `plinth` binary with a deployment of a
scikit-learn model (converted by skl2onnx, logged as an MLflow model directory), and the models'
reference answers from Python ONNX Runtime.

The binary is `$PLINTH_BIN` (else `$CARGO_TARGET_DIR/debug/plinth`); the models are made by
make_models.py into a temporary directory; ONNX Runtime's library is the pinned wheel's
(`ORT_DYLIB_PATH`, found from the onnxruntime package of this interpreter when unset).
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime
import pytest
import requests

HERE = pathlib.Path(__file__).parent


def _binary() -> str:
    if os.environ.get("PLINTH_BIN"):
        return os.environ["PLINTH_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/plinth/target"))
    return os.path.join(target, "debug", "plinth")


def _library() -> str:
    if os.environ.get("ORT_DYLIB_PATH"):
        return os.environ["ORT_DYLIB_PATH"]
    capi = pathlib.Path(onnxruntime.__file__).parent / "capi"
    return sorted(glob.glob(str(capi / "libonnxruntime.so.*")))[0]


class Server:
    def __init__(self, url: str, process: subprocess.Popen, log: pathlib.Path, auth=None):
        self.url, self.process, self.log = url, process, log
        self.host = url.removeprefix("http://")
        # (user, password) for every call of `api`, when the server has auth on.
        self.auth = auth

    def api(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("auth", self.auth)
        return requests.request(method, self.url + path, timeout=60, **kw)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(HERE / "make_models.py"), str(out)], check=True)
    return out


def start_server(data: pathlib.Path, env_extra: dict | None = None, auth=None) -> Server:
    """The binary on `data`, on a free port, with `env_extra` in its environment."""
    log = data / "server.log"
    env = dict(os.environ, ORT_DYLIB_PATH=_library(), RUST_LOG="warn", **(env_extra or {}))
    with open(log, "wb") as out:
        process = subprocess.Popen([_binary(), "server", "--port", "0", "--data-dir", str(data)], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 30
    url = None
    while time.time() < deadline and url is None:
        match = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        if match:
            url = match.group(1)
        elif process.poll() is not None:
            raise RuntimeError("the server exited:\n" + log.read_text(errors="replace"))
        else:
            time.sleep(0.05)
    if url is None:
        process.kill()
        raise RuntimeError("the server did not start:\n" + log.read_text(errors="replace"))
    return Server(url, process, log, auth)


def stop_server(srv: Server):
    srv.process.send_signal(signal.SIGTERM)
    try:
        srv.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        srv.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    srv = start_server(tmp_path_factory.mktemp("plinth-data"))
    yield srv
    stop_server(srv)


def register(server: Server, name: str, model_dir: pathlib.Path) -> int:
    """Logs the directory's files as a run's `model/` artifacts and registers a version of `name` from them."""
    r = server.api("POST", "/api/2.0/mlflow/experiments/create", json={"name": f"serving-{name}-{time.time_ns()}"})
    r.raise_for_status()
    experiment = r.json()["experiment_id"]
    r = server.api("POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment})
    r.raise_for_status()
    run = r.json()["run"]["info"]["run_id"]
    for path in sorted(model_dir.iterdir()):
        r = server.api("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/model/{path.name}", data=path.read_bytes())
        r.raise_for_status()
    server.api("POST", "/api/2.0/mlflow/registered-models/create", json={"name": name})
    r = server.api("POST", "/api/2.0/mlflow/model-versions/create", json={"name": name, "source": f"runs:/{run}/model", "run_id": run})
    r.raise_for_status()
    return int(r.json()["model_version"]["version"])


def deploy(server: Server, name: str, model_dir: pathlib.Path, **options) -> dict:
    version = register(server, name, model_dir)
    r = server.api("POST", "/api/2.0/mlflow/registered-models/alias", json={"name": name, "alias": "champion", "version": str(version)})
    r.raise_for_status()
    r = server.api("POST", "/api/plinth/v1/deployments", json={"name": name, "model": f"{name}@champion", **options})
    assert r.status_code == 200, r.text
    return r.json()["deployment"]


def reference(models: pathlib.Path, name: str) -> tuple[dict, dict]:
    """The model's test inputs and Python ONNX Runtime's answers."""
    return json.loads((models / f"{name}.inputs.json").read_text()), json.loads((models / f"{name}.expected.json").read_text())


def as_array(spec: dict) -> np.ndarray:
    return np.asarray(spec["data"], dtype=spec.get("dtype", "float32")).reshape(spec["shape"])


def check(result, expected: dict):
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got is not None, f"no output {name}"
        want_array = as_array(want)
        assert list(got.shape) == list(want_array.shape), name
        if np.issubdtype(want_array.dtype, np.floating):
            np.testing.assert_allclose(got, want_array, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want_array, err_msg=name)
