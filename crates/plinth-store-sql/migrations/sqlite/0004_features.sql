-- Feature store: versioned definitions (entities, sources, feature views, feature services) and the applies that wrote
-- them, materialization state and runs per feature view, saved training datasets.
-- Kinds are stored as their `as_str()` spellings, flags as 0/1. Feature-data times are nanoseconds since the epoch
-- (`_ns`); bookkeeping times are milliseconds (`_at`).
CREATE TABLE feature_applies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE feature_definitions (
    -- entity, source, feature_view, feature_service
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    -- 1, 2, …: one per change, deletions included.
    version INTEGER NOT NULL,
    -- Canonical JSON; NULL when this version deletes the object (a tombstone).
    spec TEXT,
    -- Hex SHA-256 of spec; NULL for a tombstone.
    digest TEXT,
    apply_id INTEGER NOT NULL REFERENCES feature_applies (id),
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);
CREATE INDEX feature_definitions_by_apply ON feature_definitions (apply_id, kind, name);
-- The newest version of each object: the compare-and-set and the per-object lock of an apply.
CREATE TABLE feature_heads (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (kind, name),
    FOREIGN KEY (kind, name, version) REFERENCES feature_definitions (kind, name, version)
);
CREATE TABLE feature_view_state (
    view TEXT PRIMARY KEY,
    -- End (inclusive) of the last committed materialization; only grows.
    watermark_ns INTEGER,
    -- Newest event time written to the online store, by materialization or push; only grows.
    newest_event_ns INTEGER,
    last_run_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE TABLE feature_materializations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    view TEXT NOT NULL,
    view_version INTEGER NOT NULL,
    -- NULL for a full run.
    start_ns INTEGER,
    end_ns INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    newest_event_ns INTEGER,
    started_at INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    actor TEXT NOT NULL
);
CREATE INDEX feature_materializations_by_view ON feature_materializations (view, id);
CREATE TABLE training_datasets (
    -- A UUID.
    id TEXT PRIMARY KEY,
    -- Optional; unique when set (NULLs are distinct).
    name TEXT UNIQUE,
    -- JSON array of feature references.
    features TEXT NOT NULL,
    feature_service TEXT,
    full_feature_names INTEGER NOT NULL,
    -- JSON array of [kind, name, version] of every definition the retrieval read.
    definitions TEXT NOT NULL,
    -- Hex SHA-256 of the entity rows.
    entity_digest TEXT NOT NULL,
    entity_rows INTEGER NOT NULL,
    output_uri TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX training_datasets_by_creation ON training_datasets (created_at, id);
