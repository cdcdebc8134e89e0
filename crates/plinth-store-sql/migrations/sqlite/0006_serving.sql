-- Serving deployments. A deployment's options are columns; its variants are rows of their own (in
-- the order they were declared), so the deployments following a registered model are an indexed
-- query. `generation` is bumped by every update: updates compare-and-set on it, serving nodes follow it.
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    description TEXT,
    runtime TEXT NOT NULL,
    max_batch_size INTEGER NOT NULL,
    -- JSON array of integers.
    preferred_batch_sizes TEXT NOT NULL,
    max_queue_delay_us INTEGER NOT NULL,
    max_queue_size INTEGER NOT NULL,
    timeout_ms INTEGER,
    instances INTEGER NOT NULL,
    threads INTEGER NOT NULL,
    feature_service TEXT,
    generation INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE deployment_variants (
    deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    model_name TEXT NOT NULL,
    -- Exactly one of the two: the alias followed, or the version pinned.
    model_alias TEXT,
    model_version INTEGER,
    weight INTEGER NOT NULL,
    -- The fraction of requests a shadow variant gets a copy of; NULL for the others.
    shadow_fraction REAL,
    PRIMARY KEY (deployment, position),
    UNIQUE (deployment, name)
);
CREATE INDEX deployment_variants_by_model ON deployment_variants (model_name, deployment);
