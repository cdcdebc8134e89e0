"""Experiments through the real MlflowClient: create/get/search/update/delete/restore/tags."""

from __future__ import annotations

import time

import pytest
from mlflow.entities import LifecycleStage, ViewType

from plinth_compat import expect_error, now_ms, raises_mlflow, uniq


def test_default_experiment_exists_on_a_fresh_server(server, client):
    exp = client.get_experiment("0")
    assert exp.experiment_id == "0"
    assert exp.name == "Default"
    assert exp.lifecycle_stage == LifecycleStage.ACTIVE
    assert exp.artifact_location == "mlflow-artifacts:/0"
    assert client.get_experiment_by_name("Default").experiment_id == "0"
    # A fresh server knows exactly one experiment.
    assert [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)] == ["0"]


def test_create_and_get(client):
    name = uniq("create")
    before = now_ms()
    exp_id = client.create_experiment(name, tags={"team": "ml", "empty": ""})
    assert isinstance(exp_id, str) and exp_id.isdigit() and exp_id != "0"

    exp = client.get_experiment(exp_id)
    assert exp.experiment_id == exp_id
    assert exp.name == name
    assert exp.lifecycle_stage == LifecycleStage.ACTIVE
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert exp.tags["team"] == "ml"
    assert exp.tags["empty"] == ""
    assert before - 5000 <= exp.creation_time <= now_ms() + 5000
    assert exp.last_update_time >= exp.creation_time

    by_name = client.get_experiment_by_name(name)
    assert by_name is not None
    assert by_name.experiment_id == exp_id
    assert by_name.tags == exp.tags


def test_experiment_ids_are_distinct(client):
    ids = [client.create_experiment(uniq("distinct")) for _ in range(5)]
    assert len(set(ids)) == 5


def test_get_by_name_missing_returns_none(client):
    assert client.get_experiment_by_name(uniq("missing")) is None


def test_get_by_name_missing_is_404_on_the_wire(rest):
    r = rest.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": uniq("nope")})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)


def test_get_missing_experiment(client, rest):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_experiment("987654321")
    r = rest.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "987654321"})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)


def test_create_duplicate_name(client, rest):
    name = uniq("dup")
    client.create_experiment(name)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.create_experiment(name)
    r = rest.post("/api/2.0/mlflow/experiments/create", {"name": name})
    expect_error(r, "RESOURCE_ALREADY_EXISTS", 400)


def test_create_duplicate_of_deleted_experiment(client, rest):
    name = uniq("dupdel")
    exp_id = client.create_experiment(name)
    client.delete_experiment(exp_id)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.create_experiment(name)
    r = rest.post("/api/2.0/mlflow/experiments/create", {"name": name})
    expect_error(r, "RESOURCE_ALREADY_EXISTS", 400)
    # The deleted experiment is still found by name.
    found = client.get_experiment_by_name(name)
    assert found is not None and found.experiment_id == exp_id
    assert found.lifecycle_stage == LifecycleStage.DELETED


def test_create_with_empty_name_is_rejected(rest):
    r = rest.post("/api/2.0/mlflow/experiments/create", {"name": ""})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_create_with_too_long_name_is_rejected(client):
    client.create_experiment((uniq("long") + "n" * 500)[:500])  # 500 characters are fine
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.create_experiment("n" * 501)


def _names(experiments):
    return [e.name for e in experiments]


def test_search_filter_name_like(client):
    prefix = uniq("like")
    names = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    for n in names:
        client.create_experiment(n)
    client.create_experiment(uniq("other"))

    found = client.search_experiments(filter_string=f"name LIKE '{prefix}%'", order_by=["name ASC"])
    assert _names(found) == names
    found = client.search_experiments(filter_string=f"name LIKE '%{prefix[5:]}-_'")
    assert sorted(_names(found)) == names
    found = client.search_experiments(filter_string=f"name ILIKE '{prefix.upper()}%'")
    assert sorted(_names(found)) == names
    found = client.search_experiments(filter_string=f"name = '{prefix}-b'")
    assert _names(found) == [f"{prefix}-b"]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}%' AND name != '{prefix}-b'")
    assert sorted(_names(found)) == [f"{prefix}-a", f"{prefix}-c"]


