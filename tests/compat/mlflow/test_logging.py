"""Metrics, params, tags, batches, inputs and log-model through the real client (and raw REST)."""

from __future__ import annotations

import json
import math

import pytest
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.models import Model

from plinth_compat import FLOAT_MAX, expect_error, now_ms, raises_mlflow


@pytest.fixture
def run_id(client, experiment_id) -> str:
    return client.create_run(experiment_id).info.run_id


# ----------------------------------------------------------------------------------------------
# Metrics


def test_log_metric_basic(client, run_id):
    ts = now_ms()
    client.log_metric(run_id, "loss", 0.5, timestamp=ts, step=3)
    run = client.get_run(run_id)
    assert run.data.metrics == {"loss": 0.5}
    [m] = client.get_metric_history(run_id, "loss")
    assert (m.key, m.value, m.timestamp, m.step) == ("loss", 0.5, ts, 3)


def test_log_metric_step_defaults_to_zero(client, run_id):
    client.log_metric(run_id, "acc", 1.0)
    [m] = client.get_metric_history(run_id, "acc")
    assert m.step == 0
    assert abs(m.timestamp - now_ms()) < 60_000


def test_log_metric_int_and_negative_values(client, run_id):
    client.log_metric(run_id, "int", 7)
    client.log_metric(run_id, "neg", -2.5)
    client.log_metric(run_id, "tiny", 5e-324)
    client.log_metric(run_id, "big", 1e300)
    assert client.get_run(run_id).data.metrics == {"int": 7.0, "neg": -2.5, "tiny": 5e-324, "big": 1e300}


def test_log_metric_nan_and_infinities(client, run_id):
    client.log_metric(run_id, "nan", float("nan"))
    client.log_metric(run_id, "pinf", float("inf"))
    client.log_metric(run_id, "ninf", float("-inf"))
    metrics = client.get_run(run_id).data.metrics
    assert math.isnan(metrics["nan"])
    # MLflow stores +-inf as +-sys.float_info.max (documented behaviour of the SQL store);
    # either that or a true infinity is accepted.
    assert metrics["pinf"] >= 1.797e308
    assert metrics["ninf"] <= -1.797e308
    [nan] = client.get_metric_history(run_id, "nan")
    assert math.isnan(nan.value)
    [pinf] = client.get_metric_history(run_id, "pinf")
    assert pinf.value >= 1.797e308
    [ninf] = client.get_metric_history(run_id, "ninf")
    assert ninf.value <= -1.797e308


def test_float_max_survives_exactly(client, run_id):
    client.log_metric(run_id, "max", FLOAT_MAX)
    client.log_metric(run_id, "min", -FLOAT_MAX)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["max"] == FLOAT_MAX
    assert metrics["min"] == -FLOAT_MAX


def test_latest_metric_is_max_by_step_then_timestamp_then_value(client, run_id):
    # Higher step wins even when logged earlier and with an older timestamp.
    client.log_metric(run_id, "m", 1.0, timestamp=100, step=5)
    client.log_metric(run_id, "m", 2.0, timestamp=200, step=4)
    assert client.get_run(run_id).data.metrics["m"] == 1.0
    # Same step: later timestamp wins.
    client.log_metric(run_id, "m", 3.0, timestamp=150, step=5)
    assert client.get_run(run_id).data.metrics["m"] == 3.0
    # Same step and timestamp: larger value wins.
    client.log_metric(run_id, "m", 2.5, timestamp=150, step=5)
    assert client.get_run(run_id).data.metrics["m"] == 3.0
    client.log_metric(run_id, "m", 9.0, timestamp=150, step=5)
    assert client.get_run(run_id).data.metrics["m"] == 9.0
    # An older point on a lower step never replaces it.
    client.log_metric(run_id, "m", 100.0, timestamp=10, step=0)
    assert client.get_run(run_id).data.metrics["m"] == 9.0
    assert len(client.get_metric_history(run_id, "m")) == 6


def test_latest_metric_negative_steps(client, run_id):
    client.log_metric(run_id, "neg", 1.0, timestamp=100, step=-5)
    client.log_metric(run_id, "neg", 2.0, timestamp=50, step=-1)
    assert client.get_run(run_id).data.metrics["neg"] == 2.0


def test_log_metric_validation(client, run_id):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_metric(run_id, "bad!name", 1.0)


