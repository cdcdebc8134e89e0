"""Runs through the real MlflowClient: create/get/update/terminate/delete/restore, nesting."""

from __future__ import annotations

import re

import mlflow
from mlflow.entities import LifecycleStage, RunStatus

from plinth_compat import MISSING_RUN_ID, expect_error, now_ms, raises_mlflow, uniq

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def test_create_run(client, experiment_id):
    before = now_ms()
    run = client.create_run(
        experiment_id, tags={"mlflow.user": "alice", "purpose": "compat"}, run_name="my-run"
    )
    info = run.info
    assert RUN_ID_RE.match(info.run_id), info.run_id
    assert info.experiment_id == experiment_id
    assert info.status == "RUNNING"
    assert info.lifecycle_stage == LifecycleStage.ACTIVE
    assert info.run_name == "my-run"
    assert info.user_id == "alice"
    assert info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{info.run_id}/artifacts"
    assert before - 5000 <= info.start_time <= now_ms() + 5000
    assert info.end_time is None
    assert run.data.tags["purpose"] == "compat"
    assert run.data.tags["mlflow.runName"] == "my-run"
    assert run.data.tags["mlflow.user"] == "alice"
    assert run.data.metrics == {}
    assert run.data.params == {}

    got = client.get_run(info.run_id)
    assert got.info.run_id == info.run_id
    assert got.info.run_name == "my-run"
    assert got.info.artifact_uri == info.artifact_uri
    assert got.info.start_time == info.start_time
    assert got.data.tags == run.data.tags


def test_create_run_with_explicit_start_time(client, experiment_id):
    run = client.create_run(experiment_id, start_time=1234567890123)
    assert run.info.start_time == 1234567890123
    assert client.get_run(run.info.run_id).info.start_time == 1234567890123


def test_create_run_without_user_tag_reports_unknown_user(client, experiment_id):
    run = client.create_run(experiment_id)
    assert run.info.user_id == "unknown"


def test_create_run_gets_a_random_name(client, experiment_id):
    a = client.create_run(experiment_id)
    b = client.create_run(experiment_id)
    for run in (a, b):
        assert run.info.run_name, "a run without a name gets a generated one"
        assert run.data.tags["mlflow.runName"] == run.info.run_name
    assert a.info.run_name != b.info.run_name


def test_run_name_from_tag_only(client, experiment_id):
    run = client.create_run(experiment_id, tags={"mlflow.runName": "from-tag"})
    assert run.info.run_name == "from-tag"
    assert client.get_run(run.info.run_id).info.run_name == "from-tag"


def test_run_name_and_tag_disagree(rest, experiment_id):
    r = rest.post(
        "/api/2.0/mlflow/runs/create",
        {
            "experiment_id": experiment_id,
            "run_name": "a",
            "tags": [{"key": "mlflow.runName", "value": "b"}],
        },
    )
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_create_run_in_missing_experiment(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.create_run("987654321")


def test_create_run_in_deleted_experiment(client):
    exp_id = client.create_experiment(uniq("deadexp"))
    client.delete_experiment(exp_id)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.create_run(exp_id)


def test_get_unknown_run(client, rest):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_run(MISSING_RUN_ID)
    r = rest.get("/api/2.0/mlflow/runs/get", params={"run_id": MISSING_RUN_ID})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)


