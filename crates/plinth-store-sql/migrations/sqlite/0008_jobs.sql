-- Training jobs and the queue configuration they are admitted under. A job is one row: what
-- queries filter on (state, queues, submitter) and what the scheduler orders by (priority) are
-- columns of their own; the spec, the flavor assignment and the last attempt's end are JSON text,
-- since no query looks inside them. States and exit causes are stored as their `as_str()`
-- spellings, flags as 0/1, times as milliseconds since the epoch. `version` is bumped by every
-- change: changes compare-and-set on it. AUTOINCREMENT keeps an id from ever being given twice.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    -- The local queue submitted to (the spec's queue).
    local_queue TEXT NOT NULL,
    cluster_queue TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    idempotency_key TEXT,
    -- The spec's priority.
    priority INTEGER NOT NULL,
    -- JSON object: the whole spec.
    spec TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    preemptions INTEGER NOT NULL,
    -- JSON object, resource to flavor; NULL while not admitted.
    flavors TEXT,
    executor TEXT,
    handle TEXT,
    run_id TEXT,
    experiment_id TEXT,
    cancel_requested INTEGER NOT NULL,
    -- JSON object {"cause", "message", "exit_code", "signal", "peak_memory_bytes"}; NULL before a first end.
    last_end TEXT,
    not_before INTEGER,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    admitted_at INTEGER,
    started_at INTEGER,
    finished_at INTEGER
);
-- A submitter's idempotency key names one job; jobs without a key are not constrained.
CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (submitted_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The active jobs (by state), and each list filter in the list's order (the primary key serves the unfiltered list).
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_local_queue ON jobs (local_queue, id);
CREATE INDEX jobs_by_cluster_queue ON jobs (cluster_queue, id);
CREATE INDEX jobs_by_submitter ON jobs (submitted_by, id);
-- The queue configuration applied last: one row (id 1) once a first one is applied, in its canonical text.
CREATE TABLE job_queue_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
