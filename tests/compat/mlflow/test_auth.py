"""Plinth with authentication on (docs/auth.md), driven by the real mlflow client.

The mlflow client reads its credentials from the environment on every request
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for HTTP Basic, MLFLOW_TRACKING_TOKEN for a
Bearer token). Every test sets them with `monkeypatch`, so they never outlive the test, and an
autouse fixture clears them first, so no test sees another's.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from plinth_compat import expect_error, raises_mlflow, start_server, uniq

pytestmark = pytest.mark.plinth_only

from auth_support import (  # noqa: E402, F401  (fixtures are used by name)
    ADMIN,
    ADMIN_PASSWORD,
    SECRETS,
    Api,
    User,
    _no_ambient_credentials,
    admin,
    api_as,
    as_user,
    grant,
    make_token,
    make_user,
    shared_server,
    sign_in,
)


def http_status(exc: MlflowException) -> int:
    return exc.get_http_status_code()


class Identity(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def _workflow(url: str, tmp_path) -> None:
    """Tracking, proxied artifacts and the registry through the real client, as whoever is signed in."""
    client = MlflowClient(tracking_uri=url)
    exp_name = uniq("auth-exp")
    # Created first, so that set_experiment finds it (a new name is test_set_experiment_with_a_new_name).
    exp_id = client.create_experiment(exp_name)
    exp = mlflow.set_experiment(exp_name)
    assert exp.name == exp_name
    assert exp.experiment_id == exp_id

    run = mlflow.start_run(run_name="authed")
    run_id = run.info.run_id
    mlflow.log_param("alpha", "0.5")
    mlflow.log_metric("loss", 1.0, step=0)
    mlflow.log_metric("loss", 0.25, step=1)
    mlflow.set_tag("team", "plinth")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello from an authenticated run\n")
    mlflow.log_artifact(str(notes), artifact_path="docs")
    mlflow.end_run()

    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.experiment_id == exp.experiment_id
    # Artifacts go through the server's proxy, which the same credentials guard.
    assert got.info.artifact_uri.startswith("mlflow-artifacts:"), got.info.artifact_uri
    assert got.data.params == {"alpha": "0.5"}
    assert got.data.metrics == {"loss": 0.25}
    assert got.data.tags["team"] == "plinth"
    found = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in found] == [run_id]
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 1.0), (1, 0.25)]
    assert [a.path for a in client.list_artifacts(run_id)] == ["docs"]
    assert [a.path for a in client.list_artifacts(run_id, "docs")] == ["docs/notes.txt"]
    dst = tmp_path / "download"
    dst.mkdir()
    local = client.download_artifacts(run_id, "docs/notes.txt", str(dst))
    assert open(local).read() == "hello from an authenticated run\n"

    # A pyfunc model: logged (artifacts through the proxy), registered, aliased, loaded back.
    with mlflow.start_run(experiment_id=exp.experiment_id) as model_run:
        info = mlflow.pyfunc.log_model(name="model", python_model=Identity(), pip_requirements=["mlflow"])
    model_name = uniq("auth-model")
    mv = mlflow.register_model(f"runs:/{model_run.info.run_id}/model", model_name)
    assert mv.version == "1"
    client.set_registered_model_alias(model_name, "champion", mv.version)
    assert client.get_model_version_by_alias(model_name, "champion").version == mv.version
    assert client.get_registered_model(model_name).name == model_name
    loaded = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    pd.testing.assert_frame_equal(loaded.predict(frame), frame)
    assert info.model_id


# ---------------------------------------------------------------------------------------------
# 1, 2: the whole client surface with each kind of credential


def test_member_password_workflow(monkeypatch, tmp_path, tracking_server, make_user):
    alice = make_user()
    as_user(monkeypatch, alice)
    _workflow(tracking_server.url, tmp_path)


@pytest.mark.parametrize("how", ["bearer", "basic-with-token"])
def test_member_token_workflow(monkeypatch, tmp_path, tracking_server, make_user, make_token, how):
    alice = make_user()
    _, secret = make_token(alice.name)
    if how == "bearer":
        sign_in(monkeypatch, token=secret)
    else:
        sign_in(monkeypatch, alice.name, secret)
    _workflow(tracking_server.url, tmp_path)


def test_set_experiment_with_a_new_name(monkeypatch, tracking_server, make_user):
    """`mlflow.set_experiment` asks for the name first and creates it when the answer is
    RESOURCE_DOES_NOT_EXIST (the client maps that to None); any other answer is raised."""
    client = MlflowClient(tracking_uri=tracking_server.url)
    as_user(monkeypatch, make_user())
    assert client.get_experiment_by_name(uniq("no-such-exp")) is None
    name = uniq("new-exp")
    exp = mlflow.set_experiment(name)
    assert exp.name == name
    assert client.get_experiment(exp.experiment_id).name == name
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
    assert client.get_run(run.info.run_id).info.experiment_id == exp.experiment_id


def test_token_identifies_its_owner(tracking_server, make_user, make_token):
    alice = make_user()
    _, secret = make_token(alice.name)
    me = Api(tracking_server.url, token=secret).ok("GET", "/auth/me")["user"]
    assert me["name"] == alice.name
    assert me["role"] == "member"
    me = Api(tracking_server.url, alice.name, secret).ok("GET", "/auth/me")["user"]
    assert me["name"] == alice.name
    # A token presented under another user's name is not that user's.
    bob = make_user()
    r = Api(tracking_server.url, bob.name, secret).request("GET", "/auth/me")
    expect_error(r, "UNAUTHENTICATED", 401)


# ---------------------------------------------------------------------------------------------
# 3: no or wrong credentials


def test_missing_credentials(monkeypatch, tracking_server):
    client = MlflowClient(tracking_uri=tracking_server.url)
    with raises_mlflow("UNAUTHENTICATED") as info:
        client.search_experiments()
    assert http_status(info.value) == 401
    with raises_mlflow("UNAUTHENTICATED"):
        mlflow.set_experiment(uniq("anon-exp"))
    with raises_mlflow("UNAUTHENTICATED"):
        client.create_registered_model(uniq("anon-model"))

    r = requests.get(tracking_server.url + "/api/2.0/mlflow/experiments/search", params={"max_results": 10}, timeout=30)
    expect_error(r, "UNAUTHENTICATED", 401)
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic"), r.headers
    r = requests.get(tracking_server.url + "/api/plinth/v1/auth/me", timeout=30)
    expect_error(r, "UNAUTHENTICATED", 401)
    # The public routes need nothing.
    assert requests.get(tracking_server.url + "/health", timeout=30).status_code == 200
    assert requests.get(tracking_server.url + "/version", timeout=30).status_code == 200


def test_wrong_credentials(monkeypatch, tracking_server, make_user):
    alice = make_user()
    client = MlflowClient(tracking_uri=tracking_server.url)
    wrong = "wrong-" + secrets.token_hex(8)
    SECRETS.append(wrong)

    sign_in(monkeypatch, alice.name, wrong)
    with raises_mlflow("UNAUTHENTICATED") as wrong_password:
        client.search_experiments()
    assert http_status(wrong_password.value) == 401

    sign_in(monkeypatch, uniq("nobody"), wrong)
    with raises_mlflow("UNAUTHENTICATED") as unknown_user:
        client.search_experiments()
    # One answer whatever the cause: the message does not tell which names exist.
    assert str(unknown_user.value) == str(wrong_password.value)

    bogus = "plt_" + secrets.token_hex(6) + "_" + secrets.token_hex(16)
    SECRETS.append(bogus)
    sign_in(monkeypatch, token=bogus)
    with raises_mlflow("UNAUTHENTICATED"):
        client.search_experiments()
    sign_in(monkeypatch, token="not-a-token")
    with raises_mlflow("UNAUTHENTICATED"):
        client.search_experiments()

    # The right password still works afterwards.
    as_user(monkeypatch, alice)
    client.search_experiments()


# ---------------------------------------------------------------------------------------------
# 4: per-resource grants between members


def test_members_are_isolated_until_granted(monkeypatch, tracking_server, make_user, api_as):
    url = tracking_server.url
    client = MlflowClient(tracking_uri=url)
    alice, bob = make_user(), make_user()

    as_user(monkeypatch, alice)
    exp_name = uniq("alice-exp")
    exp_id = client.create_experiment(exp_name)
    run_id = client.create_run(exp_id).info.run_id
    client.log_metric(run_id, "auc", 0.9)
    model = uniq("alice-model")
    client.create_registered_model(model)
    client.create_model_version(model, source="s3://bucket/alice/model")

    as_user(monkeypatch, bob)
    with raises_mlflow("PERMISSION_DENIED") as info:
        client.get_experiment(exp_id)
    assert http_status(info.value) == 403
    _assert_hidden_by_name(client, exp_name)
    with raises_mlflow("PERMISSION_DENIED"):
        client.get_run(run_id)
    with raises_mlflow("PERMISSION_DENIED"):
        client.get_metric_history(run_id, "auc")
    with raises_mlflow("PERMISSION_DENIED"):
        client.search_runs([exp_id])
    with raises_mlflow("PERMISSION_DENIED"):
        client.log_metric(run_id, "auc", 0.1)
    with raises_mlflow("PERMISSION_DENIED"):
        client.get_registered_model(model)
    with raises_mlflow("PERMISSION_DENIED"):
        client.get_model_version(model, "1")
    assert exp_name not in {e.name for e in client.search_experiments(max_results=1000)}
    assert client.search_experiments(filter_string=f"name = '{exp_name}'") == []
    assert model not in {m.name for m in client.search_registered_models(max_results=1000)}
    assert client.search_registered_models(filter_string=f"name = '{model}'") == []
    assert client.search_model_versions(filter_string=f"name = '{model}'") == []
    # Bob cannot grant himself anything on Alice's resources.
    r = api_as(bob).request("PUT", "/grants", {"user": bob.name, "kind": "experiment", "resource": exp_id, "level": "READ"})
    expect_error(r, "PERMISSION_DENIED", 403)

    # READ: bob sees, but does not change.
    alice_api = api_as(alice)
    grant(alice_api, bob, "experiment", exp_id, "READ")
    grant(alice_api, bob, "registered_model", model, "READ")
    grants = alice_api.ok("GET", "/grants", {"kind": "experiment", "resource": exp_id})["grants"]
    assert {(g["user"], g["level"]) for g in grants} >= {(alice.name, "MANAGE"), (bob.name, "READ")}, grants

    assert client.get_experiment(exp_id).name == exp_name
    assert client.get_experiment_by_name(exp_name).experiment_id == exp_id
    assert client.get_run(run_id).data.metrics == {"auc": 0.9}
    assert [m.value for m in client.get_metric_history(run_id, "auc")] == [0.9]
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]
    assert exp_name in {e.name for e in client.search_experiments(max_results=1000)}
    assert client.get_registered_model(model).name == model
    assert model in {m.name for m in client.search_registered_models(max_results=1000)}
    with raises_mlflow("PERMISSION_DENIED"):
        client.log_metric(run_id, "auc", 0.1)
    with raises_mlflow("PERMISSION_DENIED"):
        client.create_run(exp_id)
    with raises_mlflow("PERMISSION_DENIED"):
        client.set_registered_model_tag(model, "k", "v")
    with raises_mlflow("PERMISSION_DENIED"):
        client.create_model_version(model, source="s3://bucket/bob/model")

    # EDIT: bob logs, creates runs and versions, but does not delete (MANAGE).
    grant(alice_api, bob, "experiment", exp_id, "EDIT")
    grant(alice_api, bob, "registered_model", model, "EDIT")
    client.log_metric(run_id, "auc", 0.95, step=1)
    bob_run = client.create_run(exp_id).info.run_id
    client.set_tag(bob_run, "who", "bob")
    client.set_registered_model_tag(model, "k", "v")
    assert client.create_model_version(model, source="s3://bucket/bob/model").version == "2"
    with raises_mlflow("PERMISSION_DENIED"):
        client.delete_run(bob_run)
    with raises_mlflow("PERMISSION_DENIED"):
        client.delete_experiment(exp_id)
    with raises_mlflow("PERMISSION_DENIED"):
        client.delete_registered_model(model)

    as_user(monkeypatch, alice)
    assert sorted(m.value for m in client.get_metric_history(run_id, "auc")) == [0.9, 0.95]
    assert client.get_registered_model(model).tags == {"k": "v"}


def _assert_hidden_by_name(client: MlflowClient, name: str) -> None:
    """Looking an unreadable experiment up by name either is refused or finds nothing (the client's
    None for RESOURCE_DOES_NOT_EXIST); both hide it."""
    try:
        found = client.get_experiment_by_name(name)
    except MlflowException as e:
        assert e.error_code == "PERMISSION_DENIED", e
    else:
        assert found is None, found


def test_missing_resources_answer_like_hidden_ones(monkeypatch, tracking_server, make_user):
    client = MlflowClient(tracking_uri=tracking_server.url)
    as_user(monkeypatch, make_user())
    with raises_mlflow("PERMISSION_DENIED"):
        client.get_experiment("987654321")
    with raises_mlflow("PERMISSION_DENIED"):
        client.get_registered_model(uniq("no-such-model"))


# ---------------------------------------------------------------------------------------------
# 5: viewers


def test_viewer_is_capped_at_read(monkeypatch, tracking_server, make_user, api_as):
    client = MlflowClient(tracking_uri=tracking_server.url)
    alice, viv = make_user(), make_user(role="viewer")

    as_user(monkeypatch, viv)
    with raises_mlflow("PERMISSION_DENIED") as info:
        client.create_experiment(uniq("viewer-exp"))
    assert http_status(info.value) == 403
    with raises_mlflow("PERMISSION_DENIED"):
        client.create_registered_model(uniq("viewer-model"))

    as_user(monkeypatch, alice)
    exp_id = client.create_experiment(uniq("shared-exp"))
    run_id = client.create_run(exp_id).info.run_id
    client.log_param(run_id, "p", "1")
    model = uniq("shared-model")
    client.create_registered_model(model)
    grant(api_as(alice), viv, "experiment", exp_id, "EDIT")
    grant(api_as(alice), viv, "registered_model", model, "EDIT")

    as_user(monkeypatch, viv)
    assert client.get_run(run_id).data.params == {"p": "1"}
    assert client.get_registered_model(model).name == model
    with raises_mlflow("PERMISSION_DENIED"):
        client.log_metric(run_id, "m", 1.0)
    with raises_mlflow("PERMISSION_DENIED"):
        client.set_tag(run_id, "k", "v")
    with raises_mlflow("PERMISSION_DENIED"):
        client.create_run(exp_id)
    with raises_mlflow("PERMISSION_DENIED"):
        client.set_registered_model_tag(model, "k", "v")
    with raises_mlflow("PERMISSION_DENIED"):
        client.create_experiment(uniq("viewer-exp"))


# ---------------------------------------------------------------------------------------------
# 6: reviewing promotion requests needs the approver flag


def test_approvals_need_the_approver_flag(monkeypatch, tracking_server, make_user, api_as, admin):
    client = MlflowClient(tracking_uri=tracking_server.url)
    alice = make_user()
    bob = make_user()  # a member, not an approver
    carol = make_user(approver=True)

    as_user(monkeypatch, alice)
    model = uniq("gated")
    client.create_registered_model(model)
    v1 = client.create_model_version(model, source="s3://bucket/gated/1").version
    v2 = client.create_model_version(model, source="s3://bucket/gated/2").version
    alice_api = api_as(alice)
    alice_api.ok("PUT", f"/registered-models/{model}/gates/champion", {"approvals_required": 1})
    for who in (bob, carol):
        grant(alice_api, who, "registered_model", model, "READ")

    body = {"name": model, "version": v1, "target": "champion", "reason": "ship it"}
    pid = alice_api.ok("POST", "/promotions", body)["promotion"]["id"]

    r = api_as(bob).request("POST", f"/promotions/{pid}/approve", {"comment": "lgtm"})
    expect_error(r, "PERMISSION_DENIED", 403)
    r = api_as(bob).request("POST", f"/promotions/{pid}/reject", {"comment": "no"})
    expect_error(r, "PERMISSION_DENIED", 403)
    assert alice_api.ok("GET", f"/promotions/{pid}")["promotion"]["status"] == "PENDING"

    out = api_as(carol).ok("POST", f"/promotions/{pid}/approve", {"comment": "lgtm"})
    assert out["promotion"]["status"] == "APPLIED", out
    assert [rv["reviewer"] for rv in out["promotion"]["reviews"]] == [carol.name]
    assert client.get_model_version_by_alias(model, "champion").version == v1

    # An admin may review too.
    body = {"name": model, "version": v2, "target": "champion"}
    pid = alice_api.ok("POST", "/promotions", body)["promotion"]["id"]
    out = admin.ok("POST", f"/promotions/{pid}/approve", {})
    assert out["promotion"]["status"] == "APPLIED", out
    assert client.get_model_version_by_alias(model, "champion").version == v2


def test_approver_still_needs_read_on_the_model(monkeypatch, tracking_server, make_user, api_as):
    client = MlflowClient(tracking_uri=tracking_server.url)
    alice, dave = make_user(), make_user(approver=True)
    as_user(monkeypatch, alice)
    model = uniq("gated")
    client.create_registered_model(model)
    v1 = client.create_model_version(model, source="s3://bucket/gated/1").version
    alice_api = api_as(alice)
    alice_api.ok("PUT", f"/registered-models/{model}/gates/champion", {"approvals_required": 1})
    pid = alice_api.ok("POST", "/promotions", {"name": model, "version": v1, "target": "champion"})["promotion"]["id"]
    r = api_as(dave).request("POST", f"/promotions/{pid}/approve", {})
    expect_error(r, "PERMISSION_DENIED", 403)
    assert alice_api.ok("GET", f"/promotions/{pid}")["promotion"]["status"] == "PENDING"


# ---------------------------------------------------------------------------------------------
# 7: the audit trail is for admins, and holds no secrets


def _all_events(admin: Api, **params) -> list[dict]:
    events: list[dict] = []
    token = None
    for _ in range(1000):
        query = {"max_results": 1000, **params}
        if token:
            query["page_token"] = token
        page = admin.ok("GET", "/audit", query)
        events.extend(page["events"])
        token = page.get("next_page_token")
        if not token:
            return events
    pytest.fail("the audit trail did not end within 1000 pages")


def test_audit_is_admin_only_and_secret_free(monkeypatch, tracking_server, make_user, make_token, api_as, admin):
    alice = make_user()
    _, secret = make_token(alice.name)
    url = tracking_server.url

    # Members are refused the trail (and the refusal is itself recorded).
    expect_error(api_as(alice).request("GET", "/audit"), "PERMISSION_DENIED", 403)
    expect_error(Api(url, token=secret).request("GET", "/audit"), "PERMISSION_DENIED", 403)
    expect_error(Api(url).request("GET", "/audit"), "UNAUTHENTICATED", 401)

    # A failed sign-in with a wrong password, and sign-ins with the right password and the token.
    wrong = "wrong-" + secrets.token_hex(8)
    SECRETS.append(wrong)
    expect_error(Api(url, alice.name, wrong).request("GET", "/auth/me"), "UNAUTHENTICATED", 401)
    sign_in(monkeypatch, alice.name, wrong)
    with raises_mlflow("UNAUTHENTICATED"):
        MlflowClient(tracking_uri=url).search_experiments()
    sign_in(monkeypatch, token=secret)
    MlflowClient(tracking_uri=url).search_experiments()
    api_as(alice).ok("GET", "/auth/me")

    r = admin.request("GET", "/audit", {"max_results": 10})
    assert r.status_code == 200, r.text

    logins = _all_events(admin, resource_type="user", resource_id=alice.name, action="auth.login")
    refused = [e for e in logins if e["outcome"] == "REFUSED"]
    assert len(refused) >= 2, logins
    assert all(e["actor"] == alice.name for e in refused), refused

    denials = _all_events(admin, action="request.deny", actor=alice.name)
    assert denials, "no request.deny event for the member's GET /audit"
    assert all(e["outcome"] == "REFUSED" and e["resource_type"] == "route" for e in denials), denials
    assert any("/api/plinth/v1/audit" in e["resource_id"] for e in denials), denials

    text = json.dumps(_all_events(admin))
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{len(leaked)} secret(s) appear in the audit trail"
    token_part = secret.rsplit("_", 1)[-1]
    assert token_part not in text, "a token's secret part appears in the audit trail"


# ---------------------------------------------------------------------------------------------
# 8: revoked tokens stop working at once


def test_revoked_token_is_refused(monkeypatch, tracking_server, make_user, make_token, api_as, admin):
    alice, bob = make_user(), make_user()
    token_id, secret = make_token(alice.name)
    client = MlflowClient(tracking_uri=tracking_server.url)

    sign_in(monkeypatch, token=secret)
    exp_id = client.create_experiment(uniq("token-exp"))
    assert client.get_experiment(exp_id).experiment_id == exp_id

    # Only the owner (or an admin) revokes it.
    expect_error(api_as(bob).request("DELETE", f"/tokens/{token_id}"), "PERMISSION_DENIED", 403)
    client.get_experiment(exp_id)

    out = api_as(alice).ok("DELETE", f"/tokens/{token_id}")
    assert out["token"]["id"] == token_id
    assert out["token"]["revoked_at"] is not None

    with raises_mlflow("UNAUTHENTICATED") as info:
        client.get_experiment(exp_id)
    assert http_status(info.value) == 401
    sign_in(monkeypatch, alice.name, secret)
    with raises_mlflow("UNAUTHENTICATED"):
        client.get_experiment(exp_id)

    listed = {t["id"]: t for t in admin.ok("GET", "/tokens", {"user": alice.name})["tokens"]}
    assert listed[token_id]["revoked_at"] is not None

    # The password still works, and a second token of the same user is unaffected.
    as_user(monkeypatch, alice)
    assert client.get_experiment(exp_id).experiment_id == exp_id
    _, other = make_token(alice.name)
    sign_in(monkeypatch, token=other)
    assert client.get_experiment(exp_id).experiment_id == exp_id


def test_admin_revokes_any_token(monkeypatch, tracking_server, make_user, make_token, admin):
    alice = make_user()
    token_id, secret = make_token(alice.name)
    client = MlflowClient(tracking_uri=tracking_server.url)
    sign_in(monkeypatch, token=secret)
    client.search_experiments()
    admin.ok("DELETE", f"/tokens/{token_id}")
    with raises_mlflow("UNAUTHENTICATED"):
        client.search_experiments()


def test_members_manage_only_their_own_tokens(tracking_server, make_user, api_as):
    alice, bob = make_user(), make_user()
    r = api_as(alice).request("POST", "/tokens", {"name": uniq("tok"), "user": bob.name})
    expect_error(r, "PERMISSION_DENIED", 403)
    out = api_as(alice).ok("POST", "/tokens", {"name": uniq("tok")})
    SECRETS.append(out["secret"])
    assert out["token"]["user"] == alice.name
    mine = api_as(alice).ok("GET", "/tokens")["tokens"]
    assert [t["id"] for t in mine] == [out["token"]["id"]]
    assert all(t["user"] == alice.name for t in mine)
    expect_error(api_as(alice).request("GET", "/tokens", {"user": bob.name}), "PERMISSION_DENIED", 403)
    expect_error(api_as(alice).request("GET", "/users"), "PERMISSION_DENIED", 403)
    r = api_as(alice).request("POST", "/users", {"name": uniq("x"), "password": "p" * 16, "role": "admin"})
    expect_error(r, "PERMISSION_DENIED", 403)