def test_operations_on_unknown_run(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.log_param(MISSING_RUN_ID, "p", "v")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.log_metric(MISSING_RUN_ID, "m", 1.0)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.set_tag(MISSING_RUN_ID, "t", "v")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_run(MISSING_RUN_ID)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.update_run(MISSING_RUN_ID, status="FINISHED")


def test_update_run(client, rest, experiment_id):
    run = client.create_run(experiment_id, run_name="before")
    run_id = run.info.run_id
    client.update_run(run_id, status="FINISHED", name="after")
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "after"
    assert got.data.tags["mlflow.runName"] == "after"

    # end_time travels only through the wire-level call.
    body = rest.ok("POST", "runs/update", {"run_id": run_id, "status": "KILLED", "end_time": 4242})
    assert body["run_info"]["status"] == "KILLED"
    assert body["run_info"]["run_id"] == run_id
    assert int(body["run_info"]["end_time"]) == 4242
    got = client.get_run(run_id)
    assert got.info.status == "KILLED"
    assert got.info.end_time == 4242
    assert got.info.run_name == "after"


def test_update_run_name_only_keeps_status(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.update_run(run_id, name="renamed")
    got = client.get_run(run_id)
    assert got.info.status == "RUNNING"
    assert got.info.run_name == "renamed"


def test_set_terminated(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.set_terminated(run_id)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.end_time is not None and got.info.end_time >= got.info.start_time

    run_id = client.create_run(experiment_id).info.run_id
    client.set_terminated(run_id, status="FAILED", end_time=got.info.start_time + 10)
    got2 = client.get_run(run_id)
    assert got2.info.status == "FAILED"
    assert got2.info.end_time == got.info.start_time + 10


def test_all_statuses_round_trip(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    for status in ("SCHEDULED", "FAILED", "KILLED", "FINISHED", "RUNNING"):
        client.update_run(run_id, status=status)
        assert client.get_run(run_id).info.status == status
        assert RunStatus.from_string(status) is not None


def test_delete_and_restore_run(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.delete_run(run_id)
    got = client.get_run(run_id)  # a deleted run can still be read
    assert got.info.lifecycle_stage == LifecycleStage.DELETED
    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == LifecycleStage.ACTIVE


def test_logging_to_a_deleted_run_fails(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.delete_run(run_id)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_metric(run_id, "m", 1.0)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_param(run_id, "p", "v")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.set_tag(run_id, "t", "v")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_batch(run_id, params=[mlflow.entities.Param("p", "v")])
    client.restore_run(run_id)
    client.log_metric(run_id, "m", 1.0)
    assert client.get_run(run_id).data.metrics == {"m": 1.0}


def test_nested_runs_with_fluent_api(client, experiment_id):
    # Nested runs without experiment_id go to the active experiment, so set it.
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(nested=True, run_name="child") as child:
            with mlflow.start_run(nested=True, run_name="grandchild") as grandchild:
                pass
    p = client.get_run(parent.info.run_id)
    c = client.get_run(child.info.run_id)
    g = client.get_run(grandchild.info.run_id)
    assert "mlflow.parentRunId" not in p.data.tags
    assert c.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert g.data.tags["mlflow.parentRunId"] == child.info.run_id
    for run in (p, c, g):
        assert run.info.experiment_id == experiment_id
        assert run.info.status == "FINISHED"
        assert run.info.end_time is not None
    assert client.get_parent_run(child.info.run_id).info.run_id == parent.info.run_id
    assert client.get_parent_run(parent.info.run_id) is None
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [r.info.run_id for r in children] == [child.info.run_id]


def test_fluent_run_that_raises_is_failed(client, experiment_id):
    run_id = None
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            run_id = run.info.run_id
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert client.get_run(run_id).info.status == "FAILED"


def test_resume_run_with_fluent_api(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    with mlflow.start_run(run_id=run_id):
        mlflow.log_param("resumed", "yes")
    got = client.get_run(run_id)
    assert got.data.params == {"resumed": "yes"}
    assert got.info.status == "FINISHED"


def test_run_ids_in_wire_format(rest, experiment_id):
    body = rest.ok("POST", "runs/create", {"experiment_id": experiment_id, "start_time": 1})
    info = body["run"]["info"]
    assert info["run_id"] == info["run_uuid"]
    assert info["experiment_id"] == experiment_id
    assert info["status"] == "RUNNING"
    assert info["lifecycle_stage"] == "active"
    # int64 fields are JSON numbers or decimal strings in proto3 JSON; the client accepts both.
    assert int(info["start_time"]) == 1
    assert "end_time" not in info or info["end_time"] in (None, 0, "0")


def test_data_survives_a_restart(tmp_path):
    from mlflow import MlflowClient

    from plinth_compat import start_server

    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        c = MlflowClient(first.url)
        exp_id = c.create_experiment(uniq("persist"), tags={"k": "v"})
        run_id = c.create_run(exp_id, run_name="persisted").info.run_id
        c.log_param(run_id, "p", "1")
        c.log_metric(run_id, "m", 2.0, timestamp=5, step=3)
        c.set_tag(run_id, "t", "x")
        c.log_text(run_id, "kept", "a/b.txt")
        c.set_terminated(run_id)
    finally:
        problems = first.stop()
    assert not problems, problems

    second = start_server(data_dir)
    try:
        c = MlflowClient(second.url)
        assert c.get_experiment(exp_id).tags["k"] == "v"
        run = c.get_run(run_id)
        assert run.info.run_name == "persisted"
        assert run.info.status == "FINISHED"
        assert run.data.params == {"p": "1"}
        assert run.data.metrics == {"m": 2.0}
        assert run.data.tags["t"] == "x"
        [m] = c.get_metric_history(run_id, "m")
        assert (m.step, m.timestamp) == (3, 5)
        assert [a.path for a in c.list_artifacts(run_id, "a")] == ["a/b.txt"]
        # New ids do not collide with old ones.
        assert c.create_experiment(uniq("persist2")) != exp_id
    finally:
        problems = second.stop()
    assert not problems, problems


def test_concurrent_clients(client, experiment_id):
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.entities import Metric, Param

    run_id = client.create_run(experiment_id).info.run_id

    def worker(i):
        c = mlflow.MlflowClient(client.tracking_uri)
        own = c.create_run(experiment_id).info.run_id
        for j in range(20):
            c.log_batch(
                run_id,
                metrics=[Metric(f"w{i}", float(j), 1000 + j, j)],
                params=[Param(f"p{i}-{j}", str(j))],
            )
            c.log_metric(own, "m", float(j), step=j)
        return own

    with ThreadPoolExecutor(max_workers=8) as pool:
        own_runs = list(pool.map(worker, range(8)))
    run = client.get_run(run_id)
    assert len(run.data.params) == 8 * 20
    assert run.data.metrics == {f"w{i}": 19.0 for i in range(8)}
    for own in own_runs:
        assert len(client.get_metric_history(own, "m")) == 20
    assert len(set(own_runs)) == 8


def test_unicode_everywhere(client):
    name = uniq("ünïcødé-实验-🚀")
    exp_id = client.create_experiment(name, tags={"标签": "值 ✓"})
    assert client.get_experiment_by_name(name).experiment_id == exp_id
    run = client.create_run(exp_id, run_name="运行-🏃")
    client.log_param(run.info.run_id, "clé", "välüe-🎉")
    client.set_tag(run.info.run_id, "emoji", "🔥" * 100)
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "运行-🏃"
    assert got.data.params["clé"] == "välüe-🎉"
    assert got.data.tags["emoji"] == "🔥" * 100
    assert client.get_experiment(exp_id).tags["标签"] == "值 ✓"
    found = client.search_runs([exp_id], filter_string="params.`clé` = 'välüe-🎉'")
    assert [r.info.run_id for r in found] == [run.info.run_id]
