"""Fixtures for the MLflow compatibility suite.

Run (from the repository root):

    $HOME/.cache/plinth/venv-compat/bin/python -m pytest tests/compat

The server binary is `$PLINTH_BIN`, else `$CARGO_TARGET_DIR/debug/plinth` (`CARGO_TARGET_DIR`
defaults to `$HOME/.cache/plinth/target`). See plinth_compat.py for the reference mode that runs
the same tests against a real MLflow server.
"""

from __future__ import annotations

import os

# The client caches its configuration, so these must be in place before mlflow is imported.
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "30"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
for _var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_TOKEN"):
    os.environ.pop(_var, None)

import mlflow  # noqa: E402
import pytest  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

import plinth_compat  # noqa: E402
from plinth_compat import REFERENCE, ServerProcess, start_server  # noqa: E402

# ---------------------------------------------------------------------------------------------
# No response in the whole suite may be a 5xx (plinth_compat.watch_server_errors).

plinth_compat.watch_server_errors()


# The autouse fixture that fails a test which received a 5xx.
from plinth_compat import no_server_errors  # noqa: E402, F401


# ---------------------------------------------------------------------------------------------
# Servers


def pytest_collection_modifyitems(config, items):
    if REFERENCE:
        skip = pytest.mark.skip(reason="asserts a deliberate difference from MLflow (plinth_only)")
        for item in items:
            if "plinth_only" in item.keywords:
                item.add_marker(skip)


def _run_server(tmp_path_factory, name: str):
    srv = start_server(tmp_path_factory.mktemp(name))
    return srv


def _stop_server(srv: ServerProcess):
    plinth_compat.stop_server(srv)


@pytest.fixture
def server(tmp_path_factory) -> ServerProcess:
    """A fresh server with an empty data dir, for this test only (has .url, .data_dir)."""
    srv = _run_server(tmp_path_factory, "plinth-data")
    yield srv
    _stop_server(srv)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> ServerProcess:
    """One server per test module; tests must use unique names (plinth_compat.uniq)."""
    srv = _run_server(tmp_path_factory, "plinth-shared")
    yield srv
    _stop_server(srv)


@pytest.fixture
def tracking_server(request) -> ServerProcess:
    """The server this test talks to: its own `server` if it asked for one, else the shared one."""
    if "server" in request.fixturenames:
        return request.getfixturevalue("server")
    return request.getfixturevalue("shared_server")


@pytest.fixture
def client(tracking_server) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_server.url)


@pytest.fixture
def rest(tracking_server) -> plinth_compat.Rest:
    return tracking_server.rest()


def _reset_fluent_state():
    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent = mlflow.tracking.fluent
    if hasattr(fluent, "_active_experiment_id"):
        fluent._active_experiment_id = None
    for name in ("_last_active_run_id", "_last_logged_model_id"):
        var = getattr(fluent, name, None)
        if var is not None and hasattr(var, "set"):
            var.set(None)
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(var, None)


@pytest.fixture(autouse=True)
def _mlflow_env(request, monkeypatch):
    """Points the fluent API (and MLFLOW_TRACKING_URI) at this test's server; resets fluent state."""
    srv = request.getfixturevalue("tracking_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", srv.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    _reset_fluent_state()
    mlflow.set_tracking_uri(srv.url)
    yield srv
    try:
        _reset_fluent_state()
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture
def experiment_id(client) -> str:
    """A fresh experiment on the test's server."""
    return client.create_experiment(plinth_compat.uniq("exp"))
