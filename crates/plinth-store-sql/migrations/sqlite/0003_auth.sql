-- Authentication and authorization: users and service accounts, API tokens, per-resource grants.
-- Secrets are never stored in clear: passwords as argon2id PHC strings, token secrets as their SHA-256.
-- Roles, kinds and levels are stored as their `as_str()` spellings, flags as 0/1.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    -- user, service_account
    kind TEXT NOT NULL,
    -- viewer, member, admin
    role TEXT NOT NULL,
    approver INTEGER NOT NULL,
    disabled INTEGER NOT NULL,
    -- NULL for service accounts (tokens only).
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    -- The public part of the token text.
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- SHA-256 of the secret part, lowercase hex.
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    -- Coarse: written at most once a minute per token.
    last_used_at INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);
CREATE TABLE grants (
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    -- experiment, registered_model
    kind TEXT NOT NULL,
    -- An experiment id or a registered model name.
    resource TEXT NOT NULL,
    -- READ, EDIT, MANAGE
    level TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_name, kind, resource)
);
CREATE INDEX grants_by_resource ON grants (kind, resource);
