"""Serving with auth on: a service account with READ on a deployment, and nothing on the
registry, predicts over REST (tritonclient.http), gRPC (tritonclient.grpc) and MLflow's scoring
protocol; one without the grant is refused on each, and so is a caller with no credentials. The
real clients' content types (Triton's binary extension, gRPC, CSV) pass the cross-site guard."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import deploy, reference, start_server, stop_server

ADMIN = ("admin", "serving-admin-password-01")


@pytest.fixture(scope="module")
def secured(tmp_path_factory, models):
    data = tmp_path_factory.mktemp("secured")
    env = {"PLINTH__AUTH__ENABLED": "true", "PLINTH__AUTH__BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1]}
    srv = start_server(data, env, auth=ADMIN)
    plain = tmp_path_factory.mktemp("secured-model")
    shutil.copy(models / "logreg.onnx", plain / "model.onnx")
    deploy(srv, "guarded", plain)
    tokens = {}
    for account in ["predictor", "outsider"]:
        r = srv.api("POST", "/api/plinth/v1/users", json={"name": account, "kind": "service_account", "role": "viewer"})
        assert r.status_code == 200, r.text
        r = srv.api("POST", "/api/plinth/v1/tokens", json={"user": account, "name": "serving"})
        assert r.status_code == 200, r.text
        tokens[account] = r.json()["secret"]
    r = srv.api("PUT", "/api/plinth/v1/grants", json={"user": "predictor", "kind": "deployment", "resource": "guarded", "level": "READ"})
    assert r.status_code == 200, r.text
    yield srv, tokens
    stop_server(srv)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def rows(models):
    inputs, _ = reference(models, "logreg")
    (name, spec), = inputs.items()
    return name, np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])


def test_rest_needs_the_grant(secured, models):
    srv, tokens = secured
    name, data = rows(models)
    client = httpclient.InferenceServerClient(url=srv.host)
    x = httpclient.InferInput(name, list(data.shape), "FP32")
    x.set_data_from_numpy(data)
    result = client.infer("guarded", inputs=[x], headers=bearer(tokens["predictor"]))
    assert result.as_numpy("label").shape == (5,)
    for headers, status in [(bearer(tokens["outsider"]), "403"), ({}, "401")]:
        with pytest.raises(InferenceServerException) as err:
            client.infer("guarded", inputs=[x], headers=headers)
        assert err.value.status() == status
    # READ on the deployment is not READ on the registry.
    r = requests.get(f"{srv.url}/api/2.0/mlflow/registered-models/get", params={"name": "guarded"}, headers=bearer(tokens["predictor"]), timeout=30)
    assert r.status_code == 403, r.text


def test_grpc_needs_the_grant(secured, models):
    srv, tokens = secured
    name, data = rows(models)
    client = grpcclient.InferenceServerClient(url=srv.host)
    x = grpcclient.InferInput(name, list(data.shape), "FP32")
    x.set_data_from_numpy(data)
    result = client.infer("guarded", inputs=[x], headers={"authorization": f"Bearer {tokens['predictor']}"})
    assert result.as_numpy("label").shape == (5,)
    with pytest.raises(InferenceServerException) as err:
        client.infer("guarded", inputs=[x], headers={"authorization": f"Bearer {tokens['outsider']}"})
    assert err.value.status() == "StatusCode.PERMISSION_DENIED"
    with pytest.raises(InferenceServerException) as err:
        client.infer("guarded", inputs=[x])
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"


def test_scoring_protocol_needs_the_grant(secured, models):
    srv, tokens = secured
    _, data = rows(models)
    csv = "\n".join([",".join(f"f{i}" for i in range(8))] + [",".join(repr(float(v)) for v in row) for row in data]) + "\n"
    url = f"{srv.url}/deployments/guarded/invocations"
    r = requests.post(url, data=csv, headers={"Content-Type": "text/csv", **bearer(tokens["predictor"])}, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5
    r = requests.post(url, data=csv, headers={"Content-Type": "text/csv", **bearer(tokens["outsider"])}, timeout=30)
    assert r.status_code == 403, r.text
    r = requests.post(url, data=csv, headers={"Content-Type": "text/csv"}, timeout=30)
    assert r.status_code == 401, r.text
    # A form body with Basic credentials (which a browser could send cross-site, the credentials
    # cached) is refused before anything runs; with a bearer token it cannot come from a page.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = requests.post(url, data="a=1", headers=form, auth=ADMIN, timeout=30)
    assert r.status_code == 400 and "form types and text/plain are refused" in r.text, r.text
    r = requests.post(url, data="a=1", headers={**form, **bearer(tokens["predictor"])}, timeout=30)
    assert r.status_code == 415, r.text
