"""Metric history: metrics/get-history (with paging) and metrics/get-history-bulk-interval."""

from __future__ import annotations

import math

import pytest
from mlflow.entities import Metric

from plinth_compat import MISSING_RUN_ID, expect_error, raises_mlflow

BULK = "/api/2.0/mlflow/metrics/get-history-bulk-interval"
AJAX_BULK = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"


@pytest.fixture
def run_id(client, experiment_id) -> str:
    return client.create_run(experiment_id).info.run_id


def log_steps(rest, run_id, key, steps, value=lambda s: float(s), ts=lambda s: 1000 + s):
    """Logs one point per step through runs/log-batch, 1000 points per request."""
    steps = list(steps)
    for i in range(0, len(steps), 1000):
        chunk = steps[i : i + 1000]
        metrics = [{"key": key, "value": value(s), "timestamp": ts(s), "step": s} for s in chunk]
        rest.ok("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})


def test_history_returns_every_point(client, run_id):
    client.log_metric(run_id, "m", 1.0, timestamp=10, step=0)
    client.log_metric(run_id, "m", 2.0, timestamp=20, step=0)  # same step, later
    client.log_metric(run_id, "m", 3.0, timestamp=5, step=1)
    client.log_metric(run_id, "m", float("nan"), timestamp=30, step=2)
    client.log_metric(run_id, "other", 9.0, timestamp=10, step=0)
    history = client.get_metric_history(run_id, "m")
    assert all(m.key == "m" for m in history)
    points = sorted(((m.step, m.timestamp, m.value) for m in history), key=lambda p: (p[0], p[1]))
    assert points[:3] == [(0, 10, 1.0), (0, 20, 2.0), (1, 5, 3.0)]
    assert points[3][:2] == (2, 30) and math.isnan(points[3][2])


def test_identical_points_are_stored_once(client, run_id):
    for _ in range(3):
        client.log_metric(run_id, "dup", 1.5, timestamp=100, step=7)
    client.log_batch(run_id, metrics=[Metric("dup", 1.5, 100, 7), Metric("dup", 1.5, 100, 7)])
    client.log_metric(run_id, "dup", 2.5, timestamp=100, step=7)  # differs in value: a new point
    history = client.get_metric_history(run_id, "dup")
    assert sorted((m.step, m.timestamp, m.value) for m in history) == [(7, 100, 1.5), (7, 100, 2.5)]


def test_history_of_unknown_metric_is_empty(client, run_id):
    assert client.get_metric_history(run_id, "never-logged") == []


@pytest.mark.plinth_only
def test_history_of_unknown_run(client, rest):
    # differs from MLflow: MLflow answers an empty history for a run that does not exist.
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_metric_history(MISSING_RUN_ID, "m")
    r = rest.get("/api/2.0/mlflow/metrics/get-history", params={"run_id": MISSING_RUN_ID, "metric_key": "m"})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)


