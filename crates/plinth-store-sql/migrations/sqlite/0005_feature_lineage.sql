-- Feature lineage: the definitions each training dataset read (one row per entry of its `definitions` JSON, so the
-- datasets reading a definition are an indexed query) and the tracking runs each dataset was logged to.
-- Runs are not referenced by a foreign key: the feature tables stay independent of the tracking tables.
CREATE TABLE training_dataset_reads (
    dataset_id TEXT NOT NULL REFERENCES training_datasets (id),
    -- entity, source, feature_view, feature_service
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (dataset_id, kind, name, version)
);
CREATE INDEX training_dataset_reads_by_definition ON training_dataset_reads (kind, name, dataset_id);
CREATE TABLE training_dataset_runs (
    dataset_id TEXT NOT NULL REFERENCES training_datasets (id),
    run_id TEXT NOT NULL,
    -- The dataset input's `mlflow.data.context` ("training", "validation", ...).
    context TEXT NOT NULL,
    logged_at INTEGER NOT NULL,
    logged_by TEXT NOT NULL,
    PRIMARY KEY (dataset_id, run_id)
);
CREATE INDEX training_dataset_runs_by_logging ON training_dataset_runs (dataset_id, logged_at, run_id);
CREATE INDEX training_dataset_runs_by_run ON training_dataset_runs (run_id);
