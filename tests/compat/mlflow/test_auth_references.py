"""With auth on, a stored reference never lends a caller what it could not read directly.

Two members, A and B, and a viewer: A keeps a private experiment with a run that logged a
secret param and a metric. B tries every route that stores a reference to A's run, logged
model, registered model or artifact tree, and every derived read (gate checks, promotions)
that could reveal A's values. Each attempt must be refused, or must show nothing of A's.
"""

from __future__ import annotations

import io

import pytest
import requests

from plinth_compat import MISSING_RUN_ID, expect_error, uniq
from auth_support import (  # noqa: F401  (fixtures are used by name)
    ADMIN,
    ADMIN_PASSWORD,
    Api,
    User,
    _no_ambient_credentials,
    admin,
    grant,
    make_user,
    shared_server,
)

pytestmark = pytest.mark.plinth_only

SECRET_PARAM = "hunter2"
SECRET_METRIC = 0.8731


class Mlflow(Api):
    """MLflow's REST API with real credentials."""

    PREFIX = "/api/2.0/mlflow"


def mlflow_api(url: str, user: User) -> Mlflow:
    return Mlflow(url, user.name, user.password)


@pytest.fixture
def world(tracking_server, make_user):
    """A's private experiment, run, logged model and registered model; B's own experiment."""
    url = tracking_server.url
    a, b = make_user("member"), make_user("member")
    ma, mb = mlflow_api(url, a), mlflow_api(url, b)
    exp_a = ma.ok("POST", "/experiments/create", {"name": uniq("a-private")})["experiment_id"]
    run_a = ma.ok("POST", "/runs/create", {"experiment_id": exp_a})["run"]["info"]["run_id"]
    ma.ok("POST", "/runs/log-parameter", {"run_id": run_a, "key": "db_password", "value": SECRET_PARAM})
    ma.ok("POST", "/runs/log-metric", {"run_id": run_a, "key": "val_auc", "value": SECRET_METRIC, "timestamp": 1, "step": 0})
    model_a = ma.ok("POST", "/logged-models", {"experiment_id": exp_a, "source_run_id": run_a})["model"]["info"]["model_id"]
    reg_a = uniq("a-model")
    ma.ok("POST", "/registered-models/create", {"name": reg_a})
    ma.ok("POST", "/model-versions/create", {"name": reg_a, "source": f"runs:/{run_a}/model", "run_id": run_a})
    exp_b = mb.ok("POST", "/experiments/create", {"name": uniq("b-own")})["experiment_id"]
    run_b = mb.ok("POST", "/runs/create", {"experiment_id": exp_b})["run"]["info"]["run_id"]
    reg_b = uniq("b-model")
    mb.ok("POST", "/registered-models/create", {"name": reg_b})
    return {
        "url": url, "a": a, "b": b, "ma": ma, "mb": mb, "exp_a": exp_a, "run_a": run_a, "model_a": model_a,
        "reg_a": reg_a, "exp_b": exp_b, "run_b": run_b, "reg_b": reg_b,
    }


def assert_refused(resp: requests.Response, what: str) -> None:
    assert resp.status_code == 403, f"{what}: want 403, got {resp.status_code} {resp.text[:500]}"
    assert resp.json()["error_code"] == "PERMISSION_DENIED", f"{what}: {resp.text[:500]}"
    assert SECRET_PARAM not in resp.text and str(SECRET_METRIC) not in resp.text, f"{what} leaks: {resp.text[:500]}"


