"""Plinth's promotion gates, approvals, lineage and audit trail (/api/plinth/v1), together with
MLflow's own registry endpoints, which the gates guard."""

from __future__ import annotations

import threading
import time

import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from plinth_compat import Native, expect_error, raises_mlflow, uniq

pytestmark = pytest.mark.plinth_only

GATE = {
    "conditions": ["metrics.auc >= 0.85", "metrics.auc > current.metrics.auc"],
    "required_tags": ["model_card"],
    "description": "champion needs a model card and must beat the holder",
}


@pytest.fixture
def api(tracking_server) -> Native:
    """Plinth's API as the anonymous user; `api.as_user("alice")` acts as alice."""
    return Native(tracking_server.url)


def _version(client, experiment_id, name, auc=None, **tags) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    if auc is not None:
        client.log_metric(run_id, "auc", auc)
    mv = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags or None)
    return mv.version


def _model(client, experiment_id, aucs, prefix="promo") -> tuple[str, list[str]]:
    name = uniq(prefix)
    client.create_registered_model(name)
    return name, [_version(client, experiment_id, name, auc) for auc in aucs]


def _holder(client, name, alias="champion") -> str | None:
    try:
        return client.get_model_version_by_alias(name, alias).version
    except MlflowException as e:
        assert e.error_code == "INVALID_PARAMETER_VALUE", e
        return None


def _put_gate(api, name, target, spec, user="alice") -> dict:
    return api.as_user(user).ok("PUT", f"/registered-models/{name}/gates/{target}", spec)["gate"]


def _checks(report) -> dict[str, dict]:
    return {c["condition"]: c for c in report["checks"]}


