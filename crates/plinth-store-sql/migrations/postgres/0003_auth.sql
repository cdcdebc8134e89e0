-- Authentication and authorization: users and service accounts, API tokens, per-resource grants.
-- Secrets are never stored in clear: passwords as argon2id PHC strings, token secrets as their SHA-256.
-- Roles, kinds and levels are stored as their `as_str()` spellings, flags as 0/1.
CREATE TABLE users (
    name TEXT COLLATE "C" PRIMARY KEY,
    -- user, service_account
    kind TEXT COLLATE "C" NOT NULL,
    -- viewer, member, admin
    role TEXT COLLATE "C" NOT NULL,
    approver BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    -- NULL for service accounts (tokens only).
    password_hash TEXT COLLATE "C",
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    -- The public part of the token text.
    id TEXT COLLATE "C" PRIMARY KEY,
    user_name TEXT COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    -- SHA-256 of the secret part, lowercase hex.
    secret_hash TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    -- Coarse: written at most once a minute per token.
    last_used_at BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);
CREATE TABLE grants (
    user_name TEXT COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    -- experiment, registered_model
    kind TEXT COLLATE "C" NOT NULL,
    -- An experiment id or a registered model name.
    resource TEXT COLLATE "C" NOT NULL,
    -- READ, EDIT, MANAGE
    level TEXT COLLATE "C" NOT NULL,
    granted_by TEXT COLLATE "C" NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_name, kind, resource)
);
CREATE INDEX grants_by_resource ON grants (kind, resource);
