"""Fixtures for the Feast compatibility suite: a Plinth server with a feature repository applied
and materialized, the same definitions applied to a real Feast `FeatureStore` whose online store
is Plinth (`type: remote`), and the data both read.

Run (from the repository root):

    $HOME/.cache/plinth/venv-feast/bin/python -m pytest -c tests/feast/pytest.ini --rootdir tests/feast tests/feast
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"

import subprocess  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402

import plinth_compat  # noqa: E402
from plinth_compat import ServerProcess, plinth_bin, start_server  # noqa: E402

plinth_compat.watch_server_errors()

DRIVERS = list(range(1001, 1011))
# Its rows are all older than the view's TTL: online reads must not serve them.
STALE_DRIVER = 1010
NULL_DRIVER = 1003
TTL = timedelta(days=1)


# The autouse fixture that fails a test which received a 5xx.
from plinth_compat import no_server_errors  # noqa: E402, F401


def make_driver_stats(now: datetime, seed: int = 7) -> pd.DataFrame:
    """Hourly rows for the last 48 hours per driver (the stale one: 4 to 6 days ago), with
    duplicated event times broken by `created`, null values, and an unsorted order."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in DRIVERS:
        hours = range(96, 144) if d == STALE_DRIVER else range(0, 48)
        for h in hours:
            ts = now - timedelta(hours=h)
            created = ts + timedelta(minutes=int(rng.integers(1, 30)))
            conv = None if rng.random() < 0.05 else float(round(rng.random(), 6))
            rows.append((d, ts, created, conv, int(rng.integers(0, 500))))
            if rng.random() < 0.1:
                # Same event time, later created: this one wins.
                rows.append((d, ts, created + timedelta(minutes=5), float(round(rng.random(), 6)), int(rng.integers(0, 500))))
    df = pd.DataFrame(rows, columns=["driver_id", "event_timestamp", "created", "conv_rate", "avg_trips"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df["created"] = pd.to_datetime(df["created"], utc=True)
    # The newest row of NULL_DRIVER has no conv_rate: its status is NULL_VALUE.
    newest = df[df.driver_id == NULL_DRIVER].sort_values(["event_timestamp", "created"]).index[-1]
    df.loc[newest, "conv_rate"] = np.nan
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    schema = pa.schema(
        [
            ("driver_id", pa.int64()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("created", pa.timestamp("us", tz="UTC")),
            ("conv_rate", pa.float64()),
            ("avg_trips", pa.int64()),
        ]
    )
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), path)


REPO_TOML = """
[[entity]]
name = "driver"
join_keys = [{ name = "driver_id", type = "int64" }]

[[source]]
name = "driver_stats_source"
path = "data/driver_stats"
timestamp_field = "event_timestamp"
created_timestamp_column = "created"

[[source]]
name = "driver_stats_push"
push_to = "driver_stats_source"

[[feature_view]]
name = "driver_hourly"
entities = ["driver"]
source = "driver_stats_push"
ttl = "1d"
features = [
  { name = "conv_rate", type = "float64" },
  { name = "avg_trips", type = "int64" },
]

[[feature_service]]
name = "driver_ranking"
features = ["driver_hourly:conv_rate", "driver_hourly:avg_trips"]
"""


# The auth-on world's admin (bootstrapped by the server from its configuration).
ADMIN = "admin"
ADMIN_PASSWORD = "feast-admin-" + os.urandom(8).hex()
AUTH_ENV = {
    "PLINTH__AUTH__ENABLED": "true",
    "PLINTH__AUTH__BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "PLINTH__AUTH__MAX_FAILURES_PER_ADDRESS": "100000",
}
# Credentials of the servers started with auth on, by URL, for the CLI and HTTP helpers.
CREDENTIALS: dict[str, tuple[str, str]] = {}


def run_plinth(server: ServerProcess, *args: str) -> str:
    """Runs a `plinth` client command against `server` (signed in when its auth is on); fails the
    test with its output on error."""
    env = dict(os.environ, PLINTH_SERVER=server.url)
    env.pop("PLINTH_USER", None)
    env.pop("PLINTH_PASSWORD", None)
    if server.url in CREDENTIALS:
        env["PLINTH_USER"], env["PLINTH_PASSWORD"] = CREDENTIALS[server.url]
    proc = subprocess.run([str(plinth_bin()), *args], env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"plinth {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc.stdout


@dataclass
class World:
    server: ServerProcess
    repo: Path
    data_dir: Path
    now: datetime
    stats: pd.DataFrame
    auth: bool
    # HTTP to the server, signed in as the admin when auth is on.
    http: requests.Session


@pytest.fixture(scope="module", params=["auth-off", "auth-on"])
def world(request, tmp_path_factory) -> World:
    """A Plinth server with the repository applied and materialized, once with auth off and once
    with auth on (every client then signs in: the CLI with PLINTH_USER/PLINTH_PASSWORD, HTTP with
    Basic credentials)."""
    auth = request.param == "auth-on"
    root = tmp_path_factory.mktemp("feast-world")
    repo = root / "repo"
    data_dir = repo / "data" / "driver_stats"
    data_dir.mkdir(parents=True)
    (repo / "features.toml").write_text(REPO_TOML)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    stats = make_driver_stats(now)
    write_parquet(stats, data_dir / "part-0.parquet")
    srv = start_server(root / "plinth-data", env=AUTH_ENV if auth else None)
    http = requests.Session()
    if auth:
        CREDENTIALS[srv.url] = (ADMIN, ADMIN_PASSWORD)
        http.auth = (ADMIN, ADMIN_PASSWORD)
        # Nothing is served to a caller without credentials.
        assert requests.post(f"{srv.url}/get-online-features", json={}, timeout=30).status_code == 401
    try:
        run_plinth(srv, "features", "apply", str(repo))
        run_plinth(srv, "features", "materialize")
        yield World(server=srv, repo=repo, data_dir=data_dir, now=now, stats=stats, auth=auth, http=http)
    finally:
        problems = srv.stop()
        if problems:
            pytest.fail(f"server at {srv.url}: " + "; ".join(problems) + "\n" + srv.output()[-6000:], pytrace=False)


def feast_objects(source_path: Path):
    """The same definitions in Feast's Python SDK."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.types import Float64, Int64

    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    batch = FileSource(
        name="driver_stats_source",
        path=str(source_path),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    push = PushSource(name="driver_stats_push", batch_source=batch)
    view = FeatureView(
        name="driver_hourly",
        entities=[driver],
        ttl=TTL,
        schema=[Field(name="conv_rate", dtype=Float64), Field(name="avg_trips", dtype=Int64)],
        online=True,
        source=push,
    )
    service = FeatureService(name="driver_ranking", features=[view[["conv_rate", "avg_trips"]]])
    return [driver, batch, push, view, service]


def feast_auth(world: World) -> dict:
    """With auth on, Feast's SDK signs in with a Plinth API token, sent as the static bearer token of
    its OIDC client configuration (`auth: {type: oidc, token: …}`)."""
    if not world.auth:
        return {}
    r = world.http.post(f"{world.server.url}/api/plinth/v1/tokens", json={"name": "feast-sdk"}, timeout=30)
    assert r.status_code == 200, r.text
    return {"auth": {"type": "oidc", "token": r.json()["secret"]}}


@pytest.fixture(scope="module")
def feast_store(world: World, tmp_path_factory):
    """A real Feast FeatureStore whose online store is the Plinth server."""
    from feast import FeatureStore, RepoConfig


    root = tmp_path_factory.mktemp("feast-repo")
    config = RepoConfig(
        project="plinth_compat",
        provider="local",
        registry=str(root / "registry.db"),
        online_store={"type": "remote", "path": world.server.url},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(root),
        **feast_auth(world),
    )
    store = FeatureStore(config=config)
    store.apply(feast_objects(world.data_dir / "part-0.parquet"))
    return store


def latest_rows(stats: pd.DataFrame) -> pd.DataFrame:
    """Reference: the newest row per driver by (event time, created)."""
    ordered = stats.sort_values(["driver_id", "event_timestamp", "created"])
    return ordered.groupby("driver_id").tail(1).set_index("driver_id")
