-- Sweeps and their trials. A sweep's spec is its file's canonical text (the scheduler reads it);
-- its state (`SweepState::as_str`) and times (milliseconds since the epoch) are columns; `version`
-- is bumped by every change, changes compare-and-set on it. AUTOINCREMENT keeps an id from
-- ever being given twice.
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
-- The running sweeps, by id: what the scheduler resumes.
CREATE INDEX sweeps_by_state ON sweeps (state, id);
-- A trial is one row per (sweep, index), written whole by the scheduler (an upsert). Its parameters
-- are a JSON array of [name, value] pairs in the space's order; its state is `TrialState::as_str`;
-- an objective that is not a number is stored as NULL (no value), as SQLite stores NaN.
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
