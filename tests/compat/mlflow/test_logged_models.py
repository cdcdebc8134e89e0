"""Logged models (MLflow 3): pyfunc log_model/load_model end to end, and the logged-model API."""

from __future__ import annotations

import re
import time
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest
from mlflow.entities import LoggedModelStatus

from plinth_compat import now_ms, raises_mlflow, uniq

MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [x * 2 for x in model_input]


def test_pyfunc_log_model_and_load(client, experiment_id, tmp_path):
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(name="doubler", python_model=Doubler())
    assert MODEL_ID_RE.match(info.model_id), info.model_id
    assert info.model_uri == f"models:/{info.model_id}"
    assert info.run_id == run.info.run_id

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert list(loaded.predict([1, 2, 3])) == [2, 4, 6]
    model = client.get_logged_model(info.model_id)
    assert model.name == "doubler"
    assert model.experiment_id == experiment_id
    assert model.source_run_id == run.info.run_id
    assert model.status == LoggedModelStatus.READY
    assert model.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{info.model_id}/artifacts"
    names = {a.path for a in client.list_logged_model_artifacts(info.model_id)}
    assert "MLmodel" in names
    assert "python_model.pkl" in names

    # The logged model is an output of the run.
    outputs = client.get_run(run.info.run_id).outputs
    assert outputs is not None
    assert [o.model_id for o in outputs.model_outputs] == [info.model_id]

    # Downloading through the models:/ URI gives the whole model directory.
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "m"))
    assert (Path(local) / "MLmodel").is_file()
    assert (Path(local) / "python_model.pkl").is_file()


