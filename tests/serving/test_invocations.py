"""MLflow's scoring protocol at /deployments/{name}/invocations, judged by MLflow itself.

The models are logged with the real `mlflow.onnx.log_model` against the running Plinth server,
registered and promoted with the real client, deployed by alias; the payloads are what MLflow and
pandas write (`convert_input_example_to_serving_input`, `to_json`, `to_csv`, `to_parquet`); the
reference answers are `mlflow.pyfunc.load_model("models:/…@champion").predict(…)`, loaded back
through Plinth.
"""

from __future__ import annotations

import json

import mlflow
import mlflow.onnx
import numpy as np
import onnx
import pandas as pd
import pytest
from mlflow.models import convert_input_example_to_serving_input
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import make_regression
from sklearn.ensemble import GradientBoostingRegressor


def _log(server, name: str, model: onnx.ModelProto, example) -> str:
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment(f"invocations-{name}")
    with mlflow.start_run():
        info = mlflow.onnx.log_model(model, name="model", input_example=example, registered_model_name=name)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, "champion", info.registered_model_version)
    r = server.api("POST", "/api/plinth/v1/deployments", json={"name": name, "model": f"{name}@champion"})
    assert r.status_code == 200, r.text
    return f"/deployments/{name}"


@pytest.fixture(scope="module")
def regressor(server):
    """A gradient-boosting regressor with one input of 6 columns, deployed as `inv-gbr`."""
    x, y = make_regression(n_samples=200, n_features=6, noise=0.2, random_state=4)
    x = x.astype(np.float32)
    model = to_onnx(GradientBoostingRegressor(n_estimators=20, random_state=2).fit(x, y), x[:1], target_opset=17)
    frame = pd.DataFrame(x[:7], columns=[f"f{i}" for i in range(6)])
    base = _log(server, "inv-gbr", model, x[:2])
    reference = mlflow.pyfunc.load_model("models:/inv-gbr@champion")
    return base, frame, reference


@pytest.fixture(scope="module")
def two_inputs(server):
    """y = 2a + b over two named inputs (a: [-1], b: [-1, 1]), deployed as `inv-named`."""
    graph = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["a", "axes"], ["a2"]),
            helper.make_node("Mul", ["a2", "two"], ["a3"]),
            helper.make_node("Add", ["a3", "b"], ["y"]),
        ],
        "named",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1]), helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    # IR version 9: what ONNX Runtime 1.31 reads (onnx 1.23 would write 14 by default).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    frame = pd.DataFrame({"a": np.array([1, 2, 3], dtype=np.float32), "b": np.array([0.5, 0.25, 0], dtype=np.float32)})
    base = _log(server, "inv-named", model, {"a": frame["a"].to_numpy(), "b": frame[["b"]].to_numpy()})
    return base, frame


def _predictions(r) -> list:
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def test_every_table_body_gives_mlflow_s_own_answer(server, regressor):
    base, frame, reference = regressor
    want = reference.predict(frame)["variable"].to_numpy()
    bodies = [
        ("application/json", convert_input_example_to_serving_input(frame)),
        ("application/json", json.dumps({"dataframe_records": json.loads(frame.to_json(orient="records"))})),
        ("application/json", json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split"))})),
        ("text/csv", frame.to_csv(index=False)),
        ("application/vnd.apache.parquet", frame.to_parquet()),
    ]
    for content_type, body in bodies:
        r = server.api("POST", f"{base}/invocations", data=body, headers={"Content-Type": content_type})
        got = np.array([row["variable"] for row in _predictions(r)], dtype=np.float32)
        np.testing.assert_array_equal(got, want, err_msg=content_type)
        assert r.headers["X-Plinth-Model-Version"] == "1"
        assert r.headers["X-Plinth-Model"] == "inv-gbr"


def test_tensor_bodies_answer_outputs_by_name(server, regressor):
    base, frame, reference = regressor
    rows = frame.to_numpy()
    want = reference.predict(rows)["variable"]
    for body in [{"inputs": rows.tolist()}, {"instances": rows.tolist()}, {"inputs": {"X": rows.tolist()}}]:
        got = _predictions(server.api("POST", f"{base}/invocations", json=body))
        np.testing.assert_array_equal(np.array(got["variable"], dtype=np.float32), want)


def test_several_inputs_are_taken_by_column_name(server, two_inputs):
    base, frame = two_inputs
    want = 2 * frame["a"].to_numpy() + frame["b"].to_numpy()
    # Columns in another order than the model's inputs still land by name.
    shuffled = frame[["b", "a"]]
    for content_type, body in [
        ("application/json", convert_input_example_to_serving_input(shuffled)),
        ("text/csv", shuffled.to_csv(index=False)),
        ("application/vnd.apache.parquet", shuffled.to_parquet()),
    ]:
        got = _predictions(server.api("POST", f"{base}/invocations", data=body, headers={"Content-Type": content_type}))
        np.testing.assert_array_equal(np.array([row["y"] for row in got], dtype=np.float32), want, err_msg=content_type)
    got = _predictions(server.api("POST", f"{base}/invocations", json={"instances": [{"a": 1, "b": 0.5}, {"a": 2, "b": 0.25}]}))
    assert got == {"y": [[2.5], [4.25]]}


@pytest.mark.parametrize(
    "body, content_type, status, fragment",
    [
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}, "inputs": [[1]]}', "application/json", 400, "exactly one of"),
        (b"{}", "application/json", 400, "exactly one of"),
        (b'{"dataframe_split": ', "application/json", 400, "not valid"),
        (b'{"dataframe_records": [{"f0": 1}]}', "application/json", 400, "takes 6 columns"),
        (b'{"inputs": [[1, 2, 3, 4, 5, 6], [1, 2]]}', "application/json", 400, "does not follow its shape"),
        (b'{"inputs": [[1, 2, 3, 4, 5, "x"]]}', "application/json", 400, "FP32"),
        (b'{"inputs": [[1, 2, 3, 4, 5, 6]], "params": {"temperature": 1}}', "application/json", 400, "no params"),
        (b"f0,f1,f2,f3,f4,f5\n1,2,3,4,5,\n", "text/csv", 400, "has no value"),
        (b"f0,f1,f2,f3,f4,f5\n1,2,3,4,5,nan\n", "text/csv", 400, "NaN"),
        (b"not parquet", "application/vnd.apache.parquet", 400, "Parquet"),
        (b"a=1", "application/x-www-form-urlencoded", 415, "not read here"),
    ],
)
def test_bad_input_gets_mlflow_s_error_shape(server, regressor, body, content_type, status, fragment):
    base, _, _ = regressor
    r = server.api("POST", f"{base}/invocations", data=body, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    error = r.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert fragment in error["message"], error["message"]


def test_unknown_deployments_and_health(server, regressor):
    base, _, _ = regressor
    r = server.api("POST", "/deployments/no-such/invocations", json={"inputs": [[1]]})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", r.text
    assert server.api("GET", f"{base}/ping").status_code == 200
    assert server.api("GET", f"{base}/health").status_code == 200
    assert server.api("GET", "/deployments/no-such/ping").status_code == 404
    frame = pd.DataFrame(np.zeros((2, 6), dtype=np.float32))
    # Column names that are numbers (pandas' default) are names like any other.
    assert len(_predictions(server.api("POST", f"{base}/invocations", data=convert_input_example_to_serving_input(frame), headers={"Content-Type": "application/json"}))) == 2