def test_history_requires_metric_key(rest, run_id):
    r = rest.get("/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id})
    body = expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    assert "metric_key" in body["message"]


@pytest.mark.slow
def test_history_with_more_than_25000_points_pages(client, rest, run_id):
    n = 30_500
    log_steps(rest, run_id, "long", range(n))
    history = client.get_metric_history(run_id, "long")
    assert len(history) == n
    assert sorted(m.step for m in history) == list(range(n))
    assert all(m.value == float(m.step) for m in history)

    # The wire-level pages: at most max_results points each, and a token until the end.
    seen = []
    token = None
    pages = 0
    while True:
        params = {"run_id": run_id, "metric_key": "long", "max_results": 10_000}
        if token:
            params["page_token"] = token
        body = rest.ok("GET", "metrics/get-history", params)
        chunk = body.get("metrics", [])
        assert len(chunk) <= 10_000
        seen.extend(int(m["step"]) for m in chunk)
        pages += 1
        token = body.get("next_page_token")
        if not token:
            break
        assert pages < 10
    assert sorted(seen) == list(range(n))
    assert len(seen) == n
    assert pages == 4


def _bulk(rest, run_ids, key, path=BULK, **extra):
    params = [("run_ids", r) for r in run_ids] + [("metric_key", key)]
    params += [(k, str(v)) for k, v in extra.items()]
    return rest.get(path, params=params)


def test_bulk_interval_samples_each_run(client, rest, experiment_id):
    a = client.create_run(experiment_id).info.run_id
    b = client.create_run(experiment_id).info.run_id
    log_steps(rest, a, "loss", range(0, 1000))
    log_steps(rest, b, "loss", range(5, 50))
    r = _bulk(rest, [a, b], "loss", max_results=100)
    assert r.status_code == 200, r.text
    rows = r.json()["metrics"]
    by_run: dict[str, list[dict]] = {a: [], b: []}
    for row in rows:
        assert row["key"] == "loss"
        by_run[row["run_id"]].append(row)
    steps_a = [int(row["step"]) for row in by_run[a]]
    steps_b = [int(row["step"]) for row in by_run[b]]
    assert len(steps_a) <= 100
    assert len(steps_a) >= 50, "the sample should use most of max_results"
    assert steps_a == sorted(steps_a), "rows are sorted by step"
    assert len(set(steps_a)) == len(steps_a)
    assert steps_a[0] == 0 and steps_a[-1] == 999, "min and max step are always kept"
    # A run with fewer points than max_results comes back whole.
    assert steps_b == list(range(5, 50))
    for row in by_run[a]:
        assert float(row["value"]) == float(row["step"])
        assert int(row["timestamp"]) == 1000 + int(row["step"])


def test_bulk_interval_under_ajax_api(client, rest, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    log_steps(rest, run_id, "acc", range(10))
    r = _bulk(rest, [run_id], "acc", path=AJAX_BULK, max_results=5)
    assert r.status_code == 200, r.text
    steps = [int(row["step"]) for row in r.json()["metrics"]]
    assert len(steps) <= 5
    assert steps[0] == 0 and steps[-1] == 9
    assert steps == sorted(steps)


def test_bulk_interval_window(client, rest, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    log_steps(rest, run_id, "w", range(0, 200))
    r = _bulk(rest, [run_id], "w", max_results=1000, start_step=50, end_step=120)
    assert r.status_code == 200, r.text
    steps = [int(row["step"]) for row in r.json()["metrics"]]
    assert steps == list(range(50, 121))
    r = _bulk(rest, [run_id], "w", max_results=10, start_step=50, end_step=120)
    steps = [int(row["step"]) for row in r.json()["metrics"]]
    assert len(steps) <= 10 and steps[0] == 50 and steps[-1] == 120 and steps == sorted(steps)


def test_bulk_interval_default_max_results(client, rest, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    log_steps(rest, run_id, "d", range(0, 3000))
    r = _bulk(rest, [run_id], "d")
    assert r.status_code == 200, r.text
    steps = [int(row["step"]) for row in r.json()["metrics"]]
    assert len(steps) <= 2500
    assert steps[0] == 0 and steps[-1] == 2999


def test_bulk_interval_unknown_metric_is_empty(client, rest, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    r = _bulk(rest, [run_id], "never", max_results=10)
    assert r.status_code == 200, r.text
    assert r.json().get("metrics", []) == []


def test_bulk_interval_errors(client, rest, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    too_many = [run_id] + [f"{i:032x}" for i in range(100)]
    expect_error(_bulk(rest, too_many, "m", max_results=10), "INVALID_PARAMETER_VALUE", 400)
    # Missing metric_key / run_ids.
    expect_error(rest.get(BULK, params={"run_ids": run_id}), "INVALID_PARAMETER_VALUE", 400)
    expect_error(rest.get(BULK, params={"metric_key": "m"}), "INVALID_PARAMETER_VALUE", 400)
    # max_results out of range.
    expect_error(_bulk(rest, [run_id], "m", max_results=0), "INVALID_PARAMETER_VALUE", 400)
    expect_error(_bulk(rest, [run_id], "m", max_results=2501), "INVALID_PARAMETER_VALUE", 400)
    # Only one end of the window, or an inverted window.
    expect_error(_bulk(rest, [run_id], "m", start_step=3), "INVALID_PARAMETER_VALUE", 400)
    expect_error(_bulk(rest, [run_id], "m", start_step=5, end_step=1), "INVALID_PARAMETER_VALUE", 400)


@pytest.mark.plinth_only
def test_bulk_interval_unknown_run(rest):
    # differs from MLflow: MLflow answers an empty result for run ids that do not exist.
    expect_error(_bulk(rest, [MISSING_RUN_ID], "m", max_results=10), "RESOURCE_DOES_NOT_EXIST", 404)


def test_bulk_history_without_a_run_id_is_refused_in_mlflows_words(rest):
    r = rest.get("/api/2.0/mlflow/metrics/get-history-bulk", params={"metric_key": "m"})
    body = expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    assert body["message"] == "GetMetricHistoryBulk request must specify at least one run_id.", body