def test_log_metric_wire_rejects_non_numeric_value(rest, run_id):
    r = rest.post(
        "/api/2.0/mlflow/runs/log-metric",
        {"run_id": run_id, "key": "m", "value": "abc", "timestamp": 1, "step": 0},
    )
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    r = rest.post("/api/2.0/mlflow/runs/log-metric", {"run_id": run_id, "key": "m", "timestamp": 1})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    r = rest.post("/api/2.0/mlflow/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_log_metric_wire_accepts_nan_string(rest, client, run_id):
    rest.ok("POST", "runs/log-metric", {"run_id": run_id, "key": "w", "value": "NaN", "timestamp": 1})
    rest.ok("POST", "runs/log-metric", {"run_id": run_id, "key": "i", "value": "Infinity", "timestamp": 1})
    rest.ok("POST", "runs/log-metric", {"run_id": run_id, "key": "j", "value": "-Infinity", "timestamp": 1})
    metrics = client.get_run(run_id).data.metrics
    assert math.isnan(metrics["w"])
    assert metrics["i"] >= 1.797e308
    assert metrics["j"] <= -1.797e308


# ----------------------------------------------------------------------------------------------
# Params


def test_log_param(client, run_id):
    client.log_param(run_id, "lr", 0.01)
    client.log_param(run_id, "layers", [1, 2])
    client.log_param(run_id, "name", "resnet")
    assert client.get_run(run_id).data.params == {"lr": "0.01", "layers": "[1, 2]", "name": "resnet"}


def test_log_param_is_immutable(client, rest, run_id):
    client.log_param(run_id, "p", "v1")
    client.log_param(run_id, "p", "v1")  # the same value again is fine
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_param(run_id, "p", "v2")
    r = rest.post("/api/2.0/mlflow/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v3"})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_batch(run_id, params=[Param("p", "v4")])
    client.log_batch(run_id, params=[Param("p", "v1")])
    assert client.get_run(run_id).data.params == {"p": "v1"}


def test_empty_param_value(client, run_id):
    client.log_param(run_id, "empty", "")
    client.log_batch(run_id, params=[Param("empty2", "")])
    params = client.get_run(run_id).data.params
    assert params["empty"] == ""
    assert params["empty2"] == ""


def test_long_param_values(client, run_id):
    client.log_param(run_id, "ok", "x" * 6000)
    assert client.get_run(run_id).data.params["ok"] == "x" * 6000
    # MLflow's server truncates param values over 6000 characters (MLFLOW_TRUNCATE_LONG_VALUES,
    # on by default) instead of rejecting them; the client sends the value unchanged.
    client.log_param(run_id, "long", "y" * 6001)
    assert client.get_run(run_id).data.params["long"] == "y" * 6000
    client.log_batch(run_id, params=[Param("long_batch", "z" * 7000)])
    assert client.get_run(run_id).data.params["long_batch"] == "z" * 6000


def test_param_value_length_counts_characters(client, run_id):
    value = "é" * 6000  # 12000 bytes in UTF-8, but 6000 characters
    client.log_param(run_id, "unicode", value)
    assert client.get_run(run_id).data.params["unicode"] == value


# ----------------------------------------------------------------------------------------------
# Keys


BAD_KEYS = ["../escape", "a/../b", "/leading", "a/", ".", "bad!char", "sp@ce", "semi;colon", "q'uote"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(client, run_id, key):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_param(run_id, key, "v")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_metric(run_id, key, 1.0)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.set_tag(run_id, key, "v")
    run = client.get_run(run_id)
    assert key not in run.data.params and key not in run.data.metrics and key not in run.data.tags


GOOD_KEYS = ["plain", "with space", "dot.ted", "dash-ed", "under_score", "a/b/c", "colon:ok", "ünïcode", "0"]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_are_accepted(client, run_id, key):
    client.log_param(run_id, key, "v")
    client.log_metric(run_id, key, 1.0)
    client.set_tag(run_id, key, "v")
    run = client.get_run(run_id)
    assert run.data.params[key] == "v"
    assert run.data.metrics[key] == 1.0
    assert run.data.tags[key] == "v"


def test_key_length_limit(client, run_id):
    ok = "k" * 250
    client.log_param(run_id, ok, "v")
    client.log_metric(run_id, ok, 1.0)
    client.set_tag(run_id, ok, "v")
    run = client.get_run(run_id)
    assert ok in run.data.params and ok in run.data.metrics and ok in run.data.tags
    bad = "k" * 251
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_param(run_id, bad, "v")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_metric(run_id, bad, 1.0)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.set_tag(run_id, bad, "v")


# ----------------------------------------------------------------------------------------------
# Tags


def test_set_and_delete_tag(client, run_id):
    client.set_tag(run_id, "t", "1")
    client.set_tag(run_id, "t", "2")  # tags are mutable
    client.set_tag(run_id, "keep", "k")
    assert client.get_run(run_id).data.tags["t"] == "2"
    client.delete_tag(run_id, "t")
    tags = client.get_run(run_id).data.tags
    assert "t" not in tags
    assert tags["keep"] == "k"


def test_delete_missing_tag(client, rest, run_id):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_tag(run_id, "never-set")
    r = rest.post("/api/2.0/mlflow/runs/delete-tag", {"run_id": run_id, "key": "never-set"})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)


