"""The model registry through the real MlflowClient and the fluent API: registered models,
versions, tags, aliases, stages, search, and registering/loading pyfunc models end to end."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from plinth_compat import MISSING_RUN_ID, Native, expect_error, now_ms, raises_mlflow, uniq

API = "/api/2.0/mlflow"
PIP = ["mlflow"]  # skips requirement inference, which is slow and irrelevant here


class Scale(mlflow.pyfunc.PythonModel):
    """Multiplies every input by `k`, so each version answers differently."""

    def __init__(self, k):
        self.k = k

    def predict(self, context, model_input, params=None):
        return [x * self.k for x in model_input]


def _predict(uri: str) -> list:
    return list(mlflow.pyfunc.load_model(uri).predict([1, 2, 3]))


def _new_model(client, prefix="rm", **kwargs) -> str:
    name = uniq(prefix)
    client.create_registered_model(name, **kwargs)
    return name


def _run(client, experiment_id, **metrics) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    return run_id


def _versions(client, name, n, run_id) -> list[int]:
    out = []
    for _ in range(n):
        mv = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
        out.append(int(mv.version))
    return out


def _version_json(rest, name, version) -> dict:
    return rest.ok("GET", "model-versions/get", {"name": name, "version": str(version)})["model_version"]


# ---------------------------------------------------------------------------------------------
# Registered models


def test_create_get_update_rename_delete(client, experiment_id):
    name = uniq("crud")
    before = now_ms()
    created = client.create_registered_model(name, tags={"team": "ml"}, description="first")
    assert created.name == name
    assert created.tags == {"team": "ml"}
    assert created.description == "first"

    got = client.get_registered_model(name)
    assert got.name == name
    assert got.description == "first"
    assert got.tags == {"team": "ml"}
    assert got.aliases == {}
    assert got.latest_versions == []
    assert before - 5000 <= got.creation_timestamp <= now_ms() + 5000
    assert got.last_updated_timestamp >= got.creation_timestamp

    updated = client.update_registered_model(name, description="second")
    assert updated.description == "second"
    assert client.get_registered_model(name).description == "second"

    run_id = _run(client, experiment_id)
    assert _versions(client, name, 1, run_id) == [1]

    new_name = uniq("renamed")
    client.rename_registered_model(name, new_name)  # MlflowClient returns None here
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name)
    moved = client.get_registered_model(new_name)
    assert moved.description == "second"
    assert moved.tags == {"team": "ml"}
    # The versions moved with the model.
    mv = client.get_model_version(new_name, "1")
    assert mv.name == new_name
    assert mv.run_id == run_id
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(name, "1")

    client.delete_registered_model(new_name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(new_name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(new_name, "1")
    # The name is free again; a re-created model starts at version 1.
    client.create_registered_model(new_name)
    assert _versions(client, new_name, 1, run_id) == [1]


def test_create_duplicate(client, rest):
    name = _new_model(client, "dup")
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.create_registered_model(name)
    r = rest.post(f"{API}/registered-models/create", {"name": name})
    expect_error(r, "RESOURCE_ALREADY_EXISTS", 400)


def test_rename_onto_an_existing_name(client):
    a = _new_model(client, "ren-a")
    b = _new_model(client, "ren-b")
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.rename_registered_model(a, b)
    assert client.get_registered_model(a).name == a


def test_unknown_model(client, rest):
    name = uniq("missing")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.update_registered_model(name, description="x")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.rename_registered_model(name, uniq("other"))
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_registered_model(name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_latest_versions(name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.create_model_version(name, source="s3://bucket/model")
    r = rest.get(f"{API}/registered-models/get", params={"name": name})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)


def test_unknown_version(client, rest):
    name = _new_model(client, "nover")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(name, "1")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_model_version(name, "7")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version_download_uri(name, "1")
    r = rest.get(f"{API}/model-versions/get", params={"name": name, "version": "1"})
    expect_error(r, "RESOURCE_DOES_NOT_EXIST", 404)
    r = rest.get(f"{API}/model-versions/get", params={"name": name, "version": "one"})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


@pytest.mark.parametrize("bad", ["a/b", "a:b", ""])
def test_invalid_model_names(client, rest, bad):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.create_registered_model(bad)
    r = rest.post(f"{API}/registered-models/create", {"name": bad})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    good = _new_model(client, "rename-bad")
    r = rest.post(f"{API}/registered-models/rename", {"name": good, "new_name": bad})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    if bad:  # the client refuses an empty new name itself
        with raises_mlflow("INVALID_PARAMETER_VALUE"):
            client.rename_registered_model(good, bad)
    assert client.get_registered_model(good).name == good


# ---------------------------------------------------------------------------------------------
# Tags and descriptions


def test_registered_model_tags(client):
    name = _new_model(client, "rmtags", tags={"a": "1"})
    client.set_registered_model_tag(name, "b", "2")
    client.set_registered_model_tag(name, "a", "3")
    assert client.get_registered_model(name).tags == {"a": "3", "b": "2"}
    client.delete_registered_model_tag(name, "a")
    assert client.get_registered_model(name).tags == {"b": "2"}
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.set_registered_model_tag(uniq("missing"), "k", "v")


def test_model_version_without_description_reads_as_empty(client, experiment_id):
    """MLflow answers "" for a version created without a description; its client then has ""."""
    name = _new_model(client, "mvnodesc")
    run_id = _run(client, experiment_id)
    mv = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    assert mv.description == ""
    assert client.get_model_version(name, mv.version).description == ""


def test_model_version_tags_and_description(client, experiment_id):
    name = _new_model(client, "mvtags")
    run_id = _run(client, experiment_id)
    mv = client.create_model_version(
        name, source=f"runs:/{run_id}/model", run_id=run_id, tags={"t0": "x"}, description="d0"
    )
    assert mv.tags == {"t0": "x"}
    assert mv.description == "d0"
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.set_model_version_tag(name, "1", "t0", "y")
    assert client.get_model_version(name, "1").tags == {"t0": "y", "validated": "yes"}
    client.delete_model_version_tag(name, "1", "t0")
    assert client.get_model_version(name, "1").tags == {"validated": "yes"}
    updated = client.update_model_version(name, "1", description="d1")
    assert updated.description == "d1"
    assert client.get_model_version(name, "1").description == "d1"
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.set_model_version_tag(name, "9", "k", "v")


# ---------------------------------------------------------------------------------------------
# Aliases


def test_aliases(client, experiment_id):
    name = _new_model(client, "alias")
    run_id = _run(client, experiment_id)
    assert _versions(client, name, 2, run_id) == [1, 2]

    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    assert int(client.get_model_version_by_alias(name, "challenger").version) == 2
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(name, "1").aliases == ["champion"]

    # Moving an alias takes it off the old version.
    client.set_registered_model_alias(name, "champion", "2")
    assert int(client.get_model_version_by_alias(name, "champion").version) == 2
    assert client.get_model_version(name, "1").aliases == []
    assert sorted(client.get_model_version(name, "2").aliases) == ["challenger", "champion"]

    client.delete_registered_model_alias(name, "champion")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.get_model_version_by_alias(name, "champion")
    assert client.get_registered_model(name).aliases == {"challenger": "2"}

    # `latest` is reserved: it reads the newest version.
    assert int(client.get_model_version_by_alias(name, "latest").version) == 2


def test_alias_errors(client, experiment_id, rest):
    name = _new_model(client, "aliaserr")
    run_id = _run(client, experiment_id)
    _versions(client, name, 1, run_id)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.get_model_version_by_alias(name, "nobody")
    for reserved in ["latest", "LATEST", "v1", "V12"]:
        with raises_mlflow("INVALID_PARAMETER_VALUE", match="reserved"):
            client.set_registered_model_alias(name, reserved, "1")
    r = rest.post(f"{API}/registered-models/alias", {"name": name, "alias": "v3", "version": "1"})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    r = rest.post(f"{API}/registered-models/alias", {"name": name, "alias": "bad alias!", "version": "1"})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    # An alias onto a version that does not exist.
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.set_registered_model_alias(name, "champion", "5")
    assert client.get_registered_model(name).aliases == {}


# ---------------------------------------------------------------------------------------------
# Registering logged models and loading them back


def test_register_model_from_runs_uri(client, experiment_id, rest):
    name = uniq("from-run")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=Scale(2), pip_requirements=PIP)
    run_id = run.info.run_id

    mv = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert mv.name == name
    assert int(mv.version) == 1
    assert mv.run_id == run_id
    assert mv.status == "READY"
    # MLflow 3 resolves a runs:/ URI with no run artifacts to the logged model of that name.
    assert mv.source == f"models:/{info.model_id}"

    wire = _version_json(rest, name, 1)
    assert wire["run_id"] == run_id
    assert wire["model_id"] == info.model_id
    assert wire["current_stage"] == "None"

    logged = client.get_logged_model(info.model_id)
    assert client.get_model_version_download_uri(name, "1") == logged.artifact_location
    links = json.loads(logged.tags["mlflow.modelVersions"])
    assert {"name": name, "version": "1"} in [{"name": e["name"], "version": str(e["version"])} for e in links]

    assert _predict(f"models:/{name}/1") == [2, 4, 6]


def test_register_logged_model_and_load_by_version_alias_and_stage(client, experiment_id, rest):
    name = uniq("from-lm")
    infos = []
    for k in (3, 10):
        with mlflow.start_run(experiment_id=experiment_id):
            infos.append(mlflow.pyfunc.log_model(name="model", python_model=Scale(k), pip_requirements=PIP))
    for expected, info in enumerate(infos, start=1):
        assert info.model_uri.startswith("models:/m-")
        mv = mlflow.register_model(info.model_uri, name)
        assert int(mv.version) == expected
        assert mv.source == info.model_uri
        assert mv.run_id == info.run_id
        wire = _version_json(rest, name, expected)
        assert wire["model_id"] == info.model_id
        assert wire["run_id"] == info.run_id
        logged = client.get_logged_model(info.model_id)
        assert client.get_model_version_download_uri(name, str(expected)) == logged.artifact_location
        links = json.loads(logged.tags["mlflow.modelVersions"])
        assert {"name": name, "version": str(expected)} in [
            {"name": e["name"], "version": str(e["version"])} for e in links
        ]

    assert _predict(f"models:/{name}/1") == [3, 6, 9]
    assert _predict(f"models:/{name}/2") == [10, 20, 30]

    client.set_registered_model_alias(name, "champion", "1")
    assert _predict(f"models:/{name}@champion") == [3, 6, 9]
    client.set_registered_model_alias(name, "champion", "2")
    assert _predict(f"models:/{name}@champion") == [10, 20, 30]

    client.transition_model_version_stage(name, "1", "Production")
    assert _predict(f"models:/{name}/Production") == [3, 6, 9]
    assert _predict(f"models:/{name}/latest") == [10, 20, 30]


def test_register_run_artifacts(client, experiment_id, tmp_path):
    name = uniq("artifacts")
    local = tmp_path / "saved"
    mlflow.pyfunc.save_model(str(local), python_model=Scale(5), pip_requirements=PIP)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifacts(str(local), artifact_path="model")
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert mv.run_id == run.info.run_id
    # The run has an MLmodel at model/: the client registers the run's artifact location itself.
    assert mv.source.endswith("/model")
    assert not mv.source.startswith("runs:")
    assert client.get_model_version_download_uri(name, mv.version) == mv.source
    assert _predict(f"models:/{name}/{mv.version}") == [5, 10, 15]
    dst = mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "dl"))
    assert (Path(dst) / "MLmodel").is_file()

    # A copy into another model points at the same artifacts.
    client.set_model_version_tag(name, mv.version, "validated", "yes")
    copy = uniq("artifacts-copy")
    copied = client.copy_model_version(f"models:/{name}/{mv.version}", copy)
    assert copied.name == copy
    assert int(copied.version) == 1
    assert copied.source == f"models:/{name}/{mv.version}"
    assert copied.run_id == run.info.run_id
    assert copied.tags == {"validated": "yes"}
    assert client.get_model_version_download_uri(copy, "1") == mv.source
    assert _predict(f"models:/{copy}/1") == [5, 10, 15]


# ---------------------------------------------------------------------------------------------
# Version numbers


def test_version_numbers_are_never_reused(client, experiment_id):
    name = _new_model(client, "numbers")
    run_id = _run(client, experiment_id)
    assert _versions(client, name, 3, run_id) == [1, 2, 3]
    client.set_registered_model_alias(name, "doomed", "2")
    client.set_registered_model_alias(name, "kept", "3")

    client.delete_model_version(name, "2")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(name, "2")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_model_version(name, "2")
    # Aliases of the deleted version are gone with it; the others stay.
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.get_model_version_by_alias(name, "doomed")
    assert client.get_registered_model(name).aliases == {"kept": "3"}

    assert _versions(client, name, 1, run_id) == [4]
    found = client.search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in found) == [1, 3, 4]


def test_concurrent_registrations(client, experiment_id, tracking_server):
    name = _new_model(client, "concurrent")
    run_id = _run(client, experiment_id)
    n = 32
    barrier = threading.Barrier(n)
    versions: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def register():
        try:
            own = MlflowClient(tracking_uri=tracking_server.url)
            barrier.wait(timeout=30)
            mv = own.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
            with lock:
                versions.append(int(mv.version))
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a registration hung"
    assert errors == []
    assert sorted(versions) == list(range(1, n + 1))
    found = client.search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in found) == list(range(1, n + 1))
    assert _versions(client, name, 1, run_id) == [n + 1]


# ---------------------------------------------------------------------------------------------
# Stages


def test_stage_transitions(client, experiment_id):
    name = _new_model(client, "stages")
    run_id = _run(client, experiment_id)
    _versions(client, name, 3, run_id)

    mv = client.transition_model_version_stage(name, "1", "Production")
    assert mv.current_stage == "Production"
    client.transition_model_version_stage(name, "3", "staging")  # case-insensitive
    assert client.get_model_version(name, "3").current_stage == "Staging"

    # Without archiving, two versions can be in Production.
    client.transition_model_version_stage(name, "2", "Production")
    assert client.get_model_version(name, "1").current_stage == "Production"
    client.transition_model_version_stage(name, "2", "None")

    mv = client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
    assert mv.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert client.get_model_version(name, "3").current_stage == "Staging"  # other stages untouched

    def latest(stages):
        return sorted((v.current_stage, int(v.version)) for v in client.get_latest_versions(name, stages))

    assert latest(["Production"]) == [("Production", 2)]
    assert latest(["Archived"]) == [("Archived", 1)]
    assert latest(["Staging", "Production"]) == [("Production", 2), ("Staging", 3)]
    assert latest(["None"]) == []
    assert latest(None) == [("Archived", 1), ("Production", 2), ("Staging", 3)]
    assert sorted(
        (v.current_stage, int(v.version)) for v in client.get_registered_model(name).latest_versions
    ) == [("Archived", 1), ("Production", 2), ("Staging", 3)]

    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.transition_model_version_stage(name, "3", "Bogus")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.get_latest_versions(name, ["Bogus"])
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.transition_model_version_stage(name, "9", "Production")
    assert client.get_model_version(name, "3").current_stage == "Staging"


@pytest.mark.plinth_only
def test_archive_existing_versions_needs_an_active_stage(client, experiment_id, rest):
    # differs from MLflow: MLflow refuses too, but with INTERNAL_ERROR (HTTP 500).
    name = _new_model(client, "archive-none")
    run_id = _run(client, experiment_id)
    _versions(client, name, 2, run_id)
    client.transition_model_version_stage(name, "1", "Production")
    for stage in ["None", "Archived"]:
        with raises_mlflow("INVALID_PARAMETER_VALUE"):
            client.transition_model_version_stage(name, "2", stage, archive_existing_versions=True)
    r = rest.post(
        f"{API}/model-versions/transition-stage",
        {"name": name, "version": "2", "stage": "None", "archive_existing_versions": True},
    )
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    # Nothing moved.
    assert client.get_model_version(name, "1").current_stage == "Production"
    assert client.get_model_version(name, "2").current_stage == "None"


# ---------------------------------------------------------------------------------------------
# Search


def test_search_registered_models(client):
    prefix = uniq("search")
    names = [f"{prefix}-{c}" for c in "abcd"]
    for i, n in enumerate(names):
        client.create_registered_model(n, tags={"k": "v" if i % 2 == 0 else "w"})
    client.create_registered_model(uniq("elsewhere"), tags={"k": "v"})
    base = f"name LIKE '{prefix}%'"

    def found(**kwargs):
        return [m.name for m in client.search_registered_models(**kwargs)]

    assert sorted(found(filter_string=base)) == names
    assert found(filter_string=f"name = '{names[1]}'") == [names[1]]
    assert found(filter_string=f"{base} AND tags.k = 'v'", order_by=["name ASC"]) == [names[0], names[2]]
    assert found(filter_string=f"{base} AND tags.`k` != 'v'", order_by=["name ASC"]) == [names[1], names[3]]
    assert found(filter_string=f"name ILIKE '{prefix.upper()}-_'", order_by=["name"]) == names
    assert found(filter_string=base, order_by=["name DESC"]) == names[::-1]
    assert found(filter_string=base, order_by=["name ASC"]) == names

    pages = []
    token = None
    for _ in range(5):
        page = client.search_registered_models(
            filter_string=base, max_results=2, order_by=["name ASC"], page_token=token
        )
        pages.append([m.name for m in page])
        token = page.token
        if not token:
            break
    assert not token, "pagination did not end"
    assert pages[0] == names[:2]
    assert pages[1] == names[2:]
    assert [n for p in pages for n in p] == names

    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_registered_models(max_results=1001)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_registered_models(filter_string="name ~~ 'x'")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_registered_models(filter_string="metrics.auc > 1")


def test_search_registered_models_on_the_wire(rest):
    # The same searches without the prompt clause the MLflow client adds to every search.
    prefix = uniq("wsearch")
    names = [f"{prefix}-{c}" for c in "abc"]
    for i, n in enumerate(names):
        rest.ok("POST", "registered-models/create", {"name": n, "tags": [{"key": "k", "value": "v" if i != 1 else "w"}]})
    base = f"name LIKE '{prefix}%'"

    def found(**params):
        return [m["name"] for m in rest.ok("GET", "registered-models/search", params).get("registered_models", [])]

    assert found(filter=base, order_by="name DESC") == names[::-1]
    assert found(filter=f"{base} AND tags.k = 'v'", order_by="name ASC") == [names[0], names[2]]
    page = rest.ok("GET", "registered-models/search", {"filter": base, "max_results": 2, "order_by": "name ASC"})
    assert [m["name"] for m in page["registered_models"]] == names[:2]
    page = rest.ok(
        "GET",
        "registered-models/search",
        {"filter": base, "max_results": 2, "order_by": "name ASC", "page_token": page["next_page_token"]},
    )
    assert [m["name"] for m in page["registered_models"]] == names[2:]
    assert not page.get("next_page_token")
    r = rest.get(f"{API}/registered-models/search", params={"max_results": 1001})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_search_registered_models_excludes_prompts(client, rest):
    # MLflow's client appends "tag.`mlflow.prompt.is_prompt` != 'true'" to every registered-model
    # search: a model WITHOUT that tag must match it (MLflow's server anti-joins the prompts).
    prefix = uniq("prompts")
    plain, prompt = f"{prefix}-model", f"{prefix}-prompt"
    rest.ok("POST", "registered-models/create", {"name": plain})
    rest.ok(
        "POST",
        "registered-models/create",
        {"name": prompt, "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]},
    )
    wire = rest.ok(
        "GET",
        "registered-models/search",
        {"filter": f"name LIKE '{prefix}%' AND tag.`mlflow.prompt.is_prompt` != 'true'"},
    )
    assert [m["name"] for m in wire.get("registered_models", [])] == [plain]
    assert [m.name for m in client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")] == [plain]


def test_search_model_versions(client, experiment_id):
    name = _new_model(client, "mvsearch")
    other = _new_model(client, "mvsearch-other")
    run_a = _run(client, experiment_id)
    run_b = _run(client, experiment_id)
    _versions(client, name, 2, run_a)
    _versions(client, name, 2, run_b)
    _versions(client, other, 1, run_b)

    def found(**kwargs):
        return [(v.name, int(v.version)) for v in client.search_model_versions(**kwargs)]

    assert sorted(found(filter_string=f"name='{name}'")) == [(name, i) for i in (1, 2, 3, 4)]
    assert sorted(found(filter_string=f"run_id='{run_b}'")) == [(name, 3), (name, 4), (other, 1)]
    assert sorted(found(filter_string=f"name = '{name}' AND run_id = '{run_a}'")) == [(name, 1), (name, 2)]
    assert found(filter_string=f"name = '{name}' AND version_number > 1", order_by=["version_number ASC"]) == [
        (name, 2),
        (name, 3),
        (name, 4),
    ]
    assert found(filter_string=f"name = '{name}'", order_by=["version_number DESC"]) == [
        (name, 4),
        (name, 3),
        (name, 2),
        (name, 1),
    ]

    client.set_model_version_tag(name, "3", "flag", "on")
    assert found(filter_string=f"name = '{name}' AND tags.flag = 'on'") == [(name, 3)]

    pages = []
    token = None
    for _ in range(5):
        page = client.search_model_versions(
            filter_string=f"name = '{name}'", max_results=2, order_by=["version_number DESC"], page_token=token
        )
        pages.append([int(v.version) for v in page])
        token = page.token
        if not token:
            break
    assert not token, "pagination did not end"
    assert pages[:2] == [[4, 3], [2, 1]]

    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_model_versions(filter_string="name = ")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_model_versions(filter_string=f"name = '{name}'", max_results=200_001)


def test_delete_model_with_versions_and_aliases(client, experiment_id):
    name = _new_model(client, "delall")
    run_id = _run(client, experiment_id)
    _versions(client, name, 2, run_id)
    client.set_registered_model_alias(name, "champion", "2")
    client.delete_registered_model(name)
    assert client.search_model_versions(f"name = '{name}'") == []
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version_by_alias(name, "champion")


def test_a_version_may_name_a_run_this_server_does_not_have(client):
    """As MLflow: registries copied between servers name runs tracked elsewhere (issue 24)."""
    name = _new_model(client, "foreignrun")
    source = f"runs:/{MISSING_RUN_ID}/model"
    mv = client.create_model_version(name, source=source, run_id=MISSING_RUN_ID)
    assert (mv.version, mv.source, mv.run_id) == ("1", source, MISSING_RUN_ID)
    again = client.get_model_version(name, "1")
    assert (again.source, again.run_id) == (source, MISSING_RUN_ID)
    # Nothing resolves the source against a run here: the download URI is the source as given.
    assert client.get_model_version_download_uri(name, "1") == source
    # A mismatching run_id is still refused.
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.create_model_version(name, source=source, run_id="f" * 32)


@pytest.mark.plinth_only
def test_a_version_from_an_unknown_run_has_no_run_facts(tracking_server, client):
    """No run linkage: lineage says the run is unavailable and a gate over run facts fails closed."""
    name = _new_model(client, "foreigngate")
    client.create_model_version(name, source=f"runs:/{MISSING_RUN_ID}/model", run_id=MISSING_RUN_ID)
    native = Native(tracking_server.url)
    lineage = native.ok("GET", f"/registered-models/{name}/versions/1/lineage")
    assert (lineage["run"], lineage["run_state"]) == (None, "UNAVAILABLE")
    native.ok("PUT", f"/registered-models/{name}/gates/champion", {"conditions": ["metrics.auc >= 0.5"]})
    with raises_mlflow("INVALID_STATE_TRANSITION", match="metrics.auc"):
        client.set_registered_model_alias(name, "champion", "1")
    # A version with a run here reads FOUND.
    run_id = client.create_run(client.create_experiment(uniq("fr"))).info.run_id
    client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    assert native.ok("GET", f"/registered-models/{name}/versions/2/lineage")["run_state"] == "FOUND"


@pytest.mark.plinth_only
def test_a_file_source_on_another_host_is_refused_with_the_reason(client):
    """MLflow answers 500 for it; Plinth answers 400 and says why (docs/registry.md)."""
    name = _new_model(client, "remotefile")
    with raises_mlflow("INVALID_PARAMETER_VALUE", match="may not name a remote host"):
        client.create_model_version(name, source="file://fileserver/models/churn")