def test_every_route_that_stores_a_reference_refuses_anothers_private_resource(world):
    """The walk: each route that stores a reference, given one to A's private resources, as B."""
    mb, w = world["mb"], world
    run_a, model_a, reg_a, exp_a = w["run_a"], w["model_a"], w["reg_a"], w["exp_a"]
    artifacts_a = f"mlflow-artifacts:/{exp_a}/{run_a}/artifacts/model"
    attempts = [
        ("logged model's source run", "POST", "/logged-models", {"experiment_id": w["exp_b"], "source_run_id": run_a}),
        ("version source runs:/", "POST", "/model-versions/create", {"name": w["reg_b"], "source": f"runs:/{run_a}/model"}),
        ("version run_id", "POST", "/model-versions/create", {"name": w["reg_b"], "source": "s3://bucket/m", "run_id": run_a}),
        ("version source models:/m-", "POST", "/model-versions/create", {"name": w["reg_b"], "source": f"models:/{model_a}"}),
        ("version model_id", "POST", "/model-versions/create", {"name": w["reg_b"], "source": "s3://bucket/m", "model_id": model_a}),
        ("version source models:/name/1", "POST", "/model-versions/create", {"name": w["reg_b"], "source": f"models:/{reg_a}/1"}),
        ("version source in A's artifact tree", "POST", "/model-versions/create", {"name": w["reg_b"], "source": artifacts_a}),
        ("parent run at creation", "POST", "/runs/create",
         {"experiment_id": w["exp_b"], "tags": [{"key": "mlflow.parentRunId", "value": run_a}]}),
        ("parent run by set-tag", "POST", "/runs/set-tag", {"run_id": w["run_b"], "key": "mlflow.parentRunId", "value": run_a}),
        ("parent run by log-batch", "POST", "/runs/log-batch",
         {"run_id": w["run_b"], "tags": [{"key": "mlflow.parentRunId", "value": run_a}]}),
        ("metric attributed to A's logged model", "POST", "/runs/log-metric",
         {"run_id": w["run_b"], "key": "m", "value": 1.0, "timestamp": 1, "model_id": model_a}),
        ("batch metric attributed to A's logged model", "POST", "/runs/log-batch",
         {"run_id": w["run_b"], "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0, "model_id": model_a}]}),
        ("model input", "POST", "/runs/log-inputs", {"run_id": w["run_b"], "models": [{"model_id": model_a}]}),
        ("dataset in A's artifact tree", "POST", "/runs/log-inputs", {"run_id": w["run_b"], "datasets": [{"dataset": {
            "name": "d", "digest": "x", "source_type": "local", "source": '{"uri": "%s"}' % artifacts_a}}]}),
        ("model output", "POST", "/runs/outputs", {"run_id": w["run_b"], "models": [{"model_id": model_a, "step": 0}]}),
    ]
    for what, method, path, body in attempts:
        assert_refused(mb.request(method, path, body), what)
    # Nothing was written by any refused attempt.
    run_b = mb.ok("GET", "/runs/get", {"run_id": w["run_b"]})["run"]
    assert "mlflow.parentRunId" not in {t["key"] for t in run_b["data"].get("tags", [])}, run_b
    assert not run_b["data"].get("metrics"), run_b
    assert not run_b.get("inputs", {}).get("dataset_inputs") and not run_b.get("inputs", {}).get("model_inputs"), run_b
    versions = mb.ok("GET", "/model-versions/search", {"filter": f"name = '{w['reg_b']}'"}).get("model_versions", [])
    assert versions == [], versions
    # The same references to B's own resources are accepted (the check is about readability, not kind).
    own_model = mb.ok("POST", "/logged-models", {"experiment_id": w["exp_b"], "source_run_id": w["run_b"]})["model"]["info"]["model_id"]
    mb.ok("POST", "/model-versions/create", {"name": w["reg_b"], "source": f"models:/{own_model}"})
    mb.ok("POST", "/runs/set-tag", {"run_id": w["run_b"], "key": "mlflow.parentRunId", "value": w["run_b"]})


def test_a_version_may_name_a_run_this_server_does_not_have(world):
    """As MLflow allows (registries copied between servers); a run that exists must be readable."""
    mb, w = world["mb"], world
    foreign = MISSING_RUN_ID
    mb.ok("POST", "/model-versions/create", {"name": w["reg_b"], "source": f"runs:/{foreign}/model", "run_id": foreign})
    mb.ok("POST", "/model-versions/create", {"name": w["reg_b"], "source": "s3://bucket/m", "run_id": foreign})
    assert_refused(
        mb.request("POST", "/model-versions/create", {"name": w["reg_b"], "source": f"runs:/{w['run_a']}/model"}),
        "an existing unreadable run",
    )


def test_a_grant_makes_the_reference_acceptable(world):
    grant(Api(world["url"], world["a"].name, world["a"].password), world["b"], "experiment", world["exp_a"], "READ")
    world["mb"].ok("POST", "/logged-models", {"experiment_id": world["exp_b"], "source_run_id": world["run_a"]})


def test_gate_checks_never_reveal_an_unreadable_run(world):
    """The finding: a version whose run is A's (here made by an admin, who may reference
    anything) must not let B read A's values through a gate check, nor through a promotion."""
    w = world
    root = Mlflow(w["url"], ADMIN, ADMIN_PASSWORD)
    # The admin attributes a logged model in B's experiment to A's run; B registers it.
    bridged = root.ok("POST", "/logged-models", {"experiment_id": w["exp_b"], "source_run_id": w["run_a"]})["model"]["info"]
    b_native = Api(w["url"], w["b"].name, w["b"].password)
    mv = w["mb"].ok("POST", "/model-versions/create", {"name": w["reg_b"], "source": f"models:/{bridged['model_id']}"})["model_version"]
    assert mv["run_id"] == w["run_a"], mv
    gate = f"/registered-models/{w['reg_b']}/gates/champion"
    b_native.ok("PUT", gate, {"conditions": ["metrics.val_auc >= 0", "params.db_password = 'x'"]})
    r = b_native.request("POST", gate + "/check", {"version": mv["version"]})
    assert r.status_code == 200, r.text
    assert SECRET_PARAM not in r.text and str(SECRET_METRIC) not in r.text, r.text
    checks = r.json()["gate_report"]["checks"]
    assert [c["passed"] for c in checks] == [False, False], checks
    assert all("fails closed" in c["detail"] for c in checks), checks
    # A promotion is judged by the registry (the param condition truly fails) without showing values.
    r = b_native.request("POST", f"/registered-models/{w['reg_b']}/aliases/champion/promote", {"version": mv["version"]})
    assert r.status_code == 409 and r.json()["error_code"] == "INVALID_STATE_TRANSITION", r.text
    assert SECRET_PARAM not in r.text and str(SECRET_METRIC) not in r.text, r.text
    b_native.ok("PUT", gate, {"conditions": ["metrics.val_auc >= 0.5"]})
    report = b_native.ok("POST", f"/registered-models/{w['reg_b']}/aliases/champion/promote", {"version": mv["version"]})["gate_report"]
    assert report["checks"][0]["passed"] is True and str(SECRET_METRIC) not in str(report), report
    # The admin, who may read A's run, sees the values.
    admin_report = Api(w["url"], ADMIN, ADMIN_PASSWORD).ok("POST", gate + "/check", {"version": mv["version"]})["gate_report"]
    assert str(SECRET_METRIC) in str(admin_report), admin_report


def test_a_viewer_cannot_write_parts_into_an_upload(world, make_user):
    w = world
    viewer = make_user("viewer")
    grant(Api(w["url"], w["a"].name, w["a"].password), viewer, "experiment", w["exp_a"], "READ")
    path = f"{w['exp_a']}/{w['run_a']}/artifacts/big.bin"
    base = w["url"] + "/api/2.0/mlflow-artifacts"
    created = requests.post(f"{base}/mpu/create/{path}", json={"path": "big.bin", "num_parts": 1},
                            auth=(w["a"].name, w["a"].password), timeout=30)
    assert created.status_code == 200, created.text
    upload_id = created.json()["upload_id"]
    for who in (viewer, w["b"]):
        r = requests.put(f"{base}/mpu/part/{upload_id}/1", data=b"x" * 10, auth=(who.name, who.password), timeout=30)
        assert_refused(r, f"part by {who.role}")
    r = requests.put(f"{base}/mpu/part/{upload_id}/1", data=b"x" * 10, auth=(w["a"].name, w["a"].password), timeout=30)
    assert r.status_code == 200, r.text
    # An unknown upload id is refused like one the caller may not write to.
    r = requests.put(f"{base}/mpu/part/{'0' * 32}/1", data=b"x", auth=(w["a"].name, w["a"].password), timeout=30)
    assert_refused(r, "unknown upload id")


def test_artifact_locations_are_the_servers_to_choose(world):
    w = world
    for location in (f"mlflow-artifacts:/{w['exp_a']}", "mlflow-artifacts:/", "file:///tmp/elsewhere", "s3://bucket/x"):
        assert_refused(w["mb"].request("POST", "/experiments/create", {"name": uniq("loc"), "artifact_location": location}), location)
    root = Mlflow(w["url"], ADMIN, ADMIN_PASSWORD)
    root.ok("POST", "/experiments/create", {"name": uniq("loc"), "artifact_location": "s3://bucket/admin-chosen"})


def test_tokens_for_others_need_a_password_sign_in(world, make_token_for_admin):
    w = world
    admin_token = make_token_for_admin
    as_token = Api(w["url"], token=admin_token)
    expect_error(as_token.request("POST", "/tokens", {"name": uniq("imp"), "user": w["a"].name}), "PERMISSION_DENIED", 403)
    root = Api(w["url"], ADMIN, ADMIN_PASSWORD)
    minted = root.ok("POST", "/tokens", {"name": uniq("imp"), "user": w["a"].name})
    assert minted["token"]["user"] == w["a"].name
    events = root.ok("GET", "/audit", {"action": "token.impersonate", "max_results": 1000}).get("events", [])
    assert any(e["actor"] == ADMIN and e["resource_id"] == w["a"].name for e in events), events


@pytest.fixture
def make_token_for_admin(tracking_server):
    root = Api(tracking_server.url, ADMIN, ADMIN_PASSWORD)
    return root.ok("POST", "/tokens", {"name": uniq("admin-tok")})["secret"]


def test_posts_a_browser_form_could_send_are_refused(world):
    """The cross-site protection refuses what a form (or a no-cors fetch) can send, and only that."""
    w = world
    url = w["url"] + "/api/2.0/mlflow/experiments/create"
    auth = (w["b"].name, w["b"].password)
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain;charset=UTF-8", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = requests.post(url, data=b'{"name": "csrf"}', headers=headers, auth=auth, timeout=30)
        assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST", (content_type, r.text)
    # A typed body passes the auth layer: an Arrow IPC upload reaches the feature store's handler.
    r = requests.post(
        w["url"] + "/api/plinth/v1/features/historical?features=v:f",
        data=io.BytesIO(b"not arrow"),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
        auth=auth,
        timeout=30,
    )
    assert r.status_code != 401 and "must declare" not in r.text, r.text