def test_tag_values(client, run_id):
    client.set_tag(run_id, "empty", "")
    client.set_tag(run_id, "long", "v" * 8000)
    client.set_tag(run_id, "number", 5)
    tags = client.get_run(run_id).data.tags
    assert tags["empty"] == ""
    assert tags["long"] == "v" * 8000
    assert tags["number"] == "5"
    # Like params, over-long run tag values are truncated by MLflow's server (8000 characters).
    client.set_tag(run_id, "longer", "w" * 8001)
    assert client.get_run(run_id).data.tags["longer"] == "w" * 8000


def test_setting_run_name_tag_renames_the_run(client, run_id):
    client.set_tag(run_id, "mlflow.runName", "renamed-by-tag")
    assert client.get_run(run_id).info.run_name == "renamed-by-tag"


# ----------------------------------------------------------------------------------------------
# Batches


def test_log_batch(client, run_id):
    ts = now_ms()
    client.log_batch(
        run_id,
        metrics=[Metric("m1", 1.0, ts, 0), Metric("m1", 2.0, ts, 1), Metric("m2", 3.0, ts, 0)],
        params=[Param("p1", "a"), Param("p2", "b")],
        tags=[RunTag("t1", "x"), RunTag("t2", "y")],
    )
    run = client.get_run(run_id)
    assert run.data.metrics == {"m1": 2.0, "m2": 3.0}
    assert run.data.params == {"p1": "a", "p2": "b"}
    assert run.data.tags["t1"] == "x" and run.data.tags["t2"] == "y"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "m1")] == [(0, 1.0), (1, 2.0)]