def test_create_get_finalize(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    before = now_ms()
    model = client.create_logged_model(
        experiment_id,
        name="my-model",
        source_run_id=run_id,
        tags={"t1": "v1"},
        params={"alpha": "0.5"},
        model_type="agent",
    )
    assert MODEL_ID_RE.match(model.model_id)
    assert model.name == "my-model"
    assert model.experiment_id == experiment_id
    assert model.source_run_id == run_id
    assert model.model_type == "agent"
    assert model.status == LoggedModelStatus.PENDING
    assert model.tags == {"t1": "v1"}
    assert model.params == {"alpha": "0.5"}
    assert model.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{model.model_id}/artifacts"
    assert before - 5000 <= model.creation_timestamp <= now_ms() + 5000

    got = client.get_logged_model(model.model_id)
    assert got.model_id == model.model_id
    assert got.tags == {"t1": "v1"}
    assert got.params == {"alpha": "0.5"}
    assert got.status == LoggedModelStatus.PENDING

    done = client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert done.status == LoggedModelStatus.READY
    assert client.get_logged_model(model.model_id).status == LoggedModelStatus.READY
    assert client.get_logged_model(model.model_id).last_updated_timestamp >= model.creation_timestamp


def test_create_without_name_gets_a_random_one(client, experiment_id):
    a = client.create_logged_model(experiment_id)
    b = client.create_logged_model(experiment_id)
    assert a.name and b.name and a.name != b.name
    assert a.model_id != b.model_id


def test_finalize_failed(client, experiment_id):
    model = client.create_logged_model(experiment_id, name="fails")
    client.finalize_logged_model(model.model_id, "FAILED")
    assert client.get_logged_model(model.model_id).status == LoggedModelStatus.FAILED


def test_get_missing_logged_model(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_logged_model("m-" + "0" * 32)


def test_create_in_missing_experiment(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.create_logged_model("987654321", name="x")


@pytest.mark.parametrize("bad", ["model/path/0", "a:b", "v1.2", "50%", 'say"hi"', "it's"])
def test_logged_model_names_follow_mlflows_rule(client, experiment_id, bad):
    with raises_mlflow("INVALID_PARAMETER_VALUE", match="Invalid model name"):
        client.create_logged_model(experiment_id, name=bad)


def test_logged_model_tags(client, experiment_id):
    model = client.create_logged_model(experiment_id, name="tagged")
    client.set_logged_model_tags(model.model_id, {"a": "1", "b": "2"})
    client.set_logged_model_tags(model.model_id, {"a": "3"})
    assert client.get_logged_model(model.model_id).tags == {"a": "3", "b": "2"}
    client.delete_logged_model_tag(model.model_id, "a")
    assert client.get_logged_model(model.model_id).tags == {"b": "2"}


def test_logged_model_params(client, experiment_id):
    model = client.create_logged_model(experiment_id, name="params", params={"p0": "x"})
    client.log_model_params(model.model_id, {"p1": "1", "p2": "two"})
    assert client.get_logged_model(model.model_id).params == {"p0": "x", "p1": "1", "p2": "two"}


def test_delete_logged_model(client, experiment_id):
    model = client.create_logged_model(experiment_id, name="doomed")
    client.delete_logged_model(model.model_id)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_logged_model(model.model_id)
    assert [m.model_id for m in client.search_logged_models([experiment_id])] == []


def test_search_logged_models(client):
    exp = client.create_experiment(uniq("lm-search"))
    other = client.create_experiment(uniq("lm-search-other"))
    ids = {}
    for name, mtype, tags in [
        ("m-a", "agent", {"stage": "dev"}),
        ("m-b", "classifier", {"stage": "prod"}),
        ("m-c", "agent", {"stage": "prod"}),
    ]:
        ids[name] = client.create_logged_model(exp, name=name, model_type=mtype, tags=tags).model_id
        time.sleep(0.01)
    client.finalize_logged_model(ids["m-b"], LoggedModelStatus.READY)
    ids["o"] = client.create_logged_model(other, name="o").model_id
    by_id = {v: k for k, v in ids.items()}

    def names(models):
        return [by_id[m.model_id] for m in models]

    # Default order: newest first.
    assert names(client.search_logged_models([exp])) == ["m-c", "m-b", "m-a"]
    assert sorted(names(client.search_logged_models([exp, other]))) == ["m-a", "m-b", "m-c", "o"]
    assert sorted(names(client.search_logged_models([exp], filter_string="model_type = 'agent'"))) == [
        "m-a",
        "m-c",
    ]
    assert names(client.search_logged_models([exp], filter_string="name = 'm-b'")) == ["m-b"]
    assert names(client.search_logged_models([exp], filter_string="name LIKE 'm-_' AND tags.stage = 'dev'")) == [
        "m-a"
    ]
    assert names(client.search_logged_models([exp], filter_string="model_type != 'agent'")) == ["m-b"]
    got = client.search_logged_models([exp], order_by=[{"field_name": "name", "ascending": True}])
    assert names(got) == ["m-a", "m-b", "m-c"]
    got = client.search_logged_models([exp], order_by=[{"field_name": "creation_time", "ascending": True}])
    assert names(got) == ["m-a", "m-b", "m-c"]
    got = client.search_logged_models([exp], order_by=[{"field_name": "name", "ascending": False}])
    assert names(got) == ["m-c", "m-b", "m-a"]

    # Pagination, every model exactly once.
    seen = []
    token = None
    for _ in range(10):
        page = client.search_logged_models([exp], max_results=2, page_token=token)
        seen.extend(names(page))
        token = page.token
        if not token:
            break
    assert sorted(seen) == ["m-a", "m-b", "m-c"] and len(seen) == 3


def test_search_logged_models_by_metric(client, experiment_id):
    with mlflow.start_run(experiment_id=experiment_id) as run:
        good = mlflow.create_external_model(name="good")
        bad = mlflow.create_external_model(name="bad")
        mlflow.log_metric("acc", 0.9, model_id=good.model_id)
        mlflow.log_metric("acc", 0.1, model_id=bad.model_id)
    got = client.search_logged_models([experiment_id], filter_string="metrics.acc > 0.5")
    assert [m.model_id for m in got] == [good.model_id]
    got = client.search_logged_models(
        [experiment_id], order_by=[{"field_name": "metrics.acc", "ascending": True}]
    )
    assert [m.model_id for m in got] == [bad.model_id, good.model_id]
    model = client.get_logged_model(good.model_id)
    assert [(m.key, m.value, m.run_id) for m in model.metrics] == [("acc", 0.9, run.info.run_id)]


def test_search_logged_models_invalid_filter(client, experiment_id):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_logged_models([experiment_id], filter_string="name ===== 'x'")


@pytest.mark.parametrize("status", ["READY", LoggedModelStatus.READY])
def test_fluent_logged_model_helpers(client, experiment_id, status):
    mlflow.set_experiment(experiment_id=experiment_id)
    model = mlflow.initialize_logged_model(name=uniq("init"), tags={"k": "v"})
    assert model.status == LoggedModelStatus.PENDING
    mlflow.finalize_logged_model(model.model_id, status)
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"name = '{model.name}'", output_format="list"
    )
    assert [m.model_id for m in found] == [model.model_id]
    assert found[0].status == LoggedModelStatus.READY