def test_search_filter_tags(client):
    prefix = uniq("tagged")
    client.create_experiment(f"{prefix}-1", tags={"owner": "alice", "kind": "x"})
    client.create_experiment(f"{prefix}-2", tags={"owner": "bob"})
    client.create_experiment(f"{prefix}-3")
    base = f"name LIKE '{prefix}%'"
    assert _names(client.search_experiments(filter_string=f"{base} AND tags.owner = 'alice'")) == [
        f"{prefix}-1"
    ]
    assert _names(client.search_experiments(filter_string=f"{base} AND tags.owner != 'alice'")) == [
        f"{prefix}-2"
    ]
    got = client.search_experiments(filter_string=f"{base} AND tags.owner LIKE '%o%'")
    assert _names(got) == [f"{prefix}-2"]
    got = client.search_experiments(filter_string=f"{base} AND tags.`kind` = 'x'")
    assert _names(got) == [f"{prefix}-1"]


def test_search_filter_creation_time(client):
    prefix = uniq("ctime")
    client.create_experiment(f"{prefix}-old")
    old = client.get_experiment_by_name(f"{prefix}-old")
    time.sleep(0.05)
    client.create_experiment(f"{prefix}-new")
    new = client.get_experiment_by_name(f"{prefix}-new")
    assert new.creation_time > old.creation_time
    got = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%' AND creation_time > {old.creation_time}"
    )
    assert _names(got) == [f"{prefix}-new"]
    got = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%' AND creation_time <= {old.creation_time}"
    )
    assert _names(got) == [f"{prefix}-old"]


def test_search_order_by(client):
    prefix = uniq("order")
    names = [f"{prefix}-{c}" for c in "bca"]
    ids = []
    for n in names:
        ids.append(client.create_experiment(n))
        time.sleep(0.01)
    base = f"name LIKE '{prefix}%'"
    assert _names(client.search_experiments(filter_string=base, order_by=["name"])) == sorted(names)
    assert _names(client.search_experiments(filter_string=base, order_by=["name DESC"])) == sorted(
        names, reverse=True
    )
    assert _names(client.search_experiments(filter_string=base, order_by=["creation_time ASC"])) == names
    # Default order: newest first.
    assert _names(client.search_experiments(filter_string=base)) == names[::-1]
    by_id = client.search_experiments(filter_string=base, order_by=["experiment_id ASC"])
    assert [e.experiment_id for e in by_id] == sorted(ids, key=int)


def test_search_invalid_filter(client, rest):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_experiments(filter_string="name =")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_experiments(filter_string="metrics.x > 1")
    r = rest.post("/api/2.0/mlflow/experiments/search", {"filter": "nonsense ~~ 1", "max_results": 10})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_search_view_types(client):
    prefix = uniq("view")
    live = client.create_experiment(f"{prefix}-live")
    dead = client.create_experiment(f"{prefix}-dead")
    client.delete_experiment(dead)
    base = f"name LIKE '{prefix}%'"

    def ids(view):
        return sorted(e.experiment_id for e in client.search_experiments(view_type=view, filter_string=base))

    assert ids(ViewType.ACTIVE_ONLY) == [live]
    assert ids(ViewType.DELETED_ONLY) == [dead]
    assert ids(ViewType.ALL) == sorted([live, dead])


def test_search_pagination_sees_every_experiment_once(client):
    prefix = uniq("page")
    created = {client.create_experiment(f"{prefix}-{i:02d}") for i in range(23)}
    for order in (None, ["name DESC"], ["creation_time ASC"]):
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            page = client.search_experiments(
                filter_string=f"name LIKE '{prefix}%'", max_results=5, page_token=token, order_by=order
            )
            assert len(page) <= 5
            seen.extend(e.experiment_id for e in page)
            pages += 1
            token = page.token
            if not token:
                break
            assert pages < 20, "pagination does not terminate"
        assert len(seen) == len(set(seen)) == 23, (order, seen)
        assert set(seen) == created
        assert pages in (5, 6)


def test_search_max_results_limit(rest):
    r = rest.post("/api/2.0/mlflow/experiments/search", {"max_results": 50001})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    r = rest.post("/api/2.0/mlflow/experiments/search", {"max_results": 50000})
    assert r.status_code == 200, r.text


def test_rename(client):
    old = uniq("rename-old")
    new = uniq("rename-new")
    exp_id = client.create_experiment(old)
    created = client.get_experiment(exp_id)
    time.sleep(0.01)
    client.rename_experiment(exp_id, new)
    exp = client.get_experiment(exp_id)
    assert exp.name == new
    assert exp.last_update_time >= created.last_update_time
    assert client.get_experiment_by_name(old) is None
    assert client.get_experiment_by_name(new).experiment_id == exp_id