def test_log_batch_at_the_limits(client, rest, run_id):
    ts = now_ms()
    metrics = [{"key": f"m{i % 10}", "value": float(i), "timestamp": ts, "step": i} for i in range(1000)]
    rest.ok("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})
    params = [{"key": f"p{i}", "value": str(i)} for i in range(100)]
    tags = [{"key": f"t{i}", "value": str(i)} for i in range(100)]
    rest.ok("POST", "runs/log-batch", {"run_id": run_id, "params": params, "tags": tags})
    run = client.get_run(run_id)
    assert len(run.data.metrics) == 10
    assert run.data.metrics["m9"] == 999.0
    assert len(run.data.params) == 100
    assert sum(1 for k in run.data.tags if k.startswith("t")) == 100
    assert len(client.get_metric_history(run_id, "m3")) == 100


def test_log_batch_combined_limit_of_1000_entities(client, rest, run_id):
    ts = now_ms()
    metrics = [{"key": "m", "value": float(i), "timestamp": ts, "step": i} for i in range(800)]
    params = [{"key": f"p{i}", "value": "v"} for i in range(100)]
    tags = [{"key": f"t{i}", "value": "v"} for i in range(100)]
    rest.ok("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics, "params": params, "tags": tags})
    run = client.get_run(run_id)
    assert run.data.metrics == {"m": 799.0}
    assert len(run.data.params) == 100


def test_log_batch_over_the_limits(rest, client, run_id):
    ts = now_ms()
    metrics = [{"key": "m", "value": 1.0, "timestamp": ts, "step": i} for i in range(1001)]
    r = rest.post("/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "metrics": metrics})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    r = rest.post("/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "params": params})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    tags = [{"key": f"t{i}", "value": "v"} for i in range(101)]
    r = rest.post("/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "tags": tags})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    # 900 metrics + 100 params + 100 tags: each list is in bounds but the total is over 1000.
    r = rest.post(
        "/api/2.0/mlflow/runs/log-batch",
        {
            "run_id": run_id,
            "metrics": metrics[:900],
            "params": [{"key": f"p{i}", "value": "v"} for i in range(100)],
            "tags": [{"key": f"t{i}", "value": "v"} for i in range(100)],
        },
    )
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    # A rejected batch writes nothing.
    run = client.get_run(run_id)
    assert run.data.metrics == {} and run.data.params == {}
    assert not any(k.startswith("t") and k[1:].isdigit() for k in run.data.tags)


def test_client_splits_big_batches(client, run_id):
    ts = now_ms()
    client.log_batch(run_id, metrics=[Metric("m", float(i), ts, i) for i in range(2500)])
    assert len(client.get_metric_history(run_id, "m")) == 2500


def test_log_batch_duplicate_param_keys_rejected(client, rest, run_id):
    r = rest.post(
        "/api/2.0/mlflow/runs/log-batch",
        {"run_id": run_id, "params": [{"key": "d", "value": "1"}, {"key": "d", "value": "2"}]},
    )
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_batch(run_id, params=[Param("d", "1"), Param("d", "1")])
    assert client.get_run(run_id).data.params == {}


def test_log_batch_is_all_or_nothing_on_bad_key(client, run_id):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_batch(
            run_id, metrics=[Metric("good", 1.0, now_ms(), 0)], params=[Param("../bad", "v")]
        )
    run = client.get_run(run_id)
    assert run.data.metrics == {} and run.data.params == {}


def test_log_batch_last_tag_wins(client, run_id):
    client.log_batch(run_id, tags=[RunTag("t", "first"), RunTag("t", "second")])
    assert client.get_run(run_id).data.tags["t"] == "second"


@pytest.mark.plinth_only
def test_log_batch_request_size_limit(rest, run_id):
    # differs from MLflow: MLflow 3.17 checks len() of the parsed JSON dict, so its 1 MB limit
    # never applies; Plinth enforces MAX_BATCH_LOG_REQUEST_BYTES on the body.
    # Each tag value is in bounds (8000 chars) but the JSON body is above 1 MB.
    tags = [{"key": f"big{i}", "value": "x" * 8000} for i in range(100)]
    body = json.dumps({"run_id": run_id, "tags": tags, "params": [{"key": f"p{i}", "value": "y" * 6000} for i in range(100)]})
    assert len(body) > 1_000_000
    r = rest.request(
        "POST", "/api/2.0/mlflow/runs/log-batch", data=body, headers={"Content-Type": "application/json"}
    )
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_log_batch_empty_is_ok(rest, run_id):
    assert rest.ok("POST", "runs/log-batch", {"run_id": run_id}) == {}


# ----------------------------------------------------------------------------------------------
# Inputs and models


def test_log_inputs_with_dataset(client, run_id):
    dataset = Dataset(
        name="iris",
        digest="abc123",
        source_type="local",
        source=json.dumps({"uri": "/data/iris.csv"}),
        schema=json.dumps({"mlflow_colspec": [{"type": "double", "name": "x"}]}),
        profile=json.dumps({"num_rows": 150}),
    )
    client.log_inputs(
        run_id,
        datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])],
    )
    # Logging the same dataset again does not duplicate it.
    client.log_inputs(
        run_id,
        datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])],
    )
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    got = inputs[0]
    assert got.dataset.name == "iris"
    assert got.dataset.digest == "abc123"
    assert got.dataset.source_type == "local"
    assert json.loads(got.dataset.source) == {"uri": "/data/iris.csv"}
    assert json.loads(got.dataset.profile) == {"num_rows": 150}
    assert json.loads(got.dataset.schema) == {"mlflow_colspec": [{"type": "double", "name": "x"}]}
    assert [(t.key, t.value) for t in got.tags] == [("mlflow.data.context", "training")]


def test_log_inputs_two_datasets(client, run_id):
    a = Dataset(name="a", digest="d1", source_type="local", source="{}")
    b = Dataset(name="b", digest="d2", source_type="local", source="{}")
    client.log_inputs(run_id, datasets=[DatasetInput(a), DatasetInput(b)])
    names = sorted(i.dataset.name for i in client.get_run(run_id).inputs.dataset_inputs)
    assert names == ["a", "b"]


def test_log_model_records_history_tag(client, run_id):
    store = client._tracking_client.store
    first = Model(artifact_path="model", run_id=run_id, flavors={"python_function": {"loader_module": "x"}})
    store.record_logged_model(run_id, first)
    history = json.loads(client.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert history == [first.get_tags_dict()]

    second = Model(artifact_path="model2", run_id=run_id, flavors={"sklearn": {"sklearn_version": "1"}})
    store.record_logged_model(run_id, second)
    history = json.loads(client.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert history == [first.get_tags_dict(), second.get_tags_dict()]


def test_log_model_rejects_incomplete_model_json(rest, run_id):
    r = rest.post(
        "/api/2.0/mlflow/runs/log-model",
        {"run_id": run_id, "model_json": json.dumps({"artifact_path": "m"})},
    )
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    r = rest.post("/api/2.0/mlflow/runs/log-model", {"run_id": run_id, "model_json": "{not json"})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_timestamps_are_kept_exactly(client, run_id):
    big_ts = 4_102_444_800_000  # 2100-01-01
    client.log_metric(run_id, "far", 1.0, timestamp=big_ts, step=2**40)
    [m] = client.get_metric_history(run_id, "far")
    assert m.timestamp == big_ts
    assert m.step == 2**40
