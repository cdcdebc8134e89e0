"""The real `tritonclient` (HTTP) against Plinth's Open Inference Protocol: health, readiness,
model metadata and inference, with Triton's binary tensor extension (tritonclient's default) and
with JSON tensors, on four scikit-learn models converted to ONNX; the answers are compared with
Python ONNX Runtime's on the same inputs. Bad requests get the protocol's 4xx errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import as_array, check, deploy, reference

MODELS = ["logreg", "forest", "gbr", "mlp"]


@pytest.fixture(scope="module")
def deployed(server, models, tmp_path_factory):
    """Each model deployed twice over: as a plain .onnx artifact (`tc-NAME`), and the logistic
    regression also as an MLflow model directory (`tc-logreg-mlflow`)."""
    names = {}
    for name in MODELS:
        plain = tmp_path_factory.mktemp(f"plain-{name}")
        shutil.copy(models / f"{name}.onnx", plain / "model.onnx")
        deployment = deploy(server, f"tc-{name}", plain, batching={"max_batch_size": 32, "max_queue_delay_microseconds": 200})
        assert deployment["variants"][0]["state"] == "READY", deployment
        names[name] = f"tc-{name}"
    deploy(server, "tc-logreg-mlflow", models / "logreg_mlflow")
    return names


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(url=server.host, concurrency=4)
    yield c
    c.close()


def request_for(models, name: str) -> tuple[httpclient.InferInput, dict]:
    """The model's test rows as a tritonclient input (binary), and Python ONNX Runtime's answers."""
    inputs, expected = reference(models, name)
    (input_name, spec), = inputs.items()
    data = np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])
    tensor = httpclient.InferInput(input_name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor, expected


def test_health_and_metadata(client, deployed):
    assert client.is_server_live()
    assert client.is_server_ready()
    for name in deployed.values():
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert meta["name"] == name
        assert meta["platform"] == "onnx_onnxv1"
        assert meta["inputs"][0]["datatype"] == "FP32"
        assert meta["inputs"][0]["shape"][0] == -1
    assert client.get_server_metadata()["name"] == "plinth"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_inference_matches_python_onnx_runtime(client, deployed, models, name, binary):
    inputs, expected = reference(models, name)
    (input_name, spec), = inputs.items()
    data = np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])
    tensor = httpclient.InferInput(input_name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(out, binary_data=binary) for out in expected]
    result = client.infer(deployed[name], inputs=[tensor], outputs=outputs, request_id="req-7")
    check(result, expected)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_name"] == deployed[name]


def test_all_outputs_when_none_are_named(client, deployed, models):
    tensor, expected = request_for(models, "forest")
    check(client.infer(deployed["forest"], inputs=[tensor]), expected)


def test_the_mlflow_model_directory_serves_the_same_answers(client, deployed, models):
    tensor, expected = request_for(models, "logreg")
    check(client.infer("tc-logreg-mlflow", inputs=[tensor]), expected)


def test_concurrent_requests_are_batched_without_changing_answers(client, deployed, models):
    inputs, expected = reference(models, "gbr")
    (input_name, spec), = inputs.items()
    data = np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])
    calls = []
    for row in range(data.shape[0]):
        tensor = httpclient.InferInput(input_name, [1, data.shape[1]], "FP32")
        tensor.set_data_from_numpy(data[row : row + 1])
        calls.append(client.async_infer(deployed["gbr"], inputs=[tensor]))
    (out_name, want), = expected.items()
    got = np.concatenate([c.get_result().as_numpy(out_name) for c in calls])
    np.testing.assert_allclose(got, as_array(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "datatype, shape, message",
    [("FP64", [1, 8], "FP64"), ("FP32", [1, 3], "shape"), ("INT64", [1, 8], "INT64")],
)
def test_bad_inputs_are_refused_with_the_reason(client, deployed, datatype, shape, message):
    dtype = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64}[datatype]
    tensor = httpclient.InferInput("X", shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype=dtype))
    with pytest.raises(InferenceServerException) as err:
        client.infer(deployed["logreg"], inputs=[tensor])
    assert err.value.status() == "400"
    assert message in err.value.message()


def test_unknown_input_and_unknown_model(client, deployed):
    tensor = httpclient.InferInput("nope", [1, 8], "FP32")
    tensor.set_data_from_numpy(np.zeros([1, 8], dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer(deployed["logreg"], inputs=[tensor])
    assert err.value.status() == "400" and "unknown input" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.infer("no-such-deployment", inputs=[tensor])
    assert err.value.status() == "404"
    assert not client.is_model_ready("no-such-deployment")
