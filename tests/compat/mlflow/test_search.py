"""runs/search through the real client: the whole filter grammar, ordering, views, pagination."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, ViewType

from plinth_compat import expect_error, raises_mlflow, uniq


@dataclass
class Corpus:
    exp: str
    other_exp: str
    ids: dict[str, str]  # run name -> run id

    def names(self, runs) -> list[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id.get(r.info.run_id, r.info.run_id) for r in runs]


@pytest.fixture(scope="module")
def corpus(shared_server) -> Corpus:
    """Five runs with known data (one of them deleted), plus one run in a second experiment.

    name     start  end   status    user   acc  loss score   params                tags
    alpha    1000   2000  FINISHED  alice  0.9  0.3  1.0     model=rf lr=0.1      team=a env=prod
    beta     3000   -     RUNNING   bob    0.7  0.5  NaN     model=cnn            team=b
    gamma    2000   2500  FAILED    alice  0.9  -    2.0     model=RF             env=dev
    delta    4000   4500  KILLED    carol  -    -    -       "my param"=x         "my tag"=y, metric "my metric"=5
    epsilon  5000   -     RUNNING   dave   1.0  -    -       model=rf  (deleted)
    """
    c = MlflowClient(shared_server.url)
    exp = c.create_experiment(uniq("search"))
    other = c.create_experiment(uniq("search-other"))
    ids: dict[str, str] = {}

    def run(name, start, user, tags=None):
        r = c.create_run(exp, start_time=start, run_name=name, tags={"mlflow.user": user, **(tags or {})})
        ids[name] = r.info.run_id
        return r.info.run_id

    a = run("alpha", 1000, "alice", {"team": "a", "env": "prod"})
    c.log_metric(a, "acc", 0.9, timestamp=1, step=0)
    c.log_metric(a, "loss", 0.3, timestamp=1, step=0)
    c.log_metric(a, "score", 1.0, timestamp=1, step=0)
    c.log_param(a, "model", "rf")
    c.log_param(a, "lr", "0.1")
    c.set_terminated(a, "FINISHED", end_time=2000)
    c.log_inputs(
        a,
        datasets=[
            DatasetInput(
                Dataset(name="train-ds", digest="d1", source_type="local", source=json.dumps({"uri": "x"})),
                tags=[InputTag("mlflow.data.context", "training")],
            )
        ],
    )

    b = run("beta", 3000, "bob", {"team": "b"})
    c.log_metric(b, "acc", 0.7, timestamp=1, step=0)
    c.log_metric(b, "loss", 0.5, timestamp=1, step=0)
    c.log_metric(b, "score", float("nan"), timestamp=1, step=0)
    c.log_param(b, "model", "cnn")

    g = run("gamma", 2000, "alice", {"env": "dev"})
    c.log_metric(g, "acc", 0.9, timestamp=1, step=0)
    c.log_metric(g, "score", 2.0, timestamp=1, step=0)
    c.log_param(g, "model", "RF")
    c.set_terminated(g, "FAILED", end_time=2500)

    d = run("delta", 4000, "carol", {"my tag": "y"})
    c.log_param(d, "my param", "x")
    c.log_metric(d, "my metric", 5.0, timestamp=1, step=0)
    c.set_terminated(d, "KILLED", end_time=4500)

    e = run("epsilon", 5000, "dave")
    c.log_metric(e, "acc", 1.0, timestamp=1, step=0)
    c.log_param(e, "model", "rf")
    c.delete_run(e)

    o = c.create_run(other, start_time=6000, run_name="other", tags={"mlflow.user": "alice"})
    ids["other"] = o.info.run_id
    c.log_metric(o.info.run_id, "acc", 0.95, timestamp=1, step=0)
    c.log_param(o.info.run_id, "model", "rf")
    return Corpus(exp=exp, other_exp=other, ids=ids)


def search(client, corpus, filter_string="", order_by=None, view=ViewType.ACTIVE_ONLY, exps=None):
    runs = client.search_runs(
        exps or [corpus.exp], filter_string=filter_string, run_view_type=view, order_by=order_by
    )
    return corpus.names(runs)


def sorted_search(client, corpus, filter_string, **kw):
    return sorted(search(client, corpus, filter_string, **kw))


# ----------------------------------------------------------------------------------------------
# Filters


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("metrics.acc = 0.9", ["alpha", "gamma"]),
        ("metrics.acc != 0.9", ["beta"]),
        ("metrics.acc > 0.7", ["alpha", "gamma"]),
        ("metrics.acc >= 0.7", ["alpha", "beta", "gamma"]),
        ("metrics.acc < 0.9", ["beta"]),
        ("metrics.acc <= 0.9", ["alpha", "beta", "gamma"]),
        ("metrics.loss < 1", ["alpha", "beta"]),
        ("metrics.acc > 0.8 AND metrics.loss < 0.4", ["alpha"]),
        ("metric.acc = 0.7", ["beta"]),
        ("metrics.acc > -1e308", ["alpha", "beta", "gamma"]),
        ("metrics.missing > 0", []),
    ],
)
def test_filter_metrics(client, corpus, filter_string, expected):
    assert sorted_search(client, corpus, filter_string) == expected


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("params.model = 'rf'", ["alpha"]),
        ("params.model != 'rf'", ["beta", "gamma"]),
        ("params.model LIKE 'r%'", ["alpha"]),
        ("params.model LIKE '%F'", ["gamma"]),
        ("params.model LIKE '_n_'", ["beta"]),
        ("params.model ILIKE 'r%'", ["alpha", "gamma"]),
        ("params.model ILIKE '%N%'", ["beta"]),
        ("params.model IS NULL", ["delta"]),
        ("params.model IS NOT NULL", ["alpha", "beta", "gamma"]),
        ("params.lr = '0.1'", ["alpha"]),
        ("param.model = 'cnn'", ["beta"]),
        ("parameters.model = 'cnn'", ["beta"]),
        ("params.model = 'RF' AND params.lr IS NULL", ["gamma"]),
    ],
)
def test_filter_params(client, corpus, filter_string, expected):
    assert sorted_search(client, corpus, filter_string) == expected


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("tags.team = 'a'", ["alpha"]),
        ("tags.team != 'a'", ["beta"]),
        ("tags.env LIKE 'p%'", ["alpha"]),
        ("tags.env ILIKE 'D%'", ["gamma"]),
        ("tags.team IS NULL", ["delta", "gamma"]),
        ("tags.team IS NOT NULL", ["alpha", "beta"]),
        ("tags.mlflow.runName = 'beta'", ["beta"]),
        ("tags.`mlflow.user` = 'alice'", ["alpha", "gamma"]),
        ("tag.team = 'b'", ["beta"]),
    ],
)
def test_filter_tags(client, corpus, filter_string, expected):
    assert sorted_search(client, corpus, filter_string) == expected


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("metrics.`my metric` = 5", ["delta"]),
        ('metrics."my metric" >= 5', ["delta"]),
        ("params.`my param` = 'x'", ["delta"]),
        ('params."my param" = \'x\'', ["delta"]),
        ("tags.`my tag` = 'y'", ["delta"]),
        ('tags."my tag" LIKE \'%\'', ["delta"]),
    ],
)
def test_filter_quoted_keys(client, corpus, filter_string, expected):
    assert sorted_search(client, corpus, filter_string) == expected


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("attributes.run_name = 'alpha'", ["alpha"]),
        ("attributes.run_name != 'alpha'", ["beta", "delta", "gamma"]),
        ("attributes.run_name LIKE '%ta'", ["beta", "delta"]),
        ("attributes.run_name ILIKE 'ALP%'", ["alpha"]),
        ("run_name = 'gamma'", ["gamma"]),
        ("attributes.`Run name` = 'gamma'", ["gamma"]),
        ("attributes.status = 'FINISHED'", ["alpha"]),
        ("attributes.status != 'RUNNING'", ["alpha", "delta", "gamma"]),
        ("status LIKE 'F%'", ["alpha", "gamma"]),
        ("attributes.user_id = 'alice'", ["alpha", "gamma"]),
        ("attributes.user_id != 'alice'", ["beta", "delta"]),
        ("attributes.start_time > 2000", ["beta", "delta"]),
        ("attributes.start_time >= 2000", ["beta", "delta", "gamma"]),
        ("attributes.start_time = 1000", ["alpha"]),
        ("attributes.start_time != 1000", ["beta", "delta", "gamma"]),
        ("attributes.start_time < 2000", ["alpha"]),
        ("attributes.start_time <= 3000", ["alpha", "beta", "gamma"]),
        ("attributes.end_time <= 2500", ["alpha", "gamma"]),
        ("attributes.end_time > 2500", ["delta"]),
        ("attributes.created >= 3000", ["beta", "delta"]),
        ("attr.status = 'KILLED'", ["delta"]),
        ("run.status = 'KILLED'", ["delta"]),
        ("attributes.start_time > 1000 AND attributes.user_id = 'alice'", ["gamma"]),
    ],
)
def test_filter_attributes(client, corpus, filter_string, expected):
    assert sorted_search(client, corpus, filter_string) == expected


def test_filter_run_id_in(client, corpus):
    a, b, g = corpus.ids["alpha"], corpus.ids["beta"], corpus.ids["gamma"]
    assert sorted_search(client, corpus, f"attributes.run_id IN ('{a}', '{b}')") == ["alpha", "beta"]
    assert sorted_search(client, corpus, f"attributes.run_id NOT IN ('{a}', '{b}')") == ["delta", "gamma"]
    assert sorted_search(client, corpus, f"attributes.run_id = '{g}'") == ["gamma"]
    assert sorted_search(client, corpus, f"run_id IN ('{g}') AND metrics.acc > 0") == ["gamma"]


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("datasets.name = 'train-ds'", ["alpha"]),
        ("datasets.digest = 'd1'", ["alpha"]),
        ("datasets.context = 'training'", ["alpha"]),
        ("datasets.name LIKE 'train%'", ["alpha"]),
        ("datasets.name IN ('train-ds', 'nope')", ["alpha"]),
        ("datasets.name = 'nope'", []),
        ("dataset.name = 'train-ds' AND metrics.acc > 0.5", ["alpha"]),
    ],
)
def test_filter_datasets(client, corpus, filter_string, expected):
    assert sorted_search(client, corpus, filter_string) == expected


def test_filter_keywords_are_case_insensitive(client, corpus):
    assert sorted_search(client, corpus, "params.model like 'r%' and metrics.acc > 0") == ["alpha"]
    assert sorted_search(client, corpus, "params.model is null") == ["delta"]


@pytest.mark.parametrize(
    "filter_string",
    [
        "metrics.acc",
        "metrics.acc >",
        "metrics.acc > 'abc'",
        "metrics.acc LIKE '0.9'",
        "params.model > 'a'",
        "tags.team < 'b'",
        "params.model = rf",
        "foo.bar = 1",
        "attributes.nonexistent = 'x'",
        "attributes.start_time = 'abc'",
        "attributes.status > 'A'",
        "metrics.acc > 0 OR metrics.acc < 0",
        "(metrics.acc > 0)",
        "attributes.start_time IS NULL",
        "datasets.foo = 'x'",
        "params.model IN ('rf')",
        "metrics.acc IS NULL",
    ],
)
def test_invalid_filters(client, rest, corpus, filter_string):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_runs([corpus.exp], filter_string=filter_string)
    r = rest.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [corpus.exp], "filter": filter_string})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


# ----------------------------------------------------------------------------------------------
# Ordering


def test_default_order_is_start_time_desc(client, corpus):
    assert search(client, corpus) == ["delta", "beta", "gamma", "alpha"]


@pytest.mark.parametrize(
    "order_by, expected",
    [
        (["metrics.acc ASC"], ["beta", "gamma", "alpha", "delta"]),
        # Ties (alpha, gamma have acc 0.9) fall back to start_time DESC, then run_id.
        (["metrics.acc DESC"], ["gamma", "alpha", "beta", "delta"]),
        (["metrics.acc"], ["beta", "gamma", "alpha", "delta"]),
        # NaN sorts after every number and before missing values, in both directions.
        (["metrics.score ASC"], ["alpha", "gamma", "beta", "delta"]),
        (["metrics.score DESC"], ["gamma", "alpha", "beta", "delta"]),
        # Missing values sort last in both directions; byte-wise string order ('RF' < 'cnn' < 'rf').
        (["params.model ASC"], ["gamma", "beta", "alpha", "delta"]),
        (["params.model DESC"], ["alpha", "beta", "gamma", "delta"]),
        (["tags.team ASC"], ["alpha", "beta", "delta", "gamma"]),
        (["tags.team DESC"], ["beta", "alpha", "delta", "gamma"]),
        (["attributes.run_name ASC"], ["alpha", "beta", "delta", "gamma"]),
        (["attributes.run_name DESC"], ["gamma", "delta", "beta", "alpha"]),
        (["attributes.start_time ASC"], ["alpha", "gamma", "beta", "delta"]),
        (["attributes.start_time DESC"], ["delta", "beta", "gamma", "alpha"]),
        (["start_time"], ["alpha", "gamma", "beta", "delta"]),
        (["attributes.end_time ASC"], ["alpha", "gamma", "delta", "beta"]),
        (["attributes.end_time DESC"], ["delta", "gamma", "alpha", "beta"]),
        (["attributes.status ASC"], ["gamma", "alpha", "delta", "beta"]),
        (["attributes.user_id DESC"], ["delta", "beta", "gamma", "alpha"]),
        (["attributes.created DESC"], ["delta", "beta", "gamma", "alpha"]),
        (["params.model ASC", "metrics.acc DESC"], ["gamma", "beta", "alpha", "delta"]),
        (["tags.env DESC", "attributes.run_name ASC"], ["alpha", "gamma", "beta", "delta"]),
        (["metrics.`my metric` DESC"], ["delta", "beta", "gamma", "alpha"]),
    ],
)
def test_order_by(client, corpus, order_by, expected):
    assert search(client, corpus, order_by=order_by) == expected


def test_ties_are_broken_by_run_id_ascending(client):
    exp = client.create_experiment(uniq("ties"))
    ids = []
    for i in range(6):
        run_id = client.create_run(exp, start_time=777).info.run_id
        client.log_metric(run_id, "same", 1.0, timestamp=1, step=0)
        client.log_param(run_id, "p", "v")
        ids.append(run_id)
    want = sorted(ids)
    for order in (None, ["metrics.same DESC"], ["metrics.same ASC"], ["params.p"], ["start_time"]):
        got = [r.info.run_id for r in client.search_runs([exp], order_by=order)]
        assert got == want, order


def test_invalid_order_by(client, corpus):
    for bad in (["metrics.acc SIDEWAYS"], ["nope.acc"], ["attributes.nonexistent"], ["metrics.acc DESC, x"]):
        with raises_mlflow("INVALID_PARAMETER_VALUE"):
            client.search_runs([corpus.exp], order_by=bad)


# ----------------------------------------------------------------------------------------------
# Views, experiments, pagination, limits


def test_run_view_types(client, corpus):
    assert sorted_search(client, corpus, "", view=ViewType.ACTIVE_ONLY) == ["alpha", "beta", "delta", "gamma"]
    assert sorted_search(client, corpus, "", view=ViewType.DELETED_ONLY) == ["epsilon"]
    assert sorted_search(client, corpus, "", view=ViewType.ALL) == [
        "alpha",
        "beta",
        "delta",
        "epsilon",
        "gamma",
    ]
    assert sorted_search(client, corpus, "params.model = 'rf'", view=ViewType.ALL) == ["alpha", "epsilon"]


def test_search_across_experiments(client, corpus):
    got = sorted_search(client, corpus, "params.model = 'rf'", exps=[corpus.exp, corpus.other_exp])
    assert got == ["alpha", "other"]
    got = search(client, corpus, "metrics.acc > 0.8", order_by=["metrics.acc DESC"], exps=[corpus.other_exp, corpus.exp])
    assert got == ["other", "gamma", "alpha"]
    assert search(client, corpus, "", exps=[corpus.other_exp]) == ["other"]


def test_search_empty_and_missing_experiments(client, corpus):
    empty = client.create_experiment(uniq("empty"))
    assert client.search_runs([empty]) == []
    # An experiment id that does not exist just has no runs.
    assert client.search_runs(["987654321"]) == []


def test_run_data_in_search_results(client, corpus):
    [run] = client.search_runs([corpus.exp], filter_string="attributes.run_name = 'alpha'")
    assert run.info.status == "FINISHED"
    assert run.info.end_time == 2000
    assert run.info.user_id == "alice"
    assert run.data.metrics == {"acc": 0.9, "loss": 0.3, "score": 1.0}
    assert run.data.params == {"model": "rf", "lr": "0.1"}
    assert run.data.tags["team"] == "a"
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["train-ds"]


def test_pagination_sees_every_run_exactly_once(client):
    exp = client.create_experiment(uniq("paging"))
    ids = set()
    for i in range(13):
        run_id = client.create_run(exp, start_time=1000 + (i % 4)).info.run_id
        client.log_metric(run_id, "m", float(i % 3), timestamp=1, step=0)
        ids.add(run_id)
    for order in (None, ["metrics.m DESC"], ["attributes.run_name ASC"], ["start_time ASC"]):
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            page = client.search_runs([exp], max_results=4, page_token=token, order_by=order)
            assert len(page) <= 4
            seen.extend(r.info.run_id for r in page)
            pages += 1
            token = page.token
            if not token:
                break
            assert pages < 20
        assert len(seen) == 13 and set(seen) == ids, order
        # Paging does not change the order.
        full = [r.info.run_id for r in client.search_runs([exp], max_results=100, order_by=order)]
        assert seen == full, order


def test_max_results_limit(client, rest, corpus):
    r = rest.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [corpus.exp], "max_results": 50001})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.search_runs([corpus.exp], max_results=50001)
    assert len(client.search_runs([corpus.exp], max_results=50000)) == 4
    assert len(client.search_runs([corpus.exp], max_results=1)) == 1


def test_bad_page_token(rest, corpus):
    r = rest.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [corpus.exp], "page_token": "%%%garbage"})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_fluent_search_runs_list(corpus):
    import mlflow

    runs = mlflow.search_runs(
        experiment_ids=[corpus.exp], filter_string="metrics.acc >= 0.9", output_format="list"
    )
    assert sorted(corpus.names(runs)) == ["alpha", "gamma"]
