"""Training jobs log into their run with the real mlflow client, unchanged: the job's script calls
`mlflow.start_run()` with no arguments and its params and metrics land in the run Plinth created
for the job, whose status then follows the job's."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.plinth_only

QUEUES = """
[[flavors]]
name = "default"

[[cluster_queues]]
name = "team-a"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{ name = "default", cpu = { nominal = 4 }, memory = { nominal = "8Gi" } }]

[[local_queues]]
name = "team-a"
cluster_queue = "team-a"
"""

TRAIN = textwrap.dedent(
    """
    import mlflow
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.01)
        for step in range(3):
            mlflow.log_metric("val_auc", 0.5 + step / 10, step=step)
        print("logged into", run.info.run_id)
    {tail}
    """
)


def _submit(rest, script: str, name: str) -> dict:
    res = rest.post(
        "/api/plinth/v1/jobs",
        {"command": [sys.executable, "-c", script], "queue": "team-a", "experiment": "jobs-compat", "name": name},
    )
    assert res.status_code == 200, res.text
    return res.json()["job"]


def _wait(rest, job_id: int) -> dict:
    deadline = time.monotonic() + 120
    while True:
        job = rest.get(f"/api/plinth/v1/jobs/{job_id}").json()["job"]
        if job["state"] not in ("queued", "admitted", "starting", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_an_unchanged_script_logs_into_the_jobs_run(server, rest):
    res = rest.request("PUT", "/api/plinth/v1/queues", json={"text": QUEUES})
    assert res.status_code == 200, res.text
    ok = _submit(rest, TRAIN.format(tail=""), "trains")
    failing = _submit(rest, TRAIN.format(tail="raise SystemExit(4)"), "fails")

    done = _wait(rest, ok["id"])
    assert done["state"] == "succeeded", done
    output = rest.get(f"/api/plinth/v1/jobs/{ok['id']}/logs").text
    assert f"logged into {ok['run_id']}" in output, output

    client = MlflowClient(tracking_uri=server.url)
    run = client.get_run(ok["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "trains"
    assert run.data.params == {"lr": "0.01"}
    history = client.get_metric_history(ok["run_id"], "val_auc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert run.data.tags["plinth.job_id"] == str(ok["id"])
    assert client.get_experiment(run.info.experiment_id).name == "jobs-compat"

    bad = _wait(rest, failing["id"])
    assert bad["state"] == "failed", bad
    assert bad["last_end"]["exit_code"] == 4
    assert client.get_run(failing["run_id"]).info.status == "FAILED"
    assert client.get_run(failing["run_id"]).data.tags["plinth.job_end"].startswith("exited with code 4")
