"""The real `tritonclient.grpc` against Plinth's Open Inference Protocol over gRPC, on the same port
as the REST API: health, readiness, metadata and inference on four scikit-learn models converted to
ONNX, the answers compared with Python ONNX Runtime's. Requests with typed contents (rather than
tritonclient's raw bytes) go through the client's own generated stubs. Bad requests get gRPC's
statuses."""

from __future__ import annotations

import shutil

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import check, deploy, reference

MODELS = ["logreg", "forest", "gbr", "mlp"]


@pytest.fixture(scope="module")
def deployed(server, models, tmp_path_factory):
    names = {}
    for name in MODELS:
        plain = tmp_path_factory.mktemp(f"grpc-{name}")
        shutil.copy(models / f"{name}.onnx", plain / "model.onnx")
        deployment = deploy(server, f"grpc-{name}", plain)
        assert deployment["variants"][0]["state"] == "READY", deployment
        names[name] = f"grpc-{name}"
    return names


@pytest.fixture(scope="module")
def client(server):
    c = grpcclient.InferenceServerClient(url=server.host)
    yield c
    c.close()


def rows(models, name: str) -> tuple[str, np.ndarray, dict]:
    inputs, expected = reference(models, name)
    (input_name, spec), = inputs.items()
    return input_name, np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"]), expected


def test_health_and_metadata(client, deployed):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata().name == "plinth"
    for name in deployed.values():
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert (meta.name, meta.platform) == (name, "onnx_onnxv1")
        assert meta.inputs[0].datatype == "FP32" and meta.inputs[0].shape[0] == -1
        assert meta.versions == ["1"]


@pytest.mark.parametrize("name", MODELS)
def test_inference_matches_python_onnx_runtime(client, deployed, models, name):
    input_name, data, expected = rows(models, name)
    tensor = grpcclient.InferInput(input_name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    outputs = [grpcclient.InferRequestedOutput(out) for out in expected]
    result = client.infer(deployed[name], inputs=[tensor], outputs=outputs, request_id="g-1")
    check(result, expected)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("g-1", deployed[name], "1")
    assert response.parameters["variant"].string_param == "champion"


def test_typed_contents_are_read_as_raw_bytes_are(server, deployed, models):
    input_name, data, expected = rows(models, "gbr")
    request = service_pb2.ModelInferRequest(model_name=deployed["gbr"], id="typed")
    tensor = request.inputs.add(name=input_name, datatype="FP32", shape=list(data.shape))
    tensor.contents.fp32_contents.extend(data.ravel().tolist())
    with grpc.insecure_channel(server.host) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    (out_name, want), = expected.items()
    got = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(list(response.outputs[0].shape))
    np.testing.assert_allclose(got, np.asarray(want["data"], dtype=np.float32).reshape(want["shape"]), rtol=1e-5, atol=1e-6)
    assert response.outputs[0].name == out_name


def test_concurrent_calls_are_batched_without_changing_answers(client, deployed, models):
    input_name, data, expected = rows(models, "mlp")
    results = []
    for row in range(data.shape[0]):
        tensor = grpcclient.InferInput(input_name, [1, data.shape[1]], "FP32")
        tensor.set_data_from_numpy(data[row : row + 1])
        results.append(client.infer(deployed["mlp"], inputs=[tensor]))
    for name, want in expected.items():
        got = np.concatenate([r.as_numpy(name) for r in results])
        want_array = np.asarray(want["data"], dtype=want["dtype"]).reshape(want["shape"])
        if np.issubdtype(want_array.dtype, np.floating):
            np.testing.assert_allclose(got, want_array, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, want_array)


@pytest.mark.parametrize(
    "input_name, datatype, shape, status, message",
    [
        ("X", "FP64", [1, 8], "StatusCode.INVALID_ARGUMENT", "FP64"),
        ("X", "FP32", [1, 3], "StatusCode.INVALID_ARGUMENT", "shape"),
        ("nope", "FP32", [1, 8], "StatusCode.INVALID_ARGUMENT", "unknown input 'nope'"),
    ],
)
def test_bad_inputs_get_invalid_argument(client, deployed, input_name, datatype, shape, status, message):
    tensor = grpcclient.InferInput(input_name, shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype=np.float64 if datatype == "FP64" else np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer(deployed["logreg"], inputs=[tensor])
    assert err.value.status() == status
    assert message in err.value.message()


def test_unknown_models_and_methods(client, deployed):
    tensor = grpcclient.InferInput("X", [1, 8], "FP32")
    tensor.set_data_from_numpy(np.zeros([1, 8], dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("no-such-deployment", inputs=[tensor])
    assert err.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("no-such-deployment")
    assert err.value.status() == "StatusCode.NOT_FOUND"
    # Triton's superset (model configuration, statistics) is not served: UNIMPLEMENTED, said so.
    with pytest.raises(InferenceServerException) as err:
        client.get_model_config(deployed["logreg"])
    assert err.value.status() == "StatusCode.UNIMPLEMENTED"
