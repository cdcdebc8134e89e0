"""The real Feast SDK, pyarrow and the MLflow client against the real Plinth binary.

- Feast's `FeatureStore` with `online_store: {type: remote, path: <plinth>}` reads online
  features from Plinth (references, feature services, full feature names), pushes and
  materializes into it (`/write-to-online-store`).
- Feast's HTTP feature-server shapes (`/get-online-features`, `/push`) answer as Feast's do.
- Historical retrieval (`plinth features get-historical`, Parquet written and read by pyarrow)
  matches an independent pandas reference row for row.
- A training dataset logged to a run shows up as an MLflow dataset input, and in the lineage
  of the feature view.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    AUTH_ENV,
    CREDENTIALS,
    DRIVERS,
    NULL_DRIVER,
    STALE_DRIVER,
    TTL,
    World,
    feast_auth,
    feast_objects,
    latest_rows,
    run_plinth,
)

FEATURES = ["driver_hourly:conv_rate", "driver_hourly:avg_trips"]
UNKNOWN = 9999


def _none_if_nan(v):
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if math.isnan(v) else float(v)
    return v


def expected_online(world, drivers):
    ref = latest_rows(world.stats)
    conv, trips = [], []
    for d in drivers:
        if d not in ref.index or d == STALE_DRIVER:
            conv.append(None)
            trips.append(None)
        else:
            conv.append(_none_if_nan(ref.loc[d, "conv_rate"]))
            trips.append(_none_if_nan(ref.loc[d, "avg_trips"]))
    return conv, trips


# ---------------------------------------------------------------------------------------------
# Online reads through Feast's SDK


def test_feast_sdk_reads_online_features(world, feast_store):
    drivers = DRIVERS + [UNKNOWN]
    got = feast_store.get_online_features(features=FEATURES, entity_rows=[{"driver_id": d} for d in drivers]).to_dict()
    conv, trips = expected_online(world, drivers)
    assert got["driver_id"] == drivers
    assert [_none_if_nan(v) for v in got["conv_rate"]] == conv
    assert [_none_if_nan(v) for v in got["avg_trips"]] == trips
    # The stale driver has rows, but all older than the TTL: Plinth does not serve them.
    assert got["conv_rate"][drivers.index(STALE_DRIVER)] is None


def test_feast_sdk_feature_service_and_full_feature_names(world, feast_store):
    drivers = [1001, 1002, UNKNOWN]
    service = feast_store.get_feature_service("driver_ranking")
    got = feast_store.get_online_features(
        features=service, entity_rows=[{"driver_id": d} for d in drivers], full_feature_names=True
    ).to_dict()
    conv, trips = expected_online(world, drivers)
    assert set(got) == {"driver_id", "driver_hourly__conv_rate", "driver_hourly__avg_trips"}
    assert [_none_if_nan(v) for v in got["driver_hourly__conv_rate"]] == conv
    assert [_none_if_nan(v) for v in got["driver_hourly__avg_trips"]] == trips


def test_feature_server_shape_and_statuses(world):
    drivers = [1001, NULL_DRIVER, STALE_DRIVER, UNKNOWN]
    body = {"features": ["driver_hourly:avg_trips", "driver_hourly:conv_rate"], "entities": {"driver_id": drivers}}
    r = world.http.post(f"{world.server.url}/get-online-features", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()
    # Join keys first, then the features in the order asked.
    assert answer["metadata"]["feature_names"] == ["driver_id", "avg_trips", "conv_rate"]
    keys, trips, conv = answer["results"]
    assert keys["values"] == drivers
    assert keys["statuses"] == ["PRESENT"] * 4
    assert conv["statuses"] == ["PRESENT", "NULL_VALUE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert trips["statuses"] == ["PRESENT", "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert conv["values"][1] is None and conv["values"][2] is None and conv["values"][3] is None
    ref = latest_rows(world.stats)
    newest = ref.loc[1001, "event_timestamp"]
    assert datetime.fromisoformat(conv["event_timestamps"][0].replace("Z", "+00:00")) == newest.to_pydatetime()


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"features": ["nope:conv_rate"], "entities": {"driver_id": [1]}}, 404, "nope"),
        ({"features": ["driver_hourly:nope"], "entities": {"driver_id": [1]}}, 404, "nope"),
        ({"features": FEATURES, "entities": {"driver_id": ["not-a-number"]}}, 400, "driver_id"),
        ({"features": FEATURES, "entities": {"rider_id": [1]}}, 400, "driver_id"),
        ({"feature_service": "nope", "entities": {"driver_id": [1]}}, 404, "nope"),
    ],
)
def test_online_errors_are_client_errors(world, body, status, needle):
    r = world.http.post(f"{world.server.url}/get-online-features", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"]


def test_feast_sdk_reports_a_server_refusal(world, feast_store):
    with pytest.raises(Exception, match="nope"):
        feast_store.get_online_features(features=["driver_hourly:nope"], entity_rows=[{"driver_id": 1001}]).to_dict()


# ---------------------------------------------------------------------------------------------
# Writes through Feast's SDK (its remote online store posts to /write-to-online-store)


def test_feast_sdk_push_never_overwrites_newer(world, feast_store):
    from feast.data_source import PushMode

    driver = 2001
    t = world.now - timedelta(hours=1)

    def push(ts, conv, trips):
        df = pd.DataFrame(
            {
                "driver_id": [driver],
                "event_timestamp": [pd.Timestamp(ts)],
                "created": [pd.Timestamp(ts)],
                "conv_rate": [conv],
                "avg_trips": [trips],
            }
        )
        feast_store.push("driver_stats_push", df, to=PushMode.ONLINE)

    def read():
        got = feast_store.get_online_features(features=FEATURES, entity_rows=[{"driver_id": driver}]).to_dict()
        return got["conv_rate"][0], got["avg_trips"][0]

    assert read() == (None, None)
    push(t, 0.25, 11)
    assert read() == (0.25, 11)
    # Older than what is stored: acknowledged, not applied.
    push(t - timedelta(hours=2), 0.75, 99)
    assert read() == (0.25, 11)
    push(t + timedelta(minutes=30), 0.5, 12)
    assert read() == (0.5, 12)


def test_feast_sdk_materializes_into_plinth(world, tmp_path):
    """A fresh Plinth server that never materialized: Feast's own `materialize` (its file offline
    store reading the same Parquet) writes the newest rows into Plinth, which then serves them."""
    from feast import FeatureStore, RepoConfig

    from plinth_compat import start_server

    srv = start_server(tmp_path / "plinth-data", env=AUTH_ENV if world.auth else None)
    http = requests.Session()
    if world.auth:
        CREDENTIALS[srv.url] = (ADMIN, ADMIN_PASSWORD)
        http.auth = (ADMIN, ADMIN_PASSWORD)
    fresh = World(server=srv, repo=world.repo, data_dir=world.data_dir, now=world.now, stats=world.stats, auth=world.auth, http=http)
    try:
        run_plinth(srv, "features", "apply", str(world.repo))
        config = RepoConfig(
            project="plinth_materialize",
            provider="local",
            registry=str(tmp_path / "registry.db"),
            online_store={"type": "remote", "path": srv.url},
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=str(tmp_path),
            **feast_auth(fresh),
        )
        store = FeatureStore(config=config)
        store.apply(feast_objects(world.data_dir / "part-0.parquet"))
        before = http.post(
            f"{srv.url}/get-online-features", json={"features": FEATURES, "entities": {"driver_id": [1001]}}, timeout=30
        ).json()
        assert before["results"][1]["statuses"] == ["NOT_FOUND"]
        store.materialize(world.now - TTL, world.now + timedelta(hours=1))
        drivers = [d for d in DRIVERS if d != STALE_DRIVER]
        got = store.get_online_features(features=FEATURES, entity_rows=[{"driver_id": d} for d in drivers]).to_dict()
        conv, trips = expected_online(world, drivers)
        assert [_none_if_nan(v) for v in got["conv_rate"]] == conv
        assert [_none_if_nan(v) for v in got["avg_trips"]] == trips
    finally:
        problems = srv.stop()
        assert not problems, srv.output()[-4000:]


# ---------------------------------------------------------------------------------------------
# Historical retrieval, checked against a pandas reference


def reference_historical(stats: pd.DataFrame, entities: pd.DataFrame) -> pd.DataFrame:
    """For each entity row: the row of the same driver with T - ttl <= event_timestamp <= T,
    the latest by (event_timestamp, created); nothing when none."""
    out = []
    by_driver = {d: g for d, g in stats.groupby("driver_id")}
    for _, e in entities.iterrows():
        g = by_driver.get(e.driver_id)
        conv = trips = None
        if g is not None:
            t = e.event_timestamp
            window = g[(g.event_timestamp <= t) & (g.event_timestamp >= t - TTL)]
            if len(window):
                best = window.sort_values(["event_timestamp", "created"]).iloc[-1]
                conv, trips = _none_if_nan(best.conv_rate), _none_if_nan(best.avg_trips)
        out.append((conv, trips))
    return pd.DataFrame(out, columns=["conv_rate", "avg_trips"])


def entity_rows(world, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stats = world.stats
    rows = []
    for d in DRIVERS:
        times = stats[stats.driver_id == d].event_timestamp.sort_values()
        first, last = times.iloc[0], times.iloc[-1]
        some = times.iloc[int(rng.integers(0, len(times)))]
        rows += [
            (d, some),  # exactly at a feature row
            (d, some + timedelta(minutes=17)),
            (d, first - timedelta(seconds=1)),  # before the first row
            (d, first + TTL),  # the first row is exactly at T - ttl: included
            (d, first + TTL + timedelta(seconds=1)),  # one second past: excluded
            (d, last + timedelta(days=3)),  # everything outside the TTL
        ]
    rows += [(UNKNOWN, world.now)]
    rows += rows[:5]  # duplicated entity rows come back once each
    df = pd.DataFrame(rows, columns=["driver_id", "event_timestamp"])
    df["label"] = np.arange(len(df), dtype=np.int64)
    return df


def test_historical_matches_pandas_reference(world, tmp_path):
    entities = entity_rows(world)
    entity_path = tmp_path / "entities.parquet"
    pq.write_table(
        pa.Table.from_pandas(
            entities,
            schema=pa.schema([("driver_id", pa.int64()), ("event_timestamp", pa.timestamp("us", tz="UTC")), ("label", pa.int64())]),
            preserve_index=False,
        ),
        entity_path,
    )
    out = tmp_path / "train.parquet"
    run_plinth(world.server, "features", "get-historical", "--entities", str(entity_path), "--features", ",".join(FEATURES), "--out", str(out))
    table = pq.read_table(out)
    assert table.num_rows == len(entities)
    assert table.column_names[:3] == ["driver_id", "event_timestamp", "label"]
    assert pa.types.is_float64(table.schema.field("conv_rate").type)
    assert pa.types.is_int64(table.schema.field("avg_trips").type)
    got = table.to_pandas()
    # Input order and pass-through columns are kept.
    assert got["label"].tolist() == entities["label"].tolist()
    assert got["driver_id"].tolist() == entities["driver_id"].tolist()
    want = reference_historical(world.stats, entities)
    assert [_none_if_nan(v) for v in got["conv_rate"]] == [_none_if_nan(v) for v in want["conv_rate"].tolist()]
    assert [_none_if_nan(v) for v in got["avg_trips"]] == [None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v) for v in want["avg_trips"]]


def test_historical_csv_and_full_feature_names(world, tmp_path):
    entities = entity_rows(world, seed=5)
    csv = tmp_path / "entities.csv"
    entities.assign(event_timestamp=entities.event_timestamp.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(csv, index=False)
    out = tmp_path / "train.parquet"
    run_plinth(world.server, "features", "get-historical", "--entities", str(csv), "--feature-service", "driver_ranking", "--full-feature-names", "--out", str(out))
    got = pq.read_table(out).to_pandas()
    assert "driver_hourly__conv_rate" in got.columns and "driver_hourly__avg_trips" in got.columns
    want = reference_historical(world.stats, entities)
    assert [_none_if_nan(v) for v in got["driver_hourly__conv_rate"]] == [_none_if_nan(v) for v in want["conv_rate"].tolist()]


def test_http_push_to_online_and_offline_is_seen_by_retrieval(world, tmp_path):
    driver = 3001
    t = (world.now - timedelta(hours=2)).replace(tzinfo=None)
    body = {
        "push_source_name": "driver_stats_push",
        "df": {
            "driver_id": [driver],
            "event_timestamp": [t.isoformat() + "Z"],
            "created": [t.isoformat() + "Z"],
            "conv_rate": [0.625],
            "avg_trips": [42],
        },
        "to": "online_and_offline",
    }
    r = world.http.post(f"{world.server.url}/push", json=body, timeout=30)
    assert r.status_code == 200, r.text
    online = world.http.post(
        f"{world.server.url}/get-online-features", json={"features": FEATURES, "entities": {"driver_id": [driver]}}, timeout=30
    ).json()
    assert online["results"][1]["values"] == [0.625] and online["results"][2]["values"] == [42]
    entities = pa.table(
        {"driver_id": pa.array([driver, driver], pa.int64()), "event_timestamp": pa.array([t + timedelta(minutes=5), t - timedelta(minutes=5)], pa.timestamp("us", tz="UTC"))}
    )
    pq.write_table(entities, tmp_path / "e.parquet")
    run_plinth(world.server, "features", "get-historical", "--entities", str(tmp_path / "e.parquet"), "--features", ",".join(FEATURES), "--out", str(tmp_path / "o.parquet"))
    got = pq.read_table(tmp_path / "o.parquet").to_pydict()
    assert got["conv_rate"] == [0.625, None]
    assert got["avg_trips"] == [42, None]
    # The pushed rows are a new Parquet file in the source directory, readable by pyarrow.
    files = sorted(p.name for p in world.data_dir.glob("*.parquet"))
    assert len(files) >= 2
    assert pq.read_table(world.data_dir).num_rows == len(world.stats) + 1  # + the pushed row


# ---------------------------------------------------------------------------------------------
# Lineage and metrics


def test_training_dataset_logged_to_mlflow_run(world, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    if world.auth:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", world.http.auth[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", world.http.auth[1])
    client = MlflowClient(tracking_uri=world.server.url)
    exp = client.create_experiment(f"feast-lineage-{datetime.now(timezone.utc).timestamp()}")
    run = client.create_run(exp)
    entities = entity_rows(world)
    path = tmp_path / "entities.parquet"
    pq.write_table(pa.Table.from_pandas(entities, preserve_index=False), path)
    name = f"train_{run.info.run_id[:8]}"
    out = run_plinth(
        world.server,
        "features", "get-historical", "--entities", str(path), "--features", ",".join(FEATURES),
        "--out", str(tmp_path / "train.parquet"), "--dataset-name", name, "--log-to-run", run.info.run_id,
    )
    assert "Logged training dataset" in out
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert ds.name == name
    assert ds.source_type == "plinth_feature_store"
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags["mlflow.data.context"] == "training"
    assert '"conv_rate"' in ds.schema and '"double"' in ds.schema
    assert json.loads(ds.profile)["num_rows"] == len(entities)
    lineage = world.http.get(f"{world.server.url}/api/plinth/v1/features/lineage/feature_view/driver_hourly", timeout=30).json()
    mine = [d for d in lineage["training_datasets"] if d["name"] == name]
    assert len(mine) == 1
    assert [r["run_id"] for r in mine[0]["runs"]] == [run.info.run_id]
    assert tags["plinth.training_dataset_id"] == mine[0]["id"]


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples


def test_metrics_show_freshness_and_online_latency(world):
    world.http.post(f"{world.server.url}/get-online-features", json={"features": FEATURES, "entities": {"driver_id": [1001]}}, timeout=30)
    r = world.http.get(f"{world.server.url}/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = parse_prometheus(r.text)
    view = frozenset({("view", "driver_hourly")})
    newest = samples[("plinth_feature_view_newest_event_timestamp_seconds", view)]
    assert abs(newest - world.now.timestamp()) < 3 * 3600 + 1
    age = samples[("plinth_feature_view_freshness_age_seconds", view)]
    assert 0 <= age < 4 * 3600
    count = [v for (n, labels), v in samples.items() if n == "plinth_feature_online_read_duration_seconds_count"]
    assert count and sum(count) >= 1
    buckets = [labels for (n, labels), _ in samples.items() if n == "plinth_feature_online_read_duration_seconds_bucket"]
    assert any(("le", "0.001") in labels for labels in buckets)
    routes = {dict(labels).get("route") for (n, labels), _ in samples.items() if n == "plinth_http_requests_total"}
    assert "/get-online-features" in routes
