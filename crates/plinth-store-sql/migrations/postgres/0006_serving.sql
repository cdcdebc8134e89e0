-- Serving deployments. A deployment's options are columns; its variants are rows of their own (in
-- the order they were declared), so the deployments following a registered model are an indexed
-- query. `generation` is bumped by every update: updates compare-and-set on it, serving nodes follow it.
CREATE TABLE deployments (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT,
    runtime TEXT NOT NULL,
    max_batch_size BIGINT NOT NULL,
    -- JSON array of integers.
    preferred_batch_sizes TEXT NOT NULL,
    max_queue_delay_us BIGINT NOT NULL,
    max_queue_size BIGINT NOT NULL,
    timeout_ms BIGINT,
    instances BIGINT NOT NULL,
    threads BIGINT NOT NULL,
    feature_service TEXT,
    generation BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE deployment_variants (
    deployment TEXT COLLATE "C" NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    model_name TEXT COLLATE "C" NOT NULL,
    -- Exactly one of the two: the alias followed, or the version pinned.
    model_alias TEXT,
    model_version BIGINT,
    weight BIGINT NOT NULL,
    -- The fraction of requests a shadow variant gets a copy of; NULL for the others.
    shadow_fraction DOUBLE PRECISION,
    PRIMARY KEY (deployment, position),
    UNIQUE (deployment, name)
);
CREATE INDEX deployment_variants_by_model ON deployment_variants (model_name, deployment);
