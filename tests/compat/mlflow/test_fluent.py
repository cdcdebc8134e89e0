"""The fluent `mlflow.*` API end to end, the way a training script uses it."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from plinth_compat import uniq


def test_fluent_end_to_end(client, tmp_path):
    name = uniq("fluent")
    exp = mlflow.set_experiment(name)  # creates it
    assert exp.name == name
    assert client.get_experiment_by_name(name).experiment_id == exp.experiment_id
    assert mlflow.set_experiment(name).experiment_id == exp.experiment_id  # finds it

    artifact = tmp_path / "model.txt"
    artifact.write_text("weights")
    with mlflow.start_run(run_name="train") as run:
        run_id = run.info.run_id
        assert mlflow.active_run().info.run_id == run_id
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"layers": 3, "act": "relu"})
        mlflow.log_metric("loss", 1.0, step=0)
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_metrics({"acc": 0.8, "f1": 0.7}, step=1)
        mlflow.set_tag("stage", "dev")
        mlflow.set_tags({"team": "ml", "owner": "me"})
        mlflow.log_dict({"x": [1, 2]}, "cfg/config.json")
        mlflow.log_text("notes", "notes.txt")
        mlflow.log_artifact(str(artifact))
        mlflow.log_artifact(str(artifact), artifact_path="copies")
    assert mlflow.active_run() is None

    got = mlflow.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "train"
    assert got.info.experiment_id == exp.experiment_id
    assert got.info.end_time is not None
    assert got.data.params == {"lr": "0.1", "layers": "3", "act": "relu"}
    assert got.data.metrics == {"loss": 0.5, "acc": 0.8, "f1": 0.7}
    assert got.data.tags["stage"] == "dev"
    assert got.data.tags["team"] == "ml"
    assert got.data.tags["owner"] == "me"
    assert got.data.tags["mlflow.runName"] == "train"
    # Tags the fluent API adds on its own.
    assert "mlflow.user" in got.data.tags
    assert "mlflow.source.name" in got.data.tags
    assert got.data.tags["mlflow.source.type"] == "LOCAL"

    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(0, 1.0), (1, 0.5)]
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert paths == {"cfg", "notes.txt", "model.txt", "copies"}
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/cfg/config.json") == {"x": [1, 2]}
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "notes"
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="copies", dst_path=str(tmp_path / "d"))
    assert (Path(local) / "model.txt").read_text() == "weights"

    runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="list")
    assert [r.info.run_id for r in runs] == [run_id]
    runs = mlflow.search_runs(experiment_names=[name], filter_string="metrics.loss < 0.6", output_format="list")
    assert [r.info.run_id for r in runs] == [run_id]
    runs = mlflow.search_runs(
        experiment_ids=[exp.experiment_id], filter_string="params.lr = '0.2'", output_format="list"
    )
    assert runs == []


def test_fluent_last_active_run_and_end_status(client):
    mlflow.set_experiment(uniq("fluent-status"))
    run = mlflow.start_run()
    mlflow.log_metric("m", 1)
    mlflow.end_run(status="KILLED")
    assert mlflow.last_active_run().info.run_id == run.info.run_id
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def test_fluent_experiment_by_id_and_tags(client):
    exp_id = client.create_experiment(uniq("fluent-id"))
    mlflow.set_experiment(experiment_id=exp_id)
    mlflow.set_experiment_tag("purpose", "compat")
    mlflow.set_experiment_tags({"a": "1"})
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == exp_id
    tags = client.get_experiment(exp_id).tags
    assert tags["purpose"] == "compat" and tags["a"] == "1"
    assert mlflow.get_experiment(exp_id).name == client.get_experiment(exp_id).name
    assert mlflow.get_experiment_by_name(client.get_experiment(exp_id).name).experiment_id == exp_id


def test_fluent_search_experiments(client):
    prefix = uniq("fluent-se")
    ids = {mlflow.create_experiment(f"{prefix}-{i}") for i in range(3)}
    found = mlflow.search_experiments(filter_string=f"name LIKE '{prefix}%'")
    assert {e.experiment_id for e in found} == ids


def test_fluent_delete_run_and_experiment(client):
    exp_id = mlflow.create_experiment(uniq("fluent-del"))
    with mlflow.start_run(experiment_id=exp_id) as run:
        pass
    mlflow.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    mlflow.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"


def test_fluent_log_table_like_json_artifact(client, tmp_path):
    mlflow.set_experiment(uniq("fluent-json"))
    with mlflow.start_run() as run:
        mlflow.log_dict({"rows": [[1, "a"], [2, "b"]]}, "table.json")
    path = MlflowClient().download_artifacts(run.info.run_id, "table.json", str(tmp_path))
    assert json.loads(Path(path).read_text()) == {"rows": [[1, "a"], [2, "b"]]}


def test_tracking_uri_comes_from_the_environment(tracking_server):
    assert mlflow.get_tracking_uri() == tracking_server.url