@pytest.mark.plinth_only
def test_rename_onto_existing_name(client, rest):
    # differs from MLflow: MLflow's SQL store leaks the IntegrityError as BAD_REQUEST; Plinth
    # answers RESOURCE_ALREADY_EXISTS, like for a duplicate create.
    a = uniq("rename-a")
    b = uniq("rename-b")
    a_id = client.create_experiment(a)
    client.create_experiment(b)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.rename_experiment(a_id, b)
    r = rest.post("/api/2.0/mlflow/experiments/update", {"experiment_id": a_id, "new_name": b})
    expect_error(r, "RESOURCE_ALREADY_EXISTS", 400)
    assert client.get_experiment(a_id).name == a


def test_rename_missing_experiment(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.rename_experiment("987654321", uniq("whatever"))


def test_delete_and_restore(client):
    exp_id = client.create_experiment(uniq("delrest"))
    client.delete_experiment(exp_id)
    exp = client.get_experiment(exp_id)
    assert exp.lifecycle_stage == LifecycleStage.DELETED
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == LifecycleStage.ACTIVE


def test_delete_missing_experiment(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_experiment("987654321")


def test_deleting_an_experiment_deletes_its_runs(client):
    exp_id = client.create_experiment(uniq("delruns"))
    runs = [client.create_run(exp_id).info.run_id for _ in range(3)]
    client.delete_experiment(exp_id)
    for run_id in runs:
        assert client.get_run(run_id).info.lifecycle_stage == LifecycleStage.DELETED
    assert client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY) == []
    assert len(client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)) == 3
    client.restore_experiment(exp_id)
    for run_id in runs:
        assert client.get_run(run_id).info.lifecycle_stage == LifecycleStage.ACTIVE


def test_set_and_delete_experiment_tag(client):
    exp_id = client.create_experiment(uniq("exptag"))
    client.set_experiment_tag(exp_id, "k", "v1")
    client.set_experiment_tag(exp_id, "k", "v2")  # overwrite is allowed
    client.set_experiment_tag(exp_id, "other", "x")
    tags = client.get_experiment(exp_id).tags
    assert tags["k"] == "v2"
    assert tags["other"] == "x"
    client.delete_experiment_tag(exp_id, "k")
    tags = client.get_experiment(exp_id).tags
    assert "k" not in tags
    assert tags["other"] == "x"


def test_experiment_tag_on_missing_experiment(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.set_experiment_tag("987654321", "k", "v")


def test_experiment_tag_key_validation(client):
    exp_id = client.create_experiment(uniq("exptagkey"))
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.set_experiment_tag(exp_id, "../escape", "v")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.set_experiment_tag(exp_id, "k" * 251, "v")
    client.set_experiment_tag(exp_id, "k" * 250, "v" * 20000)
    assert client.get_experiment(exp_id).tags["k" * 250] == "v" * 20000


@pytest.mark.parametrize("field", ["experiment_id"])
def test_get_experiment_requires_id(rest, field):
    r = rest.get("/api/2.0/mlflow/experiments/get")
    body = expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    assert f"Missing value for required parameter '{field}'" in body["message"]


def test_ajax_api_prefix(rest, client):
    # The MLflow UI calls the same handlers under /ajax-api/2.0/mlflow/.
    name = uniq("ajax")
    r = rest.post("/ajax-api/2.0/mlflow/experiments/create", {"name": name})
    assert r.status_code == 200, r.text
    exp_id = r.json()["experiment_id"]
    r = rest.get("/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": exp_id})
    assert r.status_code == 200, r.text
    assert r.json()["experiment"]["name"] == name
    r = rest.post(
        "/ajax-api/2.0/mlflow/experiments/search", {"filter": f"name = '{name}'", "max_results": 10}
    )
    assert [e["experiment_id"] for e in r.json()["experiments"]] == [exp_id]
    assert client.get_experiment(exp_id).name == name


@pytest.mark.plinth_only
def test_a_relative_artifact_location_is_refused(client):
    """MLflow resolves it against its working directory; Plinth refuses it (docs/tracking.md)."""
    with raises_mlflow("INVALID_PARAMETER_VALUE", match="relative path"):
        client.create_experiment(uniq("relative"), artifact_location="my_location")
    exp_id = client.create_experiment(uniq("absolute"), artifact_location="/srv/artifacts/absolute")
    assert client.get_experiment(exp_id).artifact_location == "/srv/artifacts/absolute"