def _race(*calls):
    """Runs the calls at the same moment, one thread each; returns their results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except BaseException as exc:  # returned to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing request hung"
    return results


# ---------------------------------------------------------------------------------------------
# Gates


def test_gate_crud(client, api, experiment_id):
    name, _ = _model(client, experiment_id, [0.9])
    gate = _put_gate(api, name, "champion", GATE)
    assert gate["name"] == name
    assert gate["target"] == "champion"
    assert gate["conditions"] == GATE["conditions"]
    assert gate["required_tags"] == ["model_card"]
    assert gate["approvals_required"] == 0
    assert gate["description"] == GATE["description"]
    assert gate["updated_by"] == "alice"
    assert isinstance(gate["updated_at"], int) and gate["updated_at"] > 0

    got = api.ok("GET", f"/registered-models/{name}/gates/champion")["gate"]
    assert got == gate
    _put_gate(api, name, "stage:production", {"conditions": ["metrics.auc >= 0.5"]}, user="bob")
    gates = api.ok("GET", f"/registered-models/{name}/gates")["gates"]
    assert sorted(g["target"] for g in gates) == ["champion", "stage:production"]
    assert {g["target"]: g["updated_by"] for g in gates} == {"champion": "alice", "stage:production": "bob"}
    assert {g["target"]: g["kind"] for g in gates} == {"champion": "alias", "stage:production": "stage"}

    # Replacing a gate keeps one gate per target.
    _put_gate(api, name, "champion", {"conditions": ["metrics.auc >= 0.1"], "approvals_required": 1})
    got = api.ok("GET", f"/registered-models/{name}/gates/champion")["gate"]
    assert got["conditions"] == ["metrics.auc >= 0.1"]
    assert got["required_tags"] == []
    assert got["approvals_required"] == 1
    assert len(api.ok("GET", f"/registered-models/{name}/gates")["gates"]) == 2

    api.ok("DELETE", f"/registered-models/{name}/gates/champion")
    expect_error(api.request("GET", f"/registered-models/{name}/gates/champion"), "RESOURCE_DOES_NOT_EXIST", 404)
    expect_error(api.request("DELETE", f"/registered-models/{name}/gates/champion"), "RESOURCE_DOES_NOT_EXIST", 404)
    assert [g["target"] for g in api.ok("GET", f"/registered-models/{name}/gates")["gates"]] == ["stage:production"]


def test_gate_validation(client, api, experiment_id):
    name, _ = _model(client, experiment_id, [0.9])
    for bad in ["auc > 1", "metrics.auc >", "metrics.auc ~ 1", "1 > 2", "current.metrics.a > current.metrics.b"]:
        r = api.request("PUT", f"/registered-models/{name}/gates/champion", {"conditions": [bad]})
        body = expect_error(r, "INVALID_PARAMETER_VALUE", 400)
        assert bad in body["message"], body
    r = api.request("PUT", f"/registered-models/{name}/gates/latest", {"conditions": ["metrics.auc > 0"]})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    r = api.request("PUT", f"/registered-models/{name}/gates/champion", {"approvals_required": -1})
    expect_error(r, {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}, 400)
    r = api.request("PUT", f"/registered-models/{uniq('nomodel')}/gates/champion", {"conditions": ["metrics.auc > 0"]})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)
    expect_error(api.request("GET", f"/registered-models/{uniq('nomodel')}/gates"), "RESOURCE_DOES_NOT_EXIST", 404)
    assert api.ok("GET", f"/registered-models/{name}/gates")["gates"] == []


def test_alias_gate_conditions_and_required_tags(client, api, experiment_id):
    name, (v1, v2) = _model(client, experiment_id, [0.8, 0.9])
    _put_gate(api, name, "champion", GATE)

    # A dry run says what would fail, and moves nothing.
    report = api.ok("POST", f"/registered-models/{name}/gates/champion/check", {"version": v1})["gate_report"]
    assert report["target"] == "champion"
    assert report["version"] == v1
    assert report["current_version"] is None
    assert report["conditions_passed"] is False
    assert report["approvals_required"] == 0
    checks = _checks(report)
    assert checks["metrics.auc >= 0.85"]["passed"] is False
    assert "0.8" in checks["metrics.auc >= 0.85"]["detail"]
    assert checks["metrics.auc > current.metrics.auc"]["passed"] is True  # nothing to beat yet
    tag_checks = [c for c in report["checks"] if "model_card" in c["condition"]]
    assert len(tag_checks) == 1 and tag_checks[0]["passed"] is False

    # MLflow's own alias endpoint is gated: every failed condition is listed.
    with raises_mlflow("INVALID_STATE_TRANSITION") as info:
        client.set_registered_model_alias(name, "champion", v1)
    message = str(info.value)
    assert "metrics.auc >= 0.85" in message
    assert "model_card" in message
    assert _holder(client, name) is None

    # The better version still lacks its model card.
    with raises_mlflow("INVALID_STATE_TRANSITION", match="model_card"):
        client.set_registered_model_alias(name, "champion", v2)
    assert _holder(client, name) is None

    client.set_model_version_tag(name, v2, "model_card", "https://example.com/cards/v2")
    client.set_registered_model_alias(name, "champion", v2)
    assert _holder(client, name) == v2

    # A later version that clears the threshold but does not beat the holder is refused.
    v3 = _version(client, experiment_id, name, 0.88, model_card="https://example.com/cards/v3")
    report = api.ok("POST", f"/registered-models/{name}/gates/champion/check", {"version": v3})["gate_report"]
    assert report["current_version"] == v2
    checks = _checks(report)
    assert checks["metrics.auc >= 0.85"]["passed"] is True
    assert checks["metrics.auc > current.metrics.auc"]["passed"] is False
    with raises_mlflow("INVALID_STATE_TRANSITION", match="current.metrics.auc") as info:
        client.set_registered_model_alias(name, "champion", v3)
    assert "metrics.auc >= 0.85" not in str(info.value), "a passed condition is listed as failed"
    assert _holder(client, name) == v2

    # Plinth's promote answers the same, with the whole report.
    r = api.request("POST", f"/registered-models/{name}/aliases/champion/promote", {"version": v3})
    body = expect_error(r, "INVALID_STATE_TRANSITION", 409)
    assert "current.metrics.auc" in body["message"]
    assert _holder(client, name) == v2

    # Other aliases are not gated.
    client.set_registered_model_alias(name, "challenger", v3)
    assert _holder(client, name, "challenger") == v3


def test_stage_gate(client, api, experiment_id):
    name, (v1, v2) = _model(client, experiment_id, [0.8, 0.9])
    # A bare stage name is refused as a gate target: as an alias gate it would look like the stage's
    # gate and guard nothing of the stage. Stages have their own targets, `stage:<stage>`.
    for bare in ("production", "Staging", "ARCHIVED", "none"):
        body = expect_error(api.request("PUT", f"/registered-models/{name}/gates/{bare}", {"conditions": ["metrics.auc >= 0.99"]}),
                            "INVALID_PARAMETER_VALUE", 400)
        assert "is a stage name" in body["message"] and f"stage:{bare.lower()}" in body["message"], body
    _put_gate(api, name, "Stage:Production", {"conditions": ["metrics.auc >= 0.85"]})
    targets = sorted(g["target"] for g in api.ok("GET", f"/registered-models/{name}/gates")["gates"])
    assert targets == ["stage:production"]
    with raises_mlflow("INVALID_STATE_TRANSITION", match="metrics.auc >= 0.85"):
        client.transition_model_version_stage(name, v1, "Production")
    assert client.get_model_version(name, v1).current_stage == "None"
    # Other stages are not gated.
    client.transition_model_version_stage(name, v1, "Staging")
    assert client.get_model_version(name, v1).current_stage == "Staging"

    mv = client.transition_model_version_stage(name, v2, "Production", archive_existing_versions=True)
    assert mv.current_stage == "Production"
    report = api.ok("POST", f"/registered-models/{name}/gates/stage:production/check", {"version": v1})["gate_report"]
    assert report["conditions_passed"] is False
    assert report["current_version"] == v2

    # A stage gate that needs approvals refuses stage transitions outright.
    _put_gate(api, name, "stage:staging", {"approvals_required": 1})
    with raises_mlflow("INVALID_STATE_TRANSITION", match="cannot carry approvals"):
        client.transition_model_version_stage(name, v2, "Staging")
    expect_error(api.request("PUT", f"/registered-models/{name}/gates/stage:live", {}), "INVALID_PARAMETER_VALUE", 400)


def test_gated_alias_cannot_be_cleared(client, api, experiment_id):
    name, (v1, v2) = _model(client, experiment_id, [0.9, 0.95])
    client.set_registered_model_alias(name, "champion", v1)
    _put_gate(api, name, "champion", {"conditions": ["metrics.auc > current.metrics.auc"]})
    # Clearing the holder would let a worse version in under a `current.` comparison: refused.
    with raises_mlflow("INVALID_STATE_TRANSITION", match="guarded by a promotion gate"):
        client.delete_registered_model_alias(name, "champion")
    with raises_mlflow("INVALID_STATE_TRANSITION", match="guarded by a promotion gate"):
        client.delete_model_version(name, v1)
    assert _holder(client, name) == v1
    # Setting the alias to the version it already holds is a no-op, not a refusal.
    client.set_registered_model_alias(name, "champion", v1)
    # Aliases are case-sensitive: the gate on "champion" does not guard "Champion".
    client.set_registered_model_alias(name, "Champion", v1)
    client.delete_registered_model_alias(name, "Champion")
    api.ok("DELETE", f"/registered-models/{name}/gates/champion")
    client.delete_registered_model_alias(name, "champion")


def test_unverified_run_link_lends_no_metrics(client, api, experiment_id):
    # A version whose source is unrelated to the run it names cannot borrow that run's metrics.
    name, _ = _model(client, experiment_id, [0.99])
    best_run = client.get_model_version(name, "1").run_id
    mv = client.create_model_version(name, "s3://bucket/elsewhere/model", run_id=best_run)
    _put_gate(api, name, "champion", {"conditions": ["metrics.auc >= 0.5"]})
    with raises_mlflow("INVALID_STATE_TRANSITION", match="not trusted"):
        client.set_registered_model_alias(name, "champion", mv.version)
    client.set_registered_model_alias(name, "champion", "1")


def test_promote_preconditions(client, api, experiment_id):
    name, (v1, v2, v3) = _model(client, experiment_id, [0.9, 0.9, 0.9])
    path = f"/registered-models/{name}/aliases/champion/promote"
    # null: the alias must be unset.
    report = api.ok("POST", path, {"version": v1, "expected_current_version": None})["gate_report"]
    assert report["version"] == v1
    assert report["current_version"] is None
    assert report["conditions_passed"] is True
    assert _holder(client, name) == v1
    # A stale expectation is refused and moves nothing.
    expect_error(api.request("POST", path, {"version": v2, "expected_current_version": v3}), "RESOURCE_CONFLICT", 409)
    assert _holder(client, name) == v1
    api.ok("POST", path, {"version": v2, "expected_current_version": v1})
    assert _holder(client, name) == v2
    # Absent: no precondition.
    api.ok("POST", path, {"version": v3})
    assert _holder(client, name) == v3
    expect_error(api.request("POST", path, {"version": "99"}), "RESOURCE_DOES_NOT_EXIST", 404)
    expect_error(
        api.request("POST", f"/registered-models/{name}/aliases/latest/promote", {"version": v1}),
        "INVALID_PARAMETER_VALUE",
        400,
    )
    # null while the alias is set: "expected unset" does not hold.
    r = api.request("POST", path, {"version": v1, "expected_current_version": None})
    expect_error(r, "RESOURCE_CONFLICT", 409)
    assert _holder(client, name) == v3


# ---------------------------------------------------------------------------------------------
# Promotion requests and approvals


def _request(api, user, name, version, target="champion", **extra) -> dict:
    body = {"name": name, "version": version, "target": target, "reason": f"{user} wants it", **extra}
    return api.as_user(user).ok("POST", "/promotions", body)


def _review(api, user, pid, verb, comment=None):
    return api.as_user(user).request("POST", f"/promotions/{pid}/{verb}", {"comment": comment})


def test_approvals(client, api, experiment_id):
    name, (v1, _v2) = _model(client, experiment_id, [0.9, 0.95])
    _put_gate(api, name, "champion", {"conditions": ["metrics.auc >= 0.85"], "approvals_required": 2})

    # A direct move cannot carry approvals.
    with raises_mlflow("INVALID_STATE_TRANSITION"):
        client.set_registered_model_alias(name, "champion", v1)
    r = api.request("POST", f"/registered-models/{name}/aliases/champion/promote", {"version": v1})
    expect_error(r, "INVALID_STATE_TRANSITION", 409)
    assert _holder(client, name) is None

    out = _request(api, "alice", name, v1)
    p = out["promotion"]
    pid = p["id"]
    assert isinstance(pid, str) and pid
    assert p["name"] == name
    assert p["version"] == v1
    assert p["target"] == "champion"
    assert p["requester"] == "alice"
    assert p["reason"] == "alice wants it"
    assert p["status"] == "PENDING"
    assert p["reviews"] == []
    assert p["expires_at"] > p["created_at"] > 0
    report = out["gate_report"]
    assert report["approvals_required"] == 2
    assert report["approvals"] == []
    assert report["approved"] is False
    assert report["conditions_passed"] is True

    # The requester cannot approve her own request.
    expect_error(_review(api, "alice", pid, "approve"), "PERMISSION_DENIED", 403)

    r = _review(api, "bob", pid, "approve", "looks good")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["promotion"]["status"] == "PENDING"
    assert [(rv["reviewer"], rv["decision"], rv["comment"]) for rv in out["promotion"]["reviews"]] == [
        ("bob", "APPROVE", "looks good")
    ]
    assert out["gate_report"]["approvals"] == ["bob"]
    assert out["gate_report"]["approved"] is False
    assert _holder(client, name) is None
    # A review stands as given: the same reviewer cannot review again (it would replace the first).
    body = expect_error(_review(api, "bob", pid, "approve", "again"), "RESOURCE_CONFLICT", 409)
    assert "already reviewed" in body["message"], body

    r = _review(api, "carol", pid, "approve")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["promotion"]["status"] == "APPLIED"
    assert sorted(out["gate_report"]["approvals"]) == ["bob", "carol"]
    assert out["gate_report"]["approved"] is True
    # The answer shows the alias as it now is.
    assert out["gate_report"]["current_version"] == v1, out["gate_report"]
    assert _holder(client, name) == v1

    got = api.ok("GET", f"/promotions/{pid}")
    assert got["promotion"]["status"] == "APPLIED"
    assert sorted(rv["reviewer"] for rv in got["promotion"]["reviews"]) == ["bob", "carol"]
    # A decided request takes no more reviews.
    expect_error(_review(api, "dave", pid, "approve"), "RESOURCE_CONFLICT", 409)

    # The trail has the request, the refused self-approval, both approvals and the move.
    events = api.ok("GET", "/audit", {"resource_type": "promotion", "resource_id": pid})["events"]
    seen = {(e["action"], e["actor"], e["outcome"]) for e in events}
    assert ("promotion.approve", "alice", "REFUSED") in seen
    assert ("promotion.approve", "bob", "OK") in seen
    assert ("promotion.approve", "carol", "OK") in seen
    assert any(e["action"] == "promotion.request" and e["actor"] == "alice" for e in events), events


def test_approved_request_waits_for_its_conditions(client, api, experiment_id):
    name, (v1,) = _model(client, experiment_id, [0.9])
    _put_gate(api, name, "champion", {"required_tags": ["model_card"], "approvals_required": 1})
    pid = _request(api, "alice", name, v1)["promotion"]["id"]
    r = _review(api, "bob", pid, "approve")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["promotion"]["status"] == "PENDING"
    assert out["gate_report"]["approved"] is True
    assert out["gate_report"]["conditions_passed"] is False
    assert _holder(client, name) is None

    client.set_model_version_tag(name, v1, "model_card", "card")
    out = api.as_user("bob").ok("POST", f"/promotions/{pid}/apply", {})
    assert out["promotion"]["status"] == "APPLIED"
    assert _holder(client, name) == v1
    expect_error(api.as_user("bob").request("POST", f"/promotions/{pid}/apply", {}), "RESOURCE_CONFLICT", 409)


def test_request_without_gate_applies_at_once(client, api, experiment_id):
    name, (v1,) = _model(client, experiment_id, [0.9])
    out = _request(api, "alice", name, v1)
    assert out["promotion"]["status"] == "APPLIED"
    assert _holder(client, name) == v1


def test_reject(client, api, experiment_id):
    name, (v1, v2) = _model(client, experiment_id, [0.9, 0.95])
    _put_gate(api, name, "champion", {"approvals_required": 2})
    first = _request(api, "alice", name, v1)["promotion"]["id"]
    r = _review(api, "bob", first, "reject", "not yet")
    assert r.status_code == 200, r.text
    p = r.json()["promotion"]
    assert p["status"] == "REJECTED"
    assert [(rv["reviewer"], rv["decision"], rv["comment"]) for rv in p["reviews"]] == [("bob", "REJECT", "not yet")]
    expect_error(_review(api, "carol", first, "approve"), "RESOURCE_CONFLICT", 409)
    expect_error(_review(api, "carol", first, "reject"), "RESOURCE_CONFLICT", 409)
    assert api.ok("GET", f"/promotions/{first}")["promotion"]["status"] == "REJECTED"
    assert _holder(client, name) is None

    # Cancelling: only the requester may.
    second = _request(api, "alice", name, v2)["promotion"]["id"]
    expect_error(api.as_user("bob").request("POST", f"/promotions/{second}/cancel", {}), "PERMISSION_DENIED", 403)
    api.as_user("alice").ok("POST", f"/promotions/{second}/cancel", {})
    assert api.ok("GET", f"/promotions/{second}")["promotion"]["status"] == "CANCELLED"
    expect_error(_review(api, "bob", second, "approve"), "RESOURCE_CONFLICT", 409)

    expect_error(_review(api, "bob", "987654321", "approve"), "RESOURCE_DOES_NOT_EXIST", 404)
    expect_error(api.request("GET", "/promotions/987654321"), "RESOURCE_DOES_NOT_EXIST", 404)


def test_request_validation(client, api, experiment_id):
    name, (v1,) = _model(client, experiment_id, [0.9])
    _put_gate(api, name, "champion", {"approvals_required": 1})
    alice = api.as_user("alice")
    for bad in [{"ttl_secs": 0}, {"ttl_secs": -5}, {"target": "latest"}, {"version": "x"}]:
        body = {"name": name, "version": v1, "target": "champion", **bad}
        expect_error(alice.request("POST", "/promotions", body), "INVALID_PARAMETER_VALUE", 400)
    body = {"name": name, "version": "42", "target": "champion"}
    expect_error(alice.request("POST", "/promotions", body), "RESOURCE_DOES_NOT_EXIST", 404)
    body = {"name": uniq("nomodel"), "version": "1", "target": "champion"}
    expect_error(alice.request("POST", "/promotions", body), "RESOURCE_DOES_NOT_EXIST", 404)


def test_expiry(client, api, experiment_id):
    name, (v1,) = _model(client, experiment_id, [0.9])
    _put_gate(api, name, "champion", {"approvals_required": 1})
    out = _request(api, "alice", name, v1, ttl_secs=1)
    p = out["promotion"]
    assert p["status"] == "PENDING"
    assert 500 <= p["expires_at"] - p["created_at"] <= 1500
    time.sleep(2)
    got = api.ok("GET", f"/promotions/{p['id']}")["promotion"]
    assert got["status"] == "EXPIRED"
    expect_error(_review(api, "bob", p["id"], "approve"), "RESOURCE_CONFLICT", 409)
    assert _holder(client, name) is None
    expired = api.ok("GET", "/promotions", {"status": "EXPIRED", "name": name})["promotions"]
    assert [e["id"] for e in expired] == [p["id"]]


def test_list_promotions(client, api, experiment_id):
    name, (v1, v2, v3) = _model(client, experiment_id, [0.9, 0.91, 0.92])
    other, (o1,) = _model(client, experiment_id, [0.9])
    for n in (name, other):
        _put_gate(api, n, "champion", {"approvals_required": 1})
    pending = {_request(api, "alice", name, v)["promotion"]["id"] for v in (v1, v2)}
    rejected = _request(api, "alice", name, v3)["promotion"]["id"]
    assert _review(api, "bob", rejected, "reject").status_code == 200
    elsewhere = _request(api, "alice", other, o1)["promotion"]["id"]

    got = api.ok("GET", "/promotions", {"status": "PENDING", "name": name})
    assert {p["id"] for p in got["promotions"]} == pending
    assert all(p["status"] == "PENDING" and p["name"] == name for p in got["promotions"])
    got = api.ok("GET", "/promotions", {"name": name})
    assert {p["id"] for p in got["promotions"]} == pending | {rejected}
    got = api.ok("GET", "/promotions", {"status": "PENDING"})
    ids = {p["id"] for p in got["promotions"]}
    assert pending | {elsewhere} <= ids and rejected not in ids

    seen = []
    token = None
    for _ in range(10):
        params = {"name": name, "max_results": 1}
        if token:
            params["page_token"] = token
        page = api.ok("GET", "/promotions", params)
        assert len(page["promotions"]) <= 1
        seen.extend(p["id"] for p in page["promotions"])
        token = page.get("next_page_token")
        if not token:
            break
    assert sorted(seen) == sorted(pending | {rejected})

    expect_error(api.request("GET", "/promotions", {"status": "MAYBE"}), "INVALID_PARAMETER_VALUE", 400)


# ---------------------------------------------------------------------------------------------
# Races


def test_promote_race_with_expected_current_version(client, api, experiment_id, tracking_server):
    name, (v1,) = _model(client, experiment_id, [0.9])
    path = f"/registered-models/{name}/aliases/champion/promote"
    api.ok("POST", path, {"version": v1, "expected_current_version": None})
    holder = v1
    for _ in range(5):
        a = _version(client, experiment_id, name, 0.9)
        b = _version(client, experiment_id, name, 0.9)
        sessions = [Native(tracking_server.url, "alice"), Native(tracking_server.url, "bob")]
        results = _race(
            lambda: sessions[0].request("POST", path, {"version": a, "expected_current_version": holder}),
            lambda: sessions[1].request("POST", path, {"version": b, "expected_current_version": holder}),
        )
        for r in results:
            assert not isinstance(r, BaseException), r
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200, 409], [(r.status_code, r.text) for r in results]
        loser = next(r for r in results if r.status_code == 409)
        expect_error(loser, "RESOURCE_CONFLICT", 409)
        winner = a if results[0].status_code == 200 else b
        assert _holder(client, name) == winner
        holder = winner


def test_gated_alias_race_through_mlflow(client, api, experiment_id, tracking_server):
    name, (v1,) = _model(client, experiment_id, [0.9])
    _put_gate(api, name, "champion", {"conditions": ["metrics.auc > current.metrics.auc"]})
    client.set_registered_model_alias(name, "champion", v1)
    for round_ in range(3):
        auc = round(0.91 + 0.01 * round_, 4)
        a = _version(client, experiment_id, name, auc)
        b = _version(client, experiment_id, name, auc)
        clients = [MlflowClient(tracking_uri=tracking_server.url) for _ in range(2)]
        results = _race(
            lambda: clients[0].set_registered_model_alias(name, "champion", a),
            lambda: clients[1].set_registered_model_alias(name, "champion", b),
        )
        codes = sorted(
            "OK" if r is None else (r.error_code if isinstance(r, MlflowException) else repr(r)) for r in results
        )
        assert codes == ["INVALID_STATE_TRANSITION", "OK"], results
        winner = a if results[0] is None else b
        assert _holder(client, name) == winner


# ---------------------------------------------------------------------------------------------
# Lineage


class Identity(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_lineage(client, api, experiment_id):
    name = uniq("lineage")
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(df, name="train")
    with mlflow.start_run(experiment_id=experiment_id, run_name="trainer") as run:
        mlflow.log_input(dataset, context="training")
        mlflow.log_metric("auc", 0.9)
        info = mlflow.pyfunc.log_model(name="model", python_model=Identity(), pip_requirements=["mlflow"])
    run_id = run.info.run_id
    mv = mlflow.register_model(f"runs:/{run_id}/model", name)

    out = api.ok("GET", f"/registered-models/{name}/versions/{mv.version}/lineage")
    assert out["model_version"]["name"] == name
    assert out["model_version"]["version"] == mv.version
    assert out["model_version"]["run_id"] == run_id
    r = out["run"]
    assert r["run_id"] == run_id
    assert r["experiment_id"] == experiment_id
    assert r["run_name"] == "trainer"
    assert r["status"] == "FINISHED"
    assert len(r["dataset_inputs"]) == 1
    d = r["dataset_inputs"][0]
    assert d["dataset"]["name"] == "train"
    assert d["dataset"]["digest"] == dataset.digest
    assert d["dataset"]["source_type"] == dataset.source._get_source_type()
    assert {"key": "mlflow.data.context", "value": "training"} in d["tags"]
    assert out["logged_model"]["model_id"] == info.model_id
    assert out["logged_model"]["name"] == "model"
    assert out["logged_model"]["artifact_location"] == client.get_logged_model(info.model_id).artifact_location
    assert out["copied_from"] is None

    # A version copied from another points back at it, and keeps its run.
    copy = uniq("lineage-copy")
    copied = client.copy_model_version(f"models:/{name}/{mv.version}", copy)
    assert copied.source == f"models:/{name}/{mv.version}"
    out = api.ok("GET", f"/registered-models/{copy}/versions/{copied.version}/lineage")
    assert out["copied_from"] is not None
    assert out["copied_from"]["name"] == name
    assert str(out["copied_from"]["version"]) == mv.version
    assert out["run"]["run_id"] == run_id

    got = api.ok("GET", f"/runs/{run_id}/model-versions")["model_versions"]
    assert sorted((v["name"], v["version"]) for v in got) == sorted([(name, mv.version), (copy, copied.version)])

    other_run = client.create_run(experiment_id).info.run_id
    assert api.ok("GET", f"/runs/{other_run}/model-versions")["model_versions"] == []
    r = api.request("GET", f"/registered-models/{name}/versions/99/lineage")
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)


def test_lineage_without_run(client, api):
    name = uniq("lineage-norun")
    client.create_registered_model(name)
    mv = client.create_model_version(name, source="s3://bucket/some/model")
    out = api.ok("GET", f"/registered-models/{name}/versions/{mv.version}/lineage")
    assert out["run"] is None
    assert out["logged_model"] is None
    assert out["copied_from"] is None
    assert out["model_version"]["source"] == "s3://bucket/some/model"


# ---------------------------------------------------------------------------------------------
# Audit


def _events(api, **params) -> list[dict]:
    return api.ok("GET", "/audit", params)["events"]


def test_audit_trail(client, api, experiment_id, monkeypatch):
    name, (v1, v2) = _model(client, experiment_id, [0.8, 0.9])
    _put_gate(api, name, "champion", {"conditions": ["metrics.auc >= 0.85"]})

    # The MLflow client sends HTTP Basic credentials from these.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "erin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "whatever")
    with raises_mlflow("INVALID_STATE_TRANSITION"):
        client.set_registered_model_alias(name, "champion", v1)
    client.set_registered_model_alias(name, "champion", v2)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    v3 = _version(client, experiment_id, name, 0.95)
    api.as_user("frank").ok("POST", f"/registered-models/{name}/aliases/champion/promote", {"version": v3})

    events = _events(api, resource_type="alias", resource_id=f"{name}@champion")
    assert len(events) == 3, events
    for e in events:
        assert e["action"] == "alias.set"
        assert e["resource_type"] == "alias"
        assert e["resource_id"] == f"{name}@champion"
        assert isinstance(e["id"], (str, int)) and e["id"] != ""
        assert isinstance(e["time"], (str, int)) and e["time"]
        assert isinstance(e["changes"], list)
    by_outcome = {}
    for e in events:
        by_outcome.setdefault(e["outcome"], []).append(e)
    assert sorted(by_outcome) == ["OK", "REFUSED"]
    (refused,) = by_outcome["REFUSED"]
    assert refused["actor"] == "erin"
    assert "metrics.auc >= 0.85" in refused["message"]
    ok = {e["actor"]: e for e in by_outcome["OK"]}
    assert sorted(ok) == ["erin", "frank"]
    assert [(c["before"], c["after"]) for c in ok["erin"]["changes"]] == [(None, v2)]
    assert [(c["before"], c["after"]) for c in ok["frank"]["changes"]] == [(v2, v3)]
    assert all(isinstance(c["field"], str) and c["field"] for e in by_outcome["OK"] for c in e["changes"])

    # Filters.
    only = _events(api, resource_type="alias", resource_id=f"{name}@champion", outcome="REFUSED")
    assert [e["id"] for e in only] == [refused["id"]]
    only = _events(api, resource_type="alias", resource_id=f"{name}@champion", actor="frank")
    assert [e["id"] for e in only] == [ok["frank"]["id"]]
    only = _events(api, resource_type="alias", resource_id=f"{name}@champion", action="alias.delete")
    assert only == []
    seen = []
    token = None
    for _ in range(10):
        params = {"resource_type": "alias", "resource_id": f"{name}@champion", "max_results": 1}
        if token:
            params["page_token"] = token
        page = api.ok("GET", "/audit", params)
        assert len(page["events"]) <= 1
        seen.extend(e["id"] for e in page["events"])
        token = page.get("next_page_token")
        if not token:
            break
    assert sorted(map(str, seen)) == sorted(str(e["id"]) for e in events)

    # The model and its versions have their own trail.
    created = _events(api, resource_type="registered_model", resource_id=name)
    assert [e["action"] for e in created] == ["registered_model.create"]
    versions = _events(api, resource_type="model_version", resource_id=f"{name}/{v3}")
    assert [(e["action"], e["outcome"]) for e in versions] == [("model_version.create", "OK")]
    gates = _events(api, resource_type="gate", resource_id=f"{name}@champion")
    assert [(e["action"], e["actor"], e["outcome"]) for e in gates] == [("gate.put", "alice", "OK")]


def test_audit_tracking_changes(client, api, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "gina")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "whatever")
    exp_name = uniq("audited")
    exp_id = client.create_experiment(exp_name)
    run_id = client.create_run(exp_id).info.run_id
    client.delete_run(run_id)

    events = _events(api, resource_type="experiment", resource_id=exp_id)
    creates = [e for e in events if e["action"] == "experiment.create"]
    assert len(creates) == 1, events
    assert creates[0]["actor"] == "gina"
    assert creates[0]["outcome"] == "OK"

    events = _events(api, resource_type="run", resource_id=run_id)
    deletes = [e for e in events if e["action"] == "run.delete"]
    assert len(deletes) == 1, events
    assert deletes[0]["actor"] == "gina"
    assert deletes[0]["outcome"] == "OK"


def test_audit_query_validation(api):
    expect_error(api.request("GET", "/audit", {"max_results": 10_001}), "INVALID_PARAMETER_VALUE", 400)
    expect_error(api.request("GET", "/audit", {"outcome": "MAYBE"}), "INVALID_PARAMETER_VALUE", 400)
    assert _events(api, resource_type="alias", resource_id=f"{uniq('none')}@x") == []
