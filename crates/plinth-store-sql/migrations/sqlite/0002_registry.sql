-- Model registry (registered models, versions, tags, aliases, promotion gates and requests), the audit trail, webhooks.
-- Everything under a registered model references it ON DELETE CASCADE ON UPDATE CASCADE: a rename or a delete of the
-- model row carries its versions, tags, aliases, gates and promotion requests along.
CREATE TABLE registered_models (
    name TEXT PRIMARY KEY,
    creation_time INTEGER NOT NULL,
    last_updated_time INTEGER NOT NULL,
    description TEXT,
    -- The number the next version gets. It only grows, so a deleted version's number is never handed out again.
    next_version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX registered_models_by_creation_time ON registered_models (creation_time);
CREATE INDEX registered_models_by_last_updated_time ON registered_models (last_updated_time);
CREATE TABLE registered_model_tags (
    name TEXT NOT NULL REFERENCES registered_models (name) ON DELETE CASCADE ON UPDATE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE TABLE model_versions (
    name TEXT NOT NULL REFERENCES registered_models (name) ON DELETE CASCADE ON UPDATE CASCADE,
    version INTEGER NOT NULL,
    creation_time INTEGER NOT NULL,
    last_updated_time INTEGER NOT NULL,
    description TEXT,
    user_id TEXT,
    -- None, Staging, Production, Archived; Deleted_Internal for a deleted version (its number stays taken).
    current_stage TEXT NOT NULL,
    source TEXT NOT NULL,
    storage_location TEXT NOT NULL,
    run_id TEXT,
    run_link TEXT,
    model_id TEXT,
    status TEXT NOT NULL,
    status_message TEXT,
    PRIMARY KEY (name, version)
);
CREATE INDEX model_versions_by_stage ON model_versions (name, current_stage, version);
CREATE INDEX model_versions_by_run ON model_versions (run_id);
CREATE INDEX model_versions_by_last_updated_time ON model_versions (last_updated_time);
CREATE TABLE model_version_tags (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE registered_model_aliases (
    name TEXT NOT NULL REFERENCES registered_models (name) ON DELETE CASCADE ON UPDATE CASCADE,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE registry_gates (
    model TEXT NOT NULL REFERENCES registered_models (name) ON DELETE CASCADE ON UPDATE CASCADE,
    target TEXT NOT NULL,
    -- JSON arrays of strings.
    conditions TEXT NOT NULL,
    required_tags TEXT NOT NULL,
    approvals_required INTEGER NOT NULL,
    description TEXT,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (model, target)
);
CREATE TABLE promotion_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL REFERENCES registered_models (name) ON DELETE CASCADE ON UPDATE CASCADE,
    version INTEGER NOT NULL,
    target TEXT NOT NULL,
    requester TEXT NOT NULL,
    reason TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX promotion_requests_by_model ON promotion_requests (model, id);
CREATE INDEX promotion_requests_by_status ON promotion_requests (status, expires_at);
CREATE TABLE promotion_reviews (
    request_id INTEGER NOT NULL REFERENCES promotion_requests (id) ON DELETE CASCADE,
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, reviewer)
);
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT,
    -- JSON array of {"field", "before", "after"}.
    changes TEXT NOT NULL
);
CREATE INDEX audit_events_by_resource ON audit_events (resource_type, resource_id, id);
CREATE INDEX audit_events_by_time ON audit_events (time);
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    -- JSON array of event names.
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at, id);
