-- Sweeps and their trials. A sweep's spec is its file's text (the scheduler reads it); its state
-- and times are columns; `version` is bumped by every change, changes compare-and-set on it. A
-- trial is one row per (sweep, index), written whole by the scheduler; its parameters are a JSON
-- array of [name, value] pairs in the space's order.
CREATE TABLE sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    parent_run_id TEXT,
    experiment_id TEXT,
    best_trial INTEGER,
    message TEXT,
    created_by TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX sweeps_by_state ON sweeps (state, id);
CREATE TABLE sweep_trials (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    trial_index INTEGER NOT NULL,
    params TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    objective REAL,
    step INTEGER,
    stopped_at_step INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, trial_index)
);
